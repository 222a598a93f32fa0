"""Torch threads for a CPU stage started on a machine that other work already keeps busy.

torch starts one intra-op thread per core. When other processes already hold those cores (a
second training, a test suite), its threads wait on one another at every parallel region: on
this 2-core machine, with two trainings running, an inference at torch's default 2 threads ran
3.9 variants/s, at 1 thread 166 (40 times faster). The thread count changes neither a stage's
cache key nor, on one CPU, its results (``benchmarks/threads.py``), so a training or inference
started on a busy machine takes only the cores the others leave free and says so in one line;
the next stage looks again, from torch's own count, so a machine that has become free gets all
its cores back. The stage's manifest records the count it ran on. ``OMP_NUM_THREADS`` (or
``MKL_NUM_THREADS``) set by the user, or by ``arcpipe run --jobs`` for its workers, is a choice
and is kept.

How busy: the CPU time every process but this one used over a quarter of a second (Linux's
``/proc/stat`` minus this process's own time), in cores. The load average would not do: it
lags by a minute and counts this very process's previous stage as someone else's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

SAMPLE_S = 0.25


def _busy_ticks() -> int | None:
    """Clock ticks all CPUs have spent busy since boot (``/proc/stat``'s first line), None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def others_busy(sample_s: float = SAMPLE_S) -> float | None:
    """Cores' worth of CPU that other processes used over ``sample_s`` seconds, None if unknown."""
    before, mine, t0 = _busy_ticks(), time.process_time(), time.monotonic()
    if before is None:
        return None
    time.sleep(sample_s)
    after = _busy_ticks()
    if after is None:
        return None
    elapsed = time.monotonic() - t0
    others = (after - before) / os.sysconf("SC_CLK_TCK") - (time.process_time() - mine)
    return max(0.0, others / elapsed)


def cpus() -> int:
    from arcpipe.scheduler import cpu_count

    return cpu_count()


def free_threads(current: int, busy: float | None, n_cpus: int) -> int:
    """How many torch threads to use: ``current``, or fewer when others leave fewer cores free."""
    if busy is None:
        return current
    return max(1, min(current, n_cpus - int(busy + 0.5)))


_default: int | None = None  # torch's thread count before the first stage here changed it


def fit(stage: str, say: Callable[[str], None], busy: Callable[[], float | None] | None = None) -> int:
    """Set torch's threads for a CPU stage about to start to what the machine has free (see the
    module doc); return the count."""
    import torch

    global _default
    if "OMP_NUM_THREADS" in os.environ or "MKL_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    if _default is None:
        _default = torch.get_num_threads()
    load = (busy or others_busy)() if _default > 1 else None
    n = free_threads(_default, load, cpus())
    if n < _default:
        say(f"{stage}: other processes keep {load:.1f} of {cpus()} CPUs busy: {n} torch thread(s) instead of "
            f"{_default} (set OMP_NUM_THREADS to choose)")
    torch.set_num_threads(n)
    return n
