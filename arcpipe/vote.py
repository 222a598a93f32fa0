"""Vote: turn cached per-variant predictions into ranked answers, scores and a submission.

Inference runs once over every cached variant; every n_aug / rule / top-k /
ACT-step ablation is then a query over the cached tables (DESIGN.md "Voting").
So the work is split in two:

* ``prepare(infer_stage)`` does the expensive part once: it maps every
  prediction back to the original task frame (inverse colour map, inverse
  dihedral) and reduces it to a 64-bit answer id, looks up the true output of
  each test input and marks which answer ids are right. No Python loop runs
  per prediction or per cell: cells are processed as one ragged array (in
  cache-sized chunks) through a per-(dihedral, h, w) position table.
* ``rank(prepared, ...)`` / ``scores(ranked, prepared)`` answer one query
  with segment reductions over predictions pre-sorted by (test input, answer),
  so a report sweep can call them thousands of times.

Answer ids. For a grid G in the original frame (shape h0 x w0) let
``S[c] = sum of A[i, j] over the cells of colour c`` with A a fixed table of
random 43-bit integers (sums of <= 900 of them are exact in float64, so the
order cells are visited in does not matter); the id is
``sum_c X[c] * S[c] + Y[h0, w0]`` (mod 2^64) with random odd 64-bit ``X``,
``Y``. Because S is computed per *variant* colour and the colour inverse is
applied afterwards to the 10 sums of a row (``S_orig[c] = S_var[perm[c]]``),
the per-cell work is one table gather and one bincount. Two different
answers collide with probability ~2^-43; the answers that end up in a
submission are re-materialised with ``transforms.inverse_augment_grid`` and
compared cell by cell with the truth before anything is written.

Ranking and tie-break (documented contract). A rule returns key columns,
higher is better, compared left to right. Ties on the rule's keys are broken
by: more votes (count), then higher mean sigmoid(q_halt), then the smallest
variant that produced the answer (variant 0 = identity first). Within one
test input and one ACT step every variant gives one prediction, so the last
key is unique and the order is total and independent of row order.
Empty predictions (a board whose crop is 0 x 0) are "no answer": they never
take an attempt slot and never count as votes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from arcpipe import cache, transforms
from arcpipe import steps as step_list
from arcpipe.errors import ArcpipeError

# --------------------------------------------------------------------------- answer ids

_HASH_RNG = np.random.default_rng(0x5EED_A4C)
#: A[pos] for pos = i * 30 + j in the original frame: exact integers < 2^43 as float64.
_A = _HASH_RNG.integers(1, 2**43, size=transforms.MAX_SIDE * transforms.MAX_SIDE).astype(np.float64)
#: Per-colour multipliers (odd, so no information is lost mod 2^64).
_X = (_HASH_RNG.integers(0, 2**63, size=transforms.NUM_COLOURS, dtype=np.int64).astype(np.uint64) << np.uint64(1)) | np.uint64(1)
#: Shape term, indexed h0 * 31 + w0.
_Y = _HASH_RNG.integers(0, 2**63, size=(transforms.MAX_SIDE + 1) ** 2, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
_CHUNK_CELLS = 1 << 18

#: Which cached variants may vote. The reference recipe trains every variant it votes on; a
#: plan with train_aug < n_aug votes variants whose puzzle identifier never received a gradient
#: (its embedding is still the zero init), and these pools tell the two kinds apart.
VARIANT_POOLS = {
    "all": "every cached variant",
    "trained": "variants whose puzzle identifier was trained (variant < train_aug)",
    "untrained": "only the others (an untrained, zero puzzle embedding)",
}


def _position_table(tid: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(U, 900) float64: for variant-frame cell a*w+b of a (h, w) prediction made under
    forward dihedral ``tid``, the hash weight A of the original-frame cell it maps to.

    Built by asking ``transforms.dihedral_source`` where each original cell reads from,
    and scattering: the same map ``inverse_boards`` uses, so the two agree by construction.
    """
    u = len(tid)
    inv = transforms.DIHEDRAL_INVERSE[tid.astype(np.int64)].astype(np.int64)[:, None]
    hh, ww = h.astype(np.int64)[:, None], w.astype(np.int64)[:, None]
    h0, w0 = transforms.transformed_shape(hh, ww, inv)
    k = np.arange(transforms.MAX_SIDE**2, dtype=np.int64)[None, :]
    i0, j0 = k // transforms.MAX_SIDE, k % transforms.MAX_SIDE
    inside = (i0 < h0) & (j0 < w0)
    a, b = transforms.dihedral_source(inv, i0, j0, hh, ww)
    src = np.where(inside, a * ww + b, 0)
    table = np.zeros((u, transforms.MAX_SIDE**2), dtype=np.float64)
    rows = np.broadcast_to(np.arange(u)[:, None], src.shape)
    table[rows[inside], src[inside]] = np.broadcast_to(_A[None, :], src.shape)[inside]
    return table


def answer_ids(
    flat: np.ndarray, off: np.ndarray, h: np.ndarray, w: np.ndarray, tid: np.ndarray, perm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64-bit ids of N grids after mapping each back through its variant's inverse.

    Grid n is ``flat[off[n] : off[n] + h[n]*w[n]]`` (row-major, variant frame),
    produced by ``augment_grid(original, tid[n], perm[n])``. Returns
    ``(ids uint64, h0, w0)``: equal original-frame answers get equal ids.
    Pass ``tid = 0`` and identity perms to hash original grids (the truth).
    """
    n = len(off)
    off = np.asarray(off, dtype=np.int64)
    h = np.asarray(h, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    tid = np.asarray(tid, dtype=np.int64)
    perm = np.asarray(perm, dtype=np.uint8).reshape(n, transforms.NUM_COLOURS)
    h0, w0 = transforms.transformed_shape(h, w, transforms.DIHEDRAL_INVERSE[tid].astype(np.int64))
    size = h * w
    combo_key = (tid * 32 + h) * 32 + w
    combos, combo = np.unique(combo_key, return_inverse=True)
    table = _position_table(combos // 1024, (combos // 32) % 32, combos % 32).ravel()
    # S_var[n, c] = sum of A(original position) over cells of variant colour c.
    s_var = np.zeros((n, transforms.NUM_COLOURS), dtype=np.float64)
    cell_end = np.cumsum(size)
    contiguous = n == 0 or bool(np.all(off[1:] == off[:-1] + size[:-1]))
    total_cells = int(cell_end[-1]) if n else 0
    bounds = np.searchsorted(cell_end, np.arange(_CHUNK_CELLS, total_cells, _CHUNK_CELLS), side="left") + 1
    row_edges = np.unique(np.concatenate([[0], np.minimum(bounds, n), [n]]).astype(np.int64))
    arange = np.arange(int(size.max(initial=0)) * 2 + _CHUNK_CELLS, dtype=np.int64)
    for r0, r1 in zip(row_edges[:-1], row_edges[1:]):
        sz = size[r0:r1]
        total = int(sz.sum())
        if total == 0:
            continue
        first = np.cumsum(sz) - sz  # cell index of each row's first cell within the chunk
        # int32 repeats are several times cheaper than int64 ones; the sums below widen them.
        if contiguous:
            colours = flat[off[r0] : off[r0] + total]
        else:
            colours = flat[np.repeat((off[r0:r1] - first).astype(np.int64), sz) + arange[:total]]
        widx = np.repeat((combo[r0:r1] * transforms.MAX_SIDE**2 - first).astype(np.int32), sz) + arange[:total]
        # Widen to int64 in the add itself: bincount would otherwise copy an int32 index to intp.
        slot = np.add(np.repeat(np.arange(0, (r1 - r0) * transforms.NUM_COLOURS, transforms.NUM_COLOURS, dtype=np.int32), sz), colours, dtype=np.int64)
        s_var[r0:r1] = np.bincount(slot, weights=table[widx], minlength=(r1 - r0) * transforms.NUM_COLOURS).reshape(-1, transforms.NUM_COLOURS)
    # Colour inverse on the 10 sums: original colour c was variant colour perm[c].
    s_orig = np.take_along_axis(s_var, perm.astype(np.int64), axis=1).astype(np.uint64)
    with np.errstate(over="ignore"):
        ids = (s_orig * _X[None, :]).sum(axis=1, dtype=np.uint64) + _Y[np.clip(h0 * 31 + w0, 0, len(_Y) - 1)]
    return ids, h0, w0


# --------------------------------------------------------------------------- loading


def _perm_matrix(series: pl.Series, where: str) -> np.ndarray:
    """An (N, 10) uint8 array from a parquet Array/List column of permutations."""
    if isinstance(series.dtype, pl.List):
        series = series.list.to_array(transforms.NUM_COLOURS)
    arr = series.to_numpy()
    if arr.ndim != 2 or arr.shape[1] != transforms.NUM_COLOURS:
        raise ArcpipeError(f"{where}: 'perm' must hold {transforms.NUM_COLOURS} colours per row")
    return arr.astype(np.uint8)


def _perm_code(perm: np.ndarray) -> np.ndarray:
    return perm.astype(np.int64) @ (10 ** np.arange(transforms.NUM_COLOURS, dtype=np.int64))


def _grid(obj: Any, where: str) -> np.ndarray:
    """One ARC grid from JSON with a one-line error when it is not a rectangular 0..9 grid."""
    if not isinstance(obj, list) or not obj or not all(isinstance(r, list) for r in obj):
        raise ArcpipeError(f"{where}: not a grid (expected a non-empty list of rows)")
    widths = {len(r) for r in obj}
    if len(widths) != 1 or 0 in widths:
        raise ArcpipeError(f"{where}: non-rectangular grid (row lengths {sorted(widths)})")
    try:
        arr = np.array(obj, dtype=np.int64)
    except (TypeError, ValueError):
        raise ArcpipeError(f"{where}: grid cells must be integers 0..9") from None
    if arr.ndim != 2 or arr.min() < 0 or arr.max() > 9:
        raise ArcpipeError(f"{where}: grid cells must be integers 0..9")
    if max(arr.shape) > transforms.MAX_SIDE:
        raise ArcpipeError(f"{where}: grid {arr.shape[0]}x{arr.shape[1]} exceeds {transforms.MAX_SIDE}x{transforms.MAX_SIDE}")
    return arr.astype(np.uint8)


def _truth_from_tasks_json(obj: Any, where: str) -> dict[str, list[np.ndarray | None]]:
    """Test outputs (None when unknown) from ARC JSON task form ``{id: {"train", "test"}}``."""
    if not isinstance(obj, dict):
        raise ArcpipeError(f"{where}: expected a JSON object of tasks")
    out: dict[str, list[np.ndarray | None]] = {}
    for tid, task in obj.items():
        if not isinstance(task, dict) or not isinstance(task.get("test"), list):
            raise ArcpipeError(f"{where}: task {tid} has no 'test' list")
        out[tid] = [
            None if ex.get("output") is None else _grid(ex["output"], f"{where}: task {tid} test {i} output")
            for i, ex in enumerate(task["test"])
        ]
    return out


@dataclass
class Prepared:
    """Everything a query needs, computed once per infer stage.

    Prediction arrays are sorted by (test input, answer id, variant); ``gstart``
    marks where each (test input, answer) group starts.
    """

    stage: cache.Stage | None
    tests: pl.DataFrame  # one row per test input: tex, task_id, example, known, truth, task
    tex: np.ndarray  # per prediction (sorted)
    answer: np.ndarray  # uint64
    variant: np.ndarray
    step: np.ndarray
    q: np.ndarray  # sigmoid(q_halt), float64
    logprob: np.ndarray  # summed per-token log-prob, float64
    valid: np.ndarray  # non-empty prediction
    tv: np.ndarray  # (task, variant) index
    row: np.ndarray  # row in predictions.parquet
    gstart: np.ndarray  # group starts into the sorted arrays
    g_tex: np.ndarray
    g_answer: np.ndarray
    g_correct: np.ndarray  # bool (False when the truth is unknown)
    g_known: np.ndarray
    tv_task: np.ndarray
    tv_variant: np.ndarray
    variants_per_task: np.ndarray
    steps: tuple[int, ...]
    table: pl.DataFrame  # the raw predictions (for materialising answers)
    preds: np.ndarray
    group: np.ndarray = field(default=None, repr=False)  # group index of each (sorted) prediction
    _seed_ranks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _step_rows: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _step_seed_ranks: dict[tuple[int, int, str], np.ndarray] = field(default_factory=dict, repr=False)
    #: Variants per task whose puzzle identifier the checkpoint was trained on (variant < train_aug);
    #: None when the stage does not say (a bare predictions table).
    train_aug: int | None = None

    def step_rows(self, step: int) -> np.ndarray:
        """Sorted-row indices of the non-empty predictions of one ACT step (cached)."""
        if step not in self._step_rows:
            self._step_rows[step] = np.flatnonzero(self.valid & (self.step == step))
        return self._step_rows[step]

    def step_variant_rank(self, step: int, seed: int, variants: str = "all") -> np.ndarray:
        """Each row of ``step_rows(step)``: its variant's rank within the ``variants`` pool
        (``pool_rank``); rows outside the pool get a rank no n_aug reaches. Cached: a query is then one compare."""
        k = (step, seed, variants)
        if k not in self._step_seed_ranks:
            self._step_seed_ranks[k] = self.pool_rank(seed, variants)[self.tv[self.step_rows(step)]]
        return self._step_seed_ranks[k]

    def in_pool(self, variants: str) -> np.ndarray:
        """Mask over (task, variant): which variants the ``variants`` pool lets vote (see VARIANT_POOLS)."""
        if variants not in VARIANT_POOLS:
            raise ArcpipeError(f"unknown variant pool '{variants}'; known: {', '.join(VARIANT_POOLS)}")
        if variants == "all":
            return np.ones(len(self.tv_variant), dtype=bool)
        if self.train_aug is None:
            raise ArcpipeError(f"variants='{variants}' needs the number of trained variants, but these predictions' "
                               "augment stage records no train_aug")
        trained = self.tv_variant < self.train_aug
        return trained if variants == "trained" else ~trained

    def pool_sizes(self, variants: str = "all") -> np.ndarray:
        """Variants per task in the ``variants`` pool (cached ones only)."""
        if variants == "all":
            return self.variants_per_task
        return np.bincount(self.tv_task[self.in_pool(variants)], minlength=len(self.variants_per_task))

    def pool_rank(self, seed: int, variants: str = "all") -> np.ndarray:
        """Rank of every (task, variant) among its task's ``variants`` pool in the ``variant_rank(seed)``
        order (so pools keep the nested-subset property); int32 max outside the pool."""
        rank = self.variant_rank(seed)
        if variants == "all":
            return rank.astype(np.int32)
        inp = self.in_pool(variants)
        order = np.lexsort((rank, self.tv_task))  # by task, then seeded rank
        m = inp[order].astype(np.int64)
        before = np.cumsum(m) - m  # pool members ahead of each entry, over all tasks
        task_start = np.searchsorted(self.tv_task[order], np.arange(len(self.variants_per_task)))
        out = np.full(len(rank), np.iinfo(np.int32).max, dtype=np.int32)
        out[order] = np.where(m > 0, before - before[task_start[self.tv_task[order]]], np.iinfo(np.int32).max)
        return out

    def variant_rank(self, seed: int) -> np.ndarray:
        """Rank of every (task, variant) in a seeded random order within its task, variant 0 first.

        Cached per seed, so n_aug sweeps with one seed use nested subsets
        (the 10 variants of n_aug=10 are among the 100 of n_aug=100).
        """
        if seed not in self._seed_ranks:
            keys = np.random.default_rng(seed).random(len(self.tv_task))
            keys[self.tv_variant == 0] = -1.0
            # One float sort: task index + a key in [0, 0.98); tv_task is already sorted.
            order = np.argsort(self.tv_task + (keys + 1.0) * 0.49, kind="stable")
            task_start = np.searchsorted(self.tv_task, np.arange(len(self.variants_per_task)))
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order)) - task_start[self.tv_task[order]]
            self._seed_ranks[seed] = rank
        return self._seed_ranks[seed]


_PRED_COLUMNS = ("task_id", "example", "variant", "dihedral", "perm", "step", "pred_off", "pred_h", "pred_w", "q_halt", "logprob_sum")
# Type families each required column must have: a hand-edited table with e.g. string offsets or
# float transform ids would otherwise fail deep inside numpy with a traceback, or be silently truncated.
_PREDICTION_KINDS: dict[str, Callable[[Any], bool]] = {
    "task_id": lambda t: t == pl.String,
    **{c: lambda t: t.is_integer() for c in ("example", "variant", "dihedral", "step", "pred_off", "pred_h", "pred_w")},
    "perm": lambda t: isinstance(t, (pl.Array, pl.List)) and t.inner.is_integer(),
    **{c: lambda t: t.is_float() for c in ("q_halt", "logprob_sum")},
}


def _augment_stage_of(stage: cache.Stage) -> cache.Stage:
    key = stage.inputs.get("augment")
    if not key:
        raise ArcpipeError(f"{stage.path}: manifest names no 'augment' input; cannot find the true outputs")
    root = stage.path.parent.parent
    aug_path = root / "augment" / str(key)
    if not (aug_path / cache.MANIFEST).is_file():
        raise ArcpipeError(f"{stage.path}: its augment stage {key} is not in cache {root} (predictions from another cache or dataset?)")
    aug = cache.load_stage(aug_path, "augment")
    if aug.key != key:
        raise ArcpipeError(f"{aug_path}: hash mismatch: manifest key {aug.key} but the infer stage expects {key}")
    return aug


def _read_plan(aug: cache.Stage) -> pl.DataFrame | None:
    """The augment plan's test rows (task_id, variant, dihedral, perm), if the stage has a plan."""
    plan_path = aug.path / "plan.parquet"
    if not plan_path.is_file():
        return None
    plan = pl.read_parquet(plan_path, columns=["task_id", "variant", "split", "dihedral", "perm"])
    return plan.filter(pl.col("split") == "test")


def _check_against_plan(where: str, plan: pl.DataFrame, tmap: dict[str, int], tv_uniq: np.ndarray, vmax: int, tv: np.ndarray,
                        task_ids: pl.Series, variant: np.ndarray, tid: np.ndarray, perm: np.ndarray) -> None:
    """Every prediction must use exactly the transform the augment plan gave its (task, variant):
    predictions from another dataset or augment seed fail here ("hash mismatch")."""
    p_task = plan["task_id"].replace_strict(tmap, default=-1, return_dtype=pl.Int64).to_numpy()
    p_var = plan["variant"].to_numpy().astype(np.int64)
    ok = (p_task >= 0) & (p_var < vmax)
    p_key = p_task * vmax + p_var
    pos = np.clip(np.searchsorted(tv_uniq, p_key), 0, max(len(tv_uniq) - 1, 0))
    hit = ok & (tv_uniq[pos] == p_key) if len(tv_uniq) else np.zeros(len(p_key), bool)
    plan_dih = np.full(len(tv_uniq), -1, dtype=np.int64)
    plan_code = np.full(len(tv_uniq), -1, dtype=np.int64)
    plan_dih[pos[hit]] = plan["dihedral"].to_numpy().astype(np.int64)[hit]
    plan_code[pos[hit]] = _perm_code(_perm_matrix(plan["perm"], where))[hit]
    missing = plan_dih[tv] < 0
    if missing.any():
        i = int(np.argmax(missing))
        raise ArcpipeError(f"{where}: hash mismatch: predictions have task {task_ids[i]} variant {variant[i]}, which the augment plan does not ({int(missing.sum())} rows)")
    bad = (plan_dih[tv] != tid) | (plan_code[tv] != _perm_code(perm))
    if bad.any():
        i = int(np.argmax(bad))
        raise ArcpipeError(f"{where}: hash mismatch: task {task_ids[i]} variant {variant[i]} was predicted under a different transform than the augment plan's ({int(bad.sum())} rows); predictions from another dataset?")


def prepare(infer_stage_or_path: cache.Stage | str | os.PathLike) -> Prepared:
    """Inverse-map, hash and truth-check every cached prediction of an infer stage (once)."""
    stage = infer_stage_or_path if isinstance(infer_stage_or_path, cache.Stage) else cache.load_stage(infer_stage_or_path, "infer")
    ppath, npath = stage.path / "predictions.parquet", stage.path / "preds.npy"
    for p in (ppath, npath):
        if not p.is_file():
            raise ArcpipeError(f"{stage.path}: missing {p.name}")
    try:
        df = pl.read_parquet(ppath)
    except (pl.exceptions.PolarsError, OSError) as e:  # truncated / not parquet: one line, not a traceback
        raise ArcpipeError(f"{ppath}: not a readable parquet file ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'unreadable'})") from None
    missing = [c for c in _PRED_COLUMNS if c not in df.columns]
    if missing:
        raise ArcpipeError(f"{ppath}: missing columns {', '.join(missing)}")
    bad = {c: str(df.schema[c]) for c, want in _PREDICTION_KINDS.items() if not want(df.schema[c])}
    if bad:
        raise ArcpipeError(f"{ppath}: wrong column types ({', '.join(f'{c}: {t}' for c, t in bad.items())})")
    try:  # never allow_pickle: an object array is refused, not unpickled
        preds = np.load(npath, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise ArcpipeError(f"{npath}: not a readable uint8 .npy array ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
    if preds.dtype != np.uint8 or preds.ndim != 1:
        raise ArcpipeError(f"{npath}: expected a flat uint8 array, got {preds.dtype} with shape {preds.shape}")
    aug = _augment_stage_of(stage)
    tasks_path = aug.path / "tasks.json"
    if not tasks_path.is_file():
        raise ArcpipeError(f"{aug.path}: missing tasks.json")
    truth = _truth_from_tasks_json(json.loads(tasks_path.read_text()), str(tasks_path))
    plan = _read_plan(aug)
    if plan is not None:
        # tasks.json also holds the extra training tasks (--extra-train); only the tasks the
        # plan has test rows for are evaluated, so only they enter scores and submissions.
        evaluated = set(plan["task_id"].unique().to_list())
        truth = {t: v for t, v in truth.items() if t in evaluated}
    perm = _perm_matrix(df["perm"], str(ppath))
    prepared = _prepare_arrays(stage, df, np.asarray(preds), perm, truth, str(ppath), plan=plan, plan_where=str(aug.path / "plan.parquet"))
    prepared.train_aug = _trained_variants(stage, aug)
    return prepared


def _trained_variants(stage: cache.Stage, aug: cache.Stage) -> int | None:
    """How many variants per task had training rows for the checkpoint behind ``stage``: the
    train_aug of the augment stage it was trained on (which may differ from the one inferred
    on, with the same identifiers), else of the one inferred on."""
    root = stage.path.parent.parent
    train = cache.find("train", str(stage.inputs.get("train", "")), root) if stage.inputs.get("train") else None
    trained_on = cache.find("augment", str(train.inputs.get("augment", "")), root) if train and train.inputs.get("augment") else None
    for a in (trained_on, aug):
        if a is not None and a.config.get("train_aug") is not None:
            return int(a.config["train_aug"])
    return None


def _prepare_arrays(
    stage: cache.Stage | None, df: pl.DataFrame, preds: np.ndarray, perm: np.ndarray, truth: dict[str, list[np.ndarray | None]], where: str,
    plan: pl.DataFrame | None = None, plan_where: str = "plan.parquet",
) -> Prepared:
    n = len(df)
    off = df["pred_off"].to_numpy().astype(np.int64)
    h = df["pred_h"].to_numpy().astype(np.int64)
    w = df["pred_w"].to_numpy().astype(np.int64)
    if n and (off.min() < 0 or (off + h * w).max() > len(preds) or h.min() < 0 or w.min() < 0 or max(h.max(), w.max()) > transforms.MAX_SIDE):
        raise ArcpipeError(f"{where}: pred_off/pred_h/pred_w point outside preds.npy ({len(preds)} cells)")
    tid = df["dihedral"].to_numpy().astype(np.int64)
    if n and (tid.min() < 0 or tid.max() >= transforms.NUM_DIHEDRAL):
        raise ArcpipeError(f"{where}: dihedral ids must be 0..7")
    if n and not np.all(np.sort(perm, axis=1) == np.arange(transforms.NUM_COLOURS, dtype=np.uint8)):
        raise ArcpipeError(f"{where}: 'perm' rows must be permutations of 0..9")

    # Test inputs: every (task, example) of the truth table, in task order.
    test_rows = [(t, e, g is not None) for t in sorted(truth) for e, g in enumerate(truth[t])]
    tests = pl.DataFrame({"task_id": [r[0] for r in test_rows], "example": [r[1] for r in test_rows], "known": [r[2] for r in test_rows]},
                         schema={"task_id": pl.String, "example": pl.Int16, "known": pl.Boolean})
    known_grids = [truth[t][e] for t, e, k in test_rows if k]
    t_ids = np.zeros(len(test_rows), dtype=np.uint64)
    if known_grids:
        flat = np.concatenate([g.ravel() for g in known_grids])
        sizes = np.array([g.size for g in known_grids])
        t_ids[np.array([k for _, _, k in test_rows])] = answer_ids(
            flat, np.cumsum(sizes) - sizes, np.array([g.shape[0] for g in known_grids]), np.array([g.shape[1] for g in known_grids]),
            np.zeros(len(known_grids), np.int64), np.tile(np.arange(10, dtype=np.uint8), (len(known_grids), 1)))[0]
    tests = tests.with_columns(pl.Series("truth", t_ids), pl.Series("tex", np.arange(len(tests), dtype=np.int32)),
                               pl.col("task_id").rank("dense").cast(pl.Int32).alias("task") - 1)

    names = sorted(truth)
    tmap = {t: i for i, t in enumerate(names)}
    task = df["task_id"].replace_strict(tmap, default=-1, return_dtype=pl.Int64).to_numpy()
    example = df["example"].to_numpy().astype(np.int64)
    n_tests = np.array([len(truth[t]) for t in names], dtype=np.int64)
    bad = (task < 0) | (example < 0) | (example >= n_tests[np.maximum(task, 0)] if len(names) else True)
    if bad.any():
        i = int(np.argmax(bad))
        raise ArcpipeError(f"{where}: hash mismatch: prediction for task {df['task_id'][i]} test {example[i]}, which the augment stage's tasks.json does not have ({int(bad.sum())} rows)")
    tex = ((np.cumsum(n_tests) - n_tests)[task] + example).astype(np.int32)
    variant = df["variant"].to_numpy().astype(np.int64)
    step = df["step"].to_numpy().astype(np.int64)
    vmax = int(variant.max(initial=0)) + 1
    tv_uniq, tv = np.unique(task * vmax + variant, return_inverse=True)
    tv_task, tv_variant = tv_uniq // vmax, tv_uniq % vmax
    variants_per_task = np.bincount(tv_task, minlength=len(names))
    steps_u, step_idx = np.unique(step, return_inverse=True)
    dup_key = (tex.astype(np.int64) * len(steps_u) + step_idx) * vmax + variant
    if len(np.unique(dup_key)) != n:
        raise ArcpipeError(f"{where}: duplicate predictions: some (task, test input, variant, step) appears more than once")
    if plan is not None:
        _check_against_plan(plan_where, plan, tmap, tv_uniq, vmax, tv, df["task_id"], variant, tid, perm)

    ids, _, _ = answer_ids(preds, off, h, w, tid, perm)  # the expensive pass, after every cheap check
    valid = (h > 0) & (w > 0)
    order = np.lexsort((variant, step, ids, tex))
    s_tex, s_ids = tex[order], ids[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (s_tex[1:] != s_tex[:-1]) | (s_ids[1:] != s_ids[:-1])
    gstart = np.flatnonzero(new)
    g_tex, g_answer = s_tex[gstart], s_ids[gstart]
    known = tests["known"].to_numpy()
    g_known = known[g_tex]
    g_correct = g_known & (g_answer == t_ids[g_tex])
    q_halt = df["q_halt"].to_numpy().astype(np.float64)
    return Prepared(
        stage=stage, tests=tests, tex=s_tex, answer=s_ids, variant=variant[order], step=step[order],
        q=(0.5 * (1.0 + np.tanh(0.5 * q_halt)))[order], logprob=df["logprob_sum"].to_numpy().astype(np.float64)[order],
        valid=valid[order], tv=tv[order], row=order.astype(np.int64), gstart=gstart, g_tex=g_tex, g_answer=g_answer,
        g_correct=g_correct, g_known=g_known, tv_task=tv_task, tv_variant=tv_variant, variants_per_task=variants_per_task,
        steps=tuple(int(s) for s in np.unique(step)), table=df, preds=preds, group=(np.cumsum(new) - 1).astype(np.int32),
    )


# --------------------------------------------------------------------------- rules

Rule = Callable[[pl.DataFrame], pl.DataFrame]


def _rule_count(g: pl.DataFrame) -> pl.DataFrame:
    """Most frequent answer first (plain majority vote)."""
    return g.select("count")


def _rule_hrm(g: pl.DataFrame) -> pl.DataFrame:
    """The HRM reference rule: count, then mean sigmoid(q_halt) over the answer's votes."""
    return g.select("count", "q_mean")


def _rule_q_mean(g: pl.DataFrame) -> pl.DataFrame:
    """Mean halting confidence alone: how sure the model was, ignoring how often."""
    return g.select("q_mean")


def _rule_q_max(g: pl.DataFrame) -> pl.DataFrame:
    """Best single halting confidence among the answer's votes."""
    return g.select("q_max")


def _rule_logprob(g: pl.DataFrame) -> pl.DataFrame:
    """Summed per-token log-prob, averaged over the answer's votes: a per-answer confidence
    that ignores how many variants gave it, so with many variants an answer from one or two
    confident ones can outrank the majority (reports/vote-ablation: it falls as n_aug grows)."""
    return g.select("logprob")


#: Voting rules: name -> function of the per-(test input, answer) group table returning
#: key columns (higher first, left to right). Columns available: count, q_mean, q_max,
#: logprob, first_variant. Adding a rule = one function + one line here.
RULES: dict[str, Rule] = {
    "count": _rule_count,
    "hrm": _rule_hrm,
    "q-mean": _rule_q_mean,
    "q-max": _rule_q_max,
    "logprob": _rule_logprob,
}


def _check_rule(rule: str) -> Rule:
    if rule not in RULES:
        raise ArcpipeError(f"unknown voting rule '{rule}'; known rules: {', '.join(RULES)}")
    return RULES[rule]


def rank(prepared: Prepared, *, n_aug: int | None = None, rule: str = "hrm", step: int | Sequence[int] | None = None, seed: int = 0,
         top: int = 2, variants: str = "all") -> pl.DataFrame:
    """Ranked answers per test input for one query: the top ``top`` rows of each.

    ``variants`` picks the pool that may vote (VARIANT_POOLS). ``n_aug`` uses that
    many of the pool's cached variants per task (variant 0 first when it is in the
    pool, the rest a ``seed``ed random subset; tasks that have fewer use all of
    theirs); ``None`` = the whole pool. ``step`` = ACT step (default: the last recorded one), or
    several: every one of those steps' predictions then votes (a variant's answer at each step is a
    vote; the same variants at every step).
    Columns: task_id, example, tex, rank (1-based), answer, count, q_mean, q_max,
    logprob, first_variant, correct (null when the truth is unknown), oracle (any
    voted variant right), n_answers, n_votes, pred_row (a predictions.parquet row
    giving this answer).
    """
    rule_fn = _check_rule(rule)
    if int(top) < 1:
        raise ArcpipeError(f"top must be >= 1, got {top}")
    p = prepared
    if step is None:
        step = p.steps[-1] if p.steps else 1
    steps = sorted({int(s) for s in step}) if isinstance(step, (list, tuple, range, np.ndarray)) else [int(step)]
    missing = [s for s in steps if s not in p.steps]
    if missing or not steps:
        shown = ", ".join(map(str, missing[:3])) + (f", ... {missing[-1]} ({len(missing)})" if len(missing) > 3 else "")
        which = "no step was" if not missing else f"step {shown} was" if len(missing) == 1 else f"steps {shown} were"
        raise ArcpipeError(f"{which} not recorded; recorded ACT steps: {', '.join(map(str, p.steps))}")
    sizes = p.pool_sizes(variants)
    avail = int(sizes.max(initial=0))
    if variants != "all" and avail == 0:
        raise ArcpipeError(f"variants='{variants}': no cached variant is in that pool "
                           f"(train_aug={p.train_aug}, {int(p.variants_per_task.max(initial=0))} variants cached per task)")
    limit = None
    if n_aug is not None or variants != "all":
        limit = avail if n_aug is None else int(n_aug)
        if limit < 1 or limit > avail:
            fewest = int(sizes.min(initial=avail))
            spread = f" (the fewest any task has: {fewest})" if fewest < avail else ""
            pool = "" if variants == "all" else f" {variants}"
            raise ArcpipeError(f"n_aug={n_aug} is outside the cached{pool} variants: 1..{avail} available per task{spread}")
    parts = [p.step_rows(s) if limit is None else p.step_rows(s)[p.step_variant_rank(s, int(seed), variants) < limit]
             for s in steps]
    sel = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
    # Reduce over the kept rows only (a few thousand for small n_aug). They stay sorted by
    # (test input, answer, step, variant), so an answer's rows are contiguous, and with one step
    # its first kept row is its smallest voting variant (the tie-break key) and a representative
    # prediction of the answer.
    g = p.group[sel]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, np.int64)
    gk = g[starts]
    c = np.diff(np.r_[starts, len(g)]).astype(np.int64)
    if len(g):
        q_sum = np.add.reduceat(p.q[sel], starts)
        q_max = np.maximum.reduceat(p.q[sel], starts)
        lp = np.add.reduceat(p.logprob[sel], starts)
    else:
        q_sum = q_max = lp = np.zeros(0)
    rep = sel[starts]
    first_variant = p.variant[rep] if len(steps) == 1 or not len(g) else np.minimum.reduceat(p.variant[sel], starts)
    ntex = len(p.tests)
    g_tex = p.g_tex[gk]
    n_answers = np.bincount(g_tex, minlength=ntex)
    n_votes = np.bincount(g_tex, weights=c, minlength=ntex).astype(np.int64)
    oracle = np.bincount(g_tex, weights=p.g_correct[gk], minlength=ntex) > 0
    groups = pl.DataFrame({
        "tex": g_tex, "answer": p.g_answer[gk], "count": c, "q_mean": q_sum / np.maximum(c, 1), "q_max": q_max,
        "logprob": lp / np.maximum(c, 1), "first_variant": first_variant, "correct": p.g_correct[gk], "known": p.g_known[gk],
        "pred_row": p.row[rep],
    })
    keys = rule_fn(groups)
    keys = keys.rename({k: f"_k{i}" for i, k in enumerate(keys.columns)})
    if keys.width == 0 or keys.height != groups.height:
        raise ArcpipeError(f"voting rule '{rule}' must return one or more key columns, one row per answer")
    both = pl.concat([groups, keys], how="horizontal")
    cand = _top_candidates(g_tex, keys["_k0"].to_numpy().astype(np.float64), int(top))
    if cand is not None:
        both = both.filter(pl.Series(cand))
    by = ["tex", *keys.columns, "count", "q_mean", "first_variant"]
    desc = [False, *([True] * keys.width), True, True, False]
    ordered = both.sort(by, descending=desc, nulls_last=True)
    t = ordered["tex"].to_numpy()
    first = np.searchsorted(t, t, side="left")
    r = np.arange(len(t)) - first + 1
    sel = r <= int(top)
    tests = p.tests
    out = ordered.filter(pl.Series(sel)).drop(keys.columns).with_columns(pl.Series("rank", r[sel].astype(np.int16)))
    ti = out["tex"].to_numpy()
    return out.select(
        pl.Series("task_id", tests["task_id"].to_numpy()[ti], dtype=pl.String), pl.Series("example", tests["example"].to_numpy()[ti]), "tex", "rank", "answer",
        "count", "q_mean", "q_max", "logprob", "first_variant",
        pl.when(pl.col("known")).then(pl.col("correct")).otherwise(None).alias("correct"),
        pl.Series("oracle", oracle[ti]), pl.Series("n_answers", n_answers[ti]), pl.Series("n_votes", n_votes[ti]), "pred_row",
    )


def _top_candidates(tex: np.ndarray, k0: np.ndarray, top: int) -> np.ndarray | None:
    """Mask of answers that can reach the top ``top`` of their test input, from the first key alone.

    An answer ranks in the top k only if its first key is at least the k-th largest
    *distinct* first-key value of its test input; k rounds of a segment max find that
    value. Sorting only these candidates (not the ~10^5 one-vote answers) is what keeps
    a query in milliseconds. ``tex`` must be sorted. None = keep everything.
    """
    if len(tex) == 0 or np.isnan(k0).any():
        return None
    starts = np.flatnonzero(np.r_[True, tex[1:] != tex[:-1]])
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(tex)]))
    below = np.full(len(starts), np.inf)
    thresh = below
    for _ in range(top):
        m = np.maximum.reduceat(np.where(k0 < below[seg], k0, -np.inf), starts)
        thresh = np.where(np.isfinite(m), m, thresh)
        if not np.isfinite(m).any():
            break
        below = m
    return k0 >= thresh[seg]


# --------------------------------------------------------------------------- scores


def _check_ks(ks: Iterable[int]) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ArcpipeError(f"pass@k needs every k >= 1, got {ks}")
    return sorted(set(ks))


def _aggregate(task_ids: np.ndarray, solved: dict[str, np.ndarray], task_names: list[str]) -> dict:
    """ARC convention: a task's score is the fraction of its test inputs solved; overall = mean over tasks."""
    n_tasks = len(task_names)
    per_test = np.bincount(task_ids, minlength=n_tasks)
    per_task = {"task_id": task_names, "n_test": per_test.astype(np.int64)}
    out: dict[str, Any] = {"n_tasks": n_tasks, "n_test_inputs": int(len(task_ids)), "by_test_input": {}}
    for name, s in solved.items():
        frac = np.bincount(task_ids, weights=s.astype(np.float64), minlength=n_tasks) / np.maximum(per_test, 1)
        per_task[name] = frac
        out[name] = float(frac.mean()) if n_tasks else 0.0
        out["by_test_input"][name] = float(s.mean()) if len(s) else 0.0
        out["by_test_input"][f"{name}_solved"] = int(s.sum())
    out["per_task"] = pl.DataFrame(per_task)
    return out


def scores(ranked: pl.DataFrame, prepared: Prepared, ks: Iterable[int] = (1, 2)) -> dict:
    """pass@k (task-averaged, ARC convention; and per test input), oracle, per-task table.

    Only test inputs with a known output are scored (``n_unknown`` counts the rest).
    """
    ks = _check_ks(ks)
    tests = prepared.tests
    ntex = len(tests)
    tex = ranked["tex"].to_numpy()
    rk = ranked["rank"].to_numpy()
    correct = ranked["correct"].fill_null(False).to_numpy()
    kept = np.bincount(tex, minlength=ntex)
    trunc = ranked["n_answers"].to_numpy() > kept[tex]
    if trunc.any() and max(ks) > int(kept[tex[trunc]].min()):
        raise ArcpipeError(f"pass@{max(ks)} needs the top {max(ks)} answers but the ranking kept only {int(kept[tex[trunc]].min())}; rank with top >= {max(ks)}")
    known = tests["known"].to_numpy()
    solved = {f"pass@{k}": (np.bincount(tex, weights=correct & (rk <= k), minlength=ntex) > 0)[known] for k in ks}
    solved["oracle"] = (np.bincount(tex, weights=ranked["oracle"].to_numpy(), minlength=ntex) > 0)[known]
    names, task_idx = np.unique(tests["task_id"].to_numpy()[known], return_inverse=True)
    out = _aggregate(task_idx, solved, list(names))
    out["n_unknown"] = int((~known).sum())
    return out


# --------------------------------------------------------------------------- grids, submission


def answer_grids(prepared: Prepared, ranked: pl.DataFrame) -> list[np.ndarray]:
    """Original-frame grids of the ranked answers, rebuilt with the reference inverse
    (``transforms.inverse_augment_grid``) from one prediction each. Loops over answers
    kept (hundreds), not predictions."""
    t = prepared.table
    rows = ranked["pred_row"].to_numpy()
    off, h, w = (t[c].to_numpy()[rows].astype(np.int64) for c in ("pred_off", "pred_h", "pred_w"))
    tid = t["dihedral"].to_numpy()[rows]
    perm = _perm_matrix(t["perm"].gather(rows), "predictions")
    return [
        transforms.inverse_augment_grid(np.asarray(prepared.preds[o : o + hh * ww]).reshape(hh, ww), int(d), p)
        for o, hh, ww, d, p in zip(off, h, w, tid, perm)
    ]


def build_submission(prepared: Prepared, ranked: pl.DataFrame, grids: list[np.ndarray]) -> dict:
    """ARC Prize format: ``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}``,
    one entry per test input in order. Missing attempts: attempt_2 repeats attempt_1;
    a test input with no answer at all gets ``[[0]]`` for both (the format has no "pass")."""
    by_tex: dict[int, list[list[list[int]]]] = {}
    for tx, rk, g in zip(ranked["tex"].to_list(), ranked["rank"].to_list(), grids):
        if rk <= 2:
            by_tex.setdefault(tx, []).append(g.tolist())
    sub: dict[str, list[dict]] = {}
    for tx, task_id in enumerate(prepared.tests["task_id"].to_list()):
        attempts = by_tex.get(tx) or [[[0]]]
        sub.setdefault(task_id, []).append({"attempt_1": attempts[0], "attempt_2": attempts[1] if len(attempts) > 1 else attempts[0]})
    return sub


#: The contract's name for scoring a ranking (docs/contracts.md "Vote").
score_answers = scores


def _json_scores(sc: dict) -> dict:
    out = {k: v for k, v in sc.items() if k != "per_task"}
    out["per_task"] = sc["per_task"].to_dicts()
    return out


def resolve_infer(predictions: cache.Stage | str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> cache.Stage:
    """An infer stage from a Stage, a directory, a cache key (or unique key prefix); None = the newest."""
    return cache.resolve_stage(
        predictions, "infer", root, noun="infer stage directory",
        hint="run `arcpipe infer` first or pass a predictions stage path",
    )


def vote(
    predictions: cache.Stage | str | os.PathLike | None = None,
    *,
    n_aug: int | None = None,
    top: int = 2,
    rule: str = "hrm",
    step: int | str | Sequence[int] | None = None,
    seed: int = 0,
    variants: str = "all",
    root: str | os.PathLike | None = None,
    force: bool = False,
) -> cache.Stage:
    """The vote stage: answers.parquet, scores.json, submission.json for one infer stage.

    ``predictions=None`` votes the newest infer stage in the cache; ``variants``
    restricts the voters to the trained or untrained variants (VARIANT_POOLS).
    ``step``: the ACT step whose answers vote (default the last recorded), or several
    (``"1-4"``, ``[1, 2, 3, 4]``) whose answers all vote together: on the 59-task CPU
    runs, voting a four-segment model's four segments together scored 2-5 points more
    than its last segment alone (docs/ablations.md, test-time refinement).
    """
    _check_rule(rule)
    if int(top) < 1:
        raise ArcpipeError(f"top must be >= 1, got {top}")
    if variants not in VARIANT_POOLS:
        raise ArcpipeError(f"unknown variant pool '{variants}'; known: {', '.join(VARIANT_POOLS)}")
    if step is not None:
        picked = step_list.parse(step, "--step")
        step = picked[0] if len(picked) == 1 else picked  # one step keeps its int, and every older key
    src = resolve_infer(predictions, root)
    ks = sorted({1, 2, int(top)} & set(range(1, int(top) + 1)))
    config = {"n_aug": n_aug, "top": int(top), "rule": rule, "step": step, "seed": int(seed)}
    if variants != "all":  # recorded only when restricted, so every vote cached before keeps its key
        config["variants"] = variants

    def build(work: Path) -> dict:
        prepared = prepare(src)
        ranked = rank(prepared, n_aug=n_aug, rule=rule, step=step, seed=seed, top=top, variants=variants)
        sc = scores(ranked, prepared, ks)
        grids = answer_grids(prepared, ranked)
        _verify_correct(prepared, ranked, grids)
        answers = ranked.with_columns(
            pl.Series("h", [g.shape[0] for g in grids], dtype=pl.Int16), pl.Series("w", [g.shape[1] for g in grids], dtype=pl.Int16),
            pl.Series("grid", [g.tolist() for g in grids], dtype=pl.List(pl.List(pl.UInt8))),
        )
        with cache.atomic_path(work / "answers.parquet") as tmp:
            answers.write_parquet(tmp)
        payload = _json_scores(sc)
        payload["query"] = {**config, "step": step if step is not None else (prepared.steps[-1] if prepared.steps else None), "infer": src.key}
        cache.atomic_write_json(work / "scores.json", payload)
        cache.atomic_write_json(work / "submission.json", build_submission(prepared, ranked, grids))
        return {"answers": len(answers), "test_inputs": len(prepared.tests), "predictions": len(prepared.tex),
                **{k: sc[k] for k in sc if k.startswith("pass@") or k == "oracle"}}

    return cache.run_stage("vote", config, {"infer": src.key}, build, root=root, force=force)


def _verify_correct(prepared: Prepared, ranked: pl.DataFrame, grids: list[np.ndarray]) -> None:
    """Guard against an answer-id collision: 'correct' must agree with a cell-by-cell comparison."""
    if prepared.stage is None:
        return
    aug = _augment_stage_of(prepared.stage)
    truth = _truth_from_tasks_json(json.loads((aug.path / "tasks.json").read_text()), str(aug.path / "tasks.json"))
    for t, e, c, g in zip(ranked["task_id"].to_list(), ranked["example"].to_list(), ranked["correct"].to_list(), grids):
        if c is None:
            continue
        y = truth[t][e]
        if bool(c) != (y is not None and y.shape == g.shape and bool(np.array_equal(y, g))):
            raise ArcpipeError(f"{prepared.stage.path}: answer-id collision on task {t} test {e}; please report this")


# --------------------------------------------------------------------------- scoring any submission


def load_solutions(solutions: str | os.PathLike | dict) -> dict[str, list[np.ndarray]]:
    """Known test outputs by task id.

    Accepts a Kaggle ``*_solutions.json`` (``{id: [grid, ...]}``), an arcpipe
    ``tasks.json`` (or a stage directory holding one; tasks with unknown outputs
    are skipped), an in-memory dict of either form, or any
    ``arcpipe.data.load_tasks`` source (``arc1:evaluation``, a task folder, a
    Kaggle challenges file with its solutions beside it).
    """
    where = "solutions"
    obj: Any = solutions if isinstance(solutions, dict) else None
    if obj is None:
        path = Path(solutions)
        if path.is_dir() and (path / "tasks.json").is_file():
            path = path / "tasks.json"
        if path.is_file() and path.suffix == ".json":
            try:
                obj = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ArcpipeError(f"{path}: not valid JSON ({e})") from None
            where = str(path)
            is_solutions = isinstance(obj, dict) and bool(obj) and all(isinstance(v, list) for v in obj.values())
            if not is_solutions and path.name != "tasks.json":
                obj = None  # a task file or challenges file: the data loader knows those
        if obj is None:
            from arcpipe.data import load_tasks

            return {t.id: [ex.output for ex in t.test] for t in load_tasks(str(solutions), require_test_outputs=True)}
    if not isinstance(obj, dict) or not obj:
        raise ArcpipeError(f"{where}: expected a non-empty JSON object of tasks")
    if all(isinstance(v, list) for v in obj.values()):
        return {t: [_grid(g, f"{where}: task {t} test {i}") for i, g in enumerate(v)] for t, v in obj.items()}
    return {t: outs for t, outs in _truth_from_tasks_json(obj, where).items() if all(o is not None for o in outs)}


def score_submission(
    submission: str | os.PathLike | dict,
    solutions: str | os.PathLike | dict,
    ks: Iterable[int] = (1, 2),
    *,
    only_submitted: bool = False,
) -> dict:
    """Score an ARC Prize submission against known outputs (attempt_1 = rank 1, attempt_2 = rank 2).

    Validates the submission first (one-line errors naming task and test input).
    Tasks in the submission without a known solution are ignored (``n_extra``).
    A solved task missing from the submission is an error, unless
    ``only_submitted`` restricts scoring to the submitted tasks (e.g. a run on a
    subset of ARC-AGI-1 evaluation scored against the whole bundled set).
    """
    ks = _check_ks(ks)
    if max(ks) > 2:
        raise ArcpipeError(f"an ARC Prize submission has 2 attempts; pass@{max(ks)} is undefined")
    where = "submission" if isinstance(submission, dict) else str(submission)
    if isinstance(submission, dict):
        sub = submission
    else:
        try:
            sub = json.loads(Path(submission).read_text())
        except FileNotFoundError:
            raise ArcpipeError(f"{submission}: no such file") from None
        except json.JSONDecodeError as e:
            raise ArcpipeError(f"{submission}: not valid JSON ({e})") from None
    if not isinstance(sub, dict):
        raise ArcpipeError(f"{where}: expected a JSON object {{task_id: [attempts, ...]}}")
    sol = load_solutions(solutions)
    if only_submitted:
        sol = {t: v for t, v in sol.items() if t in sub}
        if not sol:
            raise ArcpipeError(f"{where}: none of its tasks has a known solution in {solutions}")
    task_idx, solved = [], {f"pass@{k}": [] for k in ks}
    names = sorted(sol)
    for ti, t in enumerate(names):
        if t not in sub:
            raise ArcpipeError(f"{where}: missing task {t}")
        entries = sub[t]
        if not isinstance(entries, list) or len(entries) != len(sol[t]):
            got = len(entries) if isinstance(entries, list) else type(entries).__name__
            raise ArcpipeError(f"{where}: task {t} has {got} test entries, expected {len(sol[t])}")
        for i, (entry, y) in enumerate(zip(entries, sol[t])):
            if not isinstance(entry, dict) or "attempt_1" not in entry or "attempt_2" not in entry:
                raise ArcpipeError(f"{where}: task {t} test {i}: expected {{'attempt_1': grid, 'attempt_2': grid}}")
            right = [np.array_equal(_grid(entry[a], f"{where}: task {t} test {i} {a}"), y) for a in ("attempt_1", "attempt_2")]
            task_idx.append(ti)
            for k in ks:
                solved[f"pass@{k}"].append(any(right[:k]))
    out = _aggregate(np.asarray(task_idx, dtype=np.int64), {k: np.asarray(v, dtype=bool) for k, v in solved.items()}, names)
    out["n_extra"] = len(set(sub) - set(sol))
    return out
