"""Benchmark the augment stage (issue 3).

(a) plan ARC-AGI-1 training + evaluation (800 tasks) x N variants with
    duplicate detection on J worker processes: wall time and peak RSS of the
    whole process tree (this process + joblib workers, sampled from /proc);
(b) materialisation throughput: sequences/s for batches of B random training
    rows on canvas 30 (numpy ``materialize``, and the torch variant on CPU);
(c) ``--materialize``: writing the reference-style token arrays of the same
    plan to disk (optionally for a smaller --disk-n-aug, documented in the output).

Run:  OMP_NUM_THREADS=1 python benchmarks/augment.py --jobs 2
Results are printed as one JSON object (and a short human summary).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


class TreeRSS:
    """Peak resident memory of this process and all its descendants, sampled every ``period`` seconds.

    ``ru_maxrss`` alone misses joblib's worker processes, which is where
    planning happens, so the tree is summed from /proc.
    """

    def __init__(self, period: float = 0.02, pid: int | None = None):
        self.period = period
        self.pid = pid  # root of the measured tree (default: this process)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_rss(self) -> int:
        me = self.pid or os.getpid()
        parent: dict[int, int] = {}
        rss: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parent[int(d)] = int(fields[1])
                rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        total, stack = 0, [me]
        children: dict[int, list[int]] = {}
        for p, pp in parent.items():
            children.setdefault(pp, []).append(p)
        while stack:
            p = stack.pop()
            total += rss.get(p, 0)
            stack.extend(children.get(p, []))
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            time.sleep(self.period)

    def __enter__(self) -> "TreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._tree_rss())


def _gib(n: float) -> float:
    return round(n / 2**30, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--n-aug", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=768)
    ap.add_argument("--batches", type=int, default=40, help="timed materialisation batches")
    ap.add_argument("--disk-n-aug", type=int, default=None, help="n_aug for (c) [default: --n-aug]")
    ap.add_argument("--skip-disk", action="store_true")
    ap.add_argument("--root", type=Path, default=None, help="cache root [default: a temp dir, removed afterwards]")
    args = ap.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="arcpipe-bench-"))
    out: dict = {"jobs": args.jobs, "n_aug": args.n_aug, "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}
    import numpy as np

    from arcpipe import augment as A
    from arcpipe.data import load_tasks

    try:
        # (a) planning. Loading the bundled JSON is timed apart: it is the data stage's cost.
        t0 = time.perf_counter()
        src, extra = load_tasks("arc1:evaluation"), load_tasks("arc1:training")
        out["load_tasks_s"] = round(time.perf_counter() - t0, 2)
        with TreeRSS() as mem:
            t0 = time.perf_counter()
            table, grids, identifiers, counts = A.build_plan(
                src, extra, n_aug=args.n_aug, train_aug=args.n_aug, seed=0, canvas=30, translate=True, retries=5, n_jobs=args.jobs
            )
            out["plan_s"] = round(time.perf_counter() - t0, 2)
        out["plan_peak_rss_tree_gib"] = _gib(mem.peak)
        out["plan_counts"] = {k: v for k, v in counts.items() if k != "short_tasks"}
        out["plan_short_tasks"] = len(counts["short_tasks"])
        del table, grids, identifiers
        # The same through the cached stage (plan + parquet/npy/json writes), fresh cache.
        with TreeRSS() as mem:
            t0 = time.perf_counter()
            stage = A.augment(n_aug=args.n_aug, n_jobs=args.jobs, root=root, force=True)
            out["stage_s"] = round(time.perf_counter() - t0, 2)
        out["stage_build_s"] = stage.manifest["wall_time_s"]
        out["stage_peak_rss_tree_gib"] = _gib(mem.peak)
        out["stage_files_mb"] = {p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(stage.path.iterdir()) if p.is_file()}
        t0 = time.perf_counter()
        A.augment(n_aug=args.n_aug, n_jobs=args.jobs, root=root)
        out["stage_cached_s"] = round(time.perf_counter() - t0, 2)

        # (b) materialisation throughput on random training rows.
        plan = A.Plan.load(stage)
        train = plan.split("train")
        cols = {c: train.get_column(c).to_numpy() for c in train.columns if c not in ("task_id", "split", "part")}
        grids = np.array(plan.grids)  # in memory, as train/infer hold it
        rng = np.random.default_rng(0)
        picks = [rng.integers(0, len(train), args.batch) for _ in range(args.batches)]
        batches = [{k: v[p] for k, v in cols.items()} for p in picks]
        A.materialize(batches[0], grids, plan.canvas)
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            A.materialize(b, grids, plan.canvas)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        out["materialize_numpy_seq_per_s"] = round(args.batch * args.batches / dt)
        # Per CPU-second of this (single-threaded) process: what one free core does, whatever else the machine runs.
        out["materialize_numpy_seq_per_cpu_s"] = round(args.batch * args.batches / cpu)
        out["materialize_numpy_ms_per_batch"] = round(dt / args.batches * 1e3, 2)
        frames = [train[p] for p in picks[:10]]
        t0 = time.perf_counter()
        for f in frames:
            A.materialize(f, grids, plan.canvas)
        out["materialize_from_polars_seq_per_s"] = round(args.batch * len(frames) / (time.perf_counter() - t0))
        try:
            import torch

            torch.set_num_threads(1)
            tg = torch.as_tensor(grids)
            A.materialize_torch(batches[0], tg, plan.canvas)
            t0 = time.perf_counter()
            for b in batches[:10]:
                A.materialize_torch(b, tg, plan.canvas)
            out["materialize_torch_cpu1_seq_per_s"] = round(args.batch * 10 / (time.perf_counter() - t0))
        except ImportError:  # pragma: no cover
            pass

        # (c) --materialize to disk, through the CLI in a fresh process so its
        # peak memory is measured alone (not on top of this process's state).
        if not args.skip_disk:
            n_disk = args.disk_n_aug or args.n_aug
            cmd = [sys.executable, "-m", "arcpipe.cli", "--cache", str(root), "augment", "--n-aug", str(n_disk),
                   "--jobs", str(args.jobs), "--materialize", "--force"]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with TreeRSS(pid=proc.pid) as mem:
                if proc.wait() != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
            out["disk_s"] = round(time.perf_counter() - t0, 2)
            ms = A.augment(n_aug=n_disk, n_jobs=args.jobs, root=root, materialize=True)
            assert ms.cached
            rows = ms.manifest["counts"]["materialized_train_rows"] + ms.manifest["counts"]["materialized_test_rows"]
            size = sum(p.stat().st_size for p in ms.path.rglob("*.npy"))
            out["disk"] = {
                "command": " ".join(cmd[1:]),
                "n_aug": n_disk,
                "rows": rows,
                "bytes_gb": round(size / 1e9, 2),
                "build_s": ms.manifest["wall_time_s"],
                "seq_per_s_incl_plan": round(rows / ms.manifest["wall_time_s"]),
                "peak_rss_tree_gib": _gib(mem.peak),
            }
        out["loadavg_end"] = os.getloadavg()[0]
        out["self_maxrss_gib"] = _gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
