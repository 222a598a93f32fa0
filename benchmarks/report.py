"""Benchmark: an ablation sweep over cached predictions (12 n_aug points x 5 rules x 20 seeds).

    python benchmarks/report.py                      # synthetic ARC-AGI-1 eval predictions, 1000 variants
    python benchmarks/report.py --infer .arcpipe/infer/<key>   # a real cached inference

Without --infer it builds, once, in --cache (default /tmp/arcpipe-bench-report):
a real augment plan of ARC-AGI-1 evaluation x --n-aug variants and an infer
stage laid out as arcpipe.infer writes one, whose predictions are each
variant's true answer in the variant frame (materialised with
arcpipe.augment.materialize and cropped) with a share of them corrupted, so
the vote has hundreds of thousands of predictions and many distinct answers
to group. Then it times:

  prepare   vote.prepare once (inverse transforms, answer ids, truth)
  sweep     12 n_aug points x 5 rules x 20 seeds of vote.rank + vote.scores
            (identical queries at n_aug = max are done once, as the report does)
  signals   arcpipe.signals.signal_quality (AUROC of q_halt / logprob / agreement within
            an input and pooled, 2000 bootstrap draws) and calibration, as the report runs them
  report    arcpipe.report.report end to end (same sweep + ACT-step curve,
            per-task table, plots, gallery, CSV/parquet), cache bypassed (force)

Target (issue 7): the report over cached predictions in < 30 s on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from arcpipe import cache, report, report_queries, signals, transforms, vote
from arcpipe.augment import Plan, augment, materialize

POINTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1000]


def synthetic_infer(root: Path, source: str, n_aug: int, steps: int, wrong: float, seed: int = 0) -> cache.Stage:
    aug = augment(source, extra_train=None, n_aug=n_aug, canvas=30, seed=seed, root=root)
    plan = Plan.load(aug)
    rows = plan.table.filter(pl.col("split") == "test").sort(["task_id", "example", "variant"])
    config = {"synthetic": True, "steps": steps, "wrong": wrong, "seed": seed}

    def build(work: Path) -> dict:
        rng = np.random.default_rng(seed)
        canvas = plan.canvas
        tables, chunks, off = [], [], 0
        for start in range(0, rows.height, 50_000):
            part = rows.slice(start, 50_000)
            _, labels, _ = materialize(part, plan.grids, canvas)
            h, w = transforms.transformed_shape(part["out_h"].to_numpy(), part["out_w"].to_numpy(), part["dihedral"].to_numpy())
            b = labels.reshape(-1, canvas, canvas)
            for s in range(1, steps + 1):
                colours = (b.astype(np.int16) - transforms.COLOUR_OFFSET).clip(0, 9).astype(np.uint8)
                # corrupt a share of the predictions (fewer at later ACT steps): one cell recoloured
                bad = rng.random(len(b)) < wrong / s
                colours[bad, 0, 0] = (colours[bad, 0, 0] + rng.integers(1, 4, bad.sum())) % 10
                mask = (np.arange(canvas)[None, :, None] < h[:, None, None]) & (np.arange(canvas)[None, None, :] < w[:, None, None])
                flat = colours[mask]
                sizes = (h * w).astype(np.int64)
                offs = off + np.concatenate([[0], np.cumsum(sizes)[:-1]])
                off += int(sizes.sum())
                chunks.append(flat)
                q = rng.normal(np.where(bad, -0.5, 0.5), 1.0).astype(np.float32)
                tables.append(part.select("task_id", "example", "variant", "puzzle_id", "dihedral", "perm").with_columns(
                    pl.lit(s, dtype=pl.Int16).alias("step"), pl.Series("pred_off", offs, dtype=pl.Int64),
                    pl.Series("pred_h", h, dtype=pl.Int16), pl.Series("pred_w", w, dtype=pl.Int16),
                    pl.Series("q_halt", q), pl.Series("q_continue", -q),
                    pl.Series("logprob_sum", -np.abs(q) * sizes, dtype=pl.Float32), pl.Series("logprob_mean", -np.abs(q)),
                ))
        table = pl.concat(tables)
        table.write_parquet(work / "predictions.parquet")
        np.save(work / "preds.npy", np.concatenate(chunks))
        return {"rows": table.height}

    return cache.run_stage("infer", config, {"train": "synthetic", "augment": aug.key}, build, root=root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--infer", help="an existing infer stage directory (skips the synthetic build)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "arcpipe-bench-report"))
    ap.add_argument("--source", default="arc1:evaluation")
    ap.add_argument("--n-aug", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1, help="ACT steps recorded per variant in the synthetic set")
    ap.add_argument("--wrong", type=float, default=0.6, help="share of corrupted predictions at step 1")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    root = Path(args.cache)

    t = time.perf_counter()
    inf = cache.load_stage(args.infer, "infer") if args.infer else synthetic_infer(root, args.source, args.n_aug, args.steps, args.wrong)
    root = inf.path.parent.parent
    print(f"predictions: {inf.path} ({inf.manifest['counts']}; ready in {time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    prepared = vote.prepare(inf)
    t_prep = time.perf_counter() - t
    info = report_queries.prepared_info(prepared)
    max_n = info["n_aug"]
    points = sorted({p for p in POINTS if p < max_n} | {max_n})
    print(f"prepare: {t_prep:.2f} s ({len(prepared.tex)} predictions, {len(prepared.tests)} test inputs, {max_n} variants)")

    t = time.perf_counter()
    q = report_queries.Queries(vote, prepared)
    report_queries.n_aug_curves(q, list(vote.RULES), points, max_n, args.seeds, None, 2, info["task_ids"])
    t_sweep = time.perf_counter() - t
    print(f"sweep: {len(points)} n_aug points x {len(vote.RULES)} rules x {args.seeds} seeds = {q.n_queries} distinct queries "
          f"in {t_sweep:.2f} s on {report_queries.query_jobs()} threads ({1000 * t_sweep / q.n_queries:.1f} ms/query)")

    t = time.perf_counter()
    sig = signals.signal_quality(prepared, n_boot=report.BOOTSTRAP, jobs=report_queries.query_jobs())
    signals.calibration(prepared, info["steps"][-1])
    t_sig = time.perf_counter() - t
    cells = len(prepared.tex) // max(len(info["steps"]), 1) * len(info["task_ids"])
    computed = sig["pooled_ci_low"].is_not_nan().any()  # what signal_quality did, not a re-derived budget check
    print(f"signals: {t_sig:.2f} s ({sig.height} rows: {len(info['steps'])} steps x {len(signals.SIGNALS)} signals; pooled interval "
          f"{'computed' if computed else 'left out'}: ~{cells:,} predictions x tasks per step)")

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        st = report.report([inf], name="bench", out_dir=out, n_aug_points=points, seeds=args.seeds, root=root, force=True)
        files = sorted(p.name for p in Path(st.path).iterdir())
    t_rep = time.perf_counter() - t
    print(f"report: {t_rep:.2f} s end to end ({st.manifest['counts']['queries']} queries; {len(files)} files)")
    print(f"target < 30 s: {'PASS' if t_rep < 30 else 'FAIL'}")
    sys.exit(0 if t_rep < 30 else 1)


if __name__ == "__main__":
    main()
