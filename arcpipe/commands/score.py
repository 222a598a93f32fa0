"""`arcpipe score`: score any ARC Prize submission file against known outputs."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    submission: Path = typer.Argument(..., help="ARC Prize submission JSON ({task_id: [{attempt_1, attempt_2}, ...]})."),
    solutions: str = typer.Option(
        ..., "--solutions", help="Known outputs: Kaggle *_solutions.json, a tasks JSON / stage dir with tasks.json, a task folder, or arc1:evaluation etc."
    ),
    only_submitted: bool = typer.Option(
        False, "--only-submitted", help="Score only the tasks the submission contains (default: a missing task is an error)."
    ),
) -> None:
    """Validate a submission and report pass@1 / pass@2 (ARC convention: per test input, averaged per task)."""
    from rich.console import Console

    from arcpipe.commands.vote import scores_table
    from arcpipe.vote import score_submission

    sc = score_submission(submission, solutions, only_submitted=only_submitted)
    console = Console()
    console.print(scores_table(sc, f"{submission}"))
    if sc["n_extra"]:
        console.print(f"{sc['n_extra']} submitted tasks have no known solution (ignored)")
