"""Ablation reports over cached predictions: markdown + PNG + CSV/parquet tables.

A report is a pure function of inference outputs (and the vote stages that
name them), so it is itself a cached stage (``<root>/report/<key>/``),
published as a copy under ``<out_dir>/<name>/``. Everything in it is a query
over cached predictions: ``vote.prepare`` runs once per inference (inverse
transforms, answer hashing, truth lookup), then each point of every curve is
``vote.rank`` + ``vote.scores`` on a seeded subsample of the variants. No
model is run, which is what makes a 12 n_aug x 5 rules x 20 seeds sweep a
matter of seconds.

Statistics: a point of an n_aug curve is the mean over ``seeds`` seeded
subsamples of the per-task score (a task's score is the fraction of its test
inputs solved, the ARC convention); its 95 % interval is a percentile
bootstrap over tasks of those seed-averaged per-task scores, so it reflects
how much the number would move on another draw of tasks of the same kind,
not only the subsampling noise. It is read at the small-sample tails of
``stats.expanded_tail`` (a few dozen tasks: the plain 2.5% / 97.5% cover
less than they say).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arcpipe import cache, report_markdown, signals
from arcpipe.errors import ArcpipeError
from arcpipe.figures import (draw_grid, plot_compute, plot_curves, plot_factor, plot_fit, plot_refinement,
                              plot_refinement_votes, plot_steps)
from arcpipe.runs import EQUAL_COMPUTE, FACTOR_TITLES, FACTORS, Run, main_run, matches_setting, resolve_runs, task_sources, varying_factors
from arcpipe.stats import BOOTSTRAP, MOVED, bootstrap_ci, paired_effects, seed_bootstrap_ci, t_quantile

METRICS = ("pass@1", "pass@2", "oracle")
#: Bumped when report.md's sections or the tables change, so a cached report of an older layout is
#: rebuilt rather than republished (a report's key is otherwise its settings and its inputs).
LAYOUT = 19  # 19: the compute section reads every arm against the line through the other arms' training fit; 18: the compute section (every arm against its training FLOPs; pairs at about equal compute), train_s and train_flops in runs, each arm's seed draws seeded by its scores
GALLERY = 4  # solved and failed test inputs shown each
FIT_LINE_ARMS = 3  # other arms a fit line needs: a line through two fits them exactly, whatever the relation


def default_points(max_n: int) -> list[int]:
    """1, 2, 4, ... up to and including ``max_n``."""
    pts = [1 << i for i in range(max(1, int(max_n).bit_length())) if (1 << i) < max_n]
    return pts + [int(max_n)]


# --------------------------------------------------------------------------- vote queries


class _Queries:
    """Per-task scores of vote queries on one prepared inference, memoised by (rule, n_aug, step, seed, top, variants)."""

    def __init__(self, vote: Any, prepared: Any):
        self.vote, self.prepared = vote, prepared
        self.memo: dict[tuple, tuple[Any, dict]] = {}
        self.n_queries = 0
        self.lock = threading.Lock()

    def query(self, rule: str, n_aug: int | None, step: int | None, seed: int, top: int = 2, variants: str = "all") -> tuple[Any, dict]:
        k = (rule, n_aug, step, seed, top, variants)
        if k not in self.memo:
            ranked = self.vote.rank(self.prepared, n_aug=n_aug, rule=rule, step=step, seed=seed, top=top, variants=variants)
            sc = self.vote.scores(ranked, self.prepared, ks=(1, 2))
            with self.lock:
                self.memo[k] = (ranked, sc)
                self.n_queries += 1
        return self.memo[k]

    @functools.cached_property
    def info(self) -> dict:
        return prepared_info(self.prepared)

    def all_variants(self, rule: str, step: int | tuple[int, ...] | None, top: int,
                     task_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Per-task scores voting every cached variant at ACT ``step`` (several together when a
        tuple; its last when it did not record that step), over ``task_ids`` (default: its own
        scored tasks)."""
        info = self.info
        return per_task(self.query(rule, info["n_aug"], self.own_step(step), 0, top)[1],
                        info["task_ids"] if task_ids is None else task_ids)

    def own_step(self, step: int | tuple[int, ...] | None) -> int | tuple[int, ...] | None:
        """``step`` when this inference recorded it (every one of them, for several voting
        together), else None (its last)."""
        wanted = step if isinstance(step, tuple) else (step,)
        return step if all(s in self.info["steps"] for s in wanted) else None


def _jobs() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def _subsample_scores(q: _Queries, rules: Sequence[str], points: Sequence[int], max_n: int, seeds: int,
                      step: int | tuple[int, ...] | None, top: int, task_ids: Sequence[str],
                      variants: str = "all") -> dict[tuple[str, int], dict[str, Any]]:
    """Per-task scores (an array per metric, and the number of ``subsamples``) at each
    (rule, n_aug), averaged over ``seeds`` seeded subsamples of the ``variants`` pool; at n_aug =
    ``max_n`` every seed draws the same subsample (the whole pool), so that point is queried once.

    Queries run on a small thread pool: ``vote.rank``'s numpy reductions and polars sorts release
    the GIL, so on 2 cores this is close to 2x.
    """
    from concurrent.futures import ThreadPoolExecutor

    specs = [(rule, n, s) for rule in rules for n in points for s in (range(seeds) if n < max_n else range(1))]
    for s in range(seeds):  # warm the per-seed variant order once, outside the pool
        q.prepared.variant_rank(s) if hasattr(q.prepared, "variant_rank") else None
    with ThreadPoolExecutor(_jobs()) as pool:
        results = list(pool.map(lambda sp: per_task(q.query(sp[0], sp[1], step, sp[2], top, variants)[1], task_ids),
                                specs))
    acc: dict[tuple[str, int], list[dict[str, np.ndarray]]] = {}
    for (rule, n, _), pt in zip(specs, results):
        acc.setdefault((rule, n), []).append(pt)
    return {k: {m: np.mean([pt[m] for pt in pts], axis=0) for m in METRICS} | {"subsamples": len(pts)}
            for k, pts in acc.items()}


def n_aug_curves(q: _Queries, rules: Sequence[str], points: Sequence[int], max_n: int, seeds: int, step: int | None,
                 top: int, task_ids: Sequence[str]) -> Any:
    """The n_aug sweep: one row per (rule, n_aug, metric) with the seed-mean score and its bootstrap CI."""
    import polars as pl

    rows, mats = [], []
    for (rule, n), sc in _subsample_scores(q, rules, points, max_n, seeds, step, top, task_ids).items():
        for m in METRICS:
            rows.append({"rule": rule, "n_aug": n, "metric": m, "mean": float(sc[m].mean()), "subsamples": sc["subsamples"]})
            mats.append(sc[m])
    lo, hi = bootstrap_ci(np.stack(mats))
    return pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))


def pool_counts(prepared: Any) -> tuple[int, int] | None:
    """The most trained and untrained variants any task cached, or None when every cached
    variant was trained (or none was, or the plan does not say): only a plan that voted variants
    it never trained beside trained ones, like the demo's, has two pools to tell apart."""
    if getattr(prepared, "train_aug", None) is None:
        return None
    n_tr, n_un = (int(prepared.pool_sizes(pool).max(initial=0)) for pool in ("trained", "untrained"))
    return (n_tr, n_un) if n_tr and n_un else None


def variant_pools(q: _Queries, rules: Sequence[str], step: int | None, top: int, task_ids: Sequence[str], seeds: int) -> Any:
    """Voting only the variants whose puzzle identifier was trained, only the others, or all;
    plus the untrained pool subsampled to the trained pool's size (mean over ``seeds`` subsamples),
    so the two kinds are compared at an equal count. One row per (pool, rule): pass@2 with its
    bootstrap CI, and the oracle. None when every cached variant was trained (or none was):
    the reference recipe, where the question does not arise."""
    import polars as pl

    counts = pool_counts(q.prepared)
    if counts is None:
        return None
    n_tr, n_un = counts
    specs = [("all", q.info["n_aug"], range(1)), ("trained", n_tr, range(1)), ("untrained", n_un, range(1))]
    if n_un > n_tr:
        specs.append(("untrained", n_tr, range(seeds)))
    rows, mats = [], []
    for pool, n, subsamples in specs:
        for rule in rules:
            pts = [per_task(q.query(rule, n, step, s, top, variants=pool)[1], task_ids) for s in subsamples]
            p2 = np.mean([pt["pass@2"] for pt in pts], axis=0)
            rows.append({"variants": pool, "n_aug": n, "rule": rule, "pass@2": float(p2.mean()),
                         "oracle": float(np.mean([pt["oracle"] for pt in pts], axis=0).mean()), "subsamples": len(pts)})
            mats.append(p2)
    lo, hi = bootstrap_ci(np.stack(mats))
    return pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))


def per_task(sc: dict, task_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """pass@1 / pass@2 / oracle per task, in ``task_ids`` order, from a ``vote.scores`` result.

    ``vote.scores`` lists tasks with known outputs sorted by id, the order
    ``prepared_info`` gives, so this is a column read (checked by length).
    """
    table = sc["per_task"]
    if table.height != len(task_ids):
        raise ArcpipeError(f"vote.scores returned {table.height} tasks, expected {len(task_ids)}")
    return {m: table[m].to_numpy().astype(np.float64) for m in METRICS}


# --------------------------------------------------------------------------- the report


def report(
    runs: Sequence[Any] | None = None,
    *,
    name: str = "latest",
    out_dir: str | os.PathLike = "reports",
    n_aug_points: Sequence[int] | None = None,
    seeds: int = 20,
    rules: Sequence[str] | None = None,
    step: int | None = None,
    top: int = 2,
    main: str | None = None,
    root: str | os.PathLike | None = None,
    force: bool = False,
) -> cache.Stage:
    """Write ``<out_dir>/<name>/`` (report.md, PNGs, CSV+parquet tables, manifest.json); return it as a Stage.

    ``runs``: infer or vote stages (objects, directories or key prefixes);
    default the newest vote's inference. ``main``: the settings of the run the
    single-run sections describe and every section compares against
    (``"preset=tiny,max_steps=12000"``; default the run holding the most common
    value of every setting, ``runs.main_run``). The returned Stage's ``path`` is the
    published directory, its ``key``/``cached`` those of the report stage.
    """
    from arcpipe import vote

    croot = cache.cache_root(root)
    if not name or "/" in name or name.startswith("."):
        raise ArcpipeError(f"report name {name!r}: must be a plain directory name")
    if seeds < 1:
        raise ArcpipeError(f"report seeds={seeds}: must be >= 1 (the report's curves use >= 20)")
    known_rules = list(vote.RULES)
    rules = list(rules) if rules else known_rules
    bad = [r for r in rules if r not in vote.RULES]
    if bad:
        raise ArcpipeError(f"report rules: unknown {', '.join(bad)} (known: {', '.join(known_rules)})")
    resolved = resolve_runs(runs, croot)
    config = {
        "name": name, "n_aug_points": list(n_aug_points) if n_aug_points else None, "seeds": int(seeds),
        "rules": rules, "step": step, "top": int(top), "bootstrap": BOOTSTRAP, "layout": LAYOUT,
    }
    if main:
        config["main"] = main
        main_run(resolved, main)  # a spec no run matches fails before anything is built
    inputs: dict[str, str] = {}
    for i, r in enumerate(resolved):
        inputs[f"infer{i}"] = r.infer.key
        for j, v in enumerate(r.votes):
            inputs[f"vote{i}.{j}"] = v.key

    def build(work: Path) -> dict:
        return _build(work, resolved, vote, config)

    st = cache.run_stage("report", config, inputs, build, root=croot, force=force)
    out = Path(out_dir) / name
    _publish(st, out, resolved)
    return cache.Stage("report", st.key, out, st.manifest, st.cached)


def _publish(st: cache.Stage, out: Path, runs: list[Run]) -> None:
    """Copy the cached report to ``out`` (whole or not at all), adding every input stage's manifest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(st.path, tmp)
    inputs = []
    for r in runs:
        for s in [r.augment, r.train, r.infer, *r.votes]:
            if s is not None and s.key not in {x["key"] for x in inputs}:
                inputs.append(s.manifest)
    manifest = {**st.manifest, "cache_path": str(st.path), "input_manifests": inputs}
    cache.atomic_write_json(tmp / cache.MANIFEST, manifest)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _write_table(frame: Any, work: Path, stem: str) -> None:
    frame.write_parquet(work / f"{stem}.parquet")
    frame.write_csv(work / f"{stem}.csv")


def _build(work: Path, runs: list[Run], vote: Any, config: dict) -> dict:
    import polars as pl

    t0 = time.perf_counter()
    rules, seeds, top = config["rules"], config["seeds"], config["top"]
    queries = [_Queries(vote, vote.prepare(r.infer)) for r in runs]
    main_i = main_run(runs, config.get("main"))
    main, q = runs[main_i], queries[main_i]
    info = q.info
    task_ids, max_n, steps = info["task_ids"], info["n_aug"], info["steps"]
    step = config["step"]
    if step is not None and step not in steps:
        raise ArcpipeError(f"report step={step}: not recorded by {main.infer.path} (recorded: {steps})")
    points = sorted({int(p) for p in (config["n_aug_points"] or default_points(max_n))})
    bad = [p for p in points if p < 1 or p > max_n]
    points = sorted(set(points) | {max_n})  # "all variants" is every report's reference point
    if bad:
        raise ArcpipeError(f"report n_aug_points {bad}: the inference cached {max_n} variants per test input (use 1..{max_n})")

    # 1. pass@1 / pass@2 / oracle vs inference n_aug, every rule, mean over seeded subsamples
    curves = n_aug_curves(q, rules, points, max_n, seeds, step, top, task_ids)
    _write_table(curves, work, "n_aug_curves")

    # 1b. trained vs untrained variants (only when the plan voted variants it never trained)
    pools = variant_pools(q, rules, step, top, task_ids, seeds)
    if pools is not None:
        _write_table(pools, work, "variant_pools")

    # 2. pass@2 vs the ACT step used at inference (all variants)
    rows, mats = [], []
    for rule in rules:
        for s in steps:
            pt = per_task(q.query(rule, max_n, s, 0, top)[1], task_ids)
            rows.append({"rule": rule, "step": s, "pass@2": float(pt["pass@2"].mean()), "oracle": float(pt["oracle"].mean())})
            mats.append(pt["pass@2"])
    lo, hi = bootstrap_ci(np.stack(mats))
    by_step = pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))
    _write_table(by_step, work, "act_steps")

    # 2a. which signal tells right predictions from wrong: sigmoid(q_halt), log-probability, agreement
    sig = signals.signal_quality(q.prepared, n_boot=BOOTSTRAP, jobs=_jobs())
    cal = signals.calibration(q.prepared, step if step is not None else steps[-1])
    _write_table(sig, work, "signals")
    _write_table(cal, work, "calibration")

    # 2b. the rules against each other on the main arm, paired over tasks
    primary = "hrm" if "hrm" in rules else rules[0]
    by_rule = rule_effects(runs, queries, main_i, rules, step, top, task_ids, primary)
    _write_table(by_rule, work, "rules")

    # 3. one section per setting the runs differ in (core, train_aug, puzzle-id mode, ...), split by
    #    where the tasks came from when the data joined several sources (ARC training + evaluation)
    sources = task_sources(main, task_ids)
    factors, by_source = {}, {}
    varying = varying_factors(runs)
    for f in varying:
        tables = factor_tables(runs, queries, main_i, f, rules, step, top, task_ids, primary, config["n_aug_points"], seeds)
        if tables is not None:
            factors[f] = tables
            _write_table(tables[0], work, f"by_{f}")
            _write_table(tables[1], work, f"by_{f}_steps")
            _write_table(tables[2], work, f"by_{f}_n_aug")
            plot_factor(work / f"by_{f}.png", f, FACTOR_TITLES.get(f, f), *tables, rules, primary)
            split = source_tables(runs, queries, main_i, f, step, top, task_ids, primary, sources)
            if split is not None:
                by_source[f] = split
                _write_table(split, work, f"by_{f}_sources")

    # 3b. two settings crossed in a full grid (variants x budget): the interaction one-factor slices miss
    grids = factor_grids(runs, queries, main_i, varying, primary, step, top, task_ids)
    for f, g, grid, effects in grids:
        _write_table(grid, work, f"grid_{f}_{g}")
        _write_table(effects, work, f"grid_{f}_{g}_effects")

    # 3c. every arm against its training compute: cheaper settings given more steps, at equal FLOPs
    compute = compute_table(runs, queries, main_i, varying, primary, step, top, task_ids)
    if compute is not None:
        _write_table(compute[0], work, "compute")
        if compute[1] is not None:
            _write_table(compute[1], work, "compute_pairs")
        plot_compute(work / "compute.png", compute[0], compute[2])
        if compute[0]["fit_line"].is_not_null().any():
            plot_fit(work / "fit.png", compute[0], compute[2], compute[3])

    # 3d. ACT steps at inference: each alone, voted together, and past the segments the arms were trained to run
    refinement = refinement_tables(runs, queries, main_i, varying, primary, top, task_ids)
    if refinement is not None:
        _write_table(refinement[0], work, "refinement")
        if refinement[1] is not None:
            _write_table(refinement[1], work, "refinement_vs_main")
        plot_refinement(work / "refinement.png", refinement[0])
        votes = refinement_votes(runs, queries, main_i, varying, primary, top, task_ids, points, seeds)
        if votes is not None:
            _write_table(votes, work, "refinement_votes")
            plot_refinement_votes(work / "refinement_votes.png", votes)
        refinement = (*refinement, votes)

    # 4. every run on its own (runs off every one-factor slice too, e.g. two kinds switched off at once)
    source_ids = {name: np.asarray(task_ids)[mask].tolist() for name, mask in sources.items()}
    run_scores = run_table(runs, queries, varying, primary, step, top, source_ids)
    _write_table(run_scores, work, "runs")
    _write_table(run_task_table(runs, queries, primary, step, top), work, "run_tasks")

    # 5. per test input: which rule solves it, and its vote margin (all variants)
    per_input = None
    frames = []
    for rule in rules:
        ranked, _ = q.query(rule, max_n, step, 0, top)
        frames.append(input_outcomes(ranked, q.prepared, rule, top))
    per_input = frames[0]
    for f in frames[1:]:
        per_input = per_input.join(f, on=["task_id", "example"], how="full", coalesce=True)
    per_input = per_input.sort(["task_id", "example"])
    if sources:
        of = {t: name for name, ids in source_ids.items() for t in ids}
        per_input = per_input.with_columns(source=pl.col("task_id").replace_strict(of, default=None, return_dtype=pl.String))
    _write_table(per_input, work, "per_task")

    # 6. plots and gallery
    ranked, _ = q.query(primary, max_n, step, 0, top)
    gallery = _gallery(work, ranked, q.prepared, main, per_input, primary)
    plot_curves(work / "n_aug_curves.png", curves, rules)
    plot_steps(work / "act_steps.png", by_step, rules)

    md = report_markdown.markdown(config, runs, main, info, curves, by_step, factors, per_input, rules, primary, gallery, max_n, points, seeds,
                   run_scores, pools, grids, by_rule, (sig, cal), sources, by_source,
                   compute, refinement)
    (work / "report.md").write_text(md)
    return {"runs": len(runs), "tasks": len(task_ids), "queries": sum(x.n_queries for x in queries),
            "n_aug_points": len(points), "rules": len(rules), "seconds": round(time.perf_counter() - t0, 3)}


# --------------------------------------------------------------------------- comparing runs


def _slice(runs: Sequence[Run], queries: Sequence[_Queries], main: Run, others: Sequence[str], task_ids: Sequence[str]) -> list[int]:
    """Indices of the runs that hold ``main``'s value of every factor of ``others`` (``matches_setting``)
    and are scored on ``task_ids``."""
    return [i for i, r in enumerate(runs) if all(matches_setting(r, main, g) for g in others)
            and queries[i].info["task_ids"] == list(task_ids)]


def _seed_mean(queries: Sequence[_Queries], group: Sequence[int], rule: str, step: int | None, top: int,
               task_ids: Sequence[str]) -> tuple[np.ndarray, float, np.ndarray]:
    """Per-task pass@2 of the ``group`` runs (one setting, several training seeds) averaged over the
    seeds, their mean oracle, and the per-run pass@2 it averages, (runs, tasks), which the
    seed-resampled intervals draw from; every cached variant voted."""
    pts = [queries[i].all_variants(rule, step, top, task_ids) for i in group]
    per_run = np.stack([pt["pass@2"] for pt in pts])
    return per_run.mean(axis=0), float(np.mean([pt["oracle"] for pt in pts], axis=0).mean()), per_run


def _train_means(runs: Sequence[Run], group: Sequence[int]) -> dict[str, float | None]:
    """``Run.train_summary`` averaged over the ``group`` runs (None when a run lacks a figure)."""
    summ = [runs[i].train_summary() for i in group]
    return {k: (float(np.mean([x[k] for x in summ])) if all(x[k] is not None for x in summ) else None)
            for k in ("params", "train_exact", "train_s", "train_samples", "train_flops")}


def _one_factor_arms(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, f: str,
                     task_ids: Sequence[str]) -> list[tuple[Any, list[int]]]:
    """The one-factor slice through the main run for factor ``f``: (value, indices of its runs) in
    table order, over the runs that match the main run in every other varying factor and are
    scored on ``task_ids``."""
    main = runs[main_i]
    idx = _slice(runs, queries, main, [g for g in varying_factors(runs) if g != f], task_ids)
    values = _ordered(main.factor(f), [runs[i].factor(f) for i in idx])
    return [(v, [i for i in idx if runs[i].factor(f) == v]) for v in values]


def source_tables(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, f: str, step: int | None, top: int,
                  task_ids: Sequence[str], primary: str, sources: dict[str, np.ndarray]) -> Any:
    """pass@2 (``primary`` rule, every cached variant, training seeds averaged per task) of each
    value of factor ``f`` on each source's tasks, with its bootstrap interval over those tasks and
    the paired difference from the main run's value on the same tasks. None without sources or
    without a one-factor slice."""
    import polars as pl

    arms = _one_factor_arms(runs, queries, main_i, f, task_ids)
    if not sources or len(arms) < 2:
        return None
    p2 = np.stack([_seed_mean(queries, group, primary, step, top, task_ids)[0] for _, group in arms])  # (arms, tasks)
    base = p2[[v for v, _ in arms].index(runs[main_i].factor(f))]
    stats = {}  # per source, every arm at once (one bootstrap per source, as factor_tables does per factor)
    for name, mask in sources.items():
        lo, hi = bootstrap_ci(p2[:, mask])
        stats[name] = (p2[:, mask].mean(axis=1), lo, hi, paired_effects(p2[:, mask] - base[mask]))
    rows = []
    for a, (v, group) in enumerate(arms):
        for name, mask in sources.items():
            mean, lo, hi, effects = stats[name]
            rows.append({f: v, "source": name, "tasks": int(mask.sum()), "runs": len(group), "rule": primary,
                         "pass@2": float(mean[a]), "ci_low": float(lo[a]), "ci_high": float(hi[a]),
                         **{k: x[a].item() for k, x in effects.items()}})
    return pl.DataFrame(rows)


def factor_tables(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, f: str, rules: Sequence[str],
                  step: int | None, top: int, task_ids: Sequence[str], primary: str,
                  points: Sequence[int] | None = None, seeds: int = 1) -> tuple[Any, Any, Any] | None:
    """pass@2 by the values of factor ``f`` over the runs that match the main run in every other
    varying factor (a one-factor slice; training seeds averaged per task), every rule at all variants;
    pass@2 by ACT step, and by the number of variants voted, for the primary rule. Runs scored on
    other tasks are left out. Each row of the first table also holds its paired difference from the
    main run's value (``paired_effects``) and that difference's interval with the training runs
    resampled too (``seed_bootstrap_ci``).

    The vote-count curve asks whether an arm needs its variants at inference as well as in
    training: each point is the mean over ``seeds`` seeded subsamples (the identity kept) and the
    training seeds, at ``points`` (default 1, 2, 4, ... up to the arm's variant count, which is
    always a point; points above it are skipped)."""
    import polars as pl

    main = runs[main_i]
    arms = _one_factor_arms(runs, queries, main_i, f, task_ids)
    if len(arms) < 2:
        return None
    rows, mats, run_mats, step_rows, step_mats, vote_rows, vote_mats = [], [], [], [], [], [], []
    for v, group in arms:
        meta = _train_means(runs, group)
        for rule in rules:
            p2, oracle, per_run = _seed_mean(queries, group, rule, step, top, task_ids)
            rows.append({f: v, "rule": rule, "runs": len(group), "pass@2": float(p2.mean()), "oracle": oracle, **meta})
            mats.append(p2)
            run_mats.append(per_run)
        for s in sorted({s for i in group for s in queries[i].info["steps"]}):
            pts = [queries[i].all_variants(primary, s, top, task_ids) for i in group if s in queries[i].info["steps"]]
            p2 = np.mean([pt["pass@2"] for pt in pts], axis=0)
            step_rows.append({f: v, "step": s, "runs": len(pts), "pass@2": float(p2.mean())})
            step_mats.append(p2)
        n_max = min(queries[i].info["n_aug"] for i in group)
        ns = sorted({p for p in (points or default_points(n_max)) if p < n_max} | {n_max})
        per_run = [_subsample_scores(queries[i], [primary], ns, queries[i].info["n_aug"], seeds, queries[i].own_step(step), top,
                                     task_ids) for i in group]
        for n in ns:
            p2 = np.mean([sc[(primary, n)]["pass@2"] for sc in per_run], axis=0)
            oracle = np.mean([sc[(primary, n)]["oracle"] for sc in per_run], axis=0)
            vote_rows.append({f: v, "n_aug": n, "runs": len(group), "pass@2": float(p2.mean()), "oracle": float(oracle.mean()),
                              "subsamples": per_run[0][(primary, n)]["subsamples"]})
            vote_mats.append(p2)
    lo, hi = bootstrap_ci(np.stack(mats))
    base = {r["rule"]: m for r, m in zip(rows, mats) if r[f] == main.factor(f)}
    effects = paired_effects(np.stack([m - base[r["rule"]] for r, m in zip(rows, mats)]))
    # rows are arm-major, then rule: each rule's arms against the main value's arm, runs resampled
    base = [v for v, _ in arms].index(main.factor(f))
    eye = np.eye(len(arms))
    seeded = [seed_bootstrap_ci(run_mats[k::len(rules)], eye - eye[base]) for k in range(len(rules))]
    effects["delta_seeds_low"] = np.stack([lo for lo, _ in seeded], axis=1).ravel()
    effects["delta_seeds_high"] = np.stack([hi for _, hi in seeded], axis=1).ravel()
    table = pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi),
                                            **{k: pl.Series(v) for k, v in effects.items()})
    lo, hi = bootstrap_ci(np.stack(step_mats))
    steps = pl.DataFrame(step_rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi), rule=pl.lit(primary))
    lo, hi = bootstrap_ci(np.stack(vote_mats))
    voted = pl.DataFrame(vote_rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi), rule=pl.lit(primary))
    return table, steps, voted


def rule_effects(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, rules: Sequence[str], step: int | None,
                 top: int, task_ids: Sequence[str], primary: str) -> Any:
    """pass@2 of every voting rule on the main run's arm (the runs equal to it in every varying
    factor: its training seeds, averaged per task), every cached variant voted, with the paired
    difference from the ``primary`` rule over the same tasks: whether a rule's lead survives the
    task-to-task spread that the per-rule intervals mostly measure."""
    import polars as pl

    group = _slice(runs, queries, runs[main_i], varying_factors(runs), task_ids)
    mats = {rule: _seed_mean(queries, group, rule, step, top, task_ids) for rule in rules}
    p2 = np.stack([mats[r][0] for r in rules])
    lo, hi = bootstrap_ci(p2)
    effects = paired_effects(p2 - mats[primary][0])
    # the rules vote the same runs, so a run is drawn for all of them at once: resample the runs'
    # own per-task differences
    seeded = [seed_bootstrap_ci([mats[r][2] - mats[primary][2]], np.ones((1, 1))) for r in rules]
    effects["delta_seeds_low"] = np.array([lo[0] for lo, _ in seeded])
    effects["delta_seeds_high"] = np.array([hi[0] for _, hi in seeded])
    return pl.DataFrame({"rule": list(rules), "runs": len(group), "pass@2": p2.mean(axis=1), "oracle": [mats[r][1] for r in rules],
                         "ci_low": lo, "ci_high": hi, **effects})


def _ordered(first: Any, values: Sequence[Any]) -> list[Any]:
    """A factor's distinct values in table order: ascending when all are numbers, else the main
    run's value (``first``, kept only when present) followed by the others as they come."""
    out = list(dict.fromkeys([first, *values] if first in values else values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in out):
        out.sort()
    return out


def factor_grids(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, varying: Sequence[str], rule: str,
                 step: int | None, top: int, task_ids: Sequence[str]) -> list[tuple[str, str, Any, Any]]:
    """pass@2 over each pair of varying factors that the runs cross completely (every combination
    of their values present among the runs matching the main run in all other factors).

    One-factor sections read such a grid only along the two lines through the main run; a grid
    also holds the far corner, which is what tells an interaction (more variants *and* more steps)
    from two separate effects. Training seeds averaged per task; every cached variant voted; one
    rule. Rows: (f value, g value) with runs, pass@2 and its 95% CI, oracle, train exact and
    samples trained; and the effects: each factor's later values against its first, at every value
    of the other, as paired differences (``paired_effects``), then both moved at once from the
    first corner (two runs that differ in both, e.g. one ACT segment against four at equal samples
    trained), then the other diagonal (f moved against g moved: more variants or more steps?),
    then the interactions: for each later pair of values, the effect of one factor's move
    at the other's later value minus at its first (the same either way round), paired over tasks
    too. Every effect row also carries ``seed_bootstrap_ci``'s interval, which resamples each
    cell's training runs as well."""
    import itertools

    import polars as pl

    main = runs[main_i]
    out = []
    for f, g in itertools.combinations(varying, 2):
        cells: dict[tuple, list[int]] = {}
        for i in _slice(runs, queries, main, [h for h in varying if h not in (f, g)], task_ids):
            cells.setdefault((runs[i].factor(f), runs[i].factor(g)), []).append(i)
        fv = _ordered(main.factor(f), [a for a, _ in cells])
        gv = _ordered(main.factor(g), [b for _, b in cells])
        if len(fv) < 2 or len(gv) < 2 or len(cells) != len(fv) * len(gv):
            continue
        rows, p2s, per_run = [], {}, {}
        for a, b in itertools.product(fv, gv):
            group = cells[(a, b)]
            p2s[(a, b)], oracle, per_run[(a, b)] = _seed_mean(queries, group, rule, step, top, task_ids)
            rows.append({f: a, g: b, "rule": rule, "runs": len(group), "pass@2": float(p2s[(a, b)].mean()),
                         "oracle": oracle, **{k: v for k, v in _train_means(runs, group).items() if k in ("train_exact", "train_samples")}})
        lo, hi = bootstrap_ci(np.stack(list(p2s.values())))
        grid = pl.DataFrame(rows, strict=False).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))
        # every row is a signed sum of cells (+1 / -1 weights), so its per-task difference and its
        # seed-resampled interval come from the same weights
        moves = []  # (kind, factor, from, to, at), cells added, cells subtracted: one per row
        # one factor moved from its first value, the other held at each of its values
        for a in fv:
            for b in gv[1:]:
                moves.append((("effect", g, gv[0], b, f"{f}={a}"), [(a, b)], [(a, gv[0])]))
        for b in gv:
            for a in fv[1:]:
                moves.append((("effect", f, fv[0], a, f"{g}={b}"), [(a, b)], [(fv[0], b)]))
        # both moved at once from the first corner: the comparison a trade asks about ("does 3x the
        # steps make up for one refinement segment instead of four?"), which no single effect holds
        for a in fv[1:]:
            for b in gv[1:]:
                moves.append((("joint", f"{f} + {g}", f"{fv[0]}, {gv[0]}", f"{a}, {b}", "both moved"), [(a, b)], [(fv[0], gv[0])]))
        # one moved instead of the other: the other diagonal ("more variants or more steps?")
        for a in fv[1:]:
            for b in gv[1:]:
                moves.append((("trade", f"{f} ↔ {g}", f"{fv[0]}, {b}", f"{a}, {gv[0]}", "one moved instead of the other"),
                              [(a, gv[0])], [(fv[0], b)]))
        # interaction: how much moving g changes what moving f does (symmetric), per task, so its
        # interval is paired like the effects' -- "does the gap close at more variants?" in one row
        for a in fv[1:]:
            for b in gv[1:]:
                moves.append((("interaction", f"{f} × {g}", f"{fv[0]}, {gv[0]}", f"{a}, {b}", "interaction"),
                              [(a, b), (fv[0], gv[0])], [(a, gv[0]), (fv[0], b)]))
        cell_at = {c: k for k, c in enumerate(p2s)}
        w = np.zeros((len(moves), len(cell_at)))
        for k, (_, plus, minus) in enumerate(moves):
            np.add.at(w[k], [cell_at[c] for c in plus], 1.0)
            np.add.at(w[k], [cell_at[c] for c in minus], -1.0)
        slo, shi = seed_bootstrap_ci([per_run[c] for c in p2s], w)
        effects = pl.DataFrame({**{c: [str(m[0][i]) for m in moves] for i, c in enumerate(("kind", "factor", "from", "to", "at"))},
                                "rule": rule, **paired_effects(w @ np.stack(list(p2s.values()))),
                                "delta_seeds_low": slo, "delta_seeds_high": shi})
        out.append((f, g, grid, effects))
    return out


def _trained_steps(run: Run) -> int | None:
    """The ACT segments a run's model was trained to run (its ``halt_max_steps``)."""
    return None if run.train is None else run.train.config.get("model", {}).get("halt_max_steps")


def _finite_means(values: np.ndarray) -> list[float | None]:
    """Each column's mean over its finite entries (None when it has none): runs whose test inputs
    gave no pair to compare drop out of an agreement mean instead of voiding it."""
    return [float(col[np.isfinite(col)].mean()) if np.isfinite(col).any() else None for col in values.T]


def refinement_arms(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, varying: Sequence[str],
                    task_ids: Sequence[str]) -> dict[tuple, tuple[str, list[int], int, list[int]]]:
    """The arms (runs equal in every varying factor, the main run's first) whose inference recorded
    the ACT step they were trained to halt at and another beside it (the default inference records
    every trained step; ``infer --steps 1-16`` runs the recurrence on past them): per arm its
    label, runs, trained step count and the steps every one of its runs recorded. Empty when no
    arm has a second step to set against its trained one."""
    arms: dict[tuple, list[int]] = {}
    for i in sorted(range(len(runs)), key=lambda i: i != main_i):
        if queries[i].info["task_ids"] == list(task_ids):
            arms.setdefault(tuple(runs[i].factor(f) for f in varying), []).append(i)
    out = {}
    for values, group in arms.items():
        ks = {_trained_steps(runs[i]) for i in group}
        steps = sorted(set.intersection(*(set(queries[i].info["steps"]) for i in group)))
        k = ks.pop() if len(ks) == 1 else None
        if k is not None and k in steps and len(steps) > 1:
            out[values] = (", ".join(f"{f}={v}" for f, v in zip(varying, values)) or "all runs", group, k, steps)
    return out


def refinement_tables(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, varying: Sequence[str], rule: str,
                      top: int, task_ids: Sequence[str]) -> tuple[Any, Any] | None:
    """ACT steps at inference: for every arm of ``refinement_arms``, pass@2 at each recorded step
    (test-time refinement where they run past training), and with the answers of the trained steps
    (then of every step) voted together, each against the
    trained step, paired within each run (the same model, the same variants, only the steps
    differ), over tasks with seeds averaged, and with the runs resampled too
    (``seed_bootstrap_ci`` on the per-run differences). Every variant votes; where the plan also
    voted variants it never trained, the rows are repeated with only the trained ones voting
    (``variants`` = "trained"), since untrained variants can outnumber them and drown a gain
    from more votes per trained variant. Then each other arm's gain against the main arm's at the
    same step, when both ran on past training: does one model profit more from running on? None
    when no arm recorded two steps."""
    import polars as pl

    def score(i: int, s: int | tuple[int, ...], pool: str = "all") -> np.ndarray:
        """Run i's per-task pass@2 voting step s, or every step of the tuple s together, with every
        variant of ``pool`` (VARIANT_POOLS) voting."""
        q = queries[i]
        if pool == "all":
            return q.all_variants(rule, s, top, task_ids)["pass@2"]
        return per_task(q.query(rule, None, q.own_step(s), 0, top, variants=pool)[1], task_ids)["pass@2"]

    def gains(group: list[int], k: int, s: int | tuple[int, ...], pool: str = "all") -> np.ndarray:
        """(runs, tasks): pass@2 at step s minus at the trained step k, run by run."""
        return np.stack([score(i, s, pool) - score(i, k, pool) for i in group])

    per_arm = refinement_arms(runs, queries, main_i, varying, task_ids)
    rows = []
    for label, group, k, steps in per_arm.values():
        # every step alone, then the trained steps' answers voted together, and every step's; with
        # every variant voting, and again with only the trained ones where the plan voted others too
        pools = [tuple(s for s in steps if s <= k), tuple(steps)]
        variant_pools = ["all", "trained"] if all(pool_counts(queries[i].prepared) for i in group) else ["all"]
        for pool, s in ((v, s) for v in variant_pools for s in [*steps, *dict.fromkeys(p for p in pools if len(p) > 1)]):
            d = gains(group, k, s, pool)
            p2 = np.mean([score(i, s, pool) for i in group], axis=0)
            eff = paired_effects(d.mean(axis=0)[None])
            lo, hi = seed_bootstrap_ci([d], np.array([[1.0]]))
            # how alike the answers voting together are: two steps of one variant, two variants at step k
            agree = [None, None] if isinstance(s, int) else _finite_means(
                np.array([signals.answer_agreement(queries[i].prepared, s, k, pool) for i in group]))
            rows.append({"arm": label, "variants": pool, "trained_steps": k, "step": s if isinstance(s, int) else None,
                         "pooled": None if isinstance(s, int) else f"{s[0]}-{s[-1]}", "runs": len(group), "rule": rule,
                         "pass@2": float(p2.mean()), **{key: v[0].item() for key, v in eff.items()},
                         "delta_seeds_low": float(lo[0]), "delta_seeds_high": float(hi[0]),
                         "agree_steps": agree[0], "agree_variants": agree[1]})
    if not rows:
        return None
    vs_main = []
    main_key = tuple(runs[main_i].factor(f) for f in varying)
    main_label, main_group, main_k, main_steps = per_arm.get(main_key, (None, [], 0, []))
    for label, group, k, steps in (v for key, v in per_arm.items() if key != main_key and main_group):
        for s in (s for s in steps if s in main_steps and s > max(k, main_k)):
            a, b = gains(group, k, s), gains(main_group, main_k, s)
            eff = paired_effects((a.mean(axis=0) - b.mean(axis=0))[None])
            lo, hi = seed_bootstrap_ci([a, b], np.array([[1.0, -1.0]]))
            vs_main.append({"arm": label, "main": main_label, "step": s, "rule": rule,
                            **{key: v[0].item() for key, v in eff.items()},
                            "delta_seeds_low": float(lo[0]), "delta_seeds_high": float(hi[0])})
    return pl.DataFrame(rows), (pl.DataFrame(vs_main) if vs_main else None)


_VS_ALONE = ("vs_alone_n_aug", "delta", "delta_ci_low", "delta_ci_high", "better", "worse", "delta_seeds_low",
             "delta_seeds_high")  # refinement_votes' contrast columns, null where no row of equal votes exists


def refinement_votes(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, varying: Sequence[str], rule: str,
                     top: int, task_ids: Sequence[str], points: Sequence[int], seeds: int) -> Any:
    """Segments or variants as votes: for every arm of ``refinement_arms``, pass@2 voting the trained
    step alone and the trained steps together, at each variant count of ``points`` (mean over
    ``seeds`` subsamples below a run's own count), with ``votes`` the answers per test input that
    makes. Each voted-together row whose vote count the trained step alone also reached (4
    segments of n variants against 1 segment of 4n) carries that contrast, paired within each run:
    is a segment's answer worth a fresh variant's? The segments of one variant share its input and
    puzzle embedding; the variants do not. Every variant votes; where the plan also voted variants
    it never trained, the rows are repeated with only the trained ones voting (``variants`` =
    "trained", counts up to the trained pool's), as in ``refinement_tables``: an untrained
    variant is a weaker vote than a trained one, so the two pools can rank segments differently.
    None when no arm recorded two trained steps."""
    import polars as pl

    rows, mats = [], []
    for label, group, k, steps in refinement_arms(runs, queries, main_i, varying, task_ids).values():
        trained = tuple(s for s in steps if s <= k)
        if len(trained) < 2:
            continue
        counts = [pool_counts(queries[i].prepared) for i in group]
        for pool in ["all", "trained"] if all(counts) else ["all"]:
            own = [queries[i].info["n_aug"] if pool == "all" else c[0] for i, c in zip(group, counts)]
            ns = sorted({p for p in points if p < min(own)} | {min(own)})
            alone = {}
            for s in (k, trained):
                per_run = [_subsample_scores(queries[i], [rule], ns, n_own, seeds, s, top, task_ids, pool)
                           for i, n_own in zip(group, own)]
                width = 1 if isinstance(s, int) else len(s)
                for n in ns:
                    runs_p2 = np.stack([sc[(rule, n)]["pass@2"] for sc in per_run])
                    row = {"arm": label, "variants": pool, "steps": str(s) if isinstance(s, int) else f"{s[0]}-{s[-1]}",
                           "n_aug": n, "votes": n * width, "runs": len(group), "rule": rule,
                           "pass@2": float(runs_p2.mean()), "subsamples": per_run[0][(rule, n)]["subsamples"],
                           **dict.fromkeys(_VS_ALONE)}
                    if width == 1:
                        alone[n] = runs_p2
                    elif n * width in alone:  # the same votes from the trained step alone, over more variants
                        d = runs_p2 - alone[n * width]
                        eff = paired_effects(d.mean(axis=0)[None])
                        lo, hi = seed_bootstrap_ci([d], np.array([[1.0]]))
                        row |= {"vs_alone_n_aug": n * width, **{key: v[0].item() for key, v in eff.items()},
                                "delta_seeds_low": float(lo[0]), "delta_seeds_high": float(hi[0])}
                    rows.append(row)
                    mats.append(runs_p2.mean(axis=0))
    if not rows:
        return None
    lo, hi = bootstrap_ci(np.stack(mats))
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))


def compute_table(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, varying: Sequence[str], rule: str,
                  step: int | None, top: int, task_ids: Sequence[str]) -> tuple[Any, Any, list[np.ndarray]] | None:
    """Every arm (the runs that share all varying settings but the seed, scored on ``task_ids``)
    against the arithmetic its training took; None unless at least two arms' training FLOPs differ.

    A factor section holds everything else fixed, so it cannot say whether a cheaper model given
    more steps beats a dearer one: those arms differ in two settings. Counted FLOPs put every arm on
    one axis, the same on any machine (wall time is in the table too, comparable only between runs
    trained on one kind of machine at one concurrency).

    Returns three things. The arms, in ascending training FLOPs: ``arm`` (the settings it moves
    away from the main run's arm; that arm's own, after "main: "), ``main``, a column per varying
    factor, rule, runs, params, train_exact, train_s, train_samples, train_flops and
    ``flops_ratio`` to the main arm's, pass@2 with its interval (seeds averaged per task), oracle,
    the paired difference from the main run's arm with its seeds-resampled interval, and
    ``frontier`` (no arm of at most its compute scored more; point estimates), and the arm against
    its training fit: ``train_exact_low``/``_high`` (t interval over its runs), ``fit_ref`` (its
    fit is on the main arm's scale, ``Run.fit_scale``, so it helps draw the others' lines),
    ``fit_line`` (the pass@2 the least-squares line through the other reference arms' (train_exact,
    pass@2) predicts at its train_exact; None with fewer than ``FIT_LINE_ARMS`` of them),
    ``fit_beyond`` (its train_exact outside theirs: the line extrapolated) and ``off_fit_line`` (pass@2 minus
    that) with its intervals ``off_fit_low``/``_high`` (paired over tasks) and
    ``off_fit_seeds_low``/``_high`` (seeds resampled too), the tasks above / below the line
    ``off_fit_better``/``_worse``. The pairs of arms
    at about equal compute (within ``EQUAL_COMPUTE``) that differ in two settings or more (None
    when there are none): ``from`` and
    ``to`` (arm labels, ``to`` the dearer or, at a tie, the later), ``flops_ratio`` (to / from),
    and the paired difference to − from with both intervals. And each arm's per-run pass@2 over
    ``task_ids`` and its per-run train_exact (None where a run lacks it), for the figures.

    Why the fit line: architectures and budgets differ first in how fast they fit their training
    pairs. An arm on the line through the others scores what its fit predicts -- what moved it
    bought score only by fitting more; an arm off it generalises more or less from the same fit.
    The line is fitted to arm means (each over its runs' fit measures, on eval_size sampled rows),
    not to runs: within an arm the runs' fits differ mostly by that measure's sampling noise, which
    would flatten a per-run slope. With the fits held fixed the line's value is a weighted sum of the
    other arms' per-task scores, so "off the line" is one more contrast of arms, paired over tasks
    like every difference here; the fits' own noise is not in its intervals."""
    import polars as pl

    main = runs[main_i]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        if r.train is not None and queries[i].info["task_ids"] == list(task_ids):
            groups.setdefault(repr([r.factor(f) for f in varying]), []).append(i)
    metas = {k: _train_means(runs, g) for k, g in groups.items()}
    if len(groups) < 2 or any(m["train_flops"] is None for m in metas.values()):
        return None
    flops = {k: m["train_flops"] for k, m in metas.items()}
    if max(flops.values()) <= min(flops.values()) * (1 + 1e-9):
        return None
    main_key = next(k for k, g in groups.items() if main_i in g)
    keys = sorted(groups, key=lambda k: (flops[k], k != main_key))
    seeded = [_seed_mean(queries, groups[k], rule, step, top, task_ids) for k in keys]
    p2 = np.stack([p for p, _, _ in seeded])
    per_run = [r for _, _, r in seeded]
    mean = p2.mean(axis=1)
    lo, hi = bootstrap_ci(p2)
    fits = [_run_fits(runs, groups[k]) for k in keys]
    fit_ci = [_mean_ci(f) for f in fits]
    # the line is drawn through the arms whose fit is on the main arm's scale; the others are read against it
    scale = runs[main_i].fit_scale()
    ref = [all(runs[i].fit_scale() == scale for i in groups[k]) for k in keys]
    x = [metas[k]["train_exact"] for k in keys]
    line_w = _leave_one_out_weights(x, ref)
    # an arm is named by the settings it moves from the main arm; a setting each holds at its own
    # preset's value (the transformer's cycles beside HRM's) is not a move (``matches_setting``)
    firsts = [runs[groups[k][0]] for k in keys]
    labels = [f"main: {', '.join(f'{f}={main.factor(f)}' for f in varying)}" if k == main_key
              else ", ".join(f"{f}={r.factor(f)}" for f in varying if not matches_setting(r, main, f))
              for k, r in zip(keys, firsts)]
    # every row is a difference of two arms: from the main arm, then each pair at about equal compute
    # that moves two settings or more (a one-setting move has its factor section)
    base = keys.index(main_key)
    pairs = [(a, b) for a in range(len(keys)) for b in range(a + 1, len(keys))
             if flops[keys[b]] <= flops[keys[a]] * EQUAL_COMPUTE
             and sum(not matches_setting(firsts[b], firsts[a], f) for f in varying) >= 2]
    eye = np.eye(len(keys))
    # then each arm minus the line through the others' fits, where there is one
    lined = [a for a in range(len(keys)) if line_w[a] is not None]
    w = np.concatenate([eye - eye[base], np.array([eye[b] - eye[a] for a, b in pairs]).reshape(-1, len(keys)),
                        np.array([eye[a] - line_w[a] for a in lined]).reshape(-1, len(keys))])
    effects = paired_effects(w @ p2)
    slo, shi = seed_bootstrap_ci(per_run, w)
    n = len(keys)
    off = {a: n + len(pairs) + j for j, a in enumerate(lined)}  # the row of w holding arm a's distance from its line
    rows = []
    for a, (k, first) in enumerate(zip(keys, firsts)):
        j = off.get(a)
        beaten = any(flops[keys[b]] <= flops[k] and mean[b] > mean[a] + MOVED for b in range(len(keys)))
        rows.append({"arm": labels[a], "main": k == main_key, **{f: first.factor(f) for f in varying},
                     "rule": rule, "runs": len(groups[k]), **metas[k], "flops_ratio": flops[k] / flops[main_key],
                     "pass@2": float(mean[a]), "ci_low": float(lo[a]), "ci_high": float(hi[a]), "oracle": seeded[a][1],
                     **{name: v[a].item() for name, v in effects.items()},
                     "delta_seeds_low": float(slo[a]), "delta_seeds_high": float(shi[a]), "frontier": not beaten,
                     "train_exact_low": fit_ci[a][0], "train_exact_high": fit_ci[a][1],
                     "fit_ref": ref[a], "fit_line": None if j is None else float(line_w[a] @ mean),
                     "fit_beyond": None if j is None else _beyond(x, line_w[a], a),
                     **_off_line(effects, slo, shi, j)})
    table_pairs = pl.DataFrame([{"from": labels[a], "to": labels[b], "rule": rule, "flops_ratio": flops[keys[b]] / flops[keys[a]],
                                 **{name: v[n + j].item() for name, v in effects.items()},
                                 "delta_seeds_low": float(slo[n + j]), "delta_seeds_high": float(shi[n + j])}
                                for j, (a, b) in enumerate(pairs)]) if pairs else None
    return pl.DataFrame(rows, strict=False), table_pairs, [r.mean(axis=1) for r in per_run], fits


def _off_line(effects: dict[str, np.ndarray], slo: np.ndarray, shi: np.ndarray, j: int | None) -> dict[str, Any]:
    """An arm's distance from the line through the other arms' fits, row ``j`` of the compute
    section's contrasts, as its ``off_fit_*`` columns (all None where it has no line)."""
    names = {"line": "delta", "low": "delta_ci_low", "high": "delta_ci_high", "better": "better", "worse": "worse"}
    if j is None:
        return {f"off_fit_{c}": None for c in [*names, "seeds_low", "seeds_high"]}
    return {**{f"off_fit_{c}": effects[e][j].item() for c, e in names.items()},
            "off_fit_seeds_low": float(slo[j]), "off_fit_seeds_high": float(shi[j])}


def _run_fits(runs: Sequence[Run], group: Sequence[int]) -> np.ndarray | None:
    """Each run's final train exact accuracy; None when a run of the group lacks it."""
    got = [runs[i].train_summary()["train_exact"] for i in group]
    return None if any(g is None for g in got) else np.asarray(got, dtype=np.float64)


def _mean_ci(values: np.ndarray | None, level: float = 0.95) -> tuple[float | None, float | None]:
    """Student's t interval on the mean of ``values``, proportions, clipped to [0, 1] (None, None
    for fewer than two)."""
    if values is None or len(values) < 2:
        return None, None
    half = t_quantile(1 - (1 - level) / 2, len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return max(0.0, float(values.mean()) - half), min(1.0, float(values.mean()) + half)


def _beyond(x: Sequence[float | None], w: np.ndarray, a: int) -> bool:
    """Whether point ``a`` lies outside the x range of the points its line was drawn through (the
    line extrapolated: a straight line is a local description)."""
    xs = [x[b] for b in np.flatnonzero(w)]
    return not min(xs) <= x[a] <= max(xs)


def _leave_one_out_weights(x: Sequence[float | None], ref: Sequence[bool] | None = None) -> list[np.ndarray | None]:
    """For each point, the weights on every point's y that give the least-squares line's value at
    its x, the line fitted through the other reference points (``ref``; all by default) that have
    an x -- so a point cannot pull the line it is read against, and a linear fit's value is linear
    in the y's. None where fewer than ``FIT_LINE_ARMS`` such others have an x, or their x's do not
    spread (no slope to fit)."""
    ref = [True] * len(x) if ref is None else ref
    out: list[np.ndarray | None] = []
    for a, xa in enumerate(x):
        others = [b for b, xb in enumerate(x) if b != a and xb is not None and ref[b]]
        xs = np.array([x[b] for b in others], dtype=np.float64)
        d = xs - xs.mean() if others else xs
        sxx = float(d @ d)
        if xa is None or len(others) < FIT_LINE_ARMS or sxx < 1e-12:
            out.append(None)
            continue
        # y_hat(xa) = sum_b y_b * (1/m + (xa - mean) (x_b - mean) / Sxx)
        w = np.zeros(len(x))
        w[others] = 1 / len(xs) + (xa - xs.mean()) * d / sxx
        out.append(w)
    return out


def run_table(runs: Sequence[Run], queries: Sequence[_Queries], varying: Sequence[str], rule: str, step: int | None,
              top: int, sources: dict[str, Sequence[str]] | None = None) -> Any:
    """One row per run: its stage keys, the value of every factor (``FACTORS`` and the ``varying``
    ones), and its own pass@2 / oracle (``rule``, all its variants, ``step`` or its last) over its
    own scored tasks, and over those of them from each source (``pass@2 <source>``; ``sources``
    names the task ids of each) -- the table to load in polars for any comparison the sections do
    not make."""
    import polars as pl

    names = list(dict.fromkeys([*FACTORS, *varying]))
    rows = []
    for r, q in zip(runs, queries):
        info = q.info
        pt = q.all_variants(rule, step, top)
        rows.append({"infer": r.infer.key, "train": r.train.key if r.train else None,
                     "augment": r.augment.key if r.augment else None,
                     **{f: r.factor(f) for f in names}, "seed": r.train_seed, "tasks": len(info["task_ids"]),
                     "variants": info["n_aug"], "rule": rule, "pass@2": float(pt["pass@2"].mean()),
                     "oracle": float(pt["oracle"].mean()),
                     **{k: v for k, v in r.train_summary().items() if k in ("train_exact", "train_samples", "train_s", "train_flops")},
                     "train_host": r.train_host(),
                     **{f"pass@2 {name}": _masked_mean(pt["pass@2"], np.isin(info["task_ids"], list(ids)))
                        for name, ids in (sources or {}).items()},
                     **_run_signals(q, step)})
    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def run_task_table(runs: Sequence[Run], queries: Sequence[_Queries], rule: str, step: int | None, top: int) -> Any:
    """One row per run and scored task: the run's infer key and seed, the task, its pass@2 and
    oracle (``rule``, all the run's variants). What every paired and seed-resampled interval is
    computed from, kept so that runs of different reports -- another machine's, another session's --
    can be pooled or compared per task in a notebook after their caches are gone."""
    import polars as pl

    frames = []
    for r, q in zip(runs, queries):
        pt = q.all_variants(rule, step, top)
        frames.append(pl.DataFrame({"infer": r.infer.key, "seed": r.train_seed, "task_id": q.info["task_ids"], "rule": rule,
                                    "pass@2": pt["pass@2"], "oracle": pt["oracle"]}))
    return pl.concat(frames)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def _run_signals(q: _Queries, step: int | None) -> dict[str, float]:
    """A run's AUROC of each signal for right vs wrong predictions at ``step`` (its last when it did
    not record that one), all variants, no interval (the runs table is one number per run)."""
    s = q.own_step(step)
    sig = signals.signal_quality(q.prepared, [q.info["steps"][-1] if s is None else s], n_boot=0)
    out = {}
    for r in sig.iter_rows(named=True):
        name = "q" if r["signal"] == "q_halt" else r["signal"]
        out[f"{name}_auroc"], out[f"{name}_pooled_auroc"] = r["auroc"], r["pooled_auroc"]
    return out


# --------------------------------------------------------------------------- vote adapters


def prepared_info(prepared: Any) -> dict:
    """Scored task ids (known outputs, sorted), cached variants per task and recorded ACT steps of a ``vote.Prepared``."""
    tests = prepared.tests
    known = tests["known"].to_numpy()
    task_ids = sorted(set(tests["task_id"].to_numpy()[known].tolist()))
    if not task_ids:
        raise ArcpipeError(f"{getattr(prepared.stage, 'path', 'predictions')}: no test input has a known output; nothing to report")
    return {"task_ids": task_ids, "n_aug": int(prepared.variants_per_task.max(initial=0)),
            "steps": [int(s) for s in prepared.steps]}


def input_outcomes(ranked: Any, prepared: Any, rule: str, top: int = 2) -> Any:
    """One row per test input: ``<rule>_solved`` (right within the top attempts; null when the
    truth is unknown) and ``<rule>_margin`` (votes for the top answer minus the runner-up's)."""
    import polars as pl

    tests = prepared.tests
    ntex = len(tests)
    tex = ranked["tex"].to_numpy()
    rk = ranked["rank"].to_numpy()
    cnt = ranked["count"].to_numpy().astype(np.int64)
    correct = ranked["correct"].fill_null(False).to_numpy()
    solved = np.bincount(tex, weights=correct & (rk <= top), minlength=ntex) > 0
    first = np.bincount(tex, weights=np.where(rk == 1, cnt, 0), minlength=ntex).astype(np.int64)
    second = np.bincount(tex, weights=np.where(rk == 2, cnt, 0), minlength=ntex).astype(np.int64)
    return pl.DataFrame({
        "task_id": tests["task_id"].to_numpy(), "example": tests["example"].to_numpy().astype(np.int64),
        "_solved": solved, "_known": tests["known"].to_numpy(), f"{rule}_margin": first - second,
    }).select(
        "task_id", "example",
        pl.when(pl.col("_known")).then(pl.col("_solved")).otherwise(None).alias(f"{rule}_solved"),
        f"{rule}_margin",
    )


def attempts(ranked: Any, prepared: Any, task_id: str, example: int, top: int = 2) -> list[np.ndarray]:
    """The top attempts' grids (original frame) for one test input."""
    import polars as pl

    from arcpipe import vote

    rows = ranked.filter((pl.col("task_id") == task_id) & (pl.col("example") == example) & (pl.col("rank") <= top)).sort("rank")
    return vote.answer_grids(prepared, rows) if rows.height else []


# --------------------------------------------------------------------------- rendering


def _gallery(work: Path, ranked: Any, prepared: Any, run: Run, per_input: Any, rule: str) -> list[tuple[str, str, list]]:
    """gallery_solved.png / gallery_failed.png: input, truth, attempt 1, attempt 2 for a few test inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _tasks_json(run)
    out = []
    col = f"{rule}_solved"
    for kind, solved in (("solved", True), ("failed", False)):
        rows = per_input.filter(per_input[col] == solved).head(GALLERY)
        picked = list(zip(rows["task_id"].to_list(), rows["example"].to_list()))
        if not picked:
            continue
        fig, axes = plt.subplots(len(picked), 4, figsize=(8, 2.2 * len(picked)), squeeze=False)
        for r, (tid, ex) in enumerate(picked):
            test = tasks.get(tid, {}).get("test", [])
            item = test[ex] if ex < len(test) else {}
            inp = np.asarray(item.get("input"), dtype=np.uint8) if item.get("input") is not None else None
            truth = np.asarray(item.get("output"), dtype=np.uint8) if item.get("output") is not None else None
            atts = attempts(ranked, prepared, tid, ex)
            atts = (atts + [None, None])[:2]
            for c, (g, t) in enumerate([(inp, f"{tid}#{ex} input"), (truth, "truth"),
                                         (atts[0], "attempt 1"), (atts[1], "attempt 2")]):
                ok = g is not None and truth is not None and c >= 2 and g.shape == truth.shape and bool((g == truth).all())
                draw_grid(axes[r, c], g, t + (" ✓" if ok else ""))
        fig.suptitle(f"{kind.capitalize()} test inputs (rule {rule}, all variants): input, truth, attempt 1, attempt 2",
                     fontsize=10)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.75 / (2.2 * len(picked)), wspace=0.15, hspace=0.35)
        fig.savefig(work / f"gallery_{kind}.png", dpi=90)
        plt.close(fig)
        out.append((kind, f"gallery_{kind}.png", picked))
    return out


def _tasks_json(run: Run) -> dict:
    if run.augment is not None and (run.augment.path / "tasks.json").is_file():
        return json.loads((run.augment.path / "tasks.json").read_text())
    return {}
