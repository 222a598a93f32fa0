"""The report's ACT-segments section: which of a model's segments should answer, and vote.

Every default inference records each ACT segment a model was trained to run (``infer --steps``
adds segments past training), so a report can ask of any multi-segment arm, from cached
predictions alone: does a later segment answer better than the trained one (the HRM paper's
inference-time scaling), do the segments' answers voted together beat the last alone, and is a
segment's answer worth a fresh variant's as a vote? Differences are paired within each run
(the same model and variants, only the segments differ), so the training seed's large effect
cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from arcpipe import signals
from arcpipe.report_queries import Queries, per_task, pool_counts, subsample_scores
from arcpipe.runs import Run
from arcpipe.stats import bootstrap_ci, paired_effects, seed_bootstrap_ci


def trained_steps(run: Run) -> int | None:
    """The ACT segments a run's model was trained to run (its ``halt_max_steps``)."""
    return None if run.train is None else run.train.config.get("model", {}).get("halt_max_steps")


def _finite_means(values: np.ndarray) -> list[float | None]:
    """Each column's mean over its finite entries (None when it has none): runs whose test inputs
    gave no pair to compare drop out of an agreement mean instead of voiding it."""
    return [float(col[np.isfinite(col)].mean()) if np.isfinite(col).any() else None for col in values.T]


def _voting_pools(queries: Sequence[Queries], group: Sequence[int]) -> dict[str, list[int]]:
    """The variant pools an arm's rows are given for, each with its runs' variant counts: every
    variant; then the trained ones alone where every run's plan voted untrained variants beside
    them (``pool_counts``), since those can outnumber the trained ones and drown what they show."""
    counts = [pool_counts(queries[i].prepared) for i in group]
    pools = {"all": [queries[i].info["n_aug"] for i in group]}
    if all(counts):
        pools["trained"] = [c[0] for c in counts]
    return pools


def _contrast(arms: Sequence[np.ndarray], weights: Sequence[float]) -> dict[str, Any]:
    """One paired difference, the ``weights``-signed sum of ``arms`` (each (runs, tasks) of
    per-task pass@2 or its change, runs averaged per task): its columns over tasks
    (``paired_effects``) and with the runs resampled too (``seed_bootstrap_ci``)."""
    per_task = sum(w * a.mean(axis=0) for a, w in zip(arms, weights))
    eff = paired_effects(per_task[None])
    lo, hi = seed_bootstrap_ci(list(arms), np.array([weights], dtype=float))
    return {**{key: v[0].item() for key, v in eff.items()}, "delta_seeds_low": float(lo[0]), "delta_seeds_high": float(hi[0])}


def refinement_arms(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, varying: Sequence[str],
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
        ks = {trained_steps(runs[i]) for i in group}
        steps = sorted(set.intersection(*(set(queries[i].info["steps"]) for i in group)))
        k = ks.pop() if len(ks) == 1 else None
        if k is not None and k in steps and len(steps) > 1:
            out[values] = (", ".join(f"{f}={v}" for f, v in zip(varying, values)) or "all runs", group, k, steps)
    return out


def refinement_tables(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, varying: Sequence[str], rule: str,
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
        voting = _voting_pools(queries, group)
        for pool, s in ((v, s) for v in voting for s in [*steps, *dict.fromkeys(p for p in pools if len(p) > 1)]):
            p2 = np.mean([score(i, s, pool) for i in group], axis=0)
            # how alike the answers voting together are: two steps of one variant, two variants at step k
            agree = [None, None] if isinstance(s, int) else _finite_means(
                np.array([signals.answer_agreement(queries[i].prepared, s, k, pool) for i in group]))
            rows.append({"arm": label, "variants": pool, "trained_steps": k, "step": s if isinstance(s, int) else None,
                         "pooled": None if isinstance(s, int) else f"{s[0]}-{s[-1]}", "runs": len(group), "rule": rule,
                         "pass@2": float(p2.mean()), **_contrast([gains(group, k, s, pool)], [1.0]),
                         "agree_steps": agree[0], "agree_variants": agree[1]})
    if not rows:
        return None
    vs_main = []
    main_key = tuple(runs[main_i].factor(f) for f in varying)
    main_label, main_group, main_k, main_steps = per_arm.get(main_key, (None, [], 0, []))
    for label, group, k, steps in (v for key, v in per_arm.items() if key != main_key and main_group):
        for s in (s for s in steps if s in main_steps and s > max(k, main_k)):
            vs_main.append({"arm": label, "main": main_label, "step": s, "rule": rule,
                            **_contrast([gains(group, k, s), gains(main_group, main_k, s)], [1.0, -1.0])})
    return pl.DataFrame(rows), (pl.DataFrame(vs_main) if vs_main else None)


_VS_ALONE = ("vs_alone_n_aug", "delta", "delta_ci_low", "delta_ci_high", "better", "worse", "delta_seeds_low",
             "delta_seeds_high")  # refinement_votes' contrast columns, null where no row of equal votes exists


def refinement_votes(runs: Sequence[Run], queries: Sequence[Queries], main_i: int, varying: Sequence[str], rule: str,
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
        for pool, own in _voting_pools(queries, group).items():
            ns = sorted({p for p in points if p < min(own)} | {min(own)})
            alone = {}
            for s in (k, trained):
                per_run = [subsample_scores(queries[i], [rule], ns, n_own, seeds, s, top, task_ids, pool)
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
                        row |= {"vs_alone_n_aug": n * width, **_contrast([runs_p2 - alone[n * width]], [1.0])}
                    rows.append(row)
                    mats.append(runs_p2.mean(axis=0))
    if not rows:
        return None
    lo, hi = bootstrap_ci(np.stack(mats))
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))
