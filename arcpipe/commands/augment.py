"""`arcpipe augment`: build (or find cached) the augmentation plan for a task set."""

from __future__ import annotations

from typing import Optional

import typer


def command(
    source: str = typer.Argument(
        "arc1:evaluation",
        help="Evaluated tasks: arc1:training|arc1:evaluation|arc2:training|arc2:evaluation, a folder of task JSON, a *_challenges.json; '+' joins several.",
    ),
    extra_train: str = typer.Option("arc1:training", "--extra-train", help="Extra training-only tasks (all their pairs), or 'none'."),
    n_aug: int = typer.Option(1000, "--n-aug", help="Distinct variants per task (variant 0 = identity)."),
    train_aug: Optional[int] = typer.Option(None, "--train-aug", help="Only variants below this emit training rows (default: n-aug)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (per task: seed + task id)."),
    canvas: int = typer.Option(30, "--canvas", help="Board side; every grid must fit."),
    max_side: Optional[int] = typer.Option(None, "--max-side", help="Drop tasks with a grid side above this."),
    task_ids: Optional[str] = typer.Option(None, "--task-ids", help="Comma-separated source task ids to keep."),
    first: Optional[int] = typer.Option(None, "--first", help="Keep the first N source tasks (by id)."),
    no_translate: bool = typer.Option(False, "--no-translate", help="Do not translate training examples on the canvas."),
    no_dihedral: bool = typer.Option(False, "--no-dihedral", help="No rotations/reflections: colour permutations only (ablation)."),
    no_colour: bool = typer.Option(False, "--no-colour", help="No colour permutations: at most the 8 dihedral variants per task (ablation)."),
    materialize: bool = typer.Option(False, "--materialize", help="Also write reference-style uint8 token arrays (<split>/inputs.npy, labels.npy, puzzle_identifiers.npy)."),
    jobs: int = typer.Option(-1, "--jobs", help="Worker processes (-1 = all cores); the plan does not depend on it."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if a cached plan exists."),
) -> None:
    """Plan N distinct augmented variants per task (dihedral x colour permutation x translation)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from arcpipe.augment import augment

    console = Console(stderr=True)
    with Progress(
        TextColumn("augment"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    ) as bar:  # fmt: skip
        job = bar.add_task("plan", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        stage = augment(
            source,
            extra_train=extra_train,
            n_aug=n_aug,
            train_aug=train_aug,
            seed=seed,
            canvas=canvas,
            max_side=max_side,
            task_ids=task_ids,
            first=first,
            translate=not no_translate,
            dihedral=not no_dihedral,
            colour=not no_colour,
            n_jobs=jobs,
            force=force,
            materialize=materialize,
            progress=progress,
        )
    c = stage.manifest.get("counts", {})
    state = "cached" if stage.cached else f"built in {stage.manifest.get('wall_time_s', 0):.1f}s"
    print(f"augment: {stage.path} ({state})")
    print(
        f"  {c.get('tasks', 0)} tasks ({c.get('source_tasks', 0)} source, {c.get('extra_train_tasks', 0)} extra), "
        f"{c.get('variants', 0)} variants, {c.get('puzzle_identifiers', 0)} puzzle ids, "
        f"{c.get('train_rows', 0)} train rows, {c.get('test_rows', 0)} test rows"
    )
    # tasks short of distinct variants: augment() itself warns, naming them, on stderr
