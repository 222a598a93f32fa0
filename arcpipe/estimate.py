"""How long a training will take on this machine, read from the trainings it has already run.

A dry run counts a training's FLOPs, but what a CPU makes of a FLOP varies several-fold with the
model's shape (HRM's small recurrent matrices against the transformer's), the thread count and
the CPU kind. The honest predictor is the machine's own record: every train manifest keeps its
model config, batch, steps, wall time and host. A planned training whose model and batch match
finished ones built on the same CPU kind (or the same GPUs) at the same thread count should take
about their median seconds per step times its steps. The median, because a resumed training's
manifest times only its last stretch, and a run that shared the machine with a heavier job ran
slow.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from typing import Any

from arcpipe import cache
from arcpipe.errors import ArcpipeError


@dataclass(frozen=True)
class Estimate:
    seconds: float  # the whole planned training
    seconds_per_step: float
    runs: int  # finished trainings it rests on


def _model_key(model: dict[str, Any]) -> dict[str, Any]:
    """The model settings that decide a step's cost: all but the puzzle-identifier count, which
    sizes the embedding table that a step touches a batch's rows of."""
    return {k: v for k, v in model.items() if k != "num_puzzle_identifiers"}


def _same_machine(host: dict[str, Any], here: dict[str, Any], device: str, threads: int) -> bool:
    if device == "cuda":
        return bool(host.get("gpus")) and host.get("gpus") == here.get("gpus")
    return (host.get("cpu_id") is not None and host.get("cpu_id") == here.get("cpu_id")
            and host.get("cpu") == here.get("cpu") and host.get("torch_threads") == threads)


def finished_rates(model: dict[str, Any], train: dict[str, Any], *, threads: int,
                   root: str | os.PathLike | None = None, here: dict[str, Any] | None = None) -> list[float]:
    """Seconds per step of every finished training in the cache with this model and batch, built on
    this machine's kind at ``threads`` torch threads (CPU) or on the same GPUs (CUDA)."""
    here = cache.host() if here is None else here
    device, batch, key = train.get("device", "cpu"), train.get("global_batch_size"), _model_key(model)
    folder = cache.cache_root(root) / "train"
    out = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.name.startswith(".") or not (path / cache.MANIFEST).is_file():
            continue
        try:
            m = cache.read_manifest(path, "train")
        except ArcpipeError:  # a corrupt or foreign manifest is no evidence either way
            continue
        config, steps, wall = m.get("config", {}), (m.get("counts") or {}).get("steps"), m.get("wall_time_s")
        if not steps or not wall or _model_key(config.get("model", {})) != key:
            continue
        if config.get("train", {}).get("global_batch_size") != batch or config.get("train", {}).get("device") != device:
            continue
        if _same_machine(m.get("host") or {}, here, device, threads):
            out.append(wall / steps)
    return out


def training(plan: dict[str, Any], *, threads: int, root: str | os.PathLike | None = None,
             here: dict[str, Any] | None = None) -> Estimate | None:
    """The time a planned training (``train(..., dry_run=True)``'s answer) should take here, or
    None when it has no step budget or this machine has finished no training like it."""
    steps = (plan.get("compute") or {}).get("steps")
    if not steps:
        return None
    rates = finished_rates(plan["model"], plan["train"], threads=threads, root=root, here=here)
    if not rates:
        return None
    per_step = statistics.median(rates)
    return Estimate(seconds=per_step * steps, seconds_per_step=per_step, runs=len(rates))


def makespan(seconds: list[float], jobs: int) -> float:
    """Wall time of these trainings on ``jobs`` workers, dearest first (as ``--jobs`` starts them),
    each to the worker free first."""
    loads = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def describe(seconds: float) -> str:
    """'7 min', '1 h 36 min': what a person planning a run reads."""
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"
