"""The train stage: fit an HRM to an augment stage's training rows.

Output (a cached stage, DESIGN.md "Stages"; keyed by the resolved model and
training config plus the augment stage's key):

- ``model.pt`` — final weights (``hrm.save_checkpoint``), including the
  puzzle-ID embedding table;
- ``config.json`` — ``{"preset", "model": HRMConfig dict, "train":
  TrainConfig dict, "dataset": {augment key, path, canvas, row counts},
  "steps"}``, everything ``load_trained`` needs;
- ``metrics.parquet`` — one row per optimiser step (losses, accuracies of
  the sequences that halted at that step, mean ACT steps, lr, tokens/s, wall
  time) with the periodic evaluation columns filled on evaluation steps;
- ``training.png`` — loss and accuracy against step.

The loop itself (sampling, the persistent ACT carry, hand-rolled gradient
all-reduce, exact resume) is ``arcpipe.trainer``; its docstring says why it
looks the way it does. Here:

* **Time budgets.** ``max_minutes`` is part of the config (and so of the
  cache key) but makes the result depend on the machine's speed: two runs
  with the same key may stop at different steps. Prefer ``max_steps`` or
  ``epochs`` when the result should be reproducible.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arcpipe import cache, threads
from arcpipe.errors import ArcpipeError
from arcpipe.trainer import (
    METRIC_COLUMNS,
    RESUME_DIR,
    _barrier,
    _Data,
    _determinism,
    _init_distributed,
    _Trainer,
    make_batch,
    total_steps_for,
)
from arcpipe.transforms import VOCAB_SIZE

#: Training hyper-parameters per preset. ``arc`` is the reference release's ARC
#: recipe (lr 1e-4 flat after warmup, puzzle-embedding lr 1e-2, batch 768);
#: ``tiny`` is tuned so a handful of small tasks is memorised on 2 CPU cores
#: in minutes (the README's demo).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "arc": dict(
        global_batch_size=768,
        lr=1e-4,
        lr_min_ratio=1.0,
        warmup_steps=2000,
        beta1=0.9,
        beta2=0.95,
        weight_decay=0.1,
        puzzle_emb_lr=1e-2,
        puzzle_emb_weight_decay=0.1,
        # The reference's 100000 epochs: a reference epoch shows each task once (one random
        # variant), an arcpipe epoch every variant's rows, so with 1000 variants that is 100.
        epochs=100.0,
        eval_every=10000,
        eval_size=1024,
        checkpoint_every=2000,
    ),
    "tiny": dict(
        global_batch_size=32,
        lr=3e-3,
        lr_min_ratio=0.1,
        warmup_steps=20,
        beta1=0.9,
        beta2=0.95,
        weight_decay=0.1,
        puzzle_emb_lr=3e-2,
        puzzle_emb_weight_decay=0.1,
        max_steps=1000,
        eval_every=100,
        eval_size=128,
        checkpoint_every=100,
    ),
}
#: TRM-tiny at ``tiny``'s lr 3e-3 does not train on the CPU ablation set (13 tasks x 32
#: variants): its loss stays at ~2.0 from step 100 on, a constant prediction, with or without
#: the no-grad cycles and with a 200-step warmup. The recursion backpropagates through 3
#: applications of the shared 2-layer net (6 post-norm layers vs HRM-tiny's 2); at 1e-3 it
#: learns (loss 2.04 -> 1.68 in 600 steps). Measured 2026-11-23, see reports/ablations/.
TRAIN_PRESETS["trm-tiny"] = {**TRAIN_PRESETS["tiny"], "lr": 1e-3, "warmup_steps": 100}


def _model_presets() -> list[str]:
    """Model presets ``hrm`` defines (arc, tiny and the ablation cores' trm[-tiny], transformer[-tiny])."""
    from hrm import config as hrm_config

    return sorted(getattr(hrm_config, "_PRESETS", {"arc": None, "tiny": None}))


def train_defaults(preset: str) -> dict[str, Any]:
    """Training hyper-parameters for a model preset: its own entry if it has one, else the CPU
    ones for ``*-tiny`` and the paper's for the rest. The pipeline reads it to know what a run
    that leaves a setting out gets, so a changed preset re-runs only the runs that use it."""
    if preset in TRAIN_PRESETS:
        return dict(TRAIN_PRESETS[preset])
    return dict(TRAIN_PRESETS["tiny" if preset.endswith("-tiny") else "arc"])


def preset_settings(preset: str) -> dict[str, Any]:
    """Everything a model preset fixes: its training hyper-parameters and its model fields, in one
    flat mapping. A report reads it to tell a setting that is part of what a preset *is* (a plain
    transformer's L_cycles=1) from one a sweep changed. The model fields the dataset decides
    (``_DATA_FIELDS``) are left out. Raises ``ValueError`` for an unknown preset."""
    from hrm import HRMConfig

    model = {k: v for k, v in HRMConfig.preset(preset).to_dict().items() if k not in _DATA_FIELDS}
    return {**train_defaults(preset), **model}


def _data_fields(canvas: int, num_ids: int) -> dict[str, int]:
    """The model fields a run takes from its dataset (canvas, puzzle-id count, token vocabulary),
    not its preset: ``_resolve_config`` fills them in and ``preset_settings`` leaves them out,
    both from this one mapping."""
    return {"seq_len": canvas * canvas, "num_puzzle_identifiers": num_ids, "vocab_size": VOCAB_SIZE}


_DATA_FIELDS = tuple(_data_fields(1, 1))


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a training run that is not the model's shape.

    ``max_steps``/``epochs``/``max_minutes`` are budgets; the run stops at
    the first one reached. The LR schedule (warmup, then cosine down to
    ``lr_min_ratio``) spans the step budget (``max_steps`` or the steps
    ``epochs`` amounts to); with only ``max_minutes`` the horizon is unknown,
    so the LR stays flat after warmup. ``holdout`` removes each task's last
    demonstration pair (in every variant, so no rotated copy leaks) from the
    training rows and evaluates exact accuracy on it; the train-sample
    evaluation always runs on a fixed sample of ``eval_size`` training rows.
    """

    global_batch_size: int
    lr: float
    lr_min_ratio: float
    warmup_steps: int
    beta1: float
    beta2: float
    weight_decay: float
    puzzle_emb_lr: float
    puzzle_emb_weight_decay: float
    eval_every: int
    eval_size: int
    checkpoint_every: int
    max_steps: int | None = None
    max_minutes: float | None = None
    epochs: float | None = None
    grad_clip: float | None = None
    holdout: bool = False
    seed: int = 0
    deterministic: bool = False
    compile: bool = False
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_OPTIONAL_NUMBERS = {"max_steps": int, "max_minutes": float, "epochs": float, "grad_clip": float}
_BUDGETS = ("max_steps", "epochs", "max_minutes")


def _coerce(name: str, value: Any, like: Any) -> Any:
    """Coerce an override (``--set k=v`` arrives as JSON-ish text) to the type of the default."""
    if value is None or like is None:
        return value
    try:
        if isinstance(like, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(like, int):
            f = float(value)
            if not f.is_integer():
                raise ValueError(value)
            return int(f)
        if isinstance(like, float):
            return float(value)
        return type(like)(value)
    except (TypeError, ValueError):
        raise ArcpipeError(f"train: override {name}={value!r}: expected {type(like).__name__}") from None


# --------------------------------------------------------------------------- dataset


def _resolve_dataset(dataset: Any, root: Any, say: Callable[[str], None]) -> cache.Stage:
    """The augment stage to train on; for a bare ``train()`` the newest one, said aloud."""
    stage = cache.resolve_stage(
        dataset, "augment", root, noun="dataset directory (expected an augment stage)",
        hint="run `arcpipe augment` first or pass a dataset directory",
    )
    if dataset is None:
        say(f"train: using the newest augment stage {stage.path}")
    return stage


def _load_data(stage: cache.Stage, holdout: bool) -> _Data:
    import polars as pl

    from arcpipe import augment as aug

    try:
        plan = aug.Plan.load(stage)
    except ArcpipeError:
        raise
    except (OSError, KeyError, ValueError, pl.exceptions.PolarsError) as e:
        raise ArcpipeError(f"{stage.path}: unreadable augment stage ({type(e).__name__}: {e}); rebuild it") from None
    table = plan.table
    need = {"task_id", "variant", "puzzle_id", "split", "part", "example", "dihedral", "perm", "dr", "dc",
            "in_off", "in_h", "in_w", "out_off", "out_h", "out_w"}  # fmt: skip
    missing = need - set(table.columns)
    if missing:
        raise ArcpipeError(f"{stage.path}: plan.parquet lacks columns {sorted(missing)} (incompatible arcpipe version); rebuild it")
    table = table.filter(pl.col("split") == "train")
    if table.height == 0:
        raise ArcpipeError(f"{stage.path}: the plan has no training rows")
    columns: dict[str, np.ndarray] = {}
    for name in table.columns:
        col = table[name]
        if name == "perm":
            columns[name] = np.asarray(col.to_numpy() if isinstance(col.dtype, pl.Array) else col.to_list(), dtype=np.uint8)
        else:
            columns[name] = col.to_numpy()
    all_rows = np.arange(table.height)
    hold = np.zeros(table.height, dtype=bool)
    if holdout:
        # Each task's last demonstration pair, in every variant, leaves training.
        # Tasks with a single demonstration keep it (they'd have nothing to learn from).
        demos = table.with_row_index("_row").filter(pl.col("part") == "train")
        last = demos.group_by("task_id").agg(pl.col("example").max().alias("_last"), pl.col("example").n_unique().alias("_n"))
        marked = demos.join(last, on="task_id").filter((pl.col("example") == pl.col("_last")) & (pl.col("_n") > 1))
        hold[marked["_row"].to_numpy()] = True
    return _Data(
        stage=stage,
        canvas=int(plan.canvas),
        grids=plan.grids,
        columns=columns,
        train_rows=all_rows[~hold],
        holdout_rows=all_rows[hold],
        num_puzzle_identifiers=int(plan.num_puzzle_identifiers),
        materialize=aug.materialize,
        materialize_torch=getattr(aug, "materialize_torch", None),
    )


# --------------------------------------------------------------------------- config


def _resolve_config(
    preset: str, overrides: dict | None, explicit: dict[str, Any], data_canvas: int, num_ids: int, device: str
) -> tuple[Any, TrainConfig]:
    """Merge preset defaults, ``--set`` overrides and explicit arguments into (HRMConfig, TrainConfig).

    Keys of ``overrides`` go to the model if they name an ``HRMConfig`` field
    and to training otherwise. ``seq_len`` and ``num_puzzle_identifiers``
    come from the dataset; an explicit override that contradicts it is an
    error rather than a silent mismatch.
    """
    import hrm

    overrides = dict(overrides or {})
    model_fields = {f.name for f in dataclasses.fields(hrm.HRMConfig)}
    model_over = {k: v for k, v in overrides.items() if k in model_fields}
    train_over = {k: v for k, v in overrides.items() if k not in model_fields}
    unknown = sorted(k for k in train_over if k not in _TRAIN_FIELDS)
    if unknown:
        raise ArcpipeError(
            f"train: unknown setting(s) {', '.join(unknown)} (model: {', '.join(sorted(model_fields))}; "
            f"train: {', '.join(_TRAIN_FIELDS)})"
        )
    base_model = hrm.HRMConfig.preset(preset)
    for k, v in list(model_over.items()):
        model_over[k] = _coerce(k, v, getattr(base_model, k))
    data = _data_fields(data_canvas, num_ids)
    seq_len = data["seq_len"]
    if "seq_len" in model_over and model_over["seq_len"] != seq_len:
        raise ArcpipeError(
            f"train: seq_len={model_over['seq_len']} does not fit the dataset's {data_canvas}x{data_canvas} canvas "
            f"(needs seq_len={seq_len}); drop the override"
        )
    if "num_puzzle_identifiers" in model_over and model_over["num_puzzle_identifiers"] < num_ids:
        raise ArcpipeError(
            f"train: num_puzzle_identifiers={model_over['num_puzzle_identifiers']} is smaller than the dataset's {num_ids}"
        )
    for k, v in data.items():  # the canvas always decides seq_len (checked above); the others unless overridden
        if k == "seq_len" or k not in model_over:
            model_over[k] = v
    try:
        model_cfg = hrm.HRMConfig.preset(preset, **model_over)
    except (TypeError, ValueError) as e:
        raise ArcpipeError(f"train: bad model settings for preset {preset!r}: {e}") from None

    defaults = train_defaults(preset)
    values: dict[str, Any] = dict(defaults)
    given = {**train_over, **{k: v for k, v in explicit.items() if v is not None}}
    if any(given.get(k) is not None for k in _BUDGETS):  # any budget given replaces the preset's budgets
        for k in _BUDGETS:
            values[k] = None
    values.update(given)
    values["device"] = device
    for k, v in list(values.items()):
        if k in _OPTIONAL_NUMBERS:
            values[k] = None if v is None else _coerce(k, v, _OPTIONAL_NUMBERS[k](0))
        else:
            values[k] = _coerce(k, v, defaults.get(k, _TRAIN_FIELDS[k].default))
    tc = TrainConfig(**values)
    for name in ("global_batch_size", "eval_every", "checkpoint_every"):
        if getattr(tc, name) < 1:
            raise ArcpipeError(f"train: {name} must be >= 1 (got {getattr(tc, name)})")
    for name in ("max_steps", "max_minutes", "epochs"):
        v = getattr(tc, name)
        if v is not None and v <= 0:
            raise ArcpipeError(f"train: {name} must be > 0 (got {v})")
    return model_cfg, tc


# The dry run's wall-clock hint assumes an H100 at 40% MFU (issue 8's training target;
# benchmarks/gpu.py measures the real rate).
_HINT_MFU = 0.4


def compute_estimate(model_cfg: Any, tc: TrainConfig, stage: cache.Stage) -> dict[str, Any]:
    """What a run will cost before it starts: optimiser steps (from the augment stage's training
    rows; with ``holdout`` a few rows fewer), model FLOPs (:mod:`hrm.flops`, matmuls only) and
    the hours one H100 would take at 40% MFU (None for a time-only budget)."""
    from hrm.flops import datasheet_peak, step_flops

    rows = int(stage.manifest.get("counts", {}).get("train_rows", 0))
    steps = total_steps_for(tc, rows) if rows else None
    per_step = step_flops(model_cfg, tc.global_batch_size).train
    total = steps * per_step if steps is not None else None
    return {"train_rows": rows, "steps": steps, "flops_per_step": per_step, "flops": total,
            "h100_hours_at_40pct_mfu": total / (_HINT_MFU * datasheet_peak("H100")) / 3600 if total is not None else None}


# --------------------------------------------------------------------------- outputs


def metrics_frame(rows: list[dict[str, Any]]):
    """The metrics rows as a polars frame with a fixed schema (eval columns null off-evaluation)."""
    import polars as pl

    schema = {c: (pl.Int64 if c == "step" else pl.Float64) for c in METRIC_COLUMNS}
    clean = [{c: (None if r.get(c) is None else r[c]) for c in METRIC_COLUMNS} for r in rows]
    return pl.DataFrame(clean, schema=schema, orient="row") if clean else pl.DataFrame(schema=schema)


def plot_metrics(frame, path: Path) -> None:
    """Loss and accuracy against step (matplotlib Agg; a PNG even for a one-step run)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import polars as pl

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    step = frame["step"].to_numpy()
    for col in ("lm_loss", "q_halt_loss", "q_continue_loss"):
        ax1.plot(step, frame[col].to_numpy(), label=col, lw=1)
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss (per sequence)")
    ax1.set_yscale("log")
    ax1.legend()
    for col in ("accuracy", "exact_accuracy"):
        ax2.plot(step, frame[col].to_numpy(), label=f"train batch {col}", lw=1, alpha=0.6)
    ev = frame.filter(pl.col("eval_train_exact_accuracy").is_not_null())
    if ev.height:
        ax2.plot(ev["step"], ev["eval_train_exact_accuracy"], "o-", label="eval exact, last step (training pairs)")
        ax2.plot(ev["step"], ev["eval_train_halt_exact_accuracy"], "o--", label="eval exact, Q-halt step (training pairs)")
        if ev["eval_holdout_exact_accuracy"].is_not_null().any():
            ax2.plot(ev["step"], ev["eval_holdout_exact_accuracy"], "s-", label="eval exact, last step (held-out pairs)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(-0.02, 1.02)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    with cache.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- public API


def train(
    dataset: Any = None,
    *,
    preset: str = "tiny",
    overrides: dict[str, Any] | None = None,
    global_batch_size: int | None = None,
    lr: float | None = None,
    puzzle_emb_lr: float | None = None,
    weight_decay: float | None = None,
    puzzle_emb_weight_decay: float | None = None,
    warmup_steps: int | None = None,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    epochs: float | None = None,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    grad_clip: float | None = None,
    seed: int = 0,
    deterministic: bool = False,
    device: str | None = None,
    root: str | os.PathLike | None = None,
    force: bool = False,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    dry_run: bool = False,
) -> cache.Stage | dict[str, Any]:
    """Train an HRM on an augment stage's training rows; return the cached train stage.

    ``dataset``: an augment ``Stage``, its directory, its key, or None for the
    newest augment stage in the cache. ``None`` for a hyper-parameter means
    the preset's value; ``overrides`` (``--set k=v``) may set any
    ``HRMConfig`` or ``TrainConfig`` field. Setting any of ``max_steps``,
    ``epochs``, ``max_minutes`` replaces the preset's budget. ``device``:
    ``"cpu"``, ``"cuda"`` or None (CUDA when available). Under ``torchrun``
    every rank calls this with the same arguments; only rank 0 writes, and
    non-zero ranks get a Stage whose manifest is empty. ``callback(step,
    row)`` runs on rank 0 after every step (and may raise to stop the run,
    leaving the resume state behind). ``dry_run`` returns
    ``{"model": ..., "train": ..., "parameters": ...}`` without training.
    """
    if preset not in _model_presets():
        raise ArcpipeError(f"train: unknown preset {preset!r} (known: {', '.join(_model_presets())})")
    import torch

    device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type not in ("cpu", "cuda"):
        raise ArcpipeError(f"train: unknown device {device_type!r} (cpu or cuda)")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise ArcpipeError("train: device 'cuda' requested but torch sees no CUDA device")
    d = _init_distributed(device_type)
    say = _say if d.rank == 0 else (lambda msg: None)
    try:
        stage_in = _resolve_dataset(dataset, root, say)
        explicit = dict(
            global_batch_size=global_batch_size, lr=lr, puzzle_emb_lr=puzzle_emb_lr, weight_decay=weight_decay,
            puzzle_emb_weight_decay=puzzle_emb_weight_decay, warmup_steps=warmup_steps, eval_every=eval_every,
            checkpoint_every=checkpoint_every, grad_clip=grad_clip,
            # at their defaults these two leave room for --set seed=... / deterministic=true
            seed=seed or None, deterministic=deterministic or None,
        )  # fmt: skip
        canvas = int(stage_in.config.get("canvas", 0))
        if canvas <= 0:
            raise ArcpipeError(f"{stage_in.path}: augment manifest has no canvas (incompatible arcpipe version); rebuild it")
        num_ids = _num_ids(stage_in)
        explicit.update(max_steps=max_steps, epochs=epochs, max_minutes=max_minutes)
        model_cfg, tc = _resolve_config(preset, overrides, explicit, canvas, num_ids, device_type)
        if dry_run:
            import hrm

            with torch.device("meta"):
                m = hrm.HRM(model_cfg)
            dense = m.num_parameters()
            return {"dataset": str(stage_in.path), "model": model_cfg.to_dict(), "train": tc.to_dict(),
                    "parameters": {"dense": dense, "puzzle_embedding": m.num_parameters(include_puzzle_emb=True) - dense},
                    "compute": compute_estimate(model_cfg, tc, stage_in)}  # fmt: skip
        config = {"preset": preset, "model": model_cfg.to_dict(), "train": tc.to_dict()}

        def build(work: Path) -> dict:
            if device_type == "cpu":
                threads.fit("train", say)
            with _determinism(tc.deterministic, device_type):
                data = _load_data(stage_in, tc.holdout)
                # --force means "from scratch": a killed run's resume state is not reused either.
                trainer = _Trainer(data, model_cfg, tc, d, work, resume and not force, progress, callback)
                if getattr(trainer, "resumed_from", None):
                    note = "" if trainer.resumed_exactly else " (different number of ranks: ACT carry and RNG restart)"
                    say(f"train: resuming from step {trainer.resumed_from} in {work}{note}")
                counts = trainer.run()
                fit = trainer.final_fit()  # every rank: the rows are sharded
                _barrier(d)
                if d.rank == 0:
                    counts.update(fit)
                    _write_outputs(trainer, work, config, stage_in)
                    shutil.rmtree(work / RESUME_DIR, ignore_errors=True)
                    last = trainer.rows[-1] if trainer.rows else {}
                    counts.update({k: last.get(k) for k in ("eval_train_exact_accuracy", "eval_holdout_exact_accuracy")})
                    counts["train_rows"] = int(data.train_rows.size)
                    counts["holdout_rows"] = int(data.holdout_rows.size)
                _barrier(d)
                return counts

        _barrier(d)
        stage = cache.run_stage("train", config, {"augment": stage_in.key}, build,
                                root=root, force=force, resumable=True, writer=(d.rank == 0))  # fmt: skip
        _barrier(d)
        return stage
    finally:
        if d.on:
            import torch.distributed as dist

            # Only the host group is ours to free (a caller that calls train() repeatedly in one
            # torchrun process would otherwise collect them). The default group stays up even when
            # train made it, as in infer: a script that goes on to infer (or trains again) reuses it,
            # where destroying a group and making another in one torchrun process can hang.
            dist.destroy_process_group(d.host_group)


def _num_ids(stage: cache.Stage) -> int:
    path = Path(stage.path) / "identifiers.json"
    try:
        return len(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ArcpipeError(f"{path}: unreadable ({e}); rebuild the augment stage") from None


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_outputs(trainer: _Trainer, work: Path, config: dict, stage_in: cache.Stage) -> None:
    import hrm

    hrm.save_checkpoint(trainer.final_state_dict(), work / "model.pt")
    full = dict(config)
    full["dataset"] = {"augment": stage_in.key, "path": str(stage_in.path), "canvas": trainer.data.canvas,
                       "train_rows": int(trainer.data.train_rows.size), "holdout_rows": int(trainer.data.holdout_rows.size)}  # fmt: skip
    full["steps"] = trainer.step
    cache.atomic_write_json(work / "config.json", full)
    frame = metrics_frame(trainer.rows)
    with cache.atomic_path(work / "metrics.parquet") as tmp:
        frame.write_parquet(tmp)
    plot_metrics(frame, work / "training.png")


def load_trained(stage_or_path: Any, *, device: str | None = None, compile: bool = False):
    """(model in eval mode, HRMConfig) from a train stage, its directory, or a ``model.pt`` beside a
    ``config.json``; ``compile`` wraps the ACT step in ``torch.compile`` (same weights, same names)."""
    import torch

    import hrm

    if isinstance(stage_or_path, cache.Stage):
        path = Path(stage_or_path.path)
    else:
        path = Path(stage_or_path)
        if path.is_file():
            path = path.parent
        else:
            cache.load_stage(path, "train")
    cfg_path = path / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
        model_cfg = hrm.HRMConfig.from_dict(cfg["model"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ArcpipeError(f"{cfg_path}: not a train stage config ({type(e).__name__}: {e})") from None
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with dev:
        model = hrm.HRM(model_cfg, compile=compile)
    model.load_state_dict(hrm.load_checkpoint(path / "model.pt", model_cfg))
    model.to(dev).eval()
    return model, model_cfg


def fit_by_task(train_stage: Any, *, dataset: Any = None, root: Any = None, device: str | None = None,
                batch_size: int = 512):
    """Exact accuracy of a trained model on every one of its training rows, per task: polars
    ``task_id, rows, exact`` (exact = share of the task's rows reproduced exactly at the last ACT
    step, the reading of the runs table's train exact). That figure reads 128 rows sampled across
    all tasks; this reads them all, so a fit can be split by task or by source -- what the 13
    evaluation tasks trained beside 46 others fit, against the same 13 trained alone. Rows a
    ``holdout`` run held out are left out, as in training. ``dataset``: its augment stage, found
    by key beside the train stage (or at the path it was trained from) when not given."""
    import polars as pl
    import torch

    stage = cache.resolve_stage(train_stage, "train", root)
    try:
        config = json.loads((Path(stage.path) / "config.json").read_text())
        holdout, trained_on = bool(config["train"].get("holdout", False)), config["dataset"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ArcpipeError(f"{stage.path}/config.json: not a train stage config ({type(e).__name__}: {e})") from None
    if dataset is not None:
        augment_stage = cache.resolve_stage(dataset, "augment", root)
    else:
        key = trained_on.get("augment")
        augment_stage = cache.find("augment", key, Path(stage.path).parent.parent) if key else None
        if augment_stage is None and trained_on.get("path") and (Path(trained_on["path"]) / cache.MANIFEST).is_file():
            augment_stage = cache.load_stage(trained_on["path"], "augment")
        if augment_stage is None:
            raise ArcpipeError(f"{stage.path}: its augment stage {key!r} is neither beside it nor at "
                               f"{trained_on.get('path')!r}; pass dataset=")
    if augment_stage.key != trained_on.get("augment"):
        raise ArcpipeError(f"{augment_stage.path}: not the dataset {stage.path} was trained on ({trained_on.get('augment')!r})")
    data = _load_data(augment_stage, holdout)
    model, cfg = load_trained(stage, device=device)
    dev = next(model.parameters()).device
    rows = data.train_rows
    exact = np.zeros(rows.size, dtype=bool)
    with torch.no_grad():
        for start in range(0, rows.size, batch_size):
            chunk = rows[start : start + batch_size]
            batch = make_batch(data, chunk, dev)
            preds = model.rollout(batch, steps=[cfg.halt_max_steps])["preds"][-1]
            labels = batch["labels"]
            exact[start : start + chunk.size] = ((preds == labels) | (labels == -100)).all(-1).cpu().numpy()
    frame = pl.DataFrame({"task_id": data.columns["task_id"][rows], "exact": exact})
    return frame.group_by("task_id").agg(rows=pl.len(), exact=pl.col("exact").mean()).sort("task_id")
