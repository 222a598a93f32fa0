"""The ``arcpipe`` command line: one thin verb per stage.

Each verb lives in ``arcpipe/commands/<verb>.py`` as a typer function that
parses options and calls the stage's Python function (so a notebook can do
exactly what the CLI does). Heavy imports (torch, polars) happen inside the
verbs, keeping ``arcpipe --help`` fast.

Errors: an ``ArcpipeError`` is printed as one line on stderr with exit code
2; ``--debug`` (or ``ARCPIPE_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from arcpipe.commands import augment, infer, report, run, score, train, vote
from arcpipe.errors import ArcpipeError

app = typer.Typer(
    name="arcpipe",
    help="Train, evaluate and ablate HRM on ARC-AGI as cached stages: augment -> train -> infer -> vote -> report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    cache: Optional[Path] = typer.Option(
        None, "--cache", envvar="ARCPIPE_CACHE", help="Cache root for stage outputs (default: ./.arcpipe)."
    ),
) -> None:
    if debug:
        os.environ["ARCPIPE_DEBUG"] = "1"
    if cache is not None:
        os.environ["ARCPIPE_CACHE"] = str(cache)


app.command("augment")(augment.command)
app.command("train")(train.command)
app.command("infer")(infer.command)
app.command("vote")(vote.command)
app.command("score")(score.command)
app.command("report")(report.command)
app.command("run")(run.command)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main() -> None:
    debug = lambda: os.environ.get("ARCPIPE_DEBUG") == "1" or "--debug" in sys.argv  # noqa: E731
    try:
        app()
    except SystemExit as e:
        if e.code == 130:  # typer turns Ctrl-C into a silent exit 130; say what happened and what to do
            _fail("interrupted; rerun the same command to resume", 130)
        raise
    except ArcpipeError as e:
        if debug():
            raise
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume", 130)
    except MemoryError:
        if debug():
            raise
        _fail("out of memory; lower the batch size or the number of variants", 3)


if __name__ == "__main__":
    main()
