"""The intervals every report and ``arcpipe compare`` print, in one place.

Three questions, three intervals. *Over tasks* (``bootstrap_ci``, ``paired_effects``): how a
number would move on another draw of tasks of the same kind, the trainings held fixed. *Seeds
resampled* (``seed_bootstrap_ci``): the same, with each arm's training runs drawn again too, so a
gap that another draw of seeds (or another CPU model, which is one) would undo is not called
resolved. *Over runs* (``welch``): each run's mean score taken as one observation, for reports
whose per-task rows are gone. The bootstraps are read at ``expanded_tail``'s small-sample tails:
over a few dozen tasks the plain 2.5% / 97.5% percentiles cover less than 95%. numpy only: scipy
would be a dependency for two quantiles.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

BOOTSTRAP = 2000
#: A task counts as gained or lost when its score moved by more than this: scores are seed means
#: of fractions like 1/3, so two equal ones can differ in the last bit, and a sum of four of them
#: (an interaction) more so; real moves are at least 1 / (test inputs x seeds) apart.
MOVED = 1e-9
#: Interval ends are rounded to this many decimals: a replicate mean of fractions that is 0 comes out
#: of the (T, B) product as 1e-19 or so, and "the interval excludes zero" must not hang on that.
ENDS = 12


def expanded_tail(n: int, level: float = 0.95) -> float:
    """Tail probability at which to read a percentile bootstrap of a mean over ``n`` tasks so it
    covers about ``level`` (Hesterberg's expanded percentile interval).

    The plain percentile interval of a mean is about z * s * sqrt((n - 1) / n) wide on each
    side where Student's interval is t(n - 1) * s: at 13 tasks 14% narrower, and it covered
    88-93% of the time in benchmarks/coverage.py where 95% was meant. Reading the replicates at
    Phi(-sqrt(n / (n - 1)) * t(n - 1)) instead of (1 - level) / 2 restores both factors and,
    unlike stretching the interval, stays inside what the replicates can reach (a pass@2 interval
    never goes below 0)."""
    return NormalDist().cdf(-expanded_z(n, level))


def expanded_z(n: int, level: float = 0.95) -> float:
    """The normal deviate of ``expanded_tail``: sqrt(n / (n - 1)) * t(n - 1), z below two tasks."""
    if n < 2:
        return NormalDist().inv_cdf(1 - (1 - level) / 2)
    return math.sqrt(n / (n - 1)) * t_quantile(1 - (1 - level) / 2, n - 1)


def bootstrap_ci(values: np.ndarray, *, n_boot: int = BOOTSTRAP, seed: int = 0, level: float = 0.95,
                 expand: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over the last axis (tasks) of ``values`` (C, T) for every row at once,
    read at the small-sample tails of ``expanded_tail`` (``expand``, the default) or the nominal ones.

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
    tail = expanded_tail(t, level) if expand else (1 - level) / 2
    lo, hi = np.quantile(reps, [tail, 1 - tail], axis=1)
    return lo.round(ENDS), hi.round(ENDS)


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


def permutation_f(groups: Sequence[np.ndarray], *, n_perm: int = 20000, seed: int = 0) -> dict[str, float]:
    """Do k arms differ at all? The one-way F statistic of per-run values across ``groups`` (one
    array of runs per arm) and its permutation p-value.

    A pairwise interval picked after seeing which arm came out highest overstates that gap (the
    best of four random halves is the best partly by selection); this asks first the one question
    every arm shares. If the arms do not differ, runs are exchangeable between them, so shuffling
    the arm labels among the runs draws F under that null: p = (1 + shuffles with F at least the
    observed) / (1 + ``n_perm``), valid at any run count and with no normality assumed (pass@2
    over a dozen tasks moves in steps of several points). Over runs, like ``welch``: other
    trainings on these tasks, not other tasks. Also ``sd_within``, the pooled standard deviation of
    runs within an arm, which ``least_difference`` turns into the gap two arms must show."""
    values = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    sizes = np.array([v.size for v in values])
    if len(values) < 2 or sizes.min() < 1 or sizes.sum() <= len(values):
        raise ValueError("permutation_f: needs two or more arms with a run each, and more runs than arms")
    y = np.concatenate(values)
    k, n = len(values), y.size
    onehot = np.repeat(np.eye(k), sizes, axis=0)  # run -> arm

    def sums_of_squares(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sums = samples @ onehot  # (draws, k)
        between = (sums**2 / sizes).sum(axis=1) - y.sum() ** 2 / n
        within = np.maximum((y**2).sum() - y.sum() ** 2 / n - between, 0.0)  # rounding can dip below 0
        return between, within

    def f_stats(between: np.ndarray, within: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (between / (k - 1)) / (within / (n - k))

    between, within = sums_of_squares(y[None, :])  # the observed runs: F and the spread within an arm
    observed = float(f_stats(between, within)[0])
    sd_within = float(np.sqrt(within[0] / (n - k)))
    rng = np.random.default_rng(seed)
    shuffles = y[np.argsort(rng.random((n_perm, n)), axis=1)]
    null = f_stats(*sums_of_squares(shuffles))
    p = 1.0 if math.isnan(observed) else float((1 + np.sum(null >= observed * (1 - 1e-12))) / (1 + n_perm))
    return {"f": observed, "p": p, "df_between": float(k - 1), "df_within": float(n - k), "n_perm": float(n_perm),
            "sd_within": sd_within}


def slope_within(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], *, level: float = 0.95, n_perm: int = 20000,
                 seed: int = 0) -> dict[str, float]:
    """The common slope of y on x within groups (each arm's runs about its own means: the arms'
    differences taken out), its t interval on n - k - 1 degrees of freedom, the partial correlation
    ``r``, and a permutation p-value from shuffling y among the runs of each arm (no normality
    assumed; two-sided on |slope|).

    Asked of seeds: when one seed of an arm fits more of its training pairs than another, does it
    score more, and at what rate? Only the arms' own spread enters, so a difference between arms
    (a model, a budget) cannot make the slope; ``arms_slope`` is the line through the arms' means
    beside it, descriptive (NaN for fewer than three arms)."""
    xs = [np.asarray(x, dtype=np.float64).ravel() for x in xs]
    ys = [np.asarray(y, dtype=np.float64).ravel() for y in ys]
    if len(xs) != len(ys) or any(x.size != y.size for x, y in zip(xs, ys)):
        raise ValueError("slope_within: x and y need one array per arm, of equal sizes")
    k, n = len(xs), sum(x.size for x in xs)
    if n - k - 1 < 1:
        raise ValueError("slope_within: needs more runs than arms plus one (each arm's runs are read about their own mean)")
    dx = np.concatenate([x - x.mean() for x in xs])
    dy = np.concatenate([y - y.mean() for y in ys])
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx == 0:
        raise ValueError("slope_within: x does not vary within any arm")
    b = float(dx @ dy) / sxx
    df = n - k - 1
    se = math.sqrt(max(float(((dy - b * dx) ** 2).sum()), 0.0) / df / sxx)
    half = t_quantile(1 - (1 - level) / 2, df) * se
    rng = np.random.default_rng(seed)
    starts = np.cumsum([0] + [x.size for x in xs])
    shuffled = np.empty((n_perm, n))
    for lo, hi in zip(starts[:-1], starts[1:]):  # k arms, not runs: the shuffles themselves are one array op
        shuffled[:, lo:hi] = dy[lo:hi][np.argsort(rng.random((n_perm, hi - lo)), axis=1)]
    null = np.abs(shuffled @ dx) / sxx
    p = float((1 + np.sum(null >= abs(b) * (1 - 1e-12))) / (1 + n_perm))
    mx, my = np.array([x.mean() for x in xs]), np.array([y.mean() for y in ys])
    arms_slope = float(np.polyfit(mx, my, 1)[0]) if k >= 3 and np.ptp(mx) > 0 else math.nan
    r = float(dx @ dy) / math.sqrt(sxx * syy) if syy > 0 else math.nan
    return {"slope": b, "low": b - half, "high": b + half, "df": float(df), "r": r, "p": p, "n": float(n),
            "groups": float(k), "arms_slope": arms_slope, "n_perm": float(n_perm)}


def least_difference(sd: float, df: float, n_a: int, n_b: int, level: float = 0.95) -> float:
    """The smallest gap between two arms' means (of ``n_a`` and ``n_b`` runs) whose ``level``
    interval over runs excludes zero, given runs spread by ``sd`` within an arm on ``df`` degrees
    of freedom: t * sd * sqrt(1/n_a + 1/n_b), Fisher's least significant difference.

    Said beside an F test so that a reader sees what a few seeds can resolve before reading a
    gap: with runs spread by 6 points, two arms of four runs must differ by about 9."""
    return t_quantile(1 - (1 - level) / 2, df) * sd * math.sqrt(1 / n_a + 1 / n_b)


def run_offsets(m: np.ndarray) -> tuple[np.ndarray, float]:
    """Each run's whole-run offset (its mean over tasks minus the arm's) shrunk so that their
    variance is the whole-run variance component alone, and that component (variance of one
    run's offset).

    A run's mean over T tasks varies with the whole run (a lucky seed: variance s_u) and with
    which tasks it happens to solve (run-by-task variance s_e, averaged over T: s_e / T). The
    per-task paired bootstrap already carries s_e (it is in each task's seed-averaged score), so
    resampling raw run means would count it twice: in a simulation of 0/1 task outcomes
    (benchmarks/coverage.py) that made the interval cover 99-100% where 95% was meant and wider
    than Welch's over runs. The two-way ANOVA moments split the two: s_e from the residuals of
    rows + columns, s_u = var(run means) - s_e / T (clipped at 0); the offsets are scaled by
    sqrt(s_u / var(run means)), the shrunken-residual bootstrap of random-effect models."""
    m = np.atleast_2d(np.asarray(m, dtype=np.float64))
    r, t = m.shape
    if r < 2:
        return np.zeros(r), 0.0
    rows = m.mean(axis=1)
    off = rows - rows.mean()
    v_rows = off.var(ddof=1)
    resid = m - rows[:, None] - m.mean(axis=0) + rows.mean()
    s_e = float((resid ** 2).sum() / ((r - 1) * (t - 1))) if t > 1 else 0.0
    s_u = max(0.0, v_rows - s_e / t)
    return (off * np.sqrt(s_u / v_rows) if v_rows > 0 else off), s_u


def seed_bootstrap_ci(arms: Sequence[np.ndarray], combos: np.ndarray, *, n_boot: int = BOOTSTRAP, seed: int = 0,
                      level: float = 0.95, t_tails: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Interval of each linear combination ``combos`` (C, A) of arm means, resampling the tasks
    *and* each arm's training runs (``arms``: A matrices (runs, T) of per-task scores).

    ``paired_effects`` averages an arm's seeds per task and resamples tasks only: it holds the
    trainings fixed, so it says how these runs would fare on other tasks, not how other trainings
    would, and a gap that a fresh draw of seeds (or another CPU model, which is one) undoes can
    still look resolved. Each replicate here is that paired replicate (the same task draws as
    ``bootstrap_ci``, every arm's seed means per task) plus, independently per arm, the mean of r
    of its runs' whole-run offsets drawn with replacement (its own draws, seeded by its scores, so
    an arm's order in ``arms`` changes nothing; ``run_offsets``: shrunk to the
    whole-run variance, since the run-by-task part is already in the task draw), widened by
    sqrt(r / (r - 1)) because drawing r of r understates their variance by (r - 1) / r.

    With ``t_tails`` (the default) the replicates are read at the paired interval's small-sample
    tails (``expanded_tail``: Phi(-z_T), z_T = sqrt(T / (T - 1)) * t(T - 1)), and the distances
    from the estimate are then stretched by t(df) * sqrt(V) / (z_T * sqrt(V_boot)): V the
    variance with the task part unbiased, V_boot what the replicates hold (the task part times
    (T - 1) / T), df the Welch-Satterthwaite degrees of freedom of V (the task part on T - 1, each
    arm's whole-run part on r - 1). So runs that agree give the paired interval exactly, and the
    more of the width the seeds make, the more the few seeds' uncertainty widens it; without
    ``t_tails`` it is the plain percentile interval, a reference. benchmarks/coverage.py
    measures coverage of a true zero on simulated 0/1 task outcomes (13 or 59 tasks, 2-8 runs an
    arm); tests/test_stats.py on whole-run shifts. A combination touching an arm with fewer than
    two runs has no seed spread to resample and gets NaN."""
    combos = np.atleast_2d(np.asarray(combos, dtype=np.float64))
    t = arms[0].shape[-1]
    rng = np.random.default_rng(seed)
    tasks = rng.multinomial(t, np.full(t, 1.0 / t), size=n_boot).T / t  # (T, B), as bootstrap_ci draws them
    reps = np.empty((len(arms), n_boot))
    means = np.empty((len(arms), t))
    runs = np.zeros(len(arms))  # each arm's whole-run variance of its mean
    dfs = np.zeros(len(arms))  # and its degrees of freedom, r - 1 (0: one run, no spread to resample)
    for a, m in enumerate(arms):
        m = np.atleast_2d(np.asarray(m, dtype=np.float64))
        r = m.shape[0]
        dfs[a] = r - 1
        means[a] = m.mean(axis=0)
        off, s_u = run_offsets(m)  # zeros for one run
        runs[a] = s_u / r
        if r > 1:
            off = off * np.sqrt(r / (r - 1))
        # each arm's run draw keyed by its own scores, not its place in the list: the same contrast
        # gets the same interval in every table that holds it, whatever the arms' order there
        own = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(m).tobytes())])
        pick = own.multinomial(r, np.full(r, 1.0 / r), size=n_boot) / r  # (B, R)
        reps[a] = means[a] @ tasks + pick @ off
    tail = expanded_tail(t, level) if t_tails else (1 - level) / 2
    lo, hi = np.quantile(combos @ reps, [tail, 1 - tail], axis=1)
    if t_tails and t > 1:
        paired = combos @ means  # (C, T): each combination per task, seeds averaged
        est = paired.mean(axis=1)
        task_part = paired.var(axis=1, ddof=1) / t
        z_t = expanded_z(t, level)
        for c, w in enumerate(combos):
            arm_parts = w * w * runs  # each arm's whole-run variance in this combination
            run_part = float(arm_parts.sum())
            boot = task_part[c] * (t - 1) / t + run_part
            if boot <= 0:
                continue
            df = satterthwaite_df([task_part[c], *arm_parts], [t - 1, *dfs])
            k = t_quantile(1 - (1 - level) / 2, df) * math.sqrt((task_part[c] + run_part) / boot) / z_t
            lo[c], hi[c] = est[c] - k * (est[c] - lo[c]), est[c] + k * (hi[c] - est[c])
    bad = (combos[:, dfs < 1] != 0).any(axis=1)
    lo[bad], hi[bad] = np.nan, np.nan
    return lo.round(ENDS), hi.round(ENDS)
