"""The ``arcpipe`` command line: one thin verb per stage.

Each verb lives in ``arcpipe/commands/<verb>.py`` as a typer function that
parses options and calls the stage's Python function (so a notebook can do
exactly what the CLI does). Heavy imports (torch, polars) happen inside the
verbs, keeping ``arcpipe --help`` fast.

Errors: an ``ArcpipeError`` is printed as one line on stderr with exit code
2; ``--debug`` (or ``ARCPIPE_DEBUG=1``) shows the traceback instead. Usage
errors (an option value out of range, an unknown verb, a missing argument)
get the same one-line form with the verb's ``--help`` to try, not typer's
boxed usage panel: scripts and logs read one line the same way whichever
layer rejected the input.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from arcpipe.commands import augment, cache, compare, infer, report, run, score, train, vote
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
app.command("compare")(compare.command)
app.command("run")(run.command)
app.add_typer(cache.app, name="cache")


def _prose(doc: str) -> str:
    """A docstring as help prose: each paragraph on one line, for the terminal to wrap.

    typer (0.29 here; older releases joined them) keeps a docstring's single line breaks after
    its first paragraph, so lines broken at the source's width came out ragged in an 80-column
    terminal. Every verb's help is prose paragraphs (no lists or code), so joining a
    paragraph's lines loses nothing.
    """
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _unwrap_help(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = _prose(info.callback.__doc__)
    for group in typer_app.registered_groups:
        _unwrap_help(group.typer_instance)


_unwrap_help(app)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


# click's (or typer's vendored click's) base of every usage error, found through the public
# typer.BadParameter so that no private module path is imported.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _usage_line(e: Exception) -> str:
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "arcpipe"
    message = e.format_message().strip().replace("\n", " ")  # type: ignore[attr-defined]
    return f"{message} (see '{where} --help')"


def main() -> None:
    debug = lambda: os.environ.get("ARCPIPE_DEBUG") == "1" or "--debug" in sys.argv  # noqa: E731
    try:
        # standalone_mode=False hands usage errors, Ctrl-C and exit codes back to this function
        code = app(standalone_mode=False, prog_name="arcpipe")
    except _USAGE_ERROR as e:
        if not e.format_message().strip():  # a bare `arcpipe`: typer has printed the help already
            raise SystemExit(e.exit_code) from None
        _fail(_usage_line(e), e.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
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
    if code == 130:  # typer turns Ctrl-C into exit 130 without a word; say what happened and what to do
        _fail("interrupted; rerun the same command to resume", 130)
    if isinstance(code, int) and code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
