"""Does a committed report replay on this machine? Reruns (a subset of) a pipeline into a scratch
report directory and compares each run, matched by inference stage key, with the committed
report's runs table: pass@2, oracle, train exact and the halting/log-probability AUROCs, which
depend on every cached prediction, so "identical" here means the training took the same path.

Why: fp32 rounding differs between CPU models, and a 24000-step training amplifies it into
pass@2 several points apart (README, outer-loop-59tasks-24k), while the same kind of CPU gave
identical runs. Run this on a new machine before comparing its numbers with committed ones, to
know whether they are a replay or another draw.

    # HRM and transformer, seeds 0-1, of the 24000-step report (4 trainings; README's figures)
    python benchmarks/replay.py pipelines/outer-loop-59tasks-24k.toml --jobs 2 \\
        --set 'sweep.seeds=[0,1]' --set 'sweep.train.model.halt_max_steps=[4]'
    # or compare a report built already, without training, with the first (AMD EPYC) version
    python benchmarks/replay.py pipelines/outer-loop-59tasks-24k.toml --runs /tmp/x/runs.csv --against-rev 7c9a37e

The stages go to the usual cache (``.arcpipe``, or ``--root``), so a second call is instant; only
the report is written outside ``reports/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["core", "preset", "halt_max_steps", "seed"]


def metric_columns(columns: list[str]) -> list[str]:
    """The per-run results (not settings or keys) in a runs table."""
    return [c for c in columns if c.startswith(("pass@2", "oracle", "train_exact")) or c.endswith("auroc")]


def compare(new, committed):
    """One row per run of ``new``: its settings, pass@2 and train exact on both sides, and whether
    every result column is equal. Runs absent from ``committed`` (other stage keys: settings,
    data or arcpipe version differ) are kept with empty committed columns."""
    import polars as pl

    metrics = [c for c in metric_columns(new.columns) if c in committed.columns]
    right = committed.select("infer", *[pl.col(c).alias(f"{c} committed") for c in metrics])
    j = new.join(right, on="infer", how="left")
    same = pl.all_horizontal([pl.col(c) == pl.col(f"{c} committed") for c in metrics])
    return j.select(
        pl.col("infer").str.slice(0, 8), *[c for c in SETTINGS if c in new.columns],
        pl.col("pass@2").alias("pass@2 here"), "pass@2 committed",
        pl.col("train_exact").alias("exact here"), pl.col("train_exact committed").alias("exact committed"),
        pl.when(pl.col("pass@2 committed").is_null()).then(pl.lit("not in committed report"))
        .when(same).then(pl.lit("identical")).otherwise(pl.lit("differs")).alias("replay"),
    )


def main() -> None:
    import polars as pl

    from arcpipe import cache, pipeline
    from arcpipe.errors import ArcpipeError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="as in `arcpipe run --set` (repeatable)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--root", default=None, help="stage cache (default: $ARCPIPE_CACHE or .arcpipe)")
    ap.add_argument("--runs", type=Path, default=None, help="a runs.csv built already: compare it, train nothing")
    ap.add_argument("--against-rev", default=None,
                    help="compare with the report as committed at this git revision (default: the working tree's)")
    args = ap.parse_args()

    try:
        plan = pipeline.plan(args.pipeline, args.sets)
    except ArcpipeError as e:
        sys.exit(f"replay: {e}")
    if plan.report is None:
        sys.exit(f"replay: {args.pipeline} runs no report (report.enabled = false)")
    name = plan.report.settings["name"]
    committed_csv = REPO / "reports" / name / "runs.csv"
    if args.against_rev:
        shown = subprocess.run(["git", "show", f"{args.against_rev}:{committed_csv.relative_to(REPO)}"], cwd=REPO, capture_output=True)
        if shown.returncode:
            sys.exit(f"replay: {shown.stderr.decode().strip()}")
        committed = pl.read_csv(shown.stdout)
    elif committed_csv.exists():
        committed = pl.read_csv(committed_csv)
    else:
        sys.exit(f"replay: no committed report at {committed_csv}")
    where = f"{committed_csv.relative_to(REPO)}" + (f" at {args.against_rev}" if args.against_rev else "")
    if args.runs is None:
        # through the CLI, for its per-stage progress lines and one-line errors
        scratch = tempfile.mkdtemp(prefix="arcpipe-replay-")
        sets = [a for s in [*args.sets, f'report.out_dir="{scratch}"'] for a in ("--set", s)]
        env = {**os.environ, **({"ARCPIPE_CACHE": args.root} if args.root else {})}
        done = subprocess.run([str(Path(sys.executable).with_name("arcpipe")), "run", str(args.pipeline), *sets,
                               "--jobs", str(args.jobs)], env=env)
        if done.returncode:
            sys.exit(done.returncode)
        args.runs = Path(scratch) / name / "runs.csv"
    if not args.runs.is_file():
        sys.exit(f"replay: no runs table at {args.runs}")
    new = pl.read_csv(args.runs)
    table = compare(new, committed)
    print(f"{args.pipeline.name}: {len(table)} runs from {args.runs}, against {where}")
    print(f"this machine: {cache.describe_host(cache.host())}")
    if "train_host" in committed.columns:
        hosts = committed.filter(pl.col("infer").is_in(new["infer"].implode()))["train_host"].fill_null("unrecorded")
        print(f"committed runs trained on: {'; '.join(sorted(set(hosts.to_list())))}")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(table)
    counts = table["replay"].value_counts(sort=True)
    print(", ".join(f"{r['count']} {r['replay']}" for r in counts.iter_rows(named=True)))


if __name__ == "__main__":
    main()
