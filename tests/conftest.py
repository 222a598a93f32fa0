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
