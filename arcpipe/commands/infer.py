"""`arcpipe infer` (being written; see the issue tracker)."""

from arcpipe.errors import ArcpipeError


def command() -> None:
    """Not implemented yet."""
    raise ArcpipeError("'arcpipe infer' is not implemented yet")
