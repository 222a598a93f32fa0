"""Test-wide settings.

One intra-op thread per process: several tests start 2-process torchrun or
subprocess CLIs on a 2-core machine, and oversubscribed OpenMP threads made
them an order of magnitude slower. Subprocesses inherit the variable.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def autograd_graph_size(t: torch.Tensor) -> int:
    """Number of autograd nodes behind ``t``: how the one-step-gradient tests see which
    recurrent updates were recorded."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return len(seen)
