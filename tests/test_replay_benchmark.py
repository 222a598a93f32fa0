"""benchmarks/replay.py: a run counts as a replay only when every result column matches the
committed one, and runs whose stage keys the committed report lacks are named as such."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def _replay():
    spec = importlib.util.spec_from_file_location("bench_replay", ROOT / "benchmarks" / "replay.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_replay_verdicts_on_the_committed_24k_runs():
    committed = pl.read_csv(ROOT / "reports" / "outer-loop-59tasks-24k" / "runs.csv")
    metrics = _replay().metric_columns(committed.columns)
    assert {"pass@2", "oracle", "train_exact", "q_auroc"} <= set(metrics) and "seed" not in metrics
    new = committed.head(3).with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.col("q_auroc") + 1e-12).otherwise(pl.col("q_auroc")).alias("q_auroc"),
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("0" * 16)).otherwise(pl.col("infer")).alias("infer"),
    )
    table = _replay().compare(new, committed)
    # a difference in one AUROC alone (same pass@2 and train exact) is not a replay
    assert table["replay"].to_list() == ["identical", "differs", "not in committed report"]
    assert table["pass@2 here"][1] == table["pass@2 committed"][1]
    assert table["exact committed"][2] is None
