"""The intervals every report and ``arcpipe compare`` print, in one place.

Three questions, three intervals. *Over tasks* (``bootstrap_ci``, ``paired_effects``): how a
number would move on another draw of tasks of the same kind, the trainings held fixed. *Seeds
resampled* (``seed_bootstrap_ci``): the same, with each arm's training runs drawn again too, so a
gap that another draw of seeds (or another CPU model, which is one) would undo is not called
resolved. *Over runs* (``welch``): each run's mean score taken as one observation, for reports
whose per-task rows are gone. numpy only: scipy would be a dependency for two quantiles.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

BOOTSTRAP = 2000
#: A task counts as gained or lost when its score moved by more than this: scores are seed means
#: of fractions like 1/3, so two equal ones can differ in the last bit, and a sum of four of them
#: (an interaction) more so; real moves are at least 1 / (test inputs x seeds) apart.
MOVED = 1e-9


def bootstrap_ci(values: np.ndarray, *, n_boot: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over the last axis (tasks) of ``values`` (C, T) for every row at once.

    Resampling T tasks with replacement is a multinomial weight vector per
    replicate, so all C rows' replicate means are one (C, T) @ (T, B) product.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    t = values.shape[-1]
    if t == 0:
        nan = np.full(values.shape[0], np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(t, np.full(t, 1.0 / t), size=n_boot).T / t  # (T, B)
    reps = values @ weights  # (C, B)
    lo, hi = np.quantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2], axis=1)
    return lo, hi


def paired_effects(diffs: np.ndarray) -> dict[str, np.ndarray]:
    """Mean per-task difference between two settings scored on the same tasks, for each row of
    ``diffs`` (C, T), with a paired percentile bootstrap interval and how many tasks moved each way.

    The per-setting intervals are wide mostly because tasks differ in difficulty; resampling the
    tasks *together* cancels that, so a difference whose unpaired intervals overlap can still be
    resolved (and one that is not, is shown as such)."""
    diffs = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    lo, hi = bootstrap_ci(diffs)
    return {"delta": diffs.mean(axis=1), "delta_ci_low": lo, "delta_ci_high": hi,
            "better": (diffs > MOVED).sum(axis=1), "worse": (diffs < -MOVED).sum(axis=1)}


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: float) -> float:
    """Student's t quantile (q > 0.5) from its closed-form density integrated from 0 to 200 on a
    grid even in asinh(x): fine near the centre, coarse in the tails, 1 ms a call."""
    if not math.isfinite(df) or df > 1e6:
        return NormalDist().inv_cdf(q)
    u = np.linspace(0.0, math.asinh(200.0), 50_001)
    x = np.sinh(u)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df)) * np.cosh(u)  # density in u: dx = cosh(u) du
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(u))])
    return float(np.interp(q, cdf, x))


def satterthwaite_df(parts: Sequence[float], dfs: Sequence[float]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates
    ``parts``, each on ``dfs`` degrees of freedom (inf for one known exactly); inf when the sum
    is zero or every part is exact."""
    total = float(sum(parts))
    denom = sum(p * p / d for p, d in zip(parts, dfs) if math.isfinite(d) and p > 0)
    return total * total / denom if total > 0 and denom > 0 else math.inf


def welch(arms: Sequence[tuple[float, np.ndarray]], level: float = 0.95) -> dict[str, float]:
    """A signed sum of arm means (``arms``: (sign, per-run values), two or more runs each) and its
    Welch interval: each arm a sample of trainings, each run one observation."""
    est = float(sum(s * v.mean() for s, v in arms))
    parts = [v.var(ddof=1) / len(v) for _, v in arms]
    df = satterthwaite_df(parts, [len(v) - 1 for _, v in arms])
    half = t_quantile(1 - (1 - level) / 2, df) * math.sqrt(sum(parts))
    return {"delta": est, "low": est - half, "high": est + half, "df": df}


def seed_bootstrap_ci(arms: Sequence[np.ndarray], combos: np.ndarray, *, n_boot: int = BOOTSTRAP, seed: int = 0,
                      level: float = 0.95, t_tails: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Interval of each linear combination ``combos`` (C, A) of arm means, resampling the tasks
    *and* each arm's training runs (``arms``: A matrices (runs, T) of per-task scores).

    ``paired_effects`` averages an arm's seeds per task and resamples tasks only: it holds the
    trainings fixed, so it says how these runs would fare on other tasks, not how other trainings
    would, and a gap that a fresh draw of seeds (or another CPU model, which is one) undoes can
    still look resolved. Here every replicate draws the tasks once for all arms (so differences
    stay paired over tasks, with the same draws as ``bootstrap_ci``) and, independently per arm,
    which of its runs count (with replacement): a two-level bootstrap whose width grows with the
    spread between seeds. Drawing r runs out of r understates their variance by (r - 1) / r, a lot
    at the usual four seeds, so each run's deviation from its arm's mean is first widened by
    sqrt(r / (r - 1)).

    That fixes the variance, not the tails: with four runs an arm the spread between seeds is
    itself estimated from three degrees of freedom, and a percentile interval reads it as if it
    were known (in the simulation of tests/test_stats.py, 200 draws of two equal 4-run arms,
    whole-run offsets of 5 points sd, it covered the zero difference 91% of the time). With
    ``t_tails`` (the default) the percentile distances from the estimate are stretched by
    t(df) / z, df the Welch-Satterthwaite degrees of freedom of the variance: each arm's
    between-run part (the variance of its runs' means over r - 1 degrees of freedom) plus the task
    part, counted as known as the paired interval counts it. So runs that agree leave the interval
    the paired one, and the more of the width the seeds make, the more it grows (about 1.2x at four
    runs an arm), and in the simulation it covers 97% (194 of 200; nominal 95%). A combination touching an
    arm with fewer than two runs has no seed spread to resample and gets NaN."""
    combos = np.atleast_2d(np.asarray(combos, dtype=np.float64))
    t = arms[0].shape[-1]
    rng = np.random.default_rng(seed)
    tasks = rng.multinomial(t, np.full(t, 1.0 / t), size=n_boot).T / t  # (T, B), as bootstrap_ci draws them
    reps = np.empty((len(arms), n_boot))
    thin = np.zeros(len(arms), dtype=bool)  # arms of one run: no seed spread to resample
    runs = np.zeros(len(arms))  # each arm's between-run variance of its mean, and its degrees of freedom
    means = np.empty((len(arms), t))
    for a, m in enumerate(arms):
        m = np.atleast_2d(np.asarray(m, dtype=np.float64))
        r = m.shape[0]
        thin[a] = r < 2
        means[a] = m.mean(axis=0)
        if r > 1:  # widen each run's deviation from the arm mean by sqrt(r / (r - 1)): drawing r of r
            runs[a] = m.mean(axis=1).var(ddof=1) / r
            m = means[a] + np.sqrt(r / (r - 1)) * (m - means[a])  # runs shrinks their variance by that
        pick = rng.multinomial(r, np.full(r, 1.0 / r), size=n_boot).T / r  # (R, B)
        reps[a] = ((m @ tasks) * pick).sum(axis=0)
    lo, hi = np.quantile(combos @ reps, [(1 - level) / 2, 1 - (1 - level) / 2], axis=1)
    if t_tails:
        est = (combos @ means).mean(axis=1)
        task_part = (combos @ means).var(axis=1, ddof=1) / t if t > 1 else np.zeros(len(combos))
        dfs = [r - 1 for r in (np.atleast_2d(m).shape[0] for m in arms)]
        z = NormalDist().inv_cdf(1 - (1 - level) / 2)
        for c, w in enumerate(combos):
            df = satterthwaite_df([task_part[c], *(w * w * runs)], [math.inf, *dfs])
            k = t_quantile(1 - (1 - level) / 2, df) / z
            lo[c], hi[c] = est[c] - k * (est[c] - lo[c]), est[c] + k * (hi[c] - est[c])
    bad = (combos[:, thin] != 0).any(axis=1)
    lo[bad], hi[bad] = np.nan, np.nan
    return lo, hi
