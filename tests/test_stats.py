"""The intervals of arcpipe.stats: over tasks (percentile bootstrap, paired), seeds resampled
(the paired draw plus whole-run offsets, t tails), over runs (Welch) -- each against a direct computation, and
the seed-resampled one's coverage in a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arcpipe import stats


@pytest.mark.parametrize(("df", "want"), [(1, 12.706205), (3, 3.182446), (5.4, 2.514349), (30, 2.042272), (1000, 1.962339)])
def test_t_quantile_matches_tables(df, want):
    assert stats.t_quantile(0.975, df) == pytest.approx(want, abs=2e-5)


def test_bootstrap_ci():
    const = np.full((1, 50), 0.25)
    lo, hi = stats.bootstrap_ci(const)
    assert lo[0] == pytest.approx(0.25) and hi[0] == pytest.approx(0.25)
    rng = np.random.default_rng(1)
    v = rng.uniform(size=(2, 200))
    lo, hi = stats.bootstrap_ci(v, n_boot=4000)
    # against a direct resampling loop
    idx = rng.integers(0, 200, size=(4000, 200))
    reps = v[0][idx].mean(1)
    tail = stats.expanded_tail(200)
    assert lo[0] == pytest.approx(np.quantile(reps, tail), abs=0.01)
    assert hi[0] == pytest.approx(np.quantile(reps, 1 - tail), abs=0.01)
    assert np.all(lo < v.mean(1)) and np.all(v.mean(1) < hi)
    plo, phi = stats.bootstrap_ci(v, n_boot=4000, expand=False)
    assert plo[0] == pytest.approx(np.quantile(reps, 0.025), abs=0.01) and np.all(lo < plo) and np.all(phi < hi)


def test_expanded_tail_is_students_width():
    """The small-sample tails: Phi(-sqrt(n / (n - 1)) * t(n - 1)), by hand at 13 tasks (t(12) =
    2.178813), tending to the nominal 2.5% with many tasks; so on normal replicates of the
    bootstrap's own variance s^2 (n - 1) / n the interval is Student's, t(n - 1) * s."""
    assert stats.expanded_tail(13) == pytest.approx(0.0116713, abs=2e-6)
    assert stats.expanded_z(13) == pytest.approx(math.sqrt(13 / 12) * 2.178813, abs=1e-5)
    assert 0.0245 < stats.expanded_tail(400) < 0.025 and stats.expanded_tail(1) == pytest.approx(0.025)
    from statistics import NormalDist
    z = NormalDist().inv_cdf(1 - stats.expanded_tail(13))
    assert z * math.sqrt(12 / 13) == pytest.approx(2.178813, abs=1e-5)


def test_expanded_tails_cover_a_mean_over_few_tasks():
    """13 tasks' paired differences drawn from a normal null (mean zero), 2000 times: the plain
    percentile interval misses the true mean too often (91.0% here; 91.6% expected from
    z * sqrt(12 / 13) against t(12)), read at the expanded tails it covers 94.9%."""
    rng = np.random.default_rng(7)
    d = rng.normal(size=(2000, 13))
    cover = {}
    for expand in (False, True):
        lo, hi = stats.bootstrap_ci(d, n_boot=1000, expand=expand)
        cover[expand] = float(np.mean((lo <= 0) & (0 <= hi)))
    assert cover[False] < 0.925 and cover[True] > 0.94 and cover[True] - cover[False] > 0.025, cover


def test_paired_effects_cancel_task_difficulty():
    """Two settings on tasks of very different difficulty, one a steady 10 points better: the
    unpaired intervals overlap, the paired one excludes zero; a pure shift has a zero-width interval."""
    rng = np.random.default_rng(2)
    hard = rng.uniform(0, 0.9, size=30)
    a, b = hard, np.clip(hard + 0.1 + rng.normal(0, 0.02, size=30), 0, 1)
    lo, hi = stats.bootstrap_ci(np.stack([a, b]))
    assert hi[0] > lo[1]  # unpaired: overlapping
    e = stats.paired_effects(b - a)
    assert e["delta_ci_low"][0] > 0.05 and e["delta"][0] == pytest.approx((b - a).mean())
    assert e["better"][0] + e["worse"][0] <= 30
    # seed means of fractions whose lower end is a replicate mean of 0, which the (T, B) product gives
    # as 6.9e-18: reported as exactly 0, so it does not read as excluding zero
    near = np.array([0, 0, 6, 3, 0, 5, 3, 2, 5, -4, 2, 0, 0]) / 12
    assert stats.paired_effects(near)["delta_ci_low"][0] == 0.0
    shift = stats.paired_effects(np.full((1, 30), -0.2))
    assert shift["delta_ci_low"][0] == pytest.approx(-0.2) and shift["delta_ci_high"][0] == pytest.approx(-0.2)
    assert (shift["better"][0], shift["worse"][0]) == (0, 30)


def test_seed_bootstrap_resamples_runs_as_well_as_tasks():
    """Runs identical within each arm: the seed-resampled interval is the paired one exactly (same
    task draws). Runs that differ by a whole-run offset (a lucky and an unlucky training):
    averaging the seeds per task makes a pure shift look certain, resampling the runs does not. An arm with one
    run has no spread to resample: NaN for the rows touching it only."""
    rng = np.random.default_rng(5)
    tasks = rng.uniform(0, 1, size=40)
    a = np.tile(tasks, (4, 1))
    b = np.tile(np.clip(tasks + rng.normal(0.05, 0.1, size=40), 0, 1), (4, 1))
    e = stats.paired_effects((b - a).mean(axis=0))
    lo, hi = stats.seed_bootstrap_ci([a, b], np.array([[-1.0, 1.0]]))
    assert (lo[0], hi[0]) == pytest.approx((e["delta_ci_low"][0], e["delta_ci_high"][0]))
    offsets = np.array([0.25, -0.15, 0.2, -0.1])[:, None]  # mean +0.05, spread 0.2
    b = tasks + offsets
    shift = stats.paired_effects((b - a).mean(axis=0))
    assert shift["delta_ci_low"][0] == pytest.approx(0.05) == shift["delta_ci_high"][0]
    lo, hi = stats.seed_bootstrap_ci([a, b], np.array([[-1.0, 1.0], [0.0, 1.0]]), t_tails=False)
    assert lo[0] < 0 < 0.05 < hi[0]
    # against a direct resampling loop, on runs that differ task by task too: tasks drawn with
    # replacement for the seed means, and per arm 4 of its 4 shrunk whole-run offsets (widened
    # by sqrt(4 / 3))
    b = np.clip(tasks + offsets + rng.normal(0, 0.1, (4, 40)), 0, 1)
    lo, hi = stats.seed_bootstrap_ci([a, b], np.array([[-1.0, 1.0]]), t_tails=False)
    off = stats.run_offsets(b)[0]
    assert 0 < np.abs(off).sum() < np.abs(b.mean(axis=1) - b.mean()).sum()  # shrunk, not dropped
    off = off * np.sqrt(4 / 3)
    reps = []
    for _ in range(4000):
        t = rng.integers(0, 40, size=40)
        reps.append(b.mean(axis=0)[t].mean() + off[rng.integers(0, 4, size=4)].mean() - a.mean(axis=0)[t].mean())
    assert lo[0] == pytest.approx(np.quantile(reps, 0.025), abs=0.015)
    assert hi[0] == pytest.approx(np.quantile(reps, 0.975), abs=0.015)
    one = [a, b[:1]]
    lo, hi = stats.seed_bootstrap_ci(one, np.array([[-1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and np.isfinite([lo[1], hi[1], lo[2], hi[2]]).all()


def test_seed_bootstrap_same_contrast_same_interval_in_any_arm_order():
    """A report shows one contrast in several tables whose arms come in different orders (a factor
    section's, the compute section's cheapest first): each arm's run draw is its own, so the
    interval is the same wherever the contrast appears, and a third arm beside them changes nothing."""
    rng = np.random.default_rng(9)
    arms = [np.clip(rng.uniform(0, 1, 30) + rng.normal(0, 0.15, (r, 30)), 0, 1) for r in (3, 4, 5)]
    lo, hi = stats.seed_bootstrap_ci(arms[:2], np.array([[-1.0, 1.0]]))
    lo2, hi2 = stats.seed_bootstrap_ci([arms[2], arms[1], arms[0]], np.array([[-1.0, 1.0, 0.0], [0.0, 1.0, -1.0]]))
    assert (lo2[1], hi2[1]) == (lo[0], hi[0])
    assert np.isfinite([lo2[0], hi2[0]]).all() and (lo2[0], hi2[0]) != (lo[0], hi[0])


def test_run_offsets_keep_the_whole_run_part_only():
    """Pure whole-run shifts are kept as they are; on runs that differ task by task as well, the
    kept variance estimates the whole-run component alone (unbiased where it is positive, about
    zero where there is none), not the spread of the run means, which holds the task noise too."""
    rng = np.random.default_rng(4)
    tasks = rng.uniform(0, 1, 40)
    shifts = np.array([0.25, -0.15, 0.2, -0.1])
    off, s_u = stats.run_offsets(tasks + shifts[:, None])
    assert off == pytest.approx(shifts - shifts.mean()) and s_u == pytest.approx(shifts.var(ddof=1))
    with_u = [stats.run_offsets(rng.normal(0, 0.05, (4, 1)) + rng.normal(0, 0.2, (4, 59)))[1] for _ in range(2000)]
    without = [stats.run_offsets(rng.normal(0, 0.2, (4, 59)))[1] for _ in range(2000)]
    assert np.mean(with_u) == pytest.approx(0.05 ** 2, rel=0.1)
    assert np.mean(without) < 0.1 * 0.2 ** 2 / 59 * 4 + 0.0003 and np.mean(np.array(without) == 0) > 0.4
    off, s_u = stats.run_offsets(rng.normal(0, 0.2, (1, 59)))
    assert s_u == 0.0 and off.tolist() == [0.0]


def test_t_tails_give_students_width_with_satterthwaite_df():
    """With t tails, on replicates near normal (many bootstrap draws, 50 tasks), each side of the
    interval is about t(df) * sqrt(V): V the task part (unbiased) plus each arm's whole-run part,
    df Welch-Satterthwaite's (task part on T - 1, whole-run parts on r - 1) -- wider than the
    plain percentile interval, which reads the replicates at 2.5% and 97.5%."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 50)
    arms = [np.clip(base + rng.normal(0, 0.05, (4, 1)) + rng.normal(0, 0.1, (4, 50)), 0, 1) for _ in range(2)]
    w = np.array([[1.0, -1.0]])
    lo0, hi0 = stats.seed_bootstrap_ci(arms, w, t_tails=False, n_boot=20000)
    lo, hi = stats.seed_bootstrap_ci(arms, w, n_boot=20000)
    est = arms[0].mean() - arms[1].mean()
    parts = [(arms[0].mean(axis=0) - arms[1].mean(axis=0)).var(ddof=1) / 50] + [stats.run_offsets(m)[1] / 4 for m in arms]
    df = stats.satterthwaite_df(parts, [49, 3, 3])
    assert df == pytest.approx(sum(parts) ** 2 / (parts[0] ** 2 / 49 + sum(p * p / 3 for p in parts[1:])))
    half = stats.t_quantile(0.975, df) * math.sqrt(sum(parts))
    assert 3 < df < 30 and parts[1] + parts[2] > parts[0] / 4
    assert est - lo[0] == pytest.approx(half, rel=0.06) and hi[0] - est == pytest.approx(half, rel=0.06)
    assert lo[0] < lo0[0] and hi0[0] < hi[0]
    assert stats.satterthwaite_df([1.0, 0.0], [math.inf, 3]) == math.inf
    assert stats.satterthwaite_df([1.0, 1.0], [3, 3]) == pytest.approx(6.0)


def test_seed_resampled_interval_covers_a_null_difference_the_paired_one_misses():
    """Two arms of four runs drawn alike, each run shifted as a whole (a lucky or unlucky training,
    5 points sd) on 60 tasks: the true difference is zero. The task-only paired interval, which
    holds the runs fixed, excludes it most of the time (61 of 200 draws cover it, 30%); the
    seed-resampled one comes near its nominal 95%: 180 (90%) as a percentile interval, 187 (93.5%)
    with t tails. benchmarks/coverage.py does the same on 0/1 task outcomes."""
    rng = np.random.default_rng(1)
    covered = {"paired": 0, "percentile": 0, "t": 0}
    n = 200
    for k in range(n):
        base = rng.uniform(0, 1, 60)
        arms = [np.clip(base + rng.normal(0, 0.05, (4, 1)) + rng.normal(0, 0.1, (4, 60)), 0, 1) for _ in range(2)]
        for key, tails in (("percentile", False), ("t", True)):
            lo, hi = stats.seed_bootstrap_ci(arms, np.array([[1.0, -1.0]]), n_boot=500, seed=k, t_tails=tails)
            covered[key] += lo[0] <= 0 <= hi[0]
        e = stats.paired_effects(arms[0].mean(axis=0) - arms[1].mean(axis=0))
        covered["paired"] += e["delta_ci_low"][0] <= 0 <= e["delta_ci_high"][0]
    assert covered["paired"] / n < 0.5 and 0.86 < covered["percentile"] / n < covered["t"] / n > 0.91


def test_welch_matches_its_formula():
    a, b = np.array([42.7, 40.1, 39.3, 38.4]), np.array([32.5, 28.8, 35.0, 33.3])
    r = stats.welch([(1.0, a), (-1.0, b)])
    se = np.sqrt(a.var(ddof=1) / 4 + b.var(ddof=1) / 4)
    assert (r["high"] - r["delta"]) / se == pytest.approx(stats.t_quantile(0.975, r["df"]))
    assert r["df"] == pytest.approx(stats.satterthwaite_df([a.var(ddof=1) / 4, b.var(ddof=1) / 4], [3, 3]))
    assert stats.t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)


def test_coverage_benchmark_reference_counts_the_run_by_task_spread_twice():
    """benchmarks/coverage.py's reference (tasks and whole runs drawn together, the LAYOUT 15
    interval) is wider than the shipped one on runs that differ task by task but not as a whole;
    and a few draws of its simulation run end to end."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_coverage", Path(__file__).resolve().parents[1] / "benchmarks" / "coverage.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(6)
    widths = []
    for k in range(20):
        a = rng.normal(-0.5, 2.5, 59)
        arms = [bench.draw_arm(rng, a, 4, 0.0, 1.0) for _ in range(2)]
        assert set(np.unique(arms[0])) <= {0.0, 1.0}
        lo, hi = bench.both_levels(arms, 500, k)
        slo, shi = stats.seed_bootstrap_ci(arms, np.array([[1.0, -1.0]]), n_boot=500, seed=k)
        widths.append((hi - lo, shi[0] - slo[0]))
    both, shipped = np.mean(widths, axis=0)
    assert both > 1.3 * shipped  # the benchmark's table: 23.5 against 15.7 points
    out = bench.coverage(13, 2, 0.3, 1.0, draws=5, boot=100)
    assert set(out["cover"]) == set(bench.METHODS) and all(0 <= v <= 1 for v in out["cover"].values())


def test_permutation_f_matches_the_anova_formula_and_tracks_separation():
    """F is the textbook one-way statistic; p is small for arms far apart, large for arms drawn
    alike, at least 1 / (1 + n_perm), and does not depend on the arms' order."""
    rng = np.random.default_rng(3)
    groups = [rng.normal(0, 1, 8), rng.normal(0, 1, 6), rng.normal(0, 1, 5)]
    y = np.concatenate(groups)
    between = sum(g.size * (g.mean() - y.mean()) ** 2 for g in groups) / 2
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (y.size - 3)
    out = stats.permutation_f(groups, n_perm=4000)
    assert out["f"] == pytest.approx(between / within)
    assert out["sd_within"] == pytest.approx(np.sqrt(within))
    assert (out["df_between"], out["df_within"]) == (2, 16)
    assert out["p"] > 0.05
    assert stats.permutation_f(groups[::-1], n_perm=4000)["f"] == pytest.approx(out["f"])
    far = stats.permutation_f([groups[0], groups[1] + 5], n_perm=999)
    assert far["p"] == pytest.approx(1 / 1000)
    # arms with no spread inside and none between: nothing to tell apart
    assert stats.permutation_f([np.ones(3), np.ones(4)], n_perm=99)["p"] == 1.0
    with pytest.raises(ValueError, match="more runs than arms"):
        stats.permutation_f([np.ones(1), np.ones(1)])


def test_least_difference_is_the_gap_that_two_arms_alike_exceed_5_percent_of_the_time():
    """Two arms of 4 runs drawn alike: their means differ by more than the least difference (from
    the runs' pooled SD, 6 df) in about 5% of draws; it is t * sd * sqrt(2 / n) (t(0.975, 10) =
    2.2281) and shrinks with more runs."""
    assert stats.least_difference(1.0, 10, 2, 2) == pytest.approx(2.2281, rel=1e-3)
    assert stats.least_difference(6.2, 16, 4, 4) == pytest.approx(2.1199 * 6.2 * np.sqrt(0.5), rel=1e-3)
    assert stats.least_difference(1.0, 10, 6, 6) < stats.least_difference(1.0, 10, 4, 4)
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, (2, 20000, 4))
    sd = np.sqrt((a.var(axis=1, ddof=1) + b.var(axis=1, ddof=1)) / 2)
    exceeded = np.abs(a.mean(axis=1) - b.mean(axis=1)) > stats.least_difference(1.0, 6, 4, 4) * sd
    assert exceeded.mean() == pytest.approx(0.05, abs=0.006)


def test_permutation_f_holds_its_level_on_pass_at_2_like_runs():
    """Under the null (every arm's runs from one distribution) p <= 0.05 about 5% of the time,
    on coarse per-run scores like pass@2 over 13 tasks (steps of 1/13, many ties)."""
    rng = np.random.default_rng(11)
    hits = 0
    trials = 300
    for _ in range(trials):
        groups = [rng.binomial(13, 0.3, size=n) / 13 for n in (8, 8, 6, 6)]
        hits += stats.permutation_f(groups, n_perm=499, seed=int(rng.integers(1 << 30)))["p"] <= 0.05
    assert 0.02 <= hits / trials <= 0.09


def test_slope_within_takes_out_the_arms_and_matches_least_squares_with_arm_effects():
    """The slope is ordinary least squares with one intercept per arm (so moving an arm as a whole,
    in x or y, cannot change it); its interval is that fit's t interval on n - k - 1 df; p is small
    for a strong relation inside the arms and large for none, even when the arms' means lie on a
    steep line; ``arms_slope`` is the line through the means."""
    rng = np.random.default_rng(7)
    xs = [rng.normal(50 + 10 * i, 4, n) for i, n in enumerate((8, 8, 6, 5))]
    ys = [0.4 * x + rng.normal(0, 1.5, x.size) + 3 * i for i, x in enumerate(xs)]
    out = stats.slope_within(xs, ys, n_perm=2000)
    design = np.column_stack([np.concatenate(xs), np.repeat(np.eye(4), [x.size for x in xs], axis=0)])
    coef, res, *_ = np.linalg.lstsq(design, np.concatenate(ys), rcond=None)
    assert out["slope"] == pytest.approx(coef[0])
    se = np.sqrt(res[0] / (27 - 5) / sum(((x - x.mean()) ** 2).sum() for x in xs))
    assert out["high"] - out["slope"] == pytest.approx(stats.t_quantile(0.975, 22) * se)
    assert (out["df"], out["n"], out["groups"]) == (22, 27, 4)
    assert out["low"] > 0 and out["p"] == pytest.approx(1 / 2001)
    moved = stats.slope_within([x + 100 * i for i, x in enumerate(xs)], [y - 7 * i for i, y in enumerate(ys)], n_perm=2000)
    assert moved["slope"] == pytest.approx(out["slope"]) and moved["p"] == out["p"]
    # no relation inside the arms, a steep one between them: the slope stays near zero
    flat = stats.slope_within(xs, [rng.normal(0, 1.5, x.size) + 0.4 * x.mean() for x in xs], n_perm=2000)
    assert flat["p"] > 0.05 and flat["low"] < 0 < flat["high"] and flat["arms_slope"] == pytest.approx(0.4, abs=0.05)
    assert math.isnan(stats.slope_within(xs[:2], ys[:2], n_perm=10)["arms_slope"])  # two arms: no line through them
    with pytest.raises(ValueError, match="more runs than arms"):
        stats.slope_within([np.ones(1), np.ones(2)], [np.ones(1), np.ones(2)])
    with pytest.raises(ValueError, match="does not vary"):
        stats.slope_within([np.ones(3), np.ones(3)], [np.arange(3.0), np.arange(3.0)])


def test_slope_within_holds_its_level():
    """With no relation inside the arms, p <= 0.05 about 5% of the time (pass@2-like scores)."""
    rng = np.random.default_rng(13)
    hits, trials = 0, 300
    for _ in range(trials):
        xs = [rng.binomial(128, p, size=8) / 1.28 for p in (0.5, 0.7, 0.85)]
        ys = [rng.binomial(59, p, size=8) / 0.59 for p in (0.27, 0.37, 0.42)]
        hits += stats.slope_within(xs, ys, n_perm=499, seed=int(rng.integers(1 << 30)))["p"] <= 0.05
    assert 0.02 <= hits / trials <= 0.09
