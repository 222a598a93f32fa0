"""Two processes building the same stage (or pipeline) on one cache directory at once.

Users start the same command in two terminals, or two jobs of a sweep share a
cache. The per-key ``flock`` in ``arcpipe.cache.run_stage`` makes them take
turns: both must exit 0, report the same stage directory, and leave exactly
one finished copy — no second copy, no leftover work directory, no torn
file — whose content equals a build made alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arcpipe import cache

REPO = Path(__file__).resolve().parents[2]
TASKS_SMALL = REPO / "tests" / "data" / "tasks_small"


def env_for(root: Path) -> dict[str, str]:
    env = {**os.environ, "ARCPIPE_CACHE": str(root), "OMP_NUM_THREADS": "1"}
    env.pop("ARCPIPE_DEBUG", None)
    return env


def race(args: list[str], root: Path, cwd: Path | None = None, n: int = 2, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Start ``n`` identical ``arcpipe ARGS`` processes together; wait for all."""
    cmd = [sys.executable, "-c", "from arcpipe.cli import main; main()", *args]
    procs = [subprocess.Popen(cmd, env=env_for(root), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    for r in out:
        assert r.returncode == 0, f"a concurrent run failed:\n{r.stdout}\n{r.stderr}"
    return out


def finished(root: Path, stage: str) -> list[Path]:
    base = root / stage
    return sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")) if base.is_dir() else []


def assert_one_valid_copy(root: Path, stage: str) -> Path:
    """Exactly one finished dir for ``stage``, loadable, and no work/trash dirs left behind."""
    dirs = finished(root, stage)
    assert len(dirs) == 1, f"{stage}: {len(dirs)} copies in the cache: {dirs}"
    leftovers = [d.name for d in (root / stage).iterdir() if d.is_dir() and d.name.startswith(".")]
    assert not leftovers, f"{stage}: leftover work dirs {leftovers}"
    s = cache.load_stage(dirs[0], stage)
    assert s.key == dirs[0].name
    return dirs[0]


def test_two_augments_at_once_share_one_copy(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    args = ["augment", str(TASKS_SMALL), "--extra-train", "none", "--n-aug", "32", "--canvas", "8", "--jobs", "1"]
    results = race(args, root)
    path = assert_one_valid_copy(root, "augment")
    states = sorted("cached" in r.stdout for r in results)
    assert all(str(path) in r.stdout for r in results), [r.stdout for r in results]
    assert states == [False, True], "one process builds, the other must find its result"

    from arcpipe.augment import Plan

    plan = Plan.load(path)
    assert plan.table.height == json.loads((path / cache.MANIFEST).read_text())["counts"]["train_rows"] + \
        json.loads((path / cache.MANIFEST).read_text())["counts"]["test_rows"]
    # the same command alone builds the same bytes
    alone = tmp_path / "alone"
    race(args, alone, n=1)
    other = assert_one_valid_copy(alone, "augment")
    assert other.name == path.name
    for f in ("plan.parquet", "grids.npy", "identifiers.json", "tasks.json"):
        assert (other / f).read_bytes() == (path / f).read_bytes(), f


@pytest.mark.slow
def test_two_trainings_at_once_share_one_copy(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    race(["augment", str(TASKS_SMALL), "--extra-train", "none", "--n-aug", "8", "--canvas", "8", "--jobs", "1"], root, n=1)
    aug = assert_one_valid_copy(root, "augment")
    args = ["train", str(aug), "--max-steps", "4", "--batch-size", "8", "--deterministic", "--device", "cpu",
            "--checkpoint-every", "2", "--set", "hidden_size=32", "--set", "puzzle_emb_ndim=32"]
    results = race(args, root)
    path = assert_one_valid_copy(root, "train")
    assert sorted("cached" in r.stdout for r in results) == [False, True]
    import torch

    sd = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    assert sd and all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


PIPELINE = """
[data]
source = "{tasks}"
extra_train = "none"

[augment]
n_aug = 16
canvas = 8
jobs = 1

[train]
max_steps = 4
batch_size = 8
deterministic = true
device = "cpu"

[train.model]
hidden_size = 32
puzzle_emb_ndim = 32

[infer]
device = "cpu"

[vote]
rule = ["hrm", "count"]

[report]
enabled = false
"""


@pytest.mark.slow
def test_two_pipelines_at_once_share_one_copy_of_every_stage(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(PIPELINE.format(tasks=TASKS_SMALL))
    root = tmp_path / "cache"
    race(["run", "tiny.toml"], root, cwd=tmp_path)
    for stage in ("augment", "train", "infer"):
        assert_one_valid_copy(root, stage)
    votes = finished(root, "vote")
    assert len(votes) == 2 and not [d for d in (root / "vote").iterdir() if d.name.startswith(".work")]
    for v in votes:
        sc = json.loads((v / "scores.json").read_text())
        assert 0.0 <= sc["pass@2"] <= 1.0
        json.loads((v / "submission.json").read_text())
    # the pipeline index agrees with the cache
    for entry in (root / "pipeline").glob("*.json"):
        e = json.loads(entry.read_text())
        if e["stage"] != "report":
            assert cache.find(e["stage"], e["key"], root) is not None, entry
