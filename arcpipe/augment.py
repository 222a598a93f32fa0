"""The augment stage: an augmentation *plan*, not the pixels (DESIGN.md "Stages").

ARC-AGI-1 x 1000 variants as padded 30x30 token arrays is ~6 GB; the plan that
generates them is a few MB: one parquet row per sequence (task, variant,
dihedral id, colour permutation, translation, puzzle id, where the original
grid sits in ``grids.npy``). Train and infer turn plan rows into token
batches on the fly with :func:`materialize` (numpy) or
:func:`materialize_torch` (same maths in torch, e.g. on the GPU), so the
stage is cheap to build, cheap to cache and cheap to ship.

Variants (the reference's recipe): variant 0 of every task is the identity;
every further variant draws a dihedral id (0..7) and a colour permutation
fixing black, and is kept only if the augmented task differs from every
variant kept so far, with up to ``retries * n_aug`` draws per task
(``dihedral=False`` / ``colour=False`` pin that half of the draw to the
identity, to ablate the recipe's parts; ``translate=False`` the third). Each task
has its own ``numpy`` generator seeded from (seed, task id), so the plan is the
same bytes whatever the number of processes. Translation applies to training
rows only, with one example per variant left in place (as the reference does).

Duplicate detection is exact, not a hash: an augmented task is
``perm[D_t]`` where ``D_t`` is the task's grids under dihedral ``t``. Two
variants give the same task iff their ``D_t`` agree up to relabelling of the
colours (checked once per task for the 8 transforms: the "class" of ``t``) and
their permutations send the colours, listed in order of first appearance, to
the same colours. That makes the key of a variant ~40 bits computed for all
draws at once, instead of hashing thousands of transformed grids.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from arcpipe import transforms as T
from arcpipe.cache import Stage, load_stage, require_newest, run_stage
from arcpipe.data import Task, load_tasks, task_from_json, tasks_fingerprint, tasks_to_json
from arcpipe.errors import ArcpipeError

STAGE = "augment"
PLAN_FILE = "plan.parquet"
GRIDS_FILE = "grids.npy"
IDENTIFIERS_FILE = "identifiers.json"
TASKS_FILE = "tasks.json"
BLANK_IDENTIFIER = "<blank>"
#: Config keys added after plans were first cached: absent from a manifest means this value.
CONFIG_DEFAULTS: dict[str, Any] = {"dihedral": True, "colour": True}
#: Rows per chunk when ``--materialize`` streams token arrays to disk (int64 index
#: intermediates are ~8 bytes x 2 x canvas² per row: ~60 MB at 4096 rows).
MATERIALIZE_CHUNK = 4096
#: Work items the tasks are split into (joblib overhead is per item).
TASK_CHUNKS = 64

#: plan.parquet schema (docs/contracts.md). ``perm`` is a fixed-size
#: ``Array(UInt8, 10)``: it round-trips to a (N, 10) numpy array without copies.
PLAN_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String,
    "variant": pl.Int32,
    "puzzle_id": pl.Int32,
    "split": pl.String,
    "part": pl.String,
    "example": pl.Int16,
    "dihedral": pl.Int8,
    "perm": pl.Array(pl.UInt8, T.NUM_COLOURS),
    "dr": pl.Int16,
    "dc": pl.Int16,
    "in_off": pl.Int64,
    "in_h": pl.Int16,
    "in_w": pl.Int16,
    "out_off": pl.Int64,
    "out_h": pl.Int16,
    "out_w": pl.Int16,
}
_SPLITS = ("train", "test")


# --------------------------------------------------------------------------- variants


def task_rng(seed: int, task_id: str) -> np.random.Generator:
    """The task's own generator: depends on (seed, task id) only, so results are independent of scheduling."""
    digest = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, digest]))


def _all_dihedrals(grids: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The task's grids under each of the 8 transforms, concatenated: ((8, cells) uint8, (8, 2*G) shapes).

    One gather per task (``transforms.separable_source``) instead of 8 x G
    numpy calls: cell k of grid g under transform t sits at row q // tw,
    column q % tw of the transformed grid (q = k - start of g).
    """
    if not grids:
        return np.zeros((T.NUM_DIHEDRAL, 0), np.uint8), np.zeros((T.NUM_DIHEDRAL, 0), np.int64)
    flat = np.concatenate([np.asarray(g, dtype=np.uint8).ravel() for g in grids])
    h = np.array([g.shape[0] for g in grids], dtype=np.int64)
    w = np.array([g.shape[1] for g in grids], dtype=np.int64)
    size = h * w
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    g_of = np.repeat(np.arange(len(grids)), size)
    q = np.arange(len(flat)) - start[g_of]
    t = np.arange(T.NUM_DIHEDRAL)[:, None]
    th, tw = T.transformed_shape(h[None, :], w[None, :], t)  # (8, G)
    r0, rs, c0, cs = T.separable_source(t, h[None, :], w[None, :])
    width = tw[:, g_of]
    i, j = q[None, :] // width, q[None, :] % width
    src = start[g_of][None, :] + r0[:, g_of] + rs[:, g_of] * i + c0[:, g_of] + cs[:, g_of] * j
    return flat[src], np.concatenate([th, tw], axis=1)


def variant_keys(grids: Sequence[np.ndarray], tids: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Exact identity key (uint64) of the augmented task for each (tid, perm) pair.

    Two pairs get the same key iff they turn the task's grids into the very
    same grids (see the module docstring for why the key is exact). Costs one
    pass over the grids for all 8 transforms, then O(1) per pair.
    """
    moved, shapes = _all_dihedrals(grids)
    n_cells = moved.shape[1]
    # First position of each colour under each transform (n_cells if absent).
    hit = moved[:, :, None] == np.arange(T.NUM_COLOURS, dtype=np.uint8)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), n_cells)  # (8, 10)
    n_used = int((first[0, 1:] < n_cells).sum())  # the same colours appear under every transform
    order = np.argsort(first[:, 1:], axis=1, kind="stable")[:, :n_used] + 1  # used colours by first appearance
    relabel = np.zeros((T.NUM_DIHEDRAL, T.NUM_COLOURS), dtype=np.uint8)
    np.put_along_axis(relabel, order, np.arange(1, n_used + 1, dtype=np.uint8)[None].repeat(T.NUM_DIHEDRAL, 0), axis=1)
    canonical = np.take_along_axis(relabel, moved.astype(np.intp), axis=1)  # colours renamed 1, 2, ... by first appearance
    classes = np.zeros(T.NUM_DIHEDRAL, dtype=np.uint64)
    seen: dict[bytes, int] = {}
    for t in range(T.NUM_DIHEDRAL):  # 8 signatures per task, not per variant
        classes[t] = seen.setdefault(shapes[t].tobytes() + canonical[t].tobytes(), t)
    # Key = class (3 bits) + the new colour of each used colour, 4 bits each.
    tids = np.asarray(tids, dtype=np.int64)
    new_colours = np.take_along_axis(np.asarray(perms, dtype=np.uint64), order[tids], axis=1)
    shifts = (3 + 4 * np.arange(n_used, dtype=np.uint64))[None, :]
    return classes[tids] | np.bitwise_or.reduce(new_colours << shifts, axis=1, initial=np.uint64(0))


def max_variants(n_aug: int, *, dihedral: bool = True, colour: bool = True) -> int:
    """The most distinct variants any task can have with these transform kinds, capped at ``n_aug``
    (colour permutations alone give 9! = 362,880; the dihedral group alone 8)."""
    return n_aug if colour else min(n_aug, T.NUM_DIHEDRAL if dihedral else 1)


def draw_variants(
    grids: Sequence[np.ndarray], n_aug: int, retries: int, rng: np.random.Generator,
    *, dihedral: bool = True, colour: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Up to ``n_aug`` distinct variants of a task: (tids (V,) int8, perms (V, 10) uint8, draws used).

    Variant 0 is the identity; the rest are the first distinct ones among
    ``retries * n_aug - 1`` random draws, in draw order, which is what a
    keep-if-new loop over the draws would return, computed with one
    ``np.unique``. Fewer than ``n_aug`` come back when the task has fewer
    distinct variants (e.g. a symmetric task with one colour has at most 72).
    A kind switched off is the identity in every draw; the generator is still
    drawn from as usual, so switching one kind off leaves the other's draws as they were.
    """
    n_draw = max(retries * n_aug - 1, 0)
    tids = np.concatenate([[0], rng.integers(0, T.NUM_DIHEDRAL, size=n_draw)]).astype(np.int64)
    perms = np.concatenate([np.arange(T.NUM_COLOURS, dtype=np.uint8)[None], T.random_colour_perms(rng, n_draw)])
    if not dihedral:
        tids[:] = 0
    if not colour:
        perms[:] = np.arange(T.NUM_COLOURS, dtype=np.uint8)
    keys = variant_keys(grids, tids, perms)
    _, first = np.unique(keys, return_index=True)
    keep = np.sort(first)[:n_aug]
    used = int(keep[-1]) + 1 if len(keep) == n_aug else len(tids)
    return tids[keep].astype(np.int8), perms[keep], used


# --------------------------------------------------------------------------- per-task planning (runs in workers)


@dataclass
class _TaskJob:
    """What a worker needs to plan one task: its grids and where they sit in grids.npy."""

    index: int  # position in the sorted list of all tasks
    task_id: str
    is_source: bool
    grids: list[np.ndarray]  # every grid of the task, for duplicate detection
    # Per example: (part 0=train/1=test, example index, in_off, in_h, in_w, out_off, out_h, out_w)
    examples: np.ndarray = field(default_factory=lambda: np.zeros((0, 8), np.int64))


@dataclass
class _TaskResult:
    index: int
    tids: np.ndarray
    perms: np.ndarray
    draws: int
    n_ids: int  # variants that emit rows (= get a puzzle id)
    rows: dict[str, np.ndarray]


def _plan_task(
    job: _TaskJob, *, n_aug: int, train_aug: int, seed: int, canvas: int, translate: bool, retries: int,
    dihedral: bool = True, colour: bool = True,
) -> _TaskResult:
    """Variants and rows of one task, from its own generator (so any worker gives the same answer).

    Rows: for variants < train_aug, one training row per training pair
    (translated, except the first pair of each variant); for source tasks,
    one test row per test input for every variant. Vectorised over
    (variant, example); the only per-task Python is this function's body.
    """
    rng = task_rng(seed, job.task_id)
    tids, perms, draws = draw_variants(job.grids, n_aug, retries, rng, dihedral=dihedral, colour=colour)
    n_var = len(tids)
    ex = job.examples
    part, example = ex[:, 0], ex[:, 1]
    has_out = ex[:, 5] >= 0
    # Training rows: demonstrations of source tasks; every solved pair of extra tasks.
    train_ex = np.flatnonzero((part == 0) if job.is_source else has_out)
    test_ex = np.flatnonzero(part == 1) if job.is_source else np.zeros(0, np.int64)
    n_train_var = min(train_aug, n_var)
    n_ids = n_var if job.is_source else n_train_var

    # Training rows: (variant, example) grid, translated so input and output both fit.
    tv = np.repeat(np.arange(n_train_var), len(train_ex))
    te = np.tile(train_ex, n_train_var)
    dr = np.zeros(len(tv), np.int64)
    dc = np.zeros(len(tv), np.int64)
    if translate and len(tv):
        t = tids[tv].astype(np.int64)
        ih, iw = T.transformed_shape(ex[te, 3], ex[te, 4], t)
        oh, ow = T.transformed_shape(ex[te, 6], ex[te, 7], t)
        room_r = canvas - np.maximum(ih, oh) + 1
        room_c = canvas - np.maximum(iw, ow) + 1
        u = rng.random((len(tv), 2))
        dr = np.floor(u[:, 0] * room_r).astype(np.int64)
        dc = np.floor(u[:, 1] * room_c).astype(np.int64)
        reference = np.arange(len(tv)) % len(train_ex) == 0  # first example of each variant stays put
        dr[reference] = 0
        dc[reference] = 0
    sv = np.repeat(np.arange(n_var), len(test_ex))
    se = np.tile(test_ex, n_var)
    variant = np.concatenate([tv, sv])
    exi = np.concatenate([te, se])
    rows = {
        "variant": variant.astype(np.int32),
        "split": np.concatenate([np.zeros(len(tv), np.uint8), np.ones(len(sv), np.uint8)]),
        "part": part[exi].astype(np.uint8),
        "example": example[exi].astype(np.int16),
        "dr": np.concatenate([dr, np.zeros(len(sv), np.int64)]).astype(np.int16),
        "dc": np.concatenate([dc, np.zeros(len(sv), np.int64)]).astype(np.int16),
        "in_off": ex[exi, 2],
        "in_h": ex[exi, 3].astype(np.int16),
        "in_w": ex[exi, 4].astype(np.int16),
        "out_off": ex[exi, 5],
        "out_h": ex[exi, 6].astype(np.int16),
        "out_w": ex[exi, 7].astype(np.int16),
    }
    return _TaskResult(job.index, tids, perms, draws, n_ids, rows)


def _plan_chunk(jobs: list[_TaskJob], kwargs: dict) -> tuple[list[_TaskResult], dict[str, np.ndarray]]:
    """One joblib work item: several tasks, so process overhead is paid per chunk, not per task.

    Rows come back already concatenated over the chunk (plus each row's task
    position in the chunk), so the parent turns them into one table chunk and
    drops them, never holding all rows twice.
    """
    results = [_plan_task(job, **kwargs) for job in jobs]
    rows = {k: np.concatenate([r.rows[k] for r in results]) for k in results[0].rows}
    rows["local"] = np.repeat(np.arange(len(results), dtype=np.int64), [len(r.rows["variant"]) for r in results])
    for r in results:
        r.rows = {}
    return results, rows


# --------------------------------------------------------------------------- building the plan


def _grid_layout(tasks: Sequence[Task]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Concatenate every grid (grids.npy) and describe each task's examples by offset and shape."""
    chunks: list[np.ndarray] = []
    described: list[np.ndarray] = []
    pos = 0

    def place(g: np.ndarray | None) -> tuple[int, int, int]:
        nonlocal pos
        if g is None:
            return -1, 0, 0
        g = np.ascontiguousarray(g, dtype=np.uint8)
        chunks.append(g.ravel())
        at = pos
        pos += g.size
        return at, g.shape[0], g.shape[1]

    for task in tasks:
        rows = []
        for p, examples in enumerate((task.train, task.test)):
            for k, e in enumerate(examples):
                rows.append((p, k, *place(e.input), *place(e.output)))
        described.append(np.array(rows, dtype=np.int64).reshape(-1, 8))
    flat = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return flat, described


def _check_canvas(tasks: Iterable[Task], canvas: int) -> None:
    for task in tasks:
        if task.max_side <= canvas:
            continue
        for part in ("train", "test"):
            for k, e in enumerate(getattr(task, part)):
                for name in ("input", "output"):
                    g = getattr(e, name)
                    if g is not None and max(g.shape) > canvas:
                        raise ArcpipeError(
                            f"{task.source or 'tasks'}: task {task.id!r} {part}[{k}].{name} is {g.shape[0]}x{g.shape[1]}, "
                            f"larger than the {canvas}x{canvas} canvas; drop such tasks with --max-side {canvas} or use a larger --canvas"
                        )


def _identifiers(task_ids: Sequence[str], n_ids: np.ndarray, tids: np.ndarray, perms: np.ndarray) -> list[str]:
    """``f"{task_id}_t{dihedral}_{perm digits}"`` for every puzzle id, built column-wise in polars."""
    digits = (perms + np.uint8(ord("0"))).view(f"S{T.NUM_COLOURS}").ravel().astype(f"U{T.NUM_COLOURS}")
    names = pl.DataFrame(
        {
            "task": pl.Series(np.asarray(task_ids, dtype=object), dtype=pl.String).gather(np.repeat(np.arange(len(task_ids)), n_ids)),
            "t": tids.astype(np.int64),
            "p": digits,
        }
    ).select(pl.concat_str([pl.col("task"), pl.lit("_t"), pl.col("t").cast(pl.String), pl.lit("_"), pl.col("p")]))
    return [BLANK_IDENTIFIER, *names.to_series().to_list()]


def _resolve_jobs(n_jobs: int) -> int:
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, cores + 1 + n_jobs) if n_jobs < 0 else int(n_jobs)


def build_plan(
    source_tasks: Sequence[Task],
    extra_tasks: Sequence[Task],
    *,
    n_aug: int,
    train_aug: int,
    seed: int,
    canvas: int,
    translate: bool,
    retries: int,
    dihedral: bool = True,
    colour: bool = True,
    n_jobs: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[pl.DataFrame, np.ndarray, list[str], dict]:
    """Plan every task: (plan table, grids, identifiers, counts). Pure; ``augment`` caches it.

    Tasks are planned in parallel chunks; puzzle ids are assigned afterwards
    in (task id, variant) order, so nothing depends on which worker ran what.
    ``on_progress(n)`` is called as each chunk of ``n`` tasks finishes.
    """
    from joblib import Parallel, delayed

    _check_canvas([*source_tasks, *extra_tasks], canvas)
    tasks = sorted([(t, True) for t in source_tasks] + [(t, False) for t in extra_tasks], key=lambda p: p[0].id)
    flat, described = _grid_layout([t for t, _ in tasks])
    jobs = [
        _TaskJob(k, t.id, src, [g for e in t.train + t.test for g in (e.input, e.output) if g is not None], described[k])
        for k, (t, src) in enumerate(tasks)
    ]
    workers = min(_resolve_jobs(n_jobs), max(len(jobs), 1))
    # Chunking is fixed by the task count alone (never by the worker count),
    # so the table's chunks, and with them the parquet bytes, match for any n_jobs.
    size = max(1, math.ceil(len(jobs) / TASK_CHUNKS))
    chunks = [jobs[a : a + size] for a in range(0, len(jobs), size)]
    kwargs = dict(n_aug=n_aug, train_aug=train_aug, seed=seed, canvas=canvas, translate=translate, retries=retries,
                  dihedral=dihedral, colour=colour)
    task_ids = [t.id for t, _ in tasks]
    id_series = pl.Series(np.asarray(task_ids, dtype=object), dtype=pl.String)
    split_names = pl.Series(np.asarray(_SPLITS, dtype=object), dtype=pl.String)
    results: list[_TaskResult] = []
    frames: list[pl.DataFrame] = []
    next_id = 1
    runner = Parallel(n_jobs=workers, return_as="generator") if workers > 1 else None
    stream = runner(delayed(_plan_chunk)(c, kwargs) for c in chunks) if runner else (_plan_chunk(c, kwargs) for c in chunks)
    for done, cols in stream:  # chunks arrive in task order, so puzzle ids can be numbered as they come
        n_ids = np.array([r.n_ids for r in done], dtype=np.int64)
        first_id = next_id + np.concatenate([[0], np.cumsum(n_ids)[:-1]])
        next_id += int(n_ids.sum())
        tids = np.concatenate([r.tids for r in done]).astype(np.int8)
        perms = np.concatenate([r.perms for r in done])
        var_base = np.concatenate([[0], np.cumsum([len(r.tids) for r in done])[:-1]])
        local = cols.pop("local")
        pid = (first_id[local] + cols["variant"]).astype(np.int32)  # every row's variant < its task's n_ids
        gvar = var_base[local] + cols["variant"]
        frames.append(
            pl.DataFrame(
                {
                    "task_id": id_series.gather(np.array([r.index for r in done])[local]),
                    "variant": cols["variant"],
                    "puzzle_id": pid,
                    "split": split_names.gather(cols["split"].astype(np.int64)),
                    "part": split_names.gather(cols["part"].astype(np.int64)),
                    "example": cols["example"],
                    "dihedral": tids[gvar],
                    "perm": perms[gvar],
                    **{k: cols[k] for k in ("dr", "dc", "in_off", "in_h", "in_w", "out_off", "out_h", "out_w")},
                },
                schema=PLAN_SCHEMA,
            )
        )
        del cols, local, pid, gvar
        results.extend(done)
        if on_progress:
            on_progress(len(done))
    table = pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=PLAN_SCHEMA)
    del frames
    n_ids = np.array([r.n_ids for r in results], dtype=np.int64)
    tids = np.concatenate([r.tids[: r.n_ids] for r in results]) if results else np.zeros(0, np.int8)
    perms = np.concatenate([r.perms[: r.n_ids] for r in results]) if results else np.zeros((0, T.NUM_COLOURS), np.uint8)
    identifiers = _identifiers(task_ids, n_ids, tids, perms)
    reached = {r_task.id: len(r.tids) for (r_task, _), r in zip(tasks, results)}
    possible = max_variants(n_aug, dihedral=dihedral, colour=colour)
    short = {k: v for k, v in reached.items() if v < possible}
    n_train = int((table.get_column("split") == "train").sum())
    counts = {
        "tasks": len(tasks),
        "source_tasks": len(source_tasks),
        "extra_train_tasks": len(extra_tasks),
        "variants": int(sum(len(r.tids) for r in results)),
        "draws": int(sum(r.draws for r in results)),
        "puzzle_identifiers": len(identifiers),
        "rows": int(len(table)),
        "train_rows": n_train,
        "test_rows": int(len(table) - n_train),
        "grid_cells": int(len(flat)),
        "short_tasks": dict(sorted(short.items())),
    }
    return table, flat, identifiers, counts


# --------------------------------------------------------------------------- materialisation


def _columns(rows: pl.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
    need = ("in_off", "in_h", "in_w", "out_off", "out_h", "out_w", "dihedral", "perm", "dr", "dc", "puzzle_id")
    if isinstance(rows, pl.DataFrame):
        missing = [c for c in need if c not in rows.columns]
        if missing:
            raise ArcpipeError(f"plan rows: missing columns {missing}")
        return {c: rows.get_column(c).to_numpy() for c in need}
    missing = [c for c in need if c not in rows]
    if missing:
        raise ArcpipeError(f"plan rows: missing columns {missing}")
    return {c: np.asarray(rows[c]) for c in need}


def materialize(rows: pl.DataFrame | Mapping[str, Any], grids: np.ndarray, canvas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token batch for plan rows: (inputs (N, canvas²) uint8, labels (N, canvas²) uint8, puzzle_ids (N,) int32).

    Labels are PAD (= ignore) outside the answer and entirely PAD where the
    output is unknown. Inputs and labels go through one ``encode_boards`` call
    (2N boards) so per-call overhead is paid once per batch.
    """
    c = _columns(rows)
    n = len(c["in_off"])
    twice = lambda a: np.concatenate([a, a])  # noqa: E731 - same transform for input and label
    boards = T.encode_boards(
        grids,
        np.concatenate([c["in_off"], c["out_off"]]),
        np.concatenate([c["in_h"], c["out_h"]]),
        np.concatenate([c["in_w"], c["out_w"]]),
        twice(c["dihedral"]),
        twice(np.asarray(c["perm"], dtype=np.uint8).reshape(n, T.NUM_COLOURS)),
        twice(c["dr"]),
        twice(c["dc"]),
        canvas,
    )
    return boards[:n], boards[n:], c["puzzle_id"].astype(np.int32)


_DEVICE_TABLES: dict[str, tuple] = {}


def _device_tables(dev):
    """The dihedral index tables on ``dev``, uploaded once per device (not once per batch)."""
    import torch

    key = str(dev)
    if key not in _DEVICE_TABLES:
        _DEVICE_TABLES[key] = tuple(torch.as_tensor(t, device=dev) for t in (T.SWAPS_AXES, T._R0, T._RS, T._C0, T._CS))
    return _DEVICE_TABLES[key]


def to_device(a: np.ndarray, dev):
    """Host array -> tensor on ``dev``; on CUDA through pinned memory and ``non_blocking``, so the
    host does not wait for the GPU's queue (a pageable copy would synchronise the stream)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a))
    if dev.type == "cuda":
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)


def _encode_boards_torch(flat, info, canvas: int):
    """``transforms.encode_boards`` in torch (same separable index maths), for batches built on
    the GPU. ``info``: int64 (m, 16) on ``flat``'s device, columns offset, h, w, dihedral, dr,
    dc, then the 10 colour-permutation entries."""
    import torch

    dev = flat.device
    offset, h, w, tid, dr, dc = info[:, :6].unbind(1)
    perm = info[:, 6:]
    n = offset.numel()
    present = offset >= 0
    h = torch.where(present, h, 0)
    w = torch.where(present, w, 0)
    swaps, R0, RS, C0, CS = _device_tables(dev)
    swap = swaps[tid]
    th, tw = torch.where(swap, w, h), torch.where(swap, h, w)
    basis = torch.stack([torch.ones_like(h), w, (h - 1) * w, w - 1], dim=-1)
    r0, rs, c0, cs = ((tab[tid] * basis).sum(-1) for tab in (R0, RS, C0, CS))
    ar = torch.arange(canvas, device=dev)[None, :]
    i = ar - dr[:, None]
    j = ar - dc[:, None]
    row_in = (i >= 0) & (i < th[:, None])
    col_in = (j >= 0) & (j < tw[:, None])
    base = torch.where(present, offset, 0)[:, None]
    rpart = torch.where(row_in, base + r0[:, None] + rs[:, None] * i, base)
    cpart = torch.where(col_in, c0[:, None] + cs[:, None] * j, 0)
    src = (rpart[:, :, None] + cpart[:, None, :]).reshape(n, -1)
    colours = flat[src].to(torch.int64) if flat.numel() else torch.zeros_like(src)
    rclass = torch.where(row_in, 0, torch.where(i == th[:, None], 1, 4))
    cclass = torch.where(col_in, 0, torch.where(j == tw[:, None], 1, 4))
    bg = (rclass[:, :, None] + cclass[:, None, :]).reshape(n, -1)
    codes = torch.where(bg == 0, colours, bg + T.NUM_COLOURS)
    width = T.NUM_COLOURS + 9
    lut = torch.full((n, width), T.PAD, dtype=torch.uint8, device=dev)
    lut[:, : T.NUM_COLOURS] = perm.to(torch.uint8) + T.COLOUR_OFFSET
    lut[:, T.NUM_COLOURS + 1] = T.EOS
    return torch.gather(lut, 1, codes)


def materialize_torch(rows: pl.DataFrame | Mapping[str, Any], grids, canvas: int, device=None):
    """:func:`materialize` with torch ops: (inputs uint8, labels uint8, puzzle_ids int32) tensors on ``device``.

    ``grids`` may be a numpy array or a tensor; pass it already on the device
    (``torch.as_tensor(plan.grids, device=...)``) to avoid copying the grids
    per batch. Results equal :func:`materialize` exactly. The per-row columns
    travel as one packed array (two uploads per batch, asynchronous on CUDA).
    """
    import torch

    # A read-only memmap (Plan.grids) is copied once: torch wants writable buffers.
    flat = grids if isinstance(grids, torch.Tensor) else torch.from_numpy(np.array(grids, dtype=np.uint8))
    if device is not None:
        flat = flat.to(device)
    c = _columns(rows)
    n = len(c["in_off"])
    perm = np.asarray(c["perm"], dtype=np.int64).reshape(n, T.NUM_COLOURS)
    half = lambda side: np.column_stack(  # noqa: E731
        [np.asarray(c[k], dtype=np.int64) for k in (f"{side}_off", f"{side}_h", f"{side}_w", "dihedral", "dr", "dc")] + [perm]
    )
    info = to_device(np.concatenate([half("in"), half("out")]), flat.device)
    boards = _encode_boards_torch(flat, info, canvas)
    return boards[:n], boards[n:], to_device(np.asarray(c["puzzle_id"]).astype(np.int32), flat.device)


def _npy_writer(path: Path, dtype: np.dtype, shape: tuple[int, ...]):
    """Open ``path`` as a .npy file of known shape whose data is then appended chunk by chunk.

    Plain sequential writes (not a memmap), so written pages are not
    counted in, or held by, this process: memory stays at one chunk.
    """
    f = open(path, "wb")
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return f


def write_materialized(table: pl.DataFrame, grids: np.ndarray, canvas: int, out_dir: str | os.PathLike, chunk: int = MATERIALIZE_CHUNK) -> dict[str, int]:
    """Reference-style token arrays per split: ``<split>/inputs.npy``, ``labels.npy``, ``puzzle_identifiers.npy``.

    Streams ``chunk`` rows at a time, so memory stays at one chunk however
    large the output (ARC-AGI-1 x 1000 is ~5.8 GB). ``puzzle_identifiers``
    has one entry per row (int32), inputs/labels are (rows, canvas²) uint8.
    """
    out: dict[str, int] = {}
    grids = np.asarray(grids)
    for split in _SPLITS:
        part = table.filter(pl.col("split") == split)
        d = Path(out_dir) / split
        d.mkdir(parents=True, exist_ok=True)
        n = len(part)
        files = {
            "inputs": _npy_writer(d / "inputs.npy", np.uint8, (n, canvas * canvas)),
            "labels": _npy_writer(d / "labels.npy", np.uint8, (n, canvas * canvas)),
            "puzzle_identifiers": _npy_writer(d / "puzzle_identifiers.npy", np.int32, (n,)),
        }
        try:
            for a in range(0, n, chunk):
                x, y, p = materialize(part.slice(a, chunk), grids, canvas)
                files["inputs"].write(x.tobytes())
                files["labels"].write(y.tobytes())
                files["puzzle_identifiers"].write(p.astype("<i4").tobytes())
        finally:
            for f in files.values():
                f.close()
        out[f"materialized_{split}_rows"] = n
    return out


# --------------------------------------------------------------------------- the stage


def _is_none(source: str | None) -> bool:
    return source is None or str(source).strip().lower() in ("", "none")


def _load_extra(source: str | None, max_side: int | None) -> list[Task]:
    """Extra training tasks; ``max_side`` may leave none of them, which is fine (unlike for the source)."""
    if _is_none(source):
        return []
    tasks = load_tasks(source)
    return tasks if max_side is None else [t for t in tasks if t.max_side <= max_side]


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ArcpipeError(f"augment: {name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def augment(
    source: str = "arc1:evaluation",
    *,
    extra_train: str | None = "arc1:training",
    n_aug: int = 1000,
    train_aug: int | None = None,
    seed: int = 0,
    canvas: int = T.MAX_SIDE,
    max_side: int | None = None,
    task_ids: str | Sequence[str] | None = None,
    first: int | None = None,
    translate: bool = True,
    dihedral: bool = True,
    colour: bool = True,
    retries: int = 5,
    n_jobs: int = -1,
    root: str | os.PathLike | None = None,
    force: bool = False,
    materialize: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Stage:
    """Build (or find in the cache) the augmentation plan; returns its stage.

    ``source`` tasks are the evaluated ones (demonstrations -> training rows,
    test inputs -> test rows, all ``n_aug`` variants); ``extra_train`` tasks
    (``None``/``"none"`` for none) add every solved pair as training rows.
    ``task_ids`` and ``first`` select among the source tasks; ``max_side``
    filters both sets. Only variants ``< train_aug`` (default ``n_aug``) emit
    training rows. Extra tasks whose id is also a source task are left out
    (the source copy already trains on its demonstrations). ``dihedral``,
    ``colour`` and ``translate`` switch the recipe's three kinds of
    augmentation (all on: the paper's); without colour permutations a task
    has at most 8 variants (1 with neither), and ``n_aug`` caps at that.
    ``progress(done, total)`` is called as tasks finish (the CLI's bar).
    ``n_jobs`` only changes speed: the plan is identical for any value.
    """
    n_aug = _positive("n_aug", n_aug)
    train_aug = n_aug if train_aug is None else _positive("train_aug", train_aug, 0)
    if train_aug > n_aug:
        raise ArcpipeError(f"augment: train_aug={train_aug} exceeds n_aug={n_aug}")
    canvas = _positive("canvas", canvas)
    retries = _positive("retries", retries)
    seed = int(seed)
    if isinstance(task_ids, str):
        task_ids = [t.strip() for t in task_ids.split(",") if t.strip()]
    src_tasks = load_tasks(source, max_side=max_side, task_ids=task_ids, first=first)
    extra_all = _load_extra(extra_train, max_side)
    src_ids = {t.id for t in src_tasks}
    extra_tasks = [t for t in extra_all if t.id not in src_ids]
    _check_canvas([*src_tasks, *extra_tasks], canvas)
    extra_name = None if _is_none(extra_train) else str(extra_train)
    config = {
        "source": str(source),
        "extra_train": extra_name,
        "n_aug": n_aug,
        "train_aug": train_aug,
        "seed": seed,
        "canvas": canvas,
        "max_side": max_side,
        "task_ids": sorted(task_ids) if task_ids else None,
        "first": first,
        "translate": bool(translate),
        "retries": retries,
        "materialize": bool(materialize),
        # Recorded only when not CONFIG_DEFAULTS' value, so plans built before these switches keep their keys.
        **{k: v for k, v in (("dihedral", bool(dihedral)), ("colour", bool(colour))) if v != CONFIG_DEFAULTS[k]},
    }
    inputs = {"tasks": tasks_fingerprint(src_tasks), "extra_train": tasks_fingerprint(extra_tasks) if extra_tasks else "none"}
    total = len(src_tasks) + len(extra_tasks)

    def build(work: Path) -> dict:
        done = 0

        def tick(k: int) -> None:
            nonlocal done
            done += k
            if progress:
                progress(done, total)

        table, flat, identifiers, counts = build_plan(
            src_tasks, extra_tasks, n_aug=n_aug, train_aug=train_aug, seed=seed, canvas=canvas,
            translate=translate, retries=retries, dihedral=dihedral, colour=colour, n_jobs=n_jobs, on_progress=tick,
        )  # fmt: skip
        table.write_parquet(work / PLAN_FILE, statistics=False)
        np.save(work / GRIDS_FILE, flat)
        (work / IDENTIFIERS_FILE).write_text(json.dumps(identifiers))
        (work / TASKS_FILE).write_text(json.dumps(tasks_to_json([*src_tasks, *extra_tasks])))
        if materialize:
            counts.update(write_materialized(table, flat, canvas, work))
        counts["extra_train_overlap_dropped"] = len(extra_all) - len(extra_tasks)
        return counts

    stage = run_stage(STAGE, config, inputs, build, root=root, force=force)
    short = stage.manifest.get("counts", {}).get("short_tasks", {})
    if short:
        listed = ", ".join(f"{k} ({v})" for k, v in list(short.items())[:8])
        more = f" and {len(short) - 8} more" if len(short) > 8 else ""
        print(
            f"warning: {len(short)} task(s) have fewer than {max_variants(n_aug, dihedral=dihedral, colour=colour)} distinct variants: {listed}{more}",
            file=sys.stderr,
        )
    return stage


# --------------------------------------------------------------------------- reading a plan


@dataclass
class Plan:
    """A finished augment stage, loaded for train/infer/vote: table, grids and names."""

    path: Path
    manifest: dict
    table: pl.DataFrame
    grids: np.ndarray
    identifiers: list[str]

    @classmethod
    def load(cls, stage_or_path: Stage | str | os.PathLike | None = None, *, root: str | os.PathLike | None = None) -> "Plan":
        """Load a plan from a Stage, a stage directory, or (None) the newest augment output in the cache."""
        if stage_or_path is None:
            stage = require_newest(STAGE, root, hint="run `arcpipe augment` first")
        elif isinstance(stage_or_path, Stage):
            stage = stage_or_path
        else:
            stage = load_stage(stage_or_path, STAGE)
        path = Path(stage.path)
        try:
            table = pl.read_parquet(path / PLAN_FILE)
            grids = np.load(path / GRIDS_FILE, mmap_mode="r")
            identifiers = json.loads((path / IDENTIFIERS_FILE).read_text())
        except (OSError, ValueError) as e:
            raise ArcpipeError(f"{path}: unreadable augment stage ({e}); rebuild it with --force") from None
        return cls(path, stage.manifest, table, grids, identifiers)

    @property
    def canvas(self) -> int:
        return int(self.manifest["config"]["canvas"])

    @property
    def num_puzzle_identifiers(self) -> int:
        return len(self.identifiers)

    @cached_property
    def tasks(self) -> dict[str, Task]:
        raw = json.loads((self.path / TASKS_FILE).read_text())
        return {k: task_from_json(v, task_id=k, source=str(self.path / TASKS_FILE)) for k, v in raw.items()}

    def split(self, name: str) -> pl.DataFrame:
        """Rows of one split ("train" rows train the model, "test" rows are inferred)."""
        if name not in _SPLITS:
            raise ArcpipeError(f"plan split {name!r}: expected one of {', '.join(_SPLITS)}")
        return self.table.filter(pl.col("split") == name)

    def materialize(self, rows: pl.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return materialize(rows, self.grids, self.canvas)
