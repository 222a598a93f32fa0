"""How far each ``arcpipe run --jobs N`` worker has got, for the parent process to show.

A worker's console goes to its own log file (N interleaved progress bars are unreadable), so
without this the terminal says nothing for the hour a long training takes. The parent makes one
small shared-memory array with a cell for each worker; as a stage's own progress bar advances it
also writes ``(done, total)`` into the cell of the node it is running, and the parent reads the
cells on its half-second poll. No locks and no pipes: a cell is two machine words that only one
process writes, and a torn read at worst shows a step that is one update stale. Outside a worker
(a serial run, a notebook, a test) ``report`` does nothing.
"""

from __future__ import annotations

from typing import Any

_board: Any = None  # the shared array, in a worker process
_cell: int | None = None  # this worker's cell while it runs a node


def board(ctx: Any, cells: int) -> Any:
    """A shared array of ``cells`` (done, total) pairs, all zero, for a multiprocessing context."""
    return ctx.Array("q", 2 * cells, lock=False)


def use(shared: Any) -> None:
    """In a worker process: the board its nodes report to."""
    global _board
    _board = shared


def attach(cell: int | None) -> None:
    """In a worker process: report to ``cell`` from now on (``None``: the node is over)."""
    global _cell
    _cell = cell
    if cell is not None:
        report(0, 0)


def report(done: int, total: int | None) -> None:
    """Record that the running stage has done ``done`` of ``total`` units (steps, variants)."""
    if _board is not None and _cell is not None:
        _board[2 * _cell] = int(done)
        _board[2 * _cell + 1] = int(total or 0)


def clear(shared: Any, cell: int) -> None:
    """In the parent, before handing ``cell`` to a new node: nothing reported yet."""
    shared[2 * cell] = shared[2 * cell + 1] = 0


def read(shared: Any, cell: int) -> tuple[int, int]:
    """``(done, total)`` of ``cell``; ``total`` 0 until the stage in it has reported."""
    return int(shared[2 * cell]), int(shared[2 * cell + 1])
