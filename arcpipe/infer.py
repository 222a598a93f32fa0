"""The infer stage: every test-input variant through the trained HRM, once.

Inference is the only expensive step after training, so it runs once per
(checkpoint, dataset) and records everything a later ablation could want:
the cropped prediction and the model's signals (halting logits, answer
log-probability) at every ACT step, or a chosen subset of steps. Voting over
any n_aug, any rule, any step is then a query over ``predictions.parquet`` +
``preds.npy`` (docs/contracts.md "Infer stage").

Work is split into fixed-size shards of plan rows. Each shard is written
atomically into the stage's work directory as it finishes, so a killed run
resumes at the first missing shard, and under ``torchrun`` rank r computes
shards r, r+world, ...; rank 0 then merges them into the final files.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from arcpipe import cache, launch
from arcpipe import progress as shared_progress
from arcpipe import steps as step_list
from arcpipe import threads
from arcpipe.cache import Stage
from arcpipe.errors import ArcpipeError, out_of_memory_as
from arcpipe.transforms import COLOUR_OFFSET, crop_shapes

if TYPE_CHECKING:  # torch is imported lazily: `arcpipe --help` must stay fast
    import torch

#: Most plan rows per shard: the unit of resumption and of work split over ranks.
#: Small enough that a killed 1000-variant run loses little, large enough
#: that shard files stay few (ARC-AGI-1 eval x 1000 variants = ~205 shards).
SHARD_ROWS = 2048
#: Smaller runs still get about this many shards, so up to this many ranks share
#: the work; the layout depends on the row count only, so a run resumes under any world size.
MIN_SHARDS = 16
MIN_SHARD_ROWS = 64
PUZZLE_ID_MODES = ("true", "blank", "random")
#: Plan columns carried into every prediction row (identify the variant for vote).
KEY_COLUMNS = ("task_id", "example", "variant", "puzzle_id", "dihedral", "perm")
PREDICTION_SCHEMA: dict[str, Any] = {
    "task_id": pl.String,
    "example": pl.Int16,
    "variant": pl.Int32,
    "puzzle_id": pl.Int32,
    "dihedral": pl.Int8,
    "perm": pl.Array(pl.UInt8, 10),
    "step": pl.Int16,
    "pred_off": pl.Int64,
    "pred_h": pl.Int16,
    "pred_w": pl.Int16,
    "q_halt": pl.Float32,
    "q_continue": pl.Float32,
    "logprob_sum": pl.Float32,
    "logprob_mean": pl.Float32,
}


# --------------------------------------------------------------------------- inputs


def resolve_inputs(
    checkpoint: Any = None, dataset: Any = None, root: str | os.PathLike | None = None
) -> tuple[Stage, Stage]:
    """(train stage, augment stage) for an infer run.

    Defaults chain as in DESIGN.md: the newest train output, and the augment
    stage that train output was built from (its manifest's ``inputs``).
    """
    train = (
        cache.require_newest("train", root, hint="run `arcpipe train` first or pass CHECKPOINT")
        if checkpoint is None
        else cache.resolve_stage(checkpoint, "train", root, label="CHECKPOINT")
    )
    if dataset is not None:
        return train, cache.resolve_stage(dataset, "augment", root, label="DATASET")
    trained_on = train.inputs.get("augment")
    if trained_on is None:
        raise ArcpipeError(f"{train.path}: train manifest names no 'augment' input; pass DATASET")
    aug = cache.find("augment", trained_on, root)
    if aug is None:
        raise ArcpipeError(
            f"{train.path}: trained on augment stage {trained_on}, which is not in cache "
            f"{cache.cache_root(root)}; rebuild it or pass DATASET"
        )
    return train, aug


def check_compatible(train: Stage, model_cfg: Any, plan: Any, aug: Stage, root: str | os.PathLike | None) -> None:
    """Refuse a dataset whose boards or puzzle ids mean something else to the checkpoint.

    A canvas of another size cannot be fed at all; a different identifier
    list would silently look up other puzzles' embeddings, so it is compared
    by hash against the dataset the checkpoint was trained on (when that one
    is still cached) and by count against the embedding table otherwise.
    """
    seq_len = int(model_cfg.seq_len)
    if plan.canvas * plan.canvas != seq_len:
        raise ArcpipeError(
            f"{aug.path}: canvas {plan.canvas} ({plan.canvas**2} tokens) does not match checkpoint "
            f"{train.path} (seq_len {seq_len})"
        )
    n_ids = int(model_cfg.num_puzzle_identifiers)
    if int(getattr(model_cfg, "puzzle_emb_ndim", 1)) > 0 and len(plan.identifiers) != n_ids:
        raise ArcpipeError(
            f"{aug.path}: {len(plan.identifiers)} puzzle identifiers, but checkpoint {train.path} "
            f"has {n_ids}; it was trained on another dataset"
        )
    trained_on = train.inputs.get("augment")
    if trained_on is not None and trained_on != aug.key:
        original = cache.find("augment", trained_on, root)
        if original is not None:
            from arcpipe.augment import Plan

            # Same hash = every embedding row means the same puzzle in both datasets.
            want, got = cache.content_key(Plan.load(original).identifiers), cache.content_key(plan.identifiers)
            if want != got:
                raise ArcpipeError(
                    f"{aug.path}: puzzle identifiers (hash {got}) differ from those checkpoint {train.path} "
                    f"was trained on (augment {trained_on}, hash {want})"
                )


def parse_steps(steps: str | int | Sequence[int] | None, halt_max_steps: int) -> list[int]:
    """ACT steps to record, 1-based, sorted and unique; ``None``/"all" = every step the checkpoint
    was trained to run (``1..halt_max_steps``), else ``arcpipe.steps.parse``'s forms (``1-16``).
    Steps past ``halt_max_steps`` run the recurrence on beyond what training ever unrolled: the
    test-time refinement the HRM paper scales by raising the ACT limit without retraining."""
    if steps is None or (isinstance(steps, str) and steps.strip().lower() == "all"):
        return list(range(1, halt_max_steps + 1))
    try:
        return step_list.parse(steps)
    except ArcpipeError as e:
        raise ArcpipeError(f"{e} or 'all' (the checkpoint was trained to {halt_max_steps}; later steps continue "
                           "its recurrence)") from None


def inference_rows(plan: Any, max_variants: int | None = None) -> pl.DataFrame:
    """The plan's test rows in plan order, optionally only variants ``< max_variants``."""
    rows = plan.table.filter(pl.col("split") == "test")
    if max_variants is not None:
        if max_variants < 1:
            raise ArcpipeError(f"--max-variants {max_variants}: must be >= 1")
        rows = rows.filter(pl.col("variant") < max_variants)
    return rows


def feed_puzzle_ids(rows: pl.DataFrame, table: pl.DataFrame, mode: str, seed: int) -> np.ndarray:
    """Puzzle ids fed to the model for each test row under an identifier ablation.

    ``true`` keeps the row's own id; ``blank`` feeds 0 (the untrained
    "no puzzle" row); ``random`` feeds, per row, a uniformly drawn id of
    another task's trained variant (seeded), which asks whether the model
    uses the embedding or merely tolerates it. Vectorised: candidate ids are
    grouped by task, and a draw over "all candidates minus my task's block"
    is shifted past that block.
    """
    own = rows["puzzle_id"].to_numpy().astype(np.int32)
    if mode == "true":
        return own
    if mode == "blank":
        return np.zeros_like(own)
    if mode != "random":
        raise ArcpipeError(f"--puzzle-id {mode!r}: expected one of {', '.join(PUZZLE_ID_MODES)}")
    trained = table.filter(pl.col("split") == "train")
    pool_src = trained if trained.height else table
    pool = pool_src.select("task_id", "puzzle_id").unique().sort("task_id", "puzzle_id")
    tasks = pool["task_id"].to_numpy()
    ids = pool["puzzle_id"].to_numpy().astype(np.int32)
    names, start, count = np.unique(tasks, return_index=True, return_counts=True)
    # Each row's task block in the sorted pool (0 ids if its task never trained).
    where = np.searchsorted(names, rows["task_id"].to_numpy())
    where_c = np.minimum(where, len(names) - 1)
    hit = (where < len(names)) & (names[where_c] == rows["task_id"].to_numpy())
    blk_start = np.where(hit, start[where_c], 0)
    blk_len = np.where(hit, count[where_c], 0)
    n_cand = len(ids) - blk_len
    if (n_cand <= 0).any():
        raise ArcpipeError("--puzzle-id random: needs puzzle ids from at least two tasks in the dataset")
    rng = np.random.default_rng(seed)
    k = (rng.random(len(own)) * n_cand).astype(np.int64)
    k = np.where(k >= blk_start, k + blk_len, k)
    return ids[k]


# --------------------------------------------------------------------------- model & ranks


def _dist() -> tuple[int, int, Any]:
    """(rank, world, torch.distributed or None); joins the group under torchrun."""
    import torch

    dist, _ = launch.joined("nccl" if torch.cuda.is_available() else "gloo")
    if dist is None:
        return 0, 1, None
    return dist.get_rank(), dist.get_world_size(), dist


def _device(device: str | None) -> "torch.device":
    import torch

    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", launch.local_rank())
    return torch.device("cpu")


def model_config(train: Stage) -> Any:
    """The checkpoint's ``HRMConfig``, read from ``config.json`` without loading weights
    (enough to key the stage and check the dataset before any heavy work)."""
    from hrm import HRMConfig

    path = train.path / "config.json"
    try:
        return HRMConfig.from_dict(json.loads(path.read_text())["model"])
    except FileNotFoundError:
        raise ArcpipeError(f"{path}: missing; not a finished train stage") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ArcpipeError(f"{path}: unreadable model config ({type(e).__name__}: {e})") from None


def load_model(train: Stage, device: "torch.device", compile: bool = False) -> Any:
    """The trained HRM in eval mode on ``device`` (its ACT step compiled if asked)."""
    from arcpipe.train import load_trained

    try:
        model, _ = load_trained(train, device=str(device), compile=compile)
    except (ValueError, FileNotFoundError) as e:  # hrm.load_checkpoint: truncated, not weights-only, wrong shapes
        raise ArcpipeError(str(e)) from None
    return model.eval()


@dataclass
class _Pending:
    """One batch in flight: its outputs being copied to the host behind the compute."""

    n: int
    preds: "torch.Tensor"  # (S, B, L) uint8
    logprob: "torch.Tensor"  # (S, B, L) float32
    q_halt: "torch.Tensor"  # (S, B)
    q_continue: "torch.Tensor"  # (S, B)
    event: Any  # torch.cuda.Event or None


def _launch(model: Any, inputs: np.ndarray, pids: np.ndarray, steps: list[int], device: "torch.device") -> _Pending:
    """Queue one batch's rollout and its device->host copies; returns without waiting on CUDA.

    The copies are queued right behind this batch's kernels, so while the GPU
    works on the next batch the host can already crop this one: no sync
    inside the ACT step loop or between batches.
    """
    import torch

    from arcpipe.augment import to_device  # pinned, non-blocking on CUDA

    cuda = device.type == "cuda"
    x = to_device(inputs, device).long()
    batch = {
        "inputs": x,
        "labels": torch.full_like(x, -100),  # inference: no target is shown to the model
        "puzzle_identifiers": to_device(pids, device).long(),
    }
    # No autocast: the model casts to its config's forward_dtype itself (bf16 on CUDA for the
    # presets, always fp32 on CPU), exactly as in training, so infer sees the trained numerics.
    out = model.rollout(batch, steps=steps)
    host = {
        k: out[k].to(dtype, copy=False).to("cpu", non_blocking=cuda)
        for k, dtype in (
            ("preds", torch.uint8),
            ("token_logprob", torch.float32),
            ("q_halt", torch.float32),
            ("q_continue", torch.float32),
        )
    }
    event = None
    if cuda:
        event = torch.cuda.Event()
        event.record()
    return _Pending(len(inputs), host["preds"], host["token_logprob"], host["q_halt"], host["q_continue"], event)


def _finish(p: _Pending, canvas: int) -> dict[str, np.ndarray]:
    """Crop a finished batch; outputs are ordered (row, step), steps fastest."""
    if p.event is not None:
        p.event.synchronize()
    s = p.preds.shape[0]
    boards = p.preds.numpy().transpose(1, 0, 2).reshape(p.n * s, canvas, canvas)
    logprob = p.logprob.numpy().transpose(1, 0, 2).reshape(p.n * s, canvas, canvas)
    h, w = crop_shapes(boards, canvas)
    inside = (np.arange(canvas)[None, :, None] < h[:, None, None]) & (np.arange(canvas)[None, None, :] < w[:, None, None])
    colours = (boards[inside] - COLOUR_OFFSET).astype(np.uint8)  # row-major per board, boards in order
    area = h * w
    lp_sum = np.where(inside, logprob, 0.0).sum(axis=(1, 2), dtype=np.float64)
    # An empty crop has no answer tokens; -inf keeps it last under logprob ranking.
    lp_sum = np.where(area > 0, lp_sum, -np.inf)
    lp_mean = np.where(area > 0, lp_sum / np.maximum(area, 1), -np.inf)
    return {
        "colours": colours,
        "pred_h": h.astype(np.int16),
        "pred_w": w.astype(np.int16),
        "q_halt": p.q_halt.numpy().T.reshape(-1),
        "q_continue": p.q_continue.numpy().T.reshape(-1),
        "logprob_sum": lp_sum.astype(np.float32),
        "logprob_mean": lp_mean.astype(np.float32),
    }


# --------------------------------------------------------------------------- shards


def default_shard_rows(n_rows: int) -> int:
    """Shard size for ``n_rows`` rows: ~``MIN_SHARDS`` shards, within [MIN_SHARD_ROWS, SHARD_ROWS]."""
    return int(min(SHARD_ROWS, max(MIN_SHARD_ROWS, -(-n_rows // MIN_SHARDS))))


def _shard_paths(work: Path, i: int) -> tuple[Path, Path]:
    return work / f"shard-{i:05d}.parquet", work / f"shard-{i:05d}.npy"


def _shard_done(work: Path, i: int) -> bool:
    table, arr = _shard_paths(work, i)
    return table.is_file() and arr.is_file()


def _write_shard(work: Path, i: int, table: pl.DataFrame, colours: np.ndarray) -> None:
    """Both files atomically, the table last: its presence marks the shard done."""
    table_path, arr_path = _shard_paths(work, i)
    with cache.atomic_path(arr_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, colours)
    with cache.atomic_path(table_path) as tmp:
        table.write_parquet(tmp)


def _prepare_work(work: Path, layout: dict) -> None:
    """Drop shards left by a run with another shard layout (they would not line up)."""
    meta = work / "shards.json"
    if meta.is_file():
        try:
            same = json.loads(meta.read_text()) == layout
        except json.JSONDecodeError:
            same = False
        if same:
            return
    for p in work.glob("shard-*"):
        p.unlink()
    cache.atomic_write_json(meta, layout)


def _run_shard(
    model: Any,
    plan: Any,
    rows: pl.DataFrame,
    pids: np.ndarray,
    steps: list[int],
    device: "torch.device",
    batch_size: int,
    advance: Any,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Predictions for one shard of rows (table with shard-local ``pred_off``, colours)."""
    import torch

    from arcpipe.augment import materialize

    n, s = rows.height, len(steps)
    parts: list[dict[str, np.ndarray]] = []
    pending: _Pending | None = None
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            chunk = rows.slice(lo, batch_size)
            inputs, _, _ = materialize(chunk, plan.grids, plan.canvas)
            launched = _launch(model, inputs, pids[lo : lo + chunk.height], steps, device)
            if pending is not None:
                parts.append(_finish(pending, plan.canvas))
                advance(pending.n)
            pending = launched
        if pending is not None:
            parts.append(_finish(pending, plan.canvas))
            advance(pending.n)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    area = cat["pred_h"].astype(np.int64) * cat["pred_w"].astype(np.int64)
    off = np.concatenate([[0], np.cumsum(area)[:-1]]).astype(np.int64)
    table = (
        rows.select(*KEY_COLUMNS)
        .with_columns(pl.Series("puzzle_id", pids, dtype=pl.Int32))
        .gather(np.repeat(np.arange(n), s))
        .with_columns(
            pl.Series("step", np.tile(np.asarray(steps, dtype=np.int16), n)),
            pl.Series("pred_off", off),
            *(pl.Series(k, cat[k]) for k in ("pred_h", "pred_w", "q_halt", "q_continue", "logprob_sum", "logprob_mean")),
        )
        .cast(PREDICTION_SCHEMA)
    )
    return table, cat["colours"]


def _merge(work: Path, n_shards: int) -> tuple[int, int]:
    """Concatenate the shards into predictions.parquet + preds.npy; returns (rows, cells)."""
    arrays = [np.load(_shard_paths(work, i)[1], mmap_mode="r") for i in range(n_shards)]
    bases = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
    table = pl.concat(
        [
            pl.read_parquet(_shard_paths(work, i)[0]).with_columns(pl.col("pred_off") + int(bases[i]))
            for i in range(n_shards)
        ]
    )
    with cache.atomic_path(work / "preds.npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(int(bases[-1]),))
        for a, lo in zip(arrays, bases[:-1]):
            out[lo : lo + len(a)] = a
        out.flush()
        del out
    with cache.atomic_path(work / "predictions.parquet") as tmp:
        table.write_parquet(tmp)
    del arrays
    for i in range(n_shards):
        for p in _shard_paths(work, i):
            p.unlink()
    (work / "shards.json").unlink(missing_ok=True)
    return table.height, int(bases[-1])


def _progress(enabled: bool, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("variants"),
        TextColumn("{task.fields[rate]:>8.1f} variants/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


# --------------------------------------------------------------------------- stage


def infer(
    checkpoint: Any = None,
    dataset: Any = None,
    *,
    steps: str | int | Sequence[int] | None = None,
    batch_size: int | None = None,
    puzzle_id: str | bool = "true",
    seed: int = 0,
    max_variants: int | None = None,
    device: str | None = None,
    compile: bool = False,
    shard_rows: int | None = None,
    progress: bool = True,
    root: str | os.PathLike | None = None,
    force: bool = False,
) -> Stage:
    """Run every test-split plan row through the checkpoint; cache predictions per recorded step.

    ``checkpoint``/``dataset`` default to the newest train stage and the
    augment stage it was trained on. ``steps`` picks which ACT steps to
    record (default all ``1..halt_max_steps``; the model runs every step up
    to the last one asked for, since a step's state depends on the ones
    before, and may run past ``halt_max_steps``: ``parse_steps``). ``puzzle_id``
    ("true", "blank", "random") changes only the identifiers fed to the
    model, for the embedding ablation; ``seed`` drives "random".
    ``max_variants`` keeps variants ``< N`` (quick runs). ``batch_size``
    and ``device`` do not enter the cache key: results do not depend on
    them beyond floating-point noise. ``compile`` runs the ACT step under
    ``torch.compile`` (for GPUs; fused kernels round differently in bf16, so
    a compiled run is its own cache entry). Under torchrun every rank calls this.
    """
    from arcpipe.augment import Plan

    if isinstance(puzzle_id, bool):  # pipeline TOML may say `puzzle_id = false`
        puzzle_id = "true" if puzzle_id else "blank"
    if puzzle_id not in PUZZLE_ID_MODES:
        raise ArcpipeError(f"--puzzle-id {puzzle_id!r}: expected one of {', '.join(PUZZLE_ID_MODES)}")
    if batch_size is not None and batch_size < 1:
        raise ArcpipeError(f"--batch-size {batch_size}: must be >= 1")
    if shard_rows is not None and shard_rows < 1:
        raise ArcpipeError(f"shard_rows {shard_rows}: must be >= 1")
    train, aug = resolve_inputs(checkpoint, dataset, root)
    dev = _device(device)
    if dev.type == "cuda" and dev.index is not None and launch.world() > 1:
        import torch

        torch.cuda.set_device(dev)  # NCCL's barriers then use this rank's GPU, not a guess
    cfg = model_config(train)
    plan = Plan.load(aug)
    check_compatible(train, cfg, plan, aug, root)
    recorded = parse_steps(steps, int(cfg.halt_max_steps))
    rows = inference_rows(plan, max_variants)
    if rows.height == 0:
        raise ArcpipeError(f"{aug.path}: no test rows to infer (plan has no 'test' split rows{' below --max-variants' if max_variants else ''})")
    pids = feed_puzzle_ids(rows, plan.table, puzzle_id, seed)
    # Large batches on a GPU: a rollout has no activations to keep, and the `arc` preset at
    # 1024 x 900 tokens should need ~20 GB by a count of its largest activations (unmeasured
    # as yet: benchmarks/gpu.py reports the peak; lower --batch-size on smaller cards).
    bs = batch_size or (1024 if dev.type == "cuda" else 32)

    config: dict[str, Any] = {"steps": recorded, "puzzle_id": puzzle_id, "max_variants": max_variants}
    if puzzle_id == "random":
        config["seed"] = seed
    if compile:  # only when on, so the keys of eager runs stay what they were
        config["compile"] = True
    if shard_rows is None:
        shard_rows = default_shard_rows(rows.height)
    n_shards = -(-rows.height // shard_rows)

    def span(i: int) -> tuple[int, int]:
        return i * shard_rows, min((i + 1) * shard_rows, rows.height)

    def barrier() -> None:
        if dist is not None:
            dist.barrier()

    def build(work: Path) -> dict:
        if rank == 0:
            _prepare_work(work, {"shard_rows": shard_rows, "rows": rows.height})
        barrier()
        missing = [i for i in range(n_shards) if not _shard_done(work, i)]
        todo = [i for i in missing if i % world == rank]  # shard i belongs to rank i % world
        if todo and dev.type == "cpu":
            threads.fit("infer", (lambda msg: print(msg, file=sys.stderr, flush=True)) if rank == 0 else (lambda msg: None))
        model = load_model(train, dev, compile=compile) if todo else None
        rows_of = lambda shards: sum(hi - lo for lo, hi in map(span, shards))  # noqa: E731
        mine = [i for i in range(n_shards) if i % world == rank]
        t0 = time.perf_counter()
        # Rank 0 draws its own share only (ranks do not report to each other mid-run).
        label = "infer" if world == 1 else f"infer rank 0/{world}"
        with _progress(progress and rank == 0, label) as bar:
            total, before = rows_of(mine), rows_of(mine) - rows_of(todo)
            task = bar.add_task(label, total=total, completed=before, rate=0.0)
            done = 0

            def advance(k: int) -> None:
                nonlocal done
                done += k
                bar.update(task, advance=k, rate=done / max(time.perf_counter() - t0, 1e-9))
                if progress and rank == 0:
                    shared_progress.report(before + done, total)

            for i in todo:
                lo, hi = span(i)
                oom = f"infer: out of memory at batch {bs} on {dev.type}; lower --batch-size (finished shards are kept, a rerun resumes)"
                with out_of_memory_as(oom):
                    table, colours = _run_shard(model, plan, rows.slice(lo, hi - lo), pids[lo:hi], recorded, dev, bs, advance)
                _write_shard(work, i, table, colours)
        barrier()
        wall = time.perf_counter() - t0
        if rank != 0:
            return {}
        n_pred, n_cells = _merge(work, n_shards)
        return {
            "variants": rows.height,
            "tasks": rows["task_id"].n_unique(),
            "steps": len(recorded),
            "predictions": n_pred,
            "pred_cells": n_cells,
            "variants_inferred": rows_of(missing),
            "variants_per_s": round(rows_of(missing) / wall, 2) if missing and wall > 0 else None,
            "device": str(dev),
            "dtype": cfg.forward_dtype if dev.type == "cuda" else "float32",
            "world_size": world,
            "batch_size": bs,
        }

    # The group stays up when infer made it: a script that calls infer again (another checkpoint)
    # reuses it. Making a second group in one torchrun process after destroying the first hung in
    # two of three tries of tests/test_infer.py's two-rank run, so infer never destroys one.
    rank, world, dist = _dist()
    return cache.run_stage(
        "infer",
        config,
        {"train": train.key, "augment": aug.key},
        build,
        root=root,
        force=force,
        resumable=True,
        writer=rank == 0,
    )


def load_predictions(stage_or_path: Stage | str | os.PathLike) -> tuple[pl.DataFrame, np.ndarray]:
    """An infer stage's (predictions table, concatenated cropped grids)."""
    stage = stage_or_path if isinstance(stage_or_path, Stage) else cache.load_stage(stage_or_path, "infer")
    return pl.read_parquet(stage.path / "predictions.parquet"), np.load(stage.path / "preds.npy")


def prediction_grid(table: pl.DataFrame, preds: np.ndarray, i: int) -> np.ndarray:
    """Row ``i``'s cropped prediction (variant frame) as an (h, w) uint8 grid."""
    off, h, w = (int(table[c][i]) for c in ("pred_off", "pred_h", "pred_w"))
    return preds[off : off + h * w].reshape(h, w)
