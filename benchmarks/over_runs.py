"""Differences between arms of committed reports, with Welch's interval over their runs.

A report's paired intervals resample tasks with each arm's training seeds averaged per task, so
they hold the trainings fixed; reports built before LAYOUT 15 have no *seeds resampled* interval
and their caches are gone. Their ``runs`` tables still hold every run's own pass@2, which is
enough for the between-run check: each arm is a sample of trainings, and a signed sum of arm
means (a difference, or an interaction of four arms) gets a t interval with Welch-Satterthwaite
degrees of freedom. Arms can come from several reports (runs of other machines pooled).

    python benchmarks/over_runs.py --plus outer-loop-59tasks:core=transformer \\
        --minus outer-loop-59tasks:core=hrm,L_cycles=2,halt_max_steps=4

An arm is ``report:col=value,...[;report:col=value,...]`` (``;`` pools runs of several reports),
added with ``--plus`` and subtracted with ``--minus`` (four of them make an interaction); a
column a report's runs table lacks is an error, not a wildcard.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def t_quantile(q: float, df: float) -> float:
    """Student's t quantile (q > 0.5) from its density integrated on a fine grid: numpy and the
    closed-form density are enough, where scipy would be a dependency for one number."""
    x = np.linspace(0.0, 200.0, 2_000_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return float(np.interp(q, cdf, x))


def arm_runs(spec: str) -> tuple[np.ndarray, list[str]]:
    """Per-run pass@2 in points of one arm spec, and the hosts its runs were trained on."""
    values, hosts = [], []
    for part in spec.split(";"):
        name, _, sel = part.partition(":")
        path = REPORTS / name / "runs.csv"
        if not path.is_file():
            sys.exit(f"over_runs: {path}: no such runs table")
        runs = pl.read_csv(path, infer_schema_length=None)
        for kv in filter(None, sel.split(",")):
            k, _, v = kv.partition("=")
            if k not in runs.columns:
                sys.exit(f"over_runs: {name}: its runs table has no column {k!r} (it did not vary there)")
            runs = runs.filter(pl.col(k).cast(pl.String) == v)
        if runs.is_empty():
            sys.exit(f"over_runs: {part}: no run matches")
        values += (100 * runs["pass@2"]).to_list()
        hosts += runs["train_host"].to_list() if "train_host" in runs.columns else [None] * runs.height
    return np.asarray(values), hosts


def welch(arms: list[tuple[float, np.ndarray]], level: float = 0.95) -> tuple[float, float, float, float]:
    """Signed sum of arm means, its Welch interval and degrees of freedom."""
    est = sum(s * v.mean() for s, v in arms)
    parts = [v.var(ddof=1) / len(v) for _, v in arms]
    se = math.sqrt(sum(parts))
    df = sum(parts) ** 2 / sum(p * p / (len(v) - 1) for p, (_, v) in zip(parts, arms)) if se > 0 else float("inf")
    half = (t_quantile(1 - (1 - level) / 2, df) if math.isfinite(df) else 1.96) * se
    return est, est - half, est + half, df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plus", action="append", default=[], metavar="ARM", help="report:col=value,... (';' pools reports)")
    ap.add_argument("--minus", action="append", default=[], metavar="ARM", help="an arm subtracted")
    args = ap.parse_args()
    specs = [(1.0, a) for a in args.plus] + [(-1.0, a) for a in args.minus]
    if not specs:
        ap.error("give at least one --plus or --minus arm")
    arms = []
    for sign, spec in specs:
        v, hosts = arm_runs(spec)
        if len(v) < 2:
            sys.exit(f"over_runs: {spec}: one run, no spread between runs to use")
        kinds = sorted({"host not recorded" if h is None else str(h).split(" (")[0] for h in hosts})
        print(f"{'+' if sign > 0 else '-'} {spec}: {len(v)} runs, pass@2 {' / '.join(f'{x:.1f}' for x in v)} "
              f"(mean {v.mean():.1f}, sd {v.std(ddof=1):.1f}; trained on {', '.join(kinds)})")
        arms.append((sign, v))
    est, lo, hi, df = welch(arms)
    print(f"signed sum of arm means: {est:+.1f} [{lo:+.1f}, {hi:+.1f}] (95% Welch interval over runs, df {df:.1f})")


if __name__ == "__main__":
    main()
