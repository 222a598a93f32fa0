"""ACT steps written as people write them: ``4``, ``1,2,16``, ``1-16``, or a list of ints.

Two stages take them: inference (which steps to record, possibly past what the model was trained
to run) and voting (which recorded steps' answers vote, several of them together).
"""

from __future__ import annotations

from collections.abc import Sequence

from arcpipe.errors import ArcpipeError

MAX_STEPS = 1024  # a typo guard: a rollout of 10**6 steps is a mistake, not an experiment


def parse(spec: str | int | Sequence[int], what: str = "--steps") -> list[int]:
    """Sorted unique 1-based steps; a range ``a-b`` counts every step from a to b."""
    text = spec if isinstance(spec, str) else ",".join(map(str, [spec] if isinstance(spec, int) else spec))
    out: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, dash, hi = part.partition("-")
            out.update(range(int(lo), int(hi) + 1) if dash else [int(part)])
    except ValueError:
        raise ArcpipeError(f"{what} {text!r}: expected steps and ranges like 1,2,16 or 1-16") from None
    if not out or min(out) < 1 or max(out) > MAX_STEPS:
        raise ArcpipeError(f"{what} {text!r}: each step must be in 1..{MAX_STEPS}")
    return sorted(out)
