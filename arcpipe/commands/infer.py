"""`arcpipe infer`: predictions for every test-input variant, cached per ACT step."""

from __future__ import annotations

from typing import Optional

import typer


def command(
    checkpoint: Optional[str] = typer.Argument(
        None, help="Train stage (directory, its model.pt, or cache key) (default: newest in cache)."
    ),
    dataset: Optional[str] = typer.Argument(
        None, help="Augment stage (directory or cache key) (default: the one CHECKPOINT was trained on)."
    ),
    steps: str = typer.Option("all", "--steps", help="ACT steps to record: 'all' (those the checkpoint was trained "
                                "to run) or steps and ranges like 1,2,16 or 1-16; steps past training's limit run its recurrence on."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Variants per forward pass (default: 1024 GPU, 32 CPU)."),
    puzzle_id: str = typer.Option(
        "true", "--puzzle-id", help="Identifiers fed to the model: true | blank (id 0) | random (another task's, seeded)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for --puzzle-id random."),
    max_variants: Optional[int] = typer.Option(None, "--max-variants", help="Only variants < N (quick runs)."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device (default: cuda:LOCAL_RANK if available, else cpu)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the ACT step (GPUs; its own cache entry)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if cached."),
) -> None:
    """Run every test-input variant through a trained checkpoint and cache the predictions."""
    from arcpipe import launch
    from arcpipe.infer import infer

    stage = infer(
        checkpoint,
        dataset,
        steps=steps,
        batch_size=batch_size,
        puzzle_id=puzzle_id,
        seed=seed,
        max_variants=max_variants,
        device=device,
        compile=compile,
        force=force,
    )
    if launch.rank() != 0:
        return
    counts = stage.manifest.get("counts", {})
    rate = counts.get("variants_per_s")
    state = "cached" if stage.cached else "built"
    typer.echo(f"infer: {stage.path} ({state})")
    typer.echo(
        f"  {counts.get('variants', '?')} variants x {counts.get('steps', '?')} steps = "
        f"{counts.get('predictions', '?')} predictions; "
        + (
            f"{rate} variants/s on {counts.get('device', '?')}{' (when built)' if stage.cached else ''}"
            if rate
            else "no variants needed inferring"
        )
    )
