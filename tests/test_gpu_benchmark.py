"""benchmarks/gpu.py: runs end to end (on the CPU here, at tiny scale), its batch ladder stops at
the first out-of-memory, its paper-run estimates follow from the FLOP count, and the row counts
it builds them from are what the augment stage really produces."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hrm
from hrm.flops import rollout_flops, step_flops

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_cpu_smoke_run_writes_every_row(gpu_bench, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--preset", "tiny", "--seq-len", "36", "--train-batches", "2,4", "--infer-batches", "2,4",
            "--compile", "off", "--iters", "1", "--warmup", "1", "--out", str(out)]
    res = CliRunner().invoke(gpu_bench.app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    kinds = [(r["kind"], r["batch"]) for r in data["results"]]
    assert kinds == [("train", 4), ("infer", 2), ("infer", 4)]
    cfg = hrm.HRMConfig(**{k: v for k, v in data["config"].items()})
    train, infer = data["results"][0], data["results"][2]
    assert train["flops_per_iter"] == step_flops(cfg, 4).train
    assert infer["flops_per_iter"] == rollout_flops(cfg, 4)
    assert train["flop_per_s"] == pytest.approx(train["flops_per_iter"] / train["s_per_iter"])
    assert train["sdpa"] in gpu_bench.SDPA_KERNELS.values()
    assert train["mfu"] is None and data["estimates"] == []  # no datasheet peak on a CPU; estimates are for `arc`


def test_ladder_stops_at_first_oom(gpu_bench) -> None:
    tried = []

    def run(b: int):
        tried.append(b)
        return None if b > 100 else {"batch": b}

    best, failed = gpu_bench.largest_fitting(run, [512, 64, 128, 32, 256])
    assert best == {"batch": 64} and failed == [128] and tried == [32, 64, 128]


def test_paper_run_estimates_follow_from_flops(gpu_bench) -> None:
    cfg = hrm.HRMConfig.preset("arc", num_puzzle_identifiers=2)
    rows = gpu_bench.paper_run_estimates(cfg, train_flop_per_s=400e12, infer_flop_per_s=500e12)
    one = {r["run"]: r for r in rows if r["gpus"] == 1}
    eight = {r["run"]: r for r in rows if r["gpus"] == 8}
    arc1 = one["ARC-AGI-1"]
    assert arc1["steps"] == math.ceil(100 * 2_809_254 / 768)
    assert arc1["train_hours"] == pytest.approx(arc1["steps"] * step_flops(cfg, 768).train / 400e12 / 3600)
    assert arc1["infer_hours"] == pytest.approx(385_457 * 16 * step_flops(cfg, 1).forward / 500e12 / 3600)
    assert eight["ARC-AGI-2"]["train_hours"] == pytest.approx(one["ARC-AGI-2"]["train_hours"] / 8)


def test_datasheet_peak_names() -> None:
    """One table (hrm.flops) for the benchmarks' MFU and train's dry-run hint; specific names first."""
    from hrm.flops import datasheet_peak

    assert datasheet_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert datasheet_peak("NVIDIA H100 PCIe") == 756e12
    assert datasheet_peak("NVIDIA GH200 480GB") == datasheet_peak("NVIDIA H200") == 989e12
    assert datasheet_peak("NVIDIA B200") == 2250e12
    assert datasheet_peak("cpu") is None


@pytest.mark.slow
def test_paper_run_row_counts_match_the_augment_stage(gpu_bench, tmp_path: Path) -> None:
    from arcpipe.augment import augment

    for (src, extra), name in ((("arc1:evaluation", "arc1:training"), "ARC-AGI-1"), (("arc2:evaluation", "arc2:training"), "ARC-AGI-2")):
        counts = augment(src, extra_train=extra, n_aug=1000, canvas=30, seed=0, root=tmp_path).manifest["counts"]
        run = gpu_bench.PAPER_RUNS[name]
        assert (counts["train_rows"], counts["test_rows"]) == (run["train_rows"], run["test_rows"])
