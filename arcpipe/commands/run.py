"""`arcpipe run` (being written; see the issue tracker)."""

from arcpipe.errors import ArcpipeError


def command() -> None:
    """Not implemented yet."""
    raise ArcpipeError("'arcpipe run' is not implemented yet")
