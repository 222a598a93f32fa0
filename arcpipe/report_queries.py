"""Vote queries over one cached inference, the unit every report table is built from.

``Queries`` wraps a ``vote.Prepared`` (inverse transforms and answer hashes done once) and
memoises ``vote.rank`` + ``vote.scores`` by (rule, n_aug, step, seed, top, variant pool), so the
many tables of a report that ask the same question of one inference pay for it once. The
helpers here turn those queries into per-task score arrays in a fixed task order, which is what
the paired statistics of ``arcpipe.stats`` need: every table compares runs task by task.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from arcpipe.errors import ArcpipeError
from arcpipe.runs import Run
from arcpipe.stats import bootstrap_ci

METRICS = ("pass@1", "pass@2", "oracle")


def default_points(max_n: int) -> list[int]:
    """1, 2, 4, ... up to and including ``max_n``."""
    pts = [1 << i for i in range(max(1, int(max_n).bit_length())) if (1 << i) < max_n]
    return pts + [int(max_n)]


class Queries:
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


def query_jobs() -> int:
    """Threads for a batch of vote queries (and the signal bootstraps): the CPUs this process may
    use (its affinity mask, which a scheduler or ``taskset`` may narrow), at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def subsample_scores(q: Queries, rules: Sequence[str], points: Sequence[int], max_n: int, seeds: int,
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
    with ThreadPoolExecutor(query_jobs()) as pool:
        results = list(pool.map(lambda sp: per_task(q.query(sp[0], sp[1], step, sp[2], top, variants)[1], task_ids),
                                specs))
    acc: dict[tuple[str, int], list[dict[str, np.ndarray]]] = {}
    for (rule, n, _), pt in zip(specs, results):
        acc.setdefault((rule, n), []).append(pt)
    return {k: {m: np.mean([pt[m] for pt in pts], axis=0) for m in METRICS} | {"subsamples": len(pts)}
            for k, pts in acc.items()}


def n_aug_curves(q: Queries, rules: Sequence[str], points: Sequence[int], max_n: int, seeds: int, step: int | None,
                 top: int, task_ids: Sequence[str]) -> Any:
    """The n_aug sweep: one row per (rule, n_aug, metric) with the seed-mean score and its bootstrap CI."""
    import polars as pl

    rows, mats = [], []
    for (rule, n), sc in subsample_scores(q, rules, points, max_n, seeds, step, top, task_ids).items():
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


def variant_pools(q: Queries, rules: Sequence[str], step: int | None, top: int, task_ids: Sequence[str], seeds: int) -> Any:
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


def prepared_info(prepared: Any) -> dict:
    """Scored task ids (known outputs, sorted), cached variants per task and recorded ACT steps of a ``vote.Prepared``."""
    tests = prepared.tests
    known = tests["known"].to_numpy()
    task_ids = sorted(set(tests["task_id"].to_numpy()[known].tolist()))
    if not task_ids:
        raise ArcpipeError(f"{getattr(prepared.stage, 'path', 'predictions')}: no test input has a known output; nothing to report")
    return {"task_ids": task_ids, "n_aug": int(prepared.variants_per_task.max(initial=0)),
            "steps": [int(s) for s in prepared.steps]}


def seed_mean(queries: Sequence[Queries], group: Sequence[int], rule: str, step: int | None, top: int,
              task_ids: Sequence[str]) -> tuple[np.ndarray, float, np.ndarray]:
    """Per-task pass@2 of the ``group`` runs (one setting, several training seeds) averaged over the
    seeds, their mean oracle, and the per-run pass@2 it averages, (runs, tasks), which the
    seed-resampled intervals draw from; every cached variant voted."""
    pts = [queries[i].all_variants(rule, step, top, task_ids) for i in group]
    per_run = np.stack([pt["pass@2"] for pt in pts])
    return per_run.mean(axis=0), float(np.mean([pt["oracle"] for pt in pts], axis=0).mean()), per_run


def train_means(runs: Sequence[Run], group: Sequence[int]) -> dict[str, float | None]:
    """``Run.train_summary`` averaged over the ``group`` runs (None when a run lacks a figure)."""
    summ = [runs[i].train_summary() for i in group]
    return {k: (float(np.mean([x[k] for x in summ])) if all(x[k] is not None for x in summ) else None)
            for k in ("params", "train_exact", "train_s", "train_samples", "train_flops")}
