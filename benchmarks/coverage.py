"""Benchmark: how often each of arcpipe's intervals covers a true zero difference.

Every ablation here compares two arms of a few training runs each, on a few dozen ARC tasks,
and reads a difference as resolved when its 95% interval excludes zero. That is only honest if
the interval covers the truth about 95% of the time *for data like ours*: per-task pass@2 that
is mostly 0 or 1, tasks of very different difficulty, and training runs that differ both as a
whole (a lucky seed) and task by task (seeds solving different tasks). This script simulates
that under the null (both arms drawn from one distribution) and counts coverage for

  paired-pct  tasks resampled, each arm's runs averaged per task, plain percentile (reports
            before LAYOUT 17)
  paired    the same read at the small-sample tails of stats.expanded_tail (stats.bootstrap_ci's
            default, so what stats.paired_effects and reports print from LAYOUT 17)
  both      tasks and whole runs resampled together (the first, LAYOUT 15 version of the
            seed-resampled interval: `both_levels` below), percentile
  seeds-pct stats.seed_bootstrap_ci(t_tails=False): the paired draw plus each arm's whole-run
            offsets, shrunk to the whole-run variance component, percentile
  seeds-t   stats.seed_bootstrap_ci: the same with t tails (what reports print; from LAYOUT 17
            on the paired interval's small-sample tails)
  welch     stats.welch on the per-run mean pass@2 (arcpipe compare, over runs)

Model, per setting: task difficulty a_t ~ N(-0.5, 2.5) on the logit scale, a run effect
u_j ~ N(0, run_sd) and a run-by-task effect e_jt ~ N(0, task_sd), one test input per task:
pass = Bernoulli(sigmoid(a_t + u_j + e_jt)). The table also prints the spread of a run's
mean pass@2 (points), to set beside what reports show (the runs tables of 59-task reports:
about 2 to 5 points between seeds of one arm).

    .venv/bin/python benchmarks/coverage.py [--draws 400] [--boot 1000] [--tasks 13,59] [--runs 2,4,8]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from arcpipe import stats

METHODS = ("paired-pct", "paired", "both", "seeds-pct", "seeds-t", "welch")


def both_levels(arms: list[np.ndarray], boot: int, seed: int) -> tuple[float, float]:
    """Reference: resample tasks and each arm's runs (whole rows) in one draw, each run's
    deviation from its arm's mean widened by sqrt(r / (r - 1)); percentile interval of arm 0 -
    arm 1. Counts the run-by-task spread twice (once in the task draw, once in the run draw)."""
    rng = np.random.default_rng(seed)
    t = arms[0].shape[1]
    tasks = rng.multinomial(t, np.full(t, 1.0 / t), size=boot).T / t
    reps = []
    for m in arms:
        r = m.shape[0]
        wide = m.mean(axis=0) + np.sqrt(r / (r - 1)) * (m - m.mean(axis=0))
        pick = rng.multinomial(r, np.full(r, 1.0 / r), size=boot).T / r
        reps.append(((wide @ tasks) * pick).sum(axis=0))
    lo, hi = np.quantile(reps[0] - reps[1], [0.025, 0.975])
    return float(lo), float(hi)


def draw_arm(rng: np.random.Generator, a: np.ndarray, runs: int, run_sd: float, task_sd: float) -> np.ndarray:
    """One arm's (runs, tasks) matrix of 0/1 outcomes around shared task difficulties ``a``."""
    logit = a + rng.normal(0, run_sd, (runs, 1)) + rng.normal(0, task_sd, (runs, a.size))
    return (rng.uniform(size=logit.shape) < 1 / (1 + np.exp(-logit))).astype(np.float64)


def coverage(tasks: int, runs: int, run_sd: float, task_sd: float, draws: int, boot: int, seed: int = 0) -> dict:
    """Share of ``draws`` null experiments whose interval holds zero, per method; the mean
    interval width (points); and the sd of one run's mean pass@2 (points)."""
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(METHODS, 0)
    width = dict.fromkeys(METHODS, 0.0)
    run_sds = []
    combo = np.array([[1.0, -1.0]])
    for k in range(draws):
        a = rng.normal(-0.5, 2.5, tasks)
        arms = [draw_arm(rng, a, runs, run_sd, task_sd) for _ in range(2)]
        run_sds.append(np.mean([m.mean(axis=1).std(ddof=1) for m in arms]))
        diff = arms[0].mean(axis=0) - arms[1].mean(axis=0)
        got = {}
        for name, expand in (("paired-pct", False), ("paired", True)):
            lo, hi = stats.bootstrap_ci(diff, n_boot=boot, seed=k, expand=expand)
            got[name] = (lo[0], hi[0])
        got["both"] = both_levels(arms, boot, k)
        for name, tails in (("seeds-pct", False), ("seeds-t", True)):
            lo, hi = stats.seed_bootstrap_ci(arms, combo, n_boot=boot, seed=k, t_tails=tails)
            got[name] = (lo[0], hi[0])
        w = stats.welch([(1.0, arms[0].mean(axis=1)), (-1.0, arms[1].mean(axis=1))])
        got["welch"] = (w["low"], w["high"])
        for name, (lo, hi) in got.items():
            hits[name] += lo <= 0 <= hi
            width[name] += hi - lo
    return {"cover": {m: hits[m] / draws for m in METHODS}, "width": {m: 100 * width[m] / draws for m in METHODS},
            "run_sd": 100 * float(np.mean(run_sds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=400, help="null experiments per setting")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap replicates per interval")
    ap.add_argument("--tasks", default="13,59")
    ap.add_argument("--runs", default="2,4,8", help="training runs per arm")
    ap.add_argument("--effects", default="0:1,0.3:1,0.3:2",
                    help="run_sd:task_sd pairs (logit scale): whole-run and run-by-task spread")
    args = ap.parse_args()
    tasks = [int(x) for x in args.tasks.split(",")]
    runs = [int(x) for x in args.runs.split(",")]
    effects = [tuple(float(v) for v in e.split(":")) for e in args.effects.split(",")]
    t0 = time.perf_counter()
    print(f"coverage of a true zero by each 95% interval, {args.draws} null draws a setting, {args.boot} bootstrap replicates")
    print("| tasks | runs/arm | run sd | run x task sd | sd of a run's pass@2 | " + " | ".join(METHODS)
          + " | widths (points) |")
    print("|---" * (6 + len(METHODS)) + "|")
    for t, r, (rs, ts) in itertools.product(tasks, runs, effects):
        c = coverage(t, r, rs, ts, args.draws, args.boot)
        print(f"| {t} | {r} | {rs} | {ts} | {c['run_sd']:.1f} | "
              + " | ".join(f"{c['cover'][m]:.1%}" for m in METHODS)
              + " | " + " / ".join(f"{c['width'][m]:.1f}" for m in METHODS) + " |", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s; nominal 95%; a draw's standard error is about "
          f"{100 * (0.95 * 0.05 / args.draws) ** 0.5:.1f} points)")


if __name__ == "__main__":
    main()
