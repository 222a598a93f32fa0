"""CPU training speed of the ``tiny`` preset with and without ``torch.compile`` (train.compile).

The CPU ablations spend nearly all their time in 12000-step ``tiny`` trainings (20-25 min each),
so what compile buys there is what every CPU sweep would gain. This trains the demo's data
(13 ARC-AGI-1 evaluation tasks with sides <= 6, 8 variants each, 7x7 canvas) for --steps
steps, batch 32, eager and then compiled, each in a fresh cache under --cache, and prints
steady-state steps/s (timed from the first step's metrics to the last: compilation, data
loading and saving are outside that window) plus the one-off start cost.

    OMP_NUM_THREADS=1 python benchmarks/train_compile.py --steps 600

A compiled model computes the same function with differently fused kernels, so its run is its
own cache entry and its numbers are not bit-identical to eager ones.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from arcpipe import augment, train


def timed_training(dataset, root: Path, steps: int, compile: bool) -> tuple[float, float]:
    """(steady-state steps/s, seconds before the first step's metrics arrived)."""
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    train.train(dataset, preset="tiny", max_steps=steps, global_batch_size=32, root=root, progress=False,
                eval_every=10**9, checkpoint_every=10**9, overrides={"compile": compile},
                callback=lambda step, row: marks.append((time.perf_counter(), step)))
    (t0, s0), (t1, s1) = marks[0], marks[-1]
    return (s1 - s0) / (t1 - t0), t0 - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--cache", type=Path, default=None, help="scratch cache (default: a temporary folder)")
    args = ap.parse_args()
    if args.steps < 10:
        ap.error("--steps must be at least 10 (the rate is timed between the first and the last step)")
    scratch = args.cache or Path(tempfile.mkdtemp(prefix="arcpipe-bench-compile-"))
    dataset = augment.augment("arc1:evaluation", extra_train="none", max_side=6, canvas=7, n_aug=8, train_aug=8,
                              root=scratch / "data")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.steps} steps, batch 32")
    rates = {}
    for compile in (False, True):
        shutil.rmtree(scratch / str(compile), ignore_errors=True)
        rate, first = timed_training(dataset, scratch / str(compile), args.steps, compile)
        rates[compile] = rate
        print(f"compile={compile!s:5}  {rate:6.2f} steps/s  first step after {first:5.1f} s  "
              f"(12000 steps: {12000 / rate / 60:4.1f} min)")
    print(f"compiled / eager: {rates[True] / rates[False]:.2f}x")


if __name__ == "__main__":
    main()
