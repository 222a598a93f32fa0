"""Same seed, same bytes: augment regardless of worker count, training on CPU with --deterministic.

Augmentation draws each task's variants from a generator seeded by
(seed, task id), so how tasks are spread over joblib workers cannot change
the plan: ``--jobs 1`` and ``--jobs 2`` must write byte-identical files (and
the same cache key). Training with ``deterministic=True`` (``--deterministic``:
deterministic kernels, one thread, seeded init/sampling/ACT exploration) must
give bit-identical parameters and metrics on CPU in two separate runs. A
different seed must change both, or these tests could not fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TASKS_SMALL = REPO / "tests" / "data" / "tasks_small"
PLAN_FILES = ("plan.parquet", "grids.npy", "identifiers.json", "tasks.json")


def augment_cli(root: Path, *args: str) -> Path:
    env = {**os.environ, "ARCPIPE_CACHE": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from arcpipe.cli import main; main()", "augment", *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (path,) = [d for d in (root / "augment").iterdir() if d.is_dir() and not d.name.startswith(".")]
    return path


@pytest.mark.slow
def test_augment_identical_for_one_or_two_workers(tmp_path: Path) -> None:
    # 3 small tasks + 6 real evaluation tasks: enough tasks that two workers each get several
    args = [f"{TASKS_SMALL}+arc1:evaluation", "--max-side", "6", "--extra-train", "none", "--n-aug", "48", "--canvas", "8", "--seed", "7"]
    one = augment_cli(tmp_path / "j1", *args, "--jobs", "1")
    two = augment_cli(tmp_path / "j2", *args, "--jobs", "2")
    assert one.name == two.name, "--jobs must not enter the cache key"
    for f in PLAN_FILES:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f"{f} differs between --jobs 1 and --jobs 2"
    other = augment_cli(tmp_path / "s8", *args[:-1], "8", "--jobs", "2")
    assert (other / "plan.parquet").read_bytes() != (one / "plan.parquet").read_bytes(), "the seed must matter"


def test_augment_python_api_repeatable_across_jobs(tmp_path: Path) -> None:
    """The in-process API too (joblib's loky workers vs the calling process)."""
    from arcpipe.augment import augment

    a = augment(str(TASKS_SMALL), extra_train="none", n_aug=40, canvas=8, seed=3, n_jobs=1, root=tmp_path / "a")
    b = augment(str(TASKS_SMALL), extra_train="none", n_aug=40, canvas=8, seed=3, n_jobs=2, root=tmp_path / "b")
    assert a.key == b.key
    for f in PLAN_FILES:
        assert (a.path / f).read_bytes() == (b.path / f).read_bytes(), f


def _train(aug, root: Path, seed: int):
    from arcpipe.train import train

    return train(aug, preset="tiny", overrides={"hidden_size": 32, "puzzle_emb_ndim": 32}, max_steps=5, eval_every=5,
                 global_batch_size=8, seed=seed, deterministic=True, device="cpu", progress=False, root=root, force=True)


@pytest.mark.slow
def test_training_on_cpu_is_deterministic(tmp_path: Path) -> None:
    import polars as pl
    import torch

    from arcpipe.augment import augment

    aug = augment(str(TASKS_SMALL), extra_train="none", n_aug=8, canvas=8, n_jobs=1, root=tmp_path / "c")
    threads = torch.get_num_threads()
    first = _train(aug, tmp_path / "c", seed=1)
    wa = torch.load(first.path / "model.pt", map_location="cpu", weights_only=True)
    ma = pl.read_parquet(first.path / "metrics.parquet").drop("wall_s", "tokens_per_s")
    second = _train(aug, tmp_path / "c", seed=1)  # force=True: really trains again
    assert not second.cached and second.key == first.key
    wb = torch.load(second.path / "model.pt", map_location="cpu", weights_only=True)
    mb = pl.read_parquet(second.path / "metrics.parquet").drop("wall_s", "tokens_per_s")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between two deterministic runs"
    assert ma.equals(mb, null_equal=True)
    assert torch.get_num_threads() == threads, "--deterministic must restore the thread count"
    other = _train(aug, tmp_path / "d", seed=2)
    wc = torch.load(other.path / "model.pt", map_location="cpu", weights_only=True)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa), "the seed must matter"
