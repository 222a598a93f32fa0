"""Correctness signals: AUROC against a brute-force pair count, the task re-weighting the
bootstrap uses against replicated rows, and equal-count calibration bins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcpipe import signals


def brute_auroc(x: np.ndarray, y: np.ndarray) -> float:
    pos, neg = x[y], x[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


rows = st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.integers(0, 3)), min_size=0, max_size=60)


@settings(max_examples=100, deadline=None)
@given(rows)
def test_auroc_is_the_share_of_right_wrong_pairs_ordered(data):
    """Small integer scores force ties, which count half."""
    x = np.array([r[0] for r in data], dtype=np.float64)
    y = np.array([r[1] for r in data], dtype=bool)
    want = brute_auroc(x, y)
    got = signals.auroc(x, y)
    assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(rows, st.lists(st.integers(0, 3), min_size=4, max_size=4))
def test_task_weights_equal_replicating_each_task(data, weights):
    """A bootstrap draw's weights (how often each task was drawn) give the AUROC of the rows with
    each task's rows repeated that often -- what resampling tasks would compute."""
    x = np.array([r[0] for r in data], dtype=np.float64)
    y = np.array([r[1] for r in data], dtype=bool)
    g = np.array([r[2] for r in data], dtype=np.int64)
    pairs = signals.pair_counts(x, y, g, 4)
    n_right = np.bincount(g, weights=y, minlength=4)
    n_wrong = np.bincount(g, weights=~y, minlength=4)
    w = np.array(weights, dtype=np.float64)
    rep = np.repeat(np.arange(len(x)), w[g].astype(np.int64))
    want = brute_auroc(x[rep], y[rep])
    got = signals.task_auroc(pairs, n_right, n_wrong, np.stack([w, np.ones(4)]))
    assert (np.isnan(want) and np.isnan(got[0])) or got[0] == pytest.approx(want, abs=1e-12)
    plain = brute_auroc(x, y)
    assert (np.isnan(plain) and np.isnan(got[1])) or got[1] == pytest.approx(plain, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(rows, st.sampled_from([1, 64, 10**6]))
def test_pair_counts_match_brute_force_for_every_task_pair(data, block_cells):
    """Each cell against the pairs counted directly; tiny blocks put block edges inside runs of ties."""
    x = np.array([r[0] for r in data], dtype=np.float64)
    y = np.array([r[1] for r in data], dtype=bool)
    g = np.array([r[2] for r in data], dtype=np.int64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(signals, "_PAIR_BLOCK_CELLS", block_cells)  # 1 -> blocks of 16 predictions
        got = signals.pair_counts(x, y, g, 4)
    for a in range(4):
        for b in range(4):
            d = x[(g == a) & y][:, None] - x[(g == b) & ~y][None, :]
            assert got[a, b] == ((d > 0) + 0.5 * (d == 0)).sum()


@settings(max_examples=100, deadline=None)
@given(rows)
def test_within_counts_are_pairs_inside_each_group(data):
    x = np.array([r[0] for r in data], dtype=np.float64)
    y = np.array([r[1] for r in data], dtype=bool)
    g = np.array([r[2] for r in data], dtype=np.int64)
    ordered, pairs = signals.within_counts(x, y, g, 4)
    for h in range(4):
        m = g == h
        d = x[m & y][:, None] - x[m & ~y][None, :]
        assert pairs[h] == d.size
        assert ordered[h] == pytest.approx(((d > 0) + 0.5 * (d == 0)).sum(), abs=1e-9)


def test_auroc_extremes():
    y = np.array([False, False, True, True])
    assert signals.auroc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert signals.auroc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert signals.auroc(np.ones(4), y) == 0.5
    assert np.isnan(signals.auroc(np.arange(3.0), np.ones(3, dtype=bool)))
