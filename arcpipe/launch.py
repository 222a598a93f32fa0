"""What torchrun told this process, read in one place.

`train`, `infer`, `pipeline` and the CLI each need the rank and world size; they sit at
different heights of the import graph (`pipeline` calls the other two), so the reading lives
here, below all of them, with no arcpipe imports of its own. Outside torchrun every function
answers as for a single process.
"""

from __future__ import annotations

import atexit
import os
from typing import Any


def world() -> int:
    """How many ranks torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 outside torchrun): only rank 0 prints and writes stages."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its node: the CUDA device it drives."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def joined(backend: str) -> tuple[Any, bool]:
    """``(torch.distributed or None, made)``: join torchrun's default group, making it with
    ``backend`` unless a caller above (the pipeline, a notebook) already did. ``made`` says this
    call created it, so this caller may destroy it (the pipeline does; train and infer leave it up
    for a later call in the same process, since making a second group after destroying the first
    hung in tests); a group it did not make is left to its owner, since destroying it would break
    that owner's later collectives. A group made here is destroyed at interpreter exit if no one
    did so before: NCCL warns about, and may leave work pending in, a group still up at exit."""
    if world() <= 1:
        return None, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist, False
    dist.init_process_group(backend=backend)
    atexit.register(_destroy_at_exit)
    return dist, True


def _destroy_at_exit() -> None:
    """Destroy the default group at interpreter exit unless its maker already did."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
