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

The queries live in ``report_queries``; the ACT-segments section in ``report_refinement`` and the
compute section in ``report_compute``; report.md's prose in ``report_markdown`` and its plots in
``figures``. This module builds the stage and the tables that compare runs factor by factor.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arcpipe import cache, report_markdown, signals
from arcpipe.errors import ArcpipeError
from arcpipe.figures import (draw_grid, plot_compute, plot_curves, plot_factor, plot_fit, plot_refinement,
                              plot_refinement_votes, plot_steps)
from arcpipe.runs import FACTOR_TITLES, FACTORS, Run, main_run, matches_setting, resolve_runs, task_sources, varying_factors
from arcpipe.report_compute import compute_table
from arcpipe.report_queries import (Queries, default_points, n_aug_curves, per_task, query_jobs, seed_mean, subsample_scores,
                                    train_means, variant_pools)
from arcpipe.report_refinement import refinement_tables, refinement_votes
from arcpipe.stats import BOOTSTRAP, bootstrap_ci, paired_effects, seed_bootstrap_ci

#: Bumped when report.md's sections or the tables change, so a cached report of an older layout is
#: rebuilt rather than republished (a report's key is otherwise its settings and its inputs).
LAYOUT = 21  # 21: train_exact_all in runs (each training's final fit on every training row, null before it was read); 20: the ACT-segments section for every arm that recorded two trained segments, with refinement_votes (in each variant pool); 19: the compute section reads every arm against the line through the other arms' training fit; 18: the compute section (every arm against its training FLOPs; pairs at about equal compute), train_s and train_flops in runs, each arm's seed draws seeded by its scores
GALLERY = 4  # solved and failed test inputs shown each


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
    queries = [Queries(vote, vote.prepare(r.infer)) for r in runs]
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
    sig = signals.signal_quality(q.prepared, n_boot=BOOTSTRAP, jobs=query_jobs())
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


def _slice(runs: Sequence[Run], queries: Sequence[Queries], main: Run, others: Sequence[str], task_ids: Sequence[str]) -> list[int]:
    """Indices of the runs that hold ``main``'s value of every factor of ``others`` (``matches_setting``)
    and are scored on ``task_ids``."""
    return [i for i, r in enumerate(runs) if all(matches_setting(r, main, g) for g in others)
            and queries[i].info["task_ids"] == list(task_ids)]


def _one_factor_arms(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, f: str,
                     task_ids: Sequence[str]) -> list[tuple[Any, list[int]]]:
    """The one-factor slice through the main run for factor ``f``: (value, indices of its runs) in
    table order, over the runs that match the main run in every other varying factor and are
    scored on ``task_ids``."""
    main = runs[main_i]
    idx = _slice(runs, queries, main, [g for g in varying_factors(runs) if g != f], task_ids)
    values = _ordered(main.factor(f), [runs[i].factor(f) for i in idx])
    return [(v, [i for i in idx if runs[i].factor(f) == v]) for v in values]


def source_tables(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, f: str, step: int | None, top: int,
                  task_ids: Sequence[str], primary: str, sources: dict[str, np.ndarray]) -> Any:
    """pass@2 (``primary`` rule, every cached variant, training seeds averaged per task) of each
    value of factor ``f`` on each source's tasks, with its bootstrap interval over those tasks and
    the paired difference from the main run's value on the same tasks. None without sources or
    without a one-factor slice."""
    import polars as pl

    arms = _one_factor_arms(runs, queries, main_i, f, task_ids)
    if not sources or len(arms) < 2:
        return None
    p2 = np.stack([seed_mean(queries, group, primary, step, top, task_ids)[0] for _, group in arms])  # (arms, tasks)
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


def factor_tables(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, f: str, rules: Sequence[str],
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
        meta = train_means(runs, group)
        for rule in rules:
            p2, oracle, per_run = seed_mean(queries, group, rule, step, top, task_ids)
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
        per_run = [subsample_scores(queries[i], [primary], ns, queries[i].info["n_aug"], seeds, queries[i].own_step(step), top,
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


def rule_effects(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, rules: Sequence[str], step: int | None,
                 top: int, task_ids: Sequence[str], primary: str) -> Any:
    """pass@2 of every voting rule on the main run's arm (the runs equal to it in every varying
    factor: its training seeds, averaged per task), every cached variant voted, with the paired
    difference from the ``primary`` rule over the same tasks: whether a rule's lead survives the
    task-to-task spread that the per-rule intervals mostly measure."""
    import polars as pl

    group = _slice(runs, queries, runs[main_i], varying_factors(runs), task_ids)
    mats = {rule: seed_mean(queries, group, rule, step, top, task_ids) for rule in rules}
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


def factor_grids(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, varying: Sequence[str], rule: str,
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
            p2s[(a, b)], oracle, per_run[(a, b)] = seed_mean(queries, group, rule, step, top, task_ids)
            rows.append({f: a, g: b, "rule": rule, "runs": len(group), "pass@2": float(p2s[(a, b)].mean()),
                         "oracle": oracle, **{k: v for k, v in train_means(runs, group).items() if k in ("train_exact", "train_samples")}})
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


def run_table(runs: Sequence[Run], queries: Sequence[Queries], varying: Sequence[str], rule: str, step: int | None,
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
                     **{k: v for k, v in r.train_summary().items() if k in ("train_exact", "train_exact_all", "train_samples", "train_s", "train_flops")},
                     "train_host": r.train_host(),
                     **{f"pass@2 {name}": _masked_mean(pt["pass@2"], np.isin(info["task_ids"], list(ids)))
                        for name, ids in (sources or {}).items()},
                     **_run_signals(q, step)})
    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def run_task_table(runs: Sequence[Run], queries: Sequence[Queries], rule: str, step: int | None, top: int) -> Any:
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


def _run_signals(q: Queries, step: int | None) -> dict[str, float]:
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
