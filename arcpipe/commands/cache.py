"""`arcpipe cache ls` and `arcpipe cache prune KEEP...`: what the stage cache holds, and freeing it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    help="List the stage cache, or prune the stages no kept pipeline or report needs.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("ls")
def ls(
    stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage (augment|train|infer|vote|report)."),
    sort: str = typer.Option("used", "--sort", help="Order: used (last used first), size (largest first), or key."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the whole table (with paths) to this CSV file."),
) -> None:
    """List every finished stage and every stopped run's work directory.

    A line per stage: what it holds (one line per setting), its size, when it was last used and the
    machine that built it. A stopped run's work directory resumes when the same stage is asked for
    again."""
    import polars as pl
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from arcpipe import cache
    from arcpipe.cache_admin import human_bytes, stages, unfinished
    from arcpipe.errors import ArcpipeError

    orders = {"used": ("last_used", True), "size": ("bytes", True), "key": (["stage", "key"], False)}
    if sort not in orders:
        raise ArcpipeError(f"cache ls --sort {sort!r}: one of {', '.join(orders)}")
    table = stages(None, stage)
    col, desc = orders[sort]
    table = table.sort(col, descending=desc)
    console = Console(highlight=False)
    out = Table(title=f"{cache.cache_root(None)}: {table.height} stages, {human_bytes(int(table['bytes'].sum() or 0))}")
    out.add_column("stage")
    out.add_column("key", no_wrap=True, min_width=16)  # whole: a key (or prefix) names the stage to `arcpipe infer`, `vote`, ...
    for name in ("what", "size", "last used", "built on"):
        out.add_column(name)
    for r in table.iter_rows(named=True):
        out.add_row(r["stage"], r["key"], escape(r["summary"]), human_bytes(r["bytes"]),
                    r["last_used"].strftime("%Y-%m-%d %H:%M"), escape(_short_host(r["host"])))
    console.print(out)
    work = unfinished(None)
    for r in work.iter_rows(named=True):
        state = "running now" if r["locked"] else "stopped: resumes on the same command"
        console.print(f"unfinished {r['stage']} {r['key']} ({human_bytes(r['bytes'])}, {state})")
    if csv is not None:
        table.with_columns(pl.col("last_used").dt.to_string("%Y-%m-%dT%H:%M:%SZ")).write_csv(csv)


def _short_host(line: str | None) -> str:
    """'Intel(R) Xeon(R) Processor (family 6 model 167, AVX512 kernels, ...)' -> the name and CPUID."""
    if not line:
        return "-"
    name, _, rest = line.partition(" (")
    return f"{name} ({rest.split(', ')[0].rstrip(')')})" if rest else name


@app.command("prune")
def prune(
    keep: List[str] = typer.Argument(..., help="What to keep: pipeline files (the stages a dry run finds cached), built "
                                     "report directories, folders of either (pipelines/, reports/), or STAGE/KEY."),
    unused_days: Optional[float] = typer.Option(None, "--unused-days", min=0, help="Only remove stages also unused for this many days."),
    work: bool = typer.Option(False, "--work", help="Also remove stopped runs' work directories (their resumable progress)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove them; without it, only list what would go."),
) -> None:
    """Remove every cached stage that the kept pipelines and reports do not reach.

    Reach goes through manifests' inputs, so a kept report keeps its trainings and datasets. Lists
    only, unless --yes. Stages a running process holds are left alone, but not the finished stages a
    running pipeline will read next: name it in KEEP too (or use --unused-days)."""
    from rich.console import Console
    from rich.markup import escape

    from arcpipe.cache_admin import human_bytes, prune as do_prune, sweep_trash

    got = do_prune(keep, None, unused_days=unused_days, work=work, dry_run=not yes)
    console = Console(highlight=False, soft_wrap=True)
    for note in got.notes:
        console.print(f"note: {escape(note)}")
    for r in got.removed.iter_rows(named=True):
        console.print(f"{'remove' if yes else 'would remove'} {r['stage']}/{r['key']} {human_bytes(r['bytes'])}: {escape(r['summary'])}")
    freed = got.bytes + (sweep_trash(None) if yes else 0)
    verb = "removed" if yes else "would remove"
    console.print(f"{verb} {got.removed.height} stages ({human_bytes(freed)}); {got.kept} kept"
                  + ("" if yes or got.removed.is_empty() else "; add --yes to remove them"))
