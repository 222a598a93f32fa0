"""Do the model's confidence signals know when a prediction is right?

Every voting rule but ``count`` ranks answers by a per-prediction signal:
sigmoid(q_halt) (``hrm`` to break ties, ``q-mean``, ``q-max``) or the summed
token log-probability (``logprob``). HRM trains its Q head with a BCE target
that is exactly "this step's prediction is right", and its adaptive halting
stops on that head, so how well the signal separates right from wrong
predictions is the question behind both the rules' ranking and ACT. This
module measures it on cached predictions (no re-inference), for three
signals: sigmoid(q_halt), the summed log-probability, and for reference the
one ``count`` votes with -- how many of the input's variants agree on the
prediction's answer.

- ``auroc``: the chance that a right prediction scores above a wrong one
  (0.5 = the signal says nothing, 1 = it separates them perfectly), with
  ties counted half -- the Mann-Whitney statistic.
- ``signal_quality``: per ACT step and signal, that AUROC two ways, each
  with a 95% bootstrap interval over tasks (predictions of one task are not
  independent): *within* a test input -- only pairs of predictions for the
  same test input, which is what a rule needs to put the right answer first
  -- and *pooled* over all predictions, which also credits a signal for
  being low on hard tasks and high on easy ones (what abstaining or
  halting needs). Plus the share of predictions that are right and the
  mean signal on each side. ``pair_counts`` splits the pooled pair count by
  the tasks on either side, so a bootstrap draw re-weights a tasks x tasks
  matrix (``task_auroc``) instead of re-sorting predictions (left out
  above ``POOLED_CI_CELLS``).
- ``calibration``: predictions in equal-count bins by sigmoid(q_halt), the
  share right in each -- a calibrated head has it match the mean sigmoid.
- ``answer_agreement``: how often two answers that vote together are the
  same -- two ACT steps of one variant, or two variants at one step -- so
  how much independent evidence a segment's vote adds beside a variant's.

A prediction is one (test input, variant, ACT step) output, inverse-transformed
to the task's frame; only non-empty predictions of test inputs with a known
output count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Signals measured, in table order: the two the model emits, and the one the ``count`` rule uses.
SIGNALS = ("q_halt", "logprob", "agreement")
#: Equal-count bins of sigmoid(q_halt) in the calibration table.
CALIBRATION_BINS = 5
#: The pooled AUROC's interval needs a tasks x tasks pair-count matrix, O(predictions x tasks) to
#: build (a CPU run: 14k x 13; the full ARC-AGI-1 evaluation at 1000 variants: 385k x 400 = 154M
#: cells, about 1 s per signal and ACT step on one core). Above this many cells the interval is
#: left out (NaN); the pooled point estimate, and the within-input AUROC with its interval, are
#: always computed.
POOLED_CI_CELLS = 200_000_000
#: ``pair_counts`` works through the sorted predictions in blocks of this many positions x groups
#: (an int32 block: 8 MB).
_PAIR_BLOCK_CELLS = 2_000_000


def signal_values(prepared: Any, rows: np.ndarray, name: str) -> np.ndarray:
    """One signal for the sorted predictions ``rows`` (all of one ACT step): ``q_halt`` is
    sigmoid(q_halt), ``logprob`` the summed token log-probability, ``agreement`` the share of the
    test input's predictions among ``rows`` that give the same answer (its votes, normalised so
    inputs with different variant counts compare)."""
    p = prepared
    if name == "q_halt":
        return p.q[rows]
    if name == "logprob":
        return p.logprob[rows]
    if name == "agreement":
        g, tex = p.group[rows], p.tex[rows]
        _, g_inv, g_n = np.unique(g, return_inverse=True, return_counts=True)
        _, t_inv, t_n = np.unique(tex, return_inverse=True, return_counts=True)
        return g_n[g_inv] / t_n[t_inv]
    raise ValueError(f"unknown signal {name!r} (known: {', '.join(SIGNALS)})")


def answer_agreement(prepared: Any, steps: Any, step: int, variants: str = "all") -> tuple[float, float]:
    """How alike are answers that vote together? The chance that two of ``steps`` give one variant
    the same answer (over the pairs of each variant's steps, averaged over its test input's
    variants, then over test inputs), and that two variants give the same answer at ``step``
    (over the pairs of variants of each test input, then over test inputs). Only non-empty
    predictions of the ``variants`` pool count; a unit with fewer than two is left out.

    Votes that agree more carry less independent evidence: if the segments of one variant agree
    more often than two variants do, the segments are the weaker votes, which is what voting
    them together against more variants measures (``arcpipe.report_refinement.refinement_votes``)."""
    p = prepared
    rows = np.flatnonzero(p.valid & p.in_pool(variants)[p.tv] & np.isin(p.step, np.asarray(steps)))
    m = np.int64(len(p.tv_task))  # (task, variant) indices are below this
    tex, tv, group = p.tex[rows].astype(np.int64), p.tv[rows].astype(np.int64), p.group[rows].astype(np.int64)
    within = _same_answer_share(group * m + tv, tex * m + tv, tex)
    at = p.step[rows] == step
    across = _same_answer_share(group[at], tex[at], tex[at])
    return within, across


def _same_answer_share(answer_key: np.ndarray, unit: np.ndarray, unit_tex: np.ndarray) -> float:
    """Per unit (answers of one answer key are one answer in one unit), the share of its pairs of
    predictions that agree, averaged per test input, then over test inputs; NaN when no unit has
    two predictions."""
    _, first, c = np.unique(answer_key, return_index=True, return_counts=True)
    units, u_first, u_inv, n = np.unique(unit, return_index=True, return_inverse=True, return_counts=True)
    same = np.bincount(u_inv[first], weights=c * (c - 1.0), minlength=len(units))
    ok = n >= 2
    if not ok.any():
        return float("nan")
    share = same[ok] / (n[ok] * (n[ok] - 1.0))
    _, t_inv = np.unique(unit_tex[u_first][ok], return_inverse=True)
    return float((np.bincount(t_inv, weights=share) / np.bincount(t_inv)).mean())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``scores`` for boolean ``labels`` (NaN when either side is empty)."""
    labels = np.asarray(labels, dtype=bool)
    pairs = pair_counts(np.asarray(scores, dtype=np.float64), labels, np.zeros(len(labels), dtype=np.int64), 1)
    return float(task_auroc(pairs, np.array([labels.sum()]), np.array([(~labels).sum()]))[0])


def pair_counts(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``C[g, h]``: over the right predictions of group ``g`` and the wrong ones of group ``h``, the
    pairs the scores order correctly (a tie counts half).

    Any re-weighting of whole groups -- a bootstrap over tasks -- then needs only this matrix:
    see ``task_auroc``. Built in one pass over the predictions sorted by score: a right
    prediction's row is the running count of wrong ones per group below it (plus half of those
    tied with it), i.e. half the counts before and after its run of tied scores. The pass goes
    in blocks whose per-position running counts are one cumulative sum, and a block's right
    predictions are summed per group (``reduceat``), so the cost is O(predictions x groups)
    numpy work with no Python loop over groups or predictions.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=bool)
    n = len(scores)
    out = np.zeros((n_groups, n_groups))
    if not labels.any() or labels.all():
        return out
    order = np.argsort(scores, kind="stable")
    x, wrong, g = scores[order], ~labels[order], np.asarray(groups)[order].astype(np.intp)
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(x[1:], x[:-1], out=new_run[1:])
    starts = np.flatnonzero(new_run)
    run = np.cumsum(new_run) - 1
    right = np.flatnonzero(~wrong)
    # Two queries per right prediction: the running counts at the start and at the end of its tie run.
    q_pos = np.concatenate([starts[run[right]], np.append(starts[1:], n)[run[right]]])
    q_group = np.concatenate([g[right], g[right]])
    by_pos = np.argsort(q_pos, kind="stable")
    q_pos, q_group = q_pos[by_pos], q_group[by_pos]
    block = max(16, _PAIR_BLOCK_CELLS // max(n_groups, 1))
    block_starts = np.arange(0, n + 1, block)
    q_bounds = np.append(np.searchsorted(q_pos, block_starts), len(q_pos))
    below = np.zeros(n_groups)  # wrong predictions per group before the current block
    for i, a in enumerate(block_starts):
        b = min(a + block, n)
        counts = np.zeros((b - a + 1, n_groups), dtype=np.int32)  # row j: wrong ones per group in [a, a + j)
        w = np.flatnonzero(wrong[a:b])
        counts[w + 1, g[a + w]] = 1
        np.cumsum(counts, axis=0, out=counts)
        qa, qb = q_bounds[i], q_bounds[i + 1]
        if qb > qa:
            by_group = np.argsort(q_group[qa:qb], kind="stable")
            qg = q_group[qa:qb][by_group]
            heads = np.flatnonzero(np.r_[True, qg[1:] != qg[:-1]])
            in_block = np.add.reduceat(counts[q_pos[qa:qb][by_group] - a], heads, axis=0, dtype=np.int64)
            n_queries = np.diff(np.append(heads, len(qg)))
            out[qg[heads]] += in_block + n_queries[:, None] * below
        below += counts[-1]
    return out / 2.0


def task_auroc(pairs: np.ndarray, n_right: np.ndarray, n_wrong: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """AUROC with every group weighted (``weights``: (B, groups), default one row of ones): the
    weighted share of correctly ordered (right, wrong) pairs, from ``pair_counts``. NaN where a
    side has no weight."""
    w = np.ones((1, len(n_right))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    return _ratio(np.einsum("bg,gh,bh->b", w, pairs, w), (w @ n_right) * (w @ n_wrong))


def within_counts(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the (right, wrong) pairs *inside* it that the scores order correctly (ties half),
    and all its (right, wrong) pairs. Vectorised: one sort of (group, score rank) keys."""
    _, rank = np.unique(scores, return_inverse=True)
    n_ranks = int(rank.max(initial=-1)) + 1
    key = groups.astype(np.int64) * n_ranks + rank
    wrong_keys = np.sort(key[~labels])
    right_keys, right_g = key[labels], groups[labels].astype(np.int64)
    start = np.searchsorted(wrong_keys, right_g * n_ranks, side="left")  # the group's first wrong key
    ahead = (np.searchsorted(wrong_keys, right_keys, side="left") + np.searchsorted(wrong_keys, right_keys, side="right")) / 2.0
    ordered = np.bincount(right_g, weights=ahead - start, minlength=n_groups)
    n_right = np.bincount(groups, weights=labels, minlength=n_groups)
    n_wrong = np.bincount(groups, weights=~labels, minlength=n_groups)
    return ordered, n_right * n_wrong


def _rows(prepared: Any, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted-prediction indices of ``step``'s scorable predictions and whether each is right."""
    p = prepared
    rows = p.step_rows(int(step))
    rows = rows[p.g_known[p.group[rows]]]
    return rows, p.g_correct[p.group[rows]]


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if not len(boot):
        return float("nan"), float("nan")
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def signal_quality(prepared: Any, steps: Any = None, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                   jobs: int = 1) -> Any:
    """One row per (ACT step, signal): predictions, share right, AUROC within a test input and pooled
    [each with a bootstrap CI over tasks], mean signal on right / wrong predictions.

    ``steps``: the ACT steps to measure (default every recorded one). The intervals resample
    tasks with replacement (the same draws for every step and signal, so rows compare); a task
    drawn k times weighs k in the within-input AUROC and counts as k copies in the pooled one.
    The pooled interval is NaN above ``POOLED_CI_CELLS`` predictions x tasks. ``jobs`` threads
    share the (step, signal) rows: the sorts and cumulative sums release the GIL, and at ARC
    scale each row's pooled pair count takes about a second.
    """
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    p = prepared
    steps = list(p.steps if steps is None else steps)
    tests = p.tests
    test_task = tests["task"].to_numpy().astype(np.int64)
    n_tasks = int(test_task.max()) + 1 if len(tests) else 0
    scored = np.unique(test_task[tests["known"].to_numpy()])
    task_w = None
    if n_boot and len(scored):
        draws = scored[np.random.default_rng(seed).integers(0, len(scored), size=(n_boot, len(scored)))]
        task_w = np.stack([np.bincount(d, minlength=n_tasks) for d in draws]).astype(np.float64)  # (B, tasks)

    def step_data(s: int) -> dict[str, Any]:
        rows, right = _rows(p, s)
        tex = p.tex[rows].astype(np.int64)
        task = test_task[tex]
        return {"step": int(s), "rows": rows, "right": right, "tex": tex, "task": task,
                "n_right": np.bincount(task, weights=right, minlength=n_tasks),
                "n_wrong": np.bincount(task, weights=~right, minlength=n_tasks)}

    def row(d: dict[str, Any], name: str) -> dict[str, Any]:
        rows, right, task = d["rows"], d["right"], d["task"]
        x = signal_values(p, rows, name)
        ordered, pairs_in = within_counts(x, right, d["tex"], len(tests))
        ordered_t = np.bincount(test_task, weights=ordered, minlength=n_tasks)  # per task
        pairs_t = np.bincount(test_task, weights=pairs_in, minlength=n_tasks)
        within = float(_ratio(ordered_t.sum(keepdims=True), pairs_t.sum(keepdims=True))[0])
        pooled = auroc(x, right)
        lo = hi = plo = phi = float("nan")
        if task_w is not None:
            lo, hi = _interval(_ratio(task_w @ ordered_t, task_w @ pairs_t), level)
            if len(rows) * n_tasks <= POOLED_CI_CELLS:
                pair_matrix = pair_counts(x, right, task, n_tasks)
                plo, phi = _interval(task_auroc(pair_matrix, d["n_right"], d["n_wrong"], task_w), level)
        return {
            "step": d["step"], "signal": name, "predictions": int(len(rows)),
            "right": float(right.mean()) if len(rows) else float("nan"),
            "auroc": within, "ci_low": lo, "ci_high": hi, "pairs": int(pairs_t.sum()),
            "pooled_auroc": pooled, "pooled_ci_low": plo, "pooled_ci_high": phi,
            "mean_right": float(x[right].mean()) if right.any() else float("nan"),
            "mean_wrong": float(x[~right].mean()) if (~right).any() else float("nan"),
        }

    specs = [(d, name) for d in map(step_data, steps) for name in SIGNALS]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        rows_out = list(pool.map(lambda spec: row(*spec), specs))
    return pl.DataFrame(rows_out)


def calibration(prepared: Any, step: int, n_bins: int = CALIBRATION_BINS) -> Any:
    """Predictions of ``step`` in ``n_bins`` equal-count bins by sigmoid(q_halt) (lowest first): the
    range, mean sigmoid(q_halt) and share right of each.

    Equal counts rather than fixed edges because a trained head can crowd its outputs near 1
    (augment-kinds-12k's full-recipe run: 97% above 0.9), where fixed bins would show one row;
    ties may straddle two bins (stable order), which moves a count by at most the tie's size.
    """
    import polars as pl

    p = prepared
    rows, right = _rows(p, step)
    q = p.q[rows]
    order = np.argsort(q, kind="stable")
    qs, rs = q[order], right[order]
    b = np.arange(len(q)) * n_bins // max(len(q), 1)  # bin of each sorted prediction: contiguous runs
    n = np.bincount(b, minlength=n_bins)
    keep = n > 0
    first = (np.cumsum(n) - n)[keep]  # where each non-empty bin starts in the sorted order
    return pl.DataFrame({
        "step": np.full(int(keep.sum()), int(step)), "bin": np.arange(n_bins)[keep], "q_low": qs[first],
        "q_high": qs[first + n[keep] - 1], "predictions": n[keep],
        "mean_q": np.bincount(b, weights=qs, minlength=n_bins)[keep] / n[keep],
        "right": np.bincount(b, weights=rs, minlength=n_bins)[keep] / n[keep],
    })
