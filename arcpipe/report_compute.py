"""The report's compute section: every arm against what its training cost and how well it fit.

An ablation that changes the model changes its cost, so a score difference alone does not say
whether a recipe is better or only bigger. This section sets every arm against its training
FLOPs (pairing arms at about equal compute) and against its training fit: the line through the
other arms' (train exact, pass@2) says what that kind of fit buys, and an arm off the line
generalises more or less from the same fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from arcpipe.report_queries import Queries, seed_mean, train_means
from arcpipe.runs import EQUAL_COMPUTE, Run, matches_setting
from arcpipe.stats import MOVED, bootstrap_ci, paired_effects, seed_bootstrap_ci, t_quantile


FIT_LINE_ARMS = 3  # other arms a fit line needs: a line through two fits them exactly, whatever the relation


def compute_table(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, varying: Sequence[str], rule: str,
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
    metas = {k: train_means(runs, g) for k, g in groups.items()}
    if len(groups) < 2 or any(m["train_flops"] is None for m in metas.values()):
        return None
    flops = {k: m["train_flops"] for k, m in metas.items()}
    if max(flops.values()) <= min(flops.values()) * (1 + 1e-9):
        return None
    main_key = next(k for k, g in groups.items() if main_i in g)
    keys = sorted(groups, key=lambda k: (flops[k], k != main_key))
    seeded = [seed_mean(queries, groups[k], rule, step, top, task_ids) for k in keys]
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
