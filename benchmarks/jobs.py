"""What ``arcpipe run --jobs N`` buys on this machine: a sweep of ``tiny`` trainings run one after
another (``--jobs 1``, each training with every core) and N at a time (one process per training,
each with its share of the cores).

The CPU ablations are sweeps of independent 12000-step ``tiny`` trainings (seeds x arms), so
this ratio is what every CPU sweep gains. The sweep is demo.toml reduced to --seeds seeds of
--steps steps each (13 ARC-AGI-1 evaluation tasks with sides <= 6, 8 variants, 7x7 canvas,
batch 32, inference and vote included, no report), each mode in a fresh cache; it prints the
wall time of each and their ratio, and each training stage's own recorded wall time and
steps/s, so the fixed costs (spawning workers, importing torch, augmenting once) show as the
difference between the two ratios.

    python benchmarks/jobs.py --steps 1000 --seeds 2 --jobs 2     # the figures in benchmarks/README.md
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from arcpipe import pipeline
from arcpipe.scheduler import cpu_count

DEMO = Path(__file__).resolve().parents[1] / "pipelines" / "demo.toml"


def timed_run(root: Path, sets: list[str], jobs: int) -> tuple[float, list[float]]:
    """(wall seconds of the whole run, each training stage's own recorded wall seconds)."""
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    result = pipeline.run(DEMO, sets=sets, root=root, jobs=jobs)
    wall = time.perf_counter() - t0
    trains = [n.result.manifest.get("wall_time_s", float("nan")) for n in result.by_stage("train")]
    return wall, trains


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, default=2, help="trainings in the sweep (one per seed)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="scratch cache (default: a temporary folder)")
    args = ap.parse_args()
    scratch = args.cache or Path(tempfile.mkdtemp(prefix="arcpipe-bench-jobs-"))
    sets = ["augment.n_aug=8", "augment.train_aug=8", f"train.max_steps={args.steps}", "train.batch_size=32",
            f"sweep.seeds={list(range(args.seeds))}", "report.enabled=false"]
    print(f"{cpu_count()} CPU(s); {args.seeds} trainings x {args.steps} steps (tiny, batch 32) + inference + vote")
    walls = {}
    for jobs in (1, args.jobs):
        wall, trains = timed_run(scratch / f"jobs{jobs}", sets, jobs)
        walls[jobs] = wall
        per = ", ".join(f"{t:.0f}" for t in trains)
        print(f"--jobs {jobs}: {wall:6.1f} s in all; training stages {per} s each "
              f"({args.steps / (sum(trains) / len(trains)):.1f} steps/s apiece)")
    print(f"--jobs {args.jobs} / --jobs 1 wall time: {walls[args.jobs] / walls[1]:.2f} "
          f"({walls[1] / walls[args.jobs]:.2f}x the throughput)")


if __name__ == "__main__":
    main()
