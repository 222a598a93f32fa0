"""`arcpipe run PIPELINE [--set section.key=value ...] [--dry-run] [--force] [--jobs N]`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    pipeline: Path = typer.Argument(..., help="Pipeline file, e.g. pipelines/demo.toml."),
    set_: Optional[List[str]] = typer.Option(
        None, "--set", help="Override a setting: section.key=value (TOML value), e.g. --set vote.rule=count "
        "or --set sweep.train_aug=[1,8]. Repeatable."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print which stages would run and which are cached."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage even when cached."),
    force_stage: Optional[List[str]] = typer.Option(
        None, "--force-stage", help="Recompute only this stage (augment|train|infer|vote|report). Repeatable."
    ),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1, help="Run this many independent stages at once (the sweep's trainings), each in "
        "its own process with an equal share of the CPU threads, or its own GPU when there are several; "
        "the dearest training (in FLOPs) starts first; their output goes to a log file each."
    ),
) -> None:
    """Run a TOML pipeline: augment -> train -> infer -> vote -> report, each stage cached by content hash.

    Several GPUs: torchrun --standalone --nproc-per-node 8 -m arcpipe.cli run PIPELINE (each training and
    inference spread over all of them, one after the other; the same stages and cache keys as one process)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from arcpipe import cache
    from arcpipe import launch
    from arcpipe import pipeline as pl

    console = Console(quiet=launch.rank() != 0)  # under torchrun rank 0 speaks for all
    root = cache.cache_root(None)
    forced: bool | list[str] = True if force else list(force_stage or [])

    def on_stage(node: pl.Node, event: str) -> None:
        if dry_run:
            return
        if event == "start":
            log = f" (log: {escape(str(pl.log_path(root, node)))})" if jobs > 1 and node.stage != "report" else ""
            console.print(f"[bold]>> {escape(node.label)}[/bold]{log}")
        else:
            state = "cached" if node.cached else "built"
            console.print(f"   {escape(node.label)}: {state} -> {escape(str(node.path))}")

    result = pl.run(pipeline, sets=set_ or [], dry_run=dry_run, force=forced, on_stage=on_stage, jobs=jobs)
    table = Table(title=f"{pipeline}{' (dry run)' if dry_run else ''}")
    for col in ("stage", "status", "key", "output"):
        table.add_column(col)
    for node in result:
        colour = {"cached": "green", "would run": "yellow", "ran": "cyan"}.get(node.status, "white")
        table.add_row(escape(node.label), f"[{colour}]{node.status}[/{colour}]", node.key or "-", str(node.path or "-"))
    console.print(table)
    if dry_run:
        n = sum(1 for node in result if node.status == "would run")
        console.print(f"{n} of {len(result)} stages would run; the rest are cached.")
    elif result.report_dir is not None:
        console.print(f"report: {result.report_dir / 'report.md'}")
