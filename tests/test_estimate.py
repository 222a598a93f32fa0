"""`arcpipe.estimate`: a planned training's time from the finished trainings of the same model on
this machine, as `arcpipe run --dry-run` shows it."""

from __future__ import annotations


import pytest
import torch

from arcpipe import cache, estimate
from arcpipe.train import train

SMALL = {"hidden_size": 32, "num_heads": 2, "puzzle_emb_ndim": 32, "halt_max_steps": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished 4-step trainings (seeds 0 and 1) of one small model, in a cache of their own."""
    from arcpipe.augment import augment

    root = tmp_path_factory.mktemp("cache")
    data = augment("arc1:training", extra_train=None, max_side=5, first=3, n_aug=4, canvas=6, n_jobs=1, root=root)
    runs = [train(data.path, overrides=SMALL, max_steps=4, global_batch_size=8, seed=s, progress=False, root=root)
            for s in (0, 1)]
    return root, data, runs


def _plan(trained, **kw):
    root, data, _ = trained
    args = dict(overrides=SMALL, max_steps=400, global_batch_size=8, root=root, dry_run=True)
    args.update(kw)
    return train(data.path, **args)


def test_a_planned_training_takes_the_median_seconds_per_step_of_its_kind(trained):
    root, _, runs = trained
    per_step = sorted(r.manifest["wall_time_s"] / 4 for r in runs)
    guess = estimate.training(_plan(trained), threads=torch.get_num_threads(), root=root)
    assert guess is not None and guess.runs == 2
    assert guess.seconds_per_step == pytest.approx(sum(per_step) / 2)  # the median of two
    assert guess.seconds == pytest.approx(400 * guess.seconds_per_step)


def test_only_the_same_model_batch_machine_and_threads_count(trained):
    root = trained[0]
    threads = torch.get_num_threads()
    assert estimate.training(_plan(trained, global_batch_size=16), threads=threads, root=root) is None
    assert estimate.training(_plan(trained, overrides={**SMALL, "hidden_size": 64}), threads=threads, root=root) is None
    assert estimate.training(_plan(trained), threads=threads + 1, root=root) is None
    other = {**cache.host(), "cpu_id": "family 0 model 0"}
    assert estimate.training(_plan(trained), threads=threads, root=root, here=other) is None
    # the seed, the budget and the puzzle-identifier count do not change a step's cost
    assert estimate.training(_plan(trained, seed=7, max_steps=9), threads=threads, root=root).runs == 2


def test_a_corrupt_manifest_is_skipped(trained):
    root = trained[0]
    bad = cache.cache_root(root) / "train" / "0000000000000000"
    bad.mkdir()
    (bad / cache.MANIFEST).write_text("{not json")
    try:
        assert estimate.training(_plan(trained), threads=torch.get_num_threads(), root=root).runs == 2
    finally:
        (bad / cache.MANIFEST).unlink()
        bad.rmdir()


def test_makespan_starts_the_dearest_first():
    assert estimate.makespan([45, 45, 25, 25], 2) == 70  # not 95 as plan order (45, 25 | 45, 25 ...) might
    assert estimate.makespan([10, 20, 30], 1) == 60
    assert estimate.describe(59) == "1 min" and estimate.describe(95 * 60) == "1 h 35 min"


def test_dry_run_prints_the_estimate(tmp_path):
    """End to end through the CLI: after a pipeline has trained two seeds, its dry run for a third
    gives that training a time from the two, and says what all its trainings take in all."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "pipelines" / "demo.toml"
    sets = ["data.first=2", "augment.n_aug=4", "augment.train_aug=4", "augment.jobs=1", "train.max_steps=4",
            "train.batch_size=8", "infer.batch_size=64", "report.enabled=false"]

    def run(*extra: str) -> str:
        argv = [sys.executable, "-m", "arcpipe.cli", "--cache", str(tmp_path / "cache"), "run", str(demo),
                *[a for s in sets for a in ("--set", s)], *extra]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                             env={**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr
        return out.stdout

    run("--set", "sweep.seeds=[0,1]")
    planned = run("--set", "sweep.seeds=[0,1,5]", "--dry-run")
    assert "(2 like it here)" in planned and planned.count("like it here") == 1, planned
    assert "estimate from finished trainings on this machine: the training takes" in planned
    assert "estimate" not in run("--set", "sweep.seeds=[0,1]", "--dry-run")  # nothing to train: no estimate
