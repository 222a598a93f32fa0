"""benchmarks/over_runs.py: Welch's interval over the runs of committed reports' arms, the check
README's at-a-glance verdicts were put through (reports before LAYOUT 15 lack a seed-resampled
interval of their own)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mod():
    spec = importlib.util.spec_from_file_location("bench_over_runs", ROOT / "benchmarks" / "over_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(("df", "want"), [(1, 12.706205), (3, 3.182446), (5.4, 2.514349), (30, 2.042272), (1000, 1.962339)])
def test_t_quantile_matches_tables(df, want):
    assert _mod().t_quantile(0.975, df) == pytest.approx(want, abs=2e-5)


def test_welch_on_two_arms_and_an_interaction():
    m = _mod()
    a, b = np.array([42.7, 40.1, 39.3, 38.4]), np.array([32.5, 28.8, 35.0, 33.3])
    est, lo, hi, df = m.welch([(1.0, a), (-1.0, b)])
    se = np.sqrt(a.var(ddof=1) / 4 + b.var(ddof=1) / 4)
    assert est == pytest.approx(a.mean() - b.mean()) and hi - est == pytest.approx(est - lo)
    assert (hi - est) / se == pytest.approx(m.t_quantile(0.975, df)) and 3 < df < 6
    # four arms with the same spread: df is 4 x 3 = 12 (equal variances, equal sizes)
    arms = [(s, np.array([1.0, 2.0, 3.0, 4.0]) + k) for k, s in enumerate((1.0, -1.0, -1.0, 1.0))]
    est, lo, hi, df = m.welch(arms)
    assert est == pytest.approx(0.0) and df == pytest.approx(12.0)


def test_committed_arms_and_errors():
    run = [sys.executable, str(ROOT / "benchmarks" / "over_runs.py")]
    out = subprocess.run(run + ["--plus", "outer-loop-59tasks-24k:halt_max_steps=1",
                                "--minus", "outer-loop-59tasks-24k:halt_max_steps=4,core=hrm"],
                         capture_output=True, text=True, check=True).stdout
    assert "4 runs, pass@2 42.7 / 40.1 / 39.3 / 38.4" in out and "+7.7 [+3.7, +11.7]" in out
    bad = subprocess.run(run + ["--plus", "outer-loop-59tasks-24k:max_steps=24000"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no column 'max_steps'" in bad.stderr
