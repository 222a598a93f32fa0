"""`arcpipe run PIPELINE [--set section.key=value ...] [--dry-run] [--force] [--jobs N]`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, List, Optional

import typer

from arcpipe.estimate import describe

UNITS = {"train": "steps", "infer": "variants"}


class Running:
    """What the ``--jobs`` workers are doing, whose own bars go to their log files: on a terminal a
    live bar per running training or inference, off one (``nohup``, CI) a plain line for each every
    ``every_s`` seconds, with its rate since this run first heard of it and the time left at that
    rate."""

    every_s = 300.0

    def __init__(self, console: Any, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console
        self.bars = Progress(TextColumn("   {task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("eta"),
                             TimeRemainingColumn(), console=console, disable=not (enabled and console.is_terminal))
        self.nodes: dict[int, dict[str, Any]] = {}  # id(node) -> label, unit, task, first and latest (time, done), total
        self.last_line = time.monotonic()

    def __enter__(self) -> "Running":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)

    def update(self, node: Any, done: int, total: int) -> None:
        from rich.markup import escape

        now = time.monotonic()
        seen = self.nodes.get(id(node))
        if seen is None:
            unit = UNITS.get(node.stage, "")
            task = self.bars.add_task(escape(node.label), total=total, completed=done, unit=unit)
            seen = self.nodes[id(node)] = {"label": node.label, "unit": unit, "task": task, "first": (now, done)}
        else:
            self.bars.update(seen["task"], completed=done, total=total)
        seen["latest"], seen["total"] = (now, done), total
        if not self.console.is_terminal and now - self.last_line >= self.every_s:
            self.last_line = now
            for s in self.nodes.values():
                self.console.print(f"   {self.line(s)}", highlight=False, markup=False)

    @staticmethod
    def line(s: dict[str, Any]) -> str:
        (t0, d0), (t1, d1), total = s["first"], s["latest"], s["total"]
        text = f"{s['label']}: {d1}/{total} {s['unit']} ({100 * d1 / total:.0f}%)"
        if d1 > d0 and t1 > t0:
            rate = (d1 - d0) / (t1 - t0)
            text += f", {rate:.1f} {s['unit']}/s, about {describe((total - d1) / rate)} left"
        return text

    def finished(self, node: Any) -> None:
        seen = self.nodes.pop(id(node), None)
        if seen is not None:
            self.bars.remove_task(seen["task"])


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

    running = Running(console, enabled=jobs > 1 and not dry_run)  # a serial run's stages draw their own bars

    def on_stage(node: pl.Node, event: str) -> None:
        if dry_run:
            return
        running.finished(node)
        if event == "start":
            log = f" (log: {escape(str(pl.log_path(root, node)))})" if jobs > 1 and node.stage != "report" else ""
            console.print(f"[bold]>> {escape(node.label)}[/bold]{log}")
        else:
            state = "cached" if node.cached else "built"
            console.print(f"   {escape(node.label)}: {state} -> {escape(str(node.path))}")

    with running:
        result = pl.run(pipeline, sets=set_ or [], dry_run=dry_run, force=forced, on_stage=on_stage, jobs=jobs,
                        on_progress=running.update)
    guesses = _estimates(result, root, jobs) if dry_run else {}
    table = Table(title=f"{pipeline}{' (dry run)' if dry_run else ''}")
    for col in ("stage", "status", "key", "output") + (("estimate",) if guesses else ()):
        table.add_column(col)
    for node in result:
        colour = {"cached": "green", "would run": "yellow", "ran": "cyan"}.get(node.status, "white")
        guess = guesses.get(id(node))
        extra = (f"{describe(guess.seconds)} ({guess.runs} like it here)" if guess else "",) if guesses else ()
        table.add_row(escape(node.label), f"[{colour}]{node.status}[/{colour}]", node.key or "-", str(node.path or "-"), *extra)
    console.print(table)
    if dry_run:
        n = sum(1 for node in result if node.status == "would run")
        console.print(f"{n} of {len(result)} stages would run; the rest are cached.")
        if guesses:
            console.print(_estimate_line(result, guesses, jobs))
    elif result.report_dir is not None:
        console.print(f"report: {result.report_dir / 'report.md'}")


def _estimates(result: Any, root: Path, jobs: int) -> dict[int, Any]:
    """The trainings a dry run says would run, each with the time this machine's finished
    trainings of the same model and batch say it takes (``arcpipe.estimate``), at the thread
    count the run would give it."""
    import torch

    from arcpipe import estimate, scheduler
    from arcpipe import pipeline as pl

    threads = max(1, scheduler.cpu_count() // jobs) if jobs > 1 else torch.get_num_threads()
    out = {}
    for node in result:
        if node.stage == "train" and node.status == "would run":
            planned = pl.plan_training(node, root)
            guess = planned and estimate.training(planned, threads=threads, root=root)
            if guess:
                out[id(node)] = guess
    return out


def _estimate_line(result: Any, guesses: dict[int, Any], jobs: int) -> str:
    from arcpipe import estimate

    todo = [n for n in result if n.stage == "train" and n.status == "would run"]
    seconds = [g.seconds for g in guesses.values()]
    plural = "s" if len(todo) != 1 else ""
    known = f"{len(guesses)} of the {len(todo)} trainings" if len(guesses) < len(todo) else f"the training{plural}"
    line = f"estimate from finished trainings on this machine: {known} {'take' if plural else 'takes'} {describe(sum(seconds))} in all"
    if jobs > 1:
        line += f", about {describe(estimate.makespan(seconds, jobs))} with --jobs {jobs}"
    return line + " (inference, votes and report extra)."
