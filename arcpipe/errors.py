"""The one exception type users see.

Anything arcpipe can diagnose (bad task files, missing stages, unknown
presets, ...) raises ``ArcpipeError`` with a single line that names the file
or object and the problem. The CLI prints that line and exits non-zero; a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class ArcpipeError(Exception):
    """A user-facing error: one line, naming what and where."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def is_out_of_memory(e: BaseException) -> bool:
    """A device (or host) allocation failure from torch, which the stages turn into an
    ``ArcpipeError`` naming the batch-size knob instead of a traceback."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e)


@contextmanager
def out_of_memory_as(message: str) -> Iterator[None]:
    """Turn a torch out-of-memory inside the block into ``ArcpipeError(message)``; anything
    else passes through untouched."""
    try:
        yield
    except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
        if is_out_of_memory(e):
            raise ArcpipeError(message) from None
        raise
