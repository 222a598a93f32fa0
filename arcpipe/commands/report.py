"""`arcpipe report [RUN ...]`: ablation report over cached predictions -> reports/<name>/."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _ints(text: str | None, what: str) -> list[int] | None:
    from arcpipe.errors import ArcpipeError

    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ArcpipeError(f"{what} {text!r}: expected comma-separated integers, e.g. 1,2,4,8") from None


def command(
    runs: Optional[List[str]] = typer.Argument(
        None, help="Infer or vote stages (directories or key prefixes) (default: the newest vote's inference)."
    ),
    name: str = typer.Option("latest", "--name", help="Report name: written to OUT_DIR/NAME/."),
    out_dir: Path = typer.Option(Path("reports"), "--out-dir", help="Folder holding reports."),
    n_aug_points: Optional[str] = typer.Option(None, "--n-aug-points", help="Comma-separated n_aug values (default: 1,2,4,...,max)."),
    seeds: int = typer.Option(20, "--seeds", help="Seeded subsamples averaged per n_aug point."),
    rules: Optional[str] = typer.Option(None, "--rules", help="Comma-separated voting rules (default: all)."),
    step: Optional[int] = typer.Option(None, "--step", help="ACT step for the n_aug curves (default: the last recorded)."),
    main: Optional[str] = typer.Option(None, "--main", help="Settings of the baseline run every section compares "
                                       "against, e.g. preset=tiny,max_steps=12000 (default: the run holding the most common value of each)."),
    force: bool = typer.Option(False, "--force", help="Rebuild the report even when cached."),
) -> None:
    """Build an ablation report (markdown, plots, tables) from cached votes or predictions.

    One run: pass@1 / pass@2 / oracle against the number of variants voted, per voting rule; the rules
    paired against `hrm`; pass@2 against the ACT step; how well sigmoid(q_halt), the log-probability and
    agreement between variants tell right predictions from wrong (AUROC, calibration); a per-task table
    and a gallery.

    Several runs: a section per setting they differ in (core, train_aug, puzzle-id mode, or any swept
    model, training, augment or infer setting), each value paired against the main run; a two-way table
    for two settings run in every combination; and, when the arms' trainings cost different amounts,
    every arm against its training FLOPs and against its training fit. Training seeds are averaged per
    task, and every paired difference gets a second interval with each arm's runs resampled too.

    Models trained to several ACT segments: each segment, and the segments' answers voted together,
    against the last, run by run (and the steps past training when inference ran on: `infer --steps
    1-16`); and whether a segment's answer is worth a fresh variant's as a vote.

    Each run's own score goes to runs.csv and, per task, to run_tasks.csv (what `arcpipe compare` pools
    across reports). Data joined from several sources (arc1:evaluation+arc1:training) is also scored
    per source."""
    from rich.console import Console

    from arcpipe import report

    st = report.report(
        runs or None, name=name, out_dir=out_dir, n_aug_points=_ints(n_aug_points, "--n-aug-points"), seeds=seeds,
        rules=[r.strip() for r in rules.split(",") if r.strip()] if rules else None, step=step, main=main, force=force,
    )
    counts = st.manifest.get("counts", {})
    Console().print(
        f"report {'(cached) ' if st.cached else ''}-> {st.path / 'report.md'} "
        f"({counts.get('tasks', '?')} tasks, {counts.get('queries', '?')} vote queries, {counts.get('seconds', '?')} s)"
    )
