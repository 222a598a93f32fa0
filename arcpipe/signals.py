"""Do the model's confidence signals know when a prediction is right?

Every voting rule but ``count`` ranks answers by a per-prediction signal:
sigmoid(q_halt) (``hrm`` to break ties, ``q-mean``, ``q-max``) or the summed
token log-probability (``logprob``). HRM trains its Q head with a BCE target
that is exactly "this step's prediction is right", and its adaptive halting
stops on that head, so how well the signal separates right from wrong
predictions is the question behind both the rules' ranking and ACT. This
module measures it on cached predictions (no re-inference):

- ``auroc``: the chance that a right prediction scores above a wrong one
  (0.5 = the signal says nothing, 1 = it separates them perfectly), with
  ties counted half -- the Mann-Whitney statistic. ``pair_counts`` splits
  its pair count by the tasks on either side, so a bootstrap over tasks
  (``task_auroc``) re-weights a tasks x tasks matrix instead of re-sorting
  predictions per draw.
- ``signal_quality``: per ACT step and signal, that AUROC with a 95%
  bootstrap interval over tasks (predictions of one task are not
  independent), the share of predictions that are right and the mean signal
  on each side.
- ``calibration``: predictions in equal-count bins by sigmoid(q_halt), the
  share right in each -- a calibrated head has it match the mean sigmoid.

A prediction is one (test input, variant, ACT step) output, inverse-transformed
to the task's frame; only non-empty predictions of test inputs with a known
output count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Signals measured: name -> the ``vote.Prepared`` array holding it (per sorted prediction).
SIGNALS = {"q_halt": "q", "logprob": "logprob"}
#: Equal-count bins of sigmoid(q_halt) in the calibration table.
CALIBRATION_BINS = 5


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``scores`` for boolean ``labels`` (NaN when either side is empty)."""
    labels = np.asarray(labels, dtype=bool)
    pairs = pair_counts(np.asarray(scores, dtype=np.float64), labels, np.zeros(len(labels), dtype=np.int64), 1)
    return float(task_auroc(pairs, np.array([labels.sum()]), np.array([(~labels).sum()]))[0])


def pair_counts(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``C[g, h]``: over the right predictions of group ``g`` and the wrong ones of group ``h``, the
    pairs the scores order correctly (a tie counts half).

    Any re-weighting of whole groups -- a bootstrap over tasks -- then needs only this matrix:
    see ``task_auroc``. One sorted search per group with wrong predictions, so the cost grows
    with the number of tasks, not with the number of bootstrap draws.
    """
    right_x, right_g = scores[labels], groups[labels]
    out = np.zeros((n_groups, n_groups))
    wrong = ~labels
    for h in np.unique(groups[wrong]):
        neg = np.sort(scores[wrong & (groups == h)])
        ahead = np.searchsorted(neg, right_x, side="left") + np.searchsorted(neg, right_x, side="right")
        out[:, h] = np.bincount(right_g, weights=ahead / 2.0, minlength=n_groups)
    return out


def task_auroc(pairs: np.ndarray, n_right: np.ndarray, n_wrong: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """AUROC with every group weighted (``weights``: (B, groups), default one row of ones): the
    weighted share of correctly ordered (right, wrong) pairs, from ``pair_counts``. NaN where a
    side has no weight."""
    w = np.ones((1, len(n_right))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    num = np.einsum("bg,gh,bh->b", w, pairs, w)
    den = (w @ n_right) * (w @ n_wrong)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _rows(prepared: Any, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted-prediction indices of ``step``'s scorable predictions, whether each is right, and its task index."""
    p = prepared
    rows = p.step_rows(int(step))
    rows = rows[p.g_known[p.group[rows]]]
    task = p.tests["task"].to_numpy()[p.tex[rows]]
    return rows, p.g_correct[p.group[rows]], task


def signal_quality(prepared: Any, steps: Any = None, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Any:
    """One row per (ACT step, signal): predictions, share right, AUROC [bootstrap CI over tasks], mean signal right / wrong.

    ``steps``: the ACT steps to measure (default every recorded one). The interval resamples
    tasks with replacement (the same draws for every step and signal, so rows compare).
    """
    import polars as pl

    p = prepared
    steps = list(p.steps if steps is None else steps)
    tests = p.tests
    n_tasks = int(tests["task"].max()) + 1 if len(tests) else 0
    scored = np.unique(tests["task"].to_numpy()[tests["known"].to_numpy()])
    draws = scored[np.random.default_rng(seed).integers(0, len(scored), size=(n_boot, len(scored)))] if len(scored) else None
    task_w = np.stack([np.bincount(d, minlength=n_tasks) for d in draws]).astype(np.float64) if draws is not None and n_boot else None
    rows_out = []
    for s in steps:
        rows, right, task = _rows(p, s)
        n_right = np.bincount(task, weights=right, minlength=n_tasks)
        n_wrong = np.bincount(task, weights=~right, minlength=n_tasks)
        for name, attr in SIGNALS.items():
            x = getattr(p, attr)[rows]
            pairs = pair_counts(x, right, task, n_tasks)
            a = float(task_auroc(pairs, n_right, n_wrong)[0])
            lo = hi = float("nan")
            if task_w is not None:
                boot = task_auroc(pairs, n_right, n_wrong, task_w)
                boot = boot[np.isfinite(boot)]
                if len(boot):
                    lo, hi = (float(v) for v in np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]))
            rows_out.append({
                "step": int(s), "signal": name, "predictions": int(len(rows)),
                "right": float(right.mean()) if len(rows) else float("nan"), "auroc": a, "ci_low": lo, "ci_high": hi,
                "mean_right": float(x[right].mean()) if right.any() else float("nan"),
                "mean_wrong": float(x[~right].mean()) if (~right).any() else float("nan"),
            })
    return pl.DataFrame(rows_out)


def calibration(prepared: Any, step: int, n_bins: int = CALIBRATION_BINS) -> Any:
    """Predictions of ``step`` in ``n_bins`` equal-count bins by sigmoid(q_halt) (lowest first): the
    range, mean sigmoid(q_halt) and share right of each.

    Equal counts rather than fixed edges because a trained head crowds its outputs near 1
    (all but a few predictions above 0.9 on the CPU runs), where fixed bins would show one row;
    ties may straddle two bins (stable order), which moves a count by at most the tie's size.
    """
    import polars as pl

    p = prepared
    rows, right, _ = _rows(p, step)
    q = p.q[rows]
    order = np.argsort(q, kind="stable")
    b = np.empty(len(q), dtype=np.int64)
    b[order] = np.arange(len(q)) * n_bins // max(len(q), 1)
    n = np.bincount(b, minlength=n_bins)
    hits = np.bincount(b, weights=right, minlength=n_bins)
    qsum = np.bincount(b, weights=q, minlength=n_bins)
    keep = n > 0
    lo = np.array([q[b == i].min() if k else np.nan for i, k in enumerate(keep)])
    hi = np.array([q[b == i].max() if k else np.nan for i, k in enumerate(keep)])
    return pl.DataFrame({
        "step": np.full(int(keep.sum()), int(step)), "bin": np.arange(n_bins)[keep], "q_low": lo[keep], "q_high": hi[keep],
        "predictions": n[keep], "mean_q": qsum[keep] / n[keep], "right": hits[keep] / n[keep],
    })
