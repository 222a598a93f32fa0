"""`arcpipe vote` (being written; see the issue tracker)."""

from arcpipe.errors import ArcpipeError


def command() -> None:
    """Not implemented yet."""
    raise ArcpipeError("'arcpipe vote' is not implemented yet")
