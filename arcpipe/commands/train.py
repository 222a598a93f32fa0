"""`arcpipe train` (being written; see the issue tracker)."""

from arcpipe.errors import ArcpipeError


def command() -> None:
    """Not implemented yet."""
    raise ArcpipeError("'arcpipe train' is not implemented yet")
