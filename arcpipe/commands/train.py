"""`arcpipe train`: fit an HRM on an augment stage (see arcpipe/train.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from arcpipe.errors import ArcpipeError


def _parse_sets(items: list[str]) -> dict:
    """``key=value`` pairs; values parse as JSON (numbers, true/false, null) and fall back to text."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ArcpipeError(f"--set {item!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def command(
    dataset: Optional[Path] = typer.Argument(
        None, help="Augment stage directory or key (default: the newest augment output in the cache)."
    ),
    preset: str = typer.Option("tiny", "--preset", help="Model + training preset: arc (the paper's HRM), tiny (CPU demo); ablation cores trm, transformer "
    "(paper scale) and trm-tiny, transformer-tiny (CPU, same parameter count as tiny)."),
    sets: list[str] = typer.Option(
        [], "--set", help="Override a model or training setting, e.g. --set hidden_size=128 --set holdout=true (repeatable)."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size (split over ranks)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate of the dense parameters."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps."),
    max_minutes: Optional[float] = typer.Option(
        None, "--max-minutes", help="Stop after this much training time (result then depends on machine speed)."
    ),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Stop after this many passes over the training rows."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate exact accuracy every N steps."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Write resume state every N steps."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Clip the dense gradients' global norm."),
    seed: int = typer.Option(0, "--seed", help="Seed for init, sampling and ACT exploration."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic kernels, 1 thread (exact resume)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from a killed run's last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Retrain even if this exact run is cached."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print parameter counts, the resolved config and the compute the run needs (steps, model FLOPs, H100-hours at 40% MFU); train nothing."),
) -> None:
    """Train HRM on an augmented dataset (a cached stage; rerun the same command to resume)."""
    from rich.console import Console

    from arcpipe.train import train

    out = Console()
    result = train(
        str(dataset) if dataset is not None else None,
        preset=preset,
        overrides=_parse_sets(sets),
        global_batch_size=batch_size,
        lr=lr,
        max_steps=max_steps,
        max_minutes=max_minutes,
        epochs=epochs,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        grad_clip=grad_clip,
        seed=seed,
        deterministic=deterministic,
        device=device,
        resume=resume,
        force=force,
        dry_run=dry_run,
    )
    if dry_run:
        p = result["parameters"]
        out.print(f"dataset: {result['dataset']}")
        out.print(f"parameters: {p['dense']:,} dense + {p['puzzle_embedding']:,} puzzle-embedding")
        c = result["compute"]
        if c["steps"] is not None:
            out.print(f"compute: {c['steps']:,} steps over {c['train_rows']:,} training rows, {c['flops']:.3g} model FLOPs "
                      f"(~{c['h100_hours_at_40pct_mfu']:.3g} h on one H100 at 40% MFU)")
        else:
            out.print(f"compute: {c['flops_per_step']:.3g} model FLOPs per step; the budget is time only")
        out.print_json(json.dumps({"model": result["model"], "train": result["train"]}))
        return
    if not result.manifest:  # a non-zero torchrun rank: rank 0 reports
        return
    counts = result.manifest.get("counts", {})
    state = "cached" if result.cached else "trained"
    acc = counts.get("eval_train_exact_accuracy")
    tail = f", train exact accuracy {acc:.3f}" if isinstance(acc, (int, float)) else ""
    out.print(f"train: {state} {counts.get('steps', '?')} steps{tail} -> {result.path}", soft_wrap=True)
