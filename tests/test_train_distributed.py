"""`arcpipe train` under torchrun: 2 gloo ranks == 1 process with the same global batch.

Two ranks each take half of every global batch; dense gradients are summed
across ranks (the loss is already divided by the global batch size) and the
sparse puzzle-embedding optimiser gathers rows from both, so after a few
steps the parameters must match a single process up to float rounding.
ACT exploration is switched off: its coin flips come from each rank's own
RNG stream and would otherwise legitimately differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_launcher

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from arcpipe.train import train


    def say(*words):
        # one write per marker line: under PYTHONUNBUFFERED print() writes each piece on its
        # own, and the two ranks share one pipe, so their pieces could interleave mid-line
        sys.stdout.write(" ".join(map(str, words)) + "\\n")
        sys.stdout.flush()


    dataset, root, kw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    stage = train(dataset, root=root, progress=False, **kw)
    if stage.manifest:
        say("STAGE", stage.path)
    """
)

KW = {
    "overrides": {"hidden_size": 32, "num_heads": 2, "puzzle_emb_ndim": 32, "halt_max_steps": 2,
                  "halt_exploration_prob": 0.0, "lr": 3e-3, "warmup_steps": 2},
    "global_batch_size": 8, "max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "deterministic": True,
}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from arcpipe.augment import augment

    root = tmp_path_factory.mktemp("aug")
    return augment("arc1:training", extra_train=None, max_side=5, first=3, n_aug=4, canvas=6, n_jobs=1, root=root)


def _stage_path(stdout: str) -> Path:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("STAGE ")]
    assert len(lines) == 1, stdout  # exactly one rank (0) reports the stage
    return Path(lines[0].split(" ", 1)[1])


TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ARCPIPE_CACHE", None)
    return env


def _train_two_ranks(script: Path, dataset, out: Path, kw: dict, timeout: float) -> subprocess.CompletedProcess:
    """``script DATASET OUT KW`` (the SCRIPT convention) under torchrun on two gloo ranks; fails
    the test with both ranks' output unless it exits 0."""
    two = run_launcher([*TORCHRUN_2, str(script), str(dataset.path), str(out), json.dumps(kw)], timeout=timeout, env=_env())
    assert two.returncode == 0, two.stdout + two.stderr
    return two


def test_two_gloo_ranks_match_one_process(dataset, tmp_path):
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT)
    one = subprocess.run([sys.executable, str(script), str(dataset.path), str(tmp_path / "one"), json.dumps(KW)],
                         capture_output=True, text=True, timeout=300, env=_env())  # fmt: skip
    assert one.returncode == 0, one.stdout + one.stderr
    two = _train_two_ranks(script, dataset, tmp_path / "two", KW, timeout=300)
    p1, p2 = _stage_path(one.stdout), _stage_path(two.stdout)
    assert p1.name == p2.name  # same config => same cache key, whatever the number of ranks

    w1 = torch.load(p1 / "model.pt", weights_only=True)
    w2 = torch.load(p2 / "model.pt", weights_only=True)
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    # The puzzle embedding (sparse, gathered across ranks) moved identically and really moved.
    emb = "inner.puzzle_emb.weights"
    assert w1[emb].abs().sum() > 0
    m1 = pl.read_parquet(p1 / "metrics.parquet")
    m2 = pl.read_parquet(p2 / "metrics.parquet")
    for col in ("lm_loss", "q_halt_loss", "accuracy", "lr", "eval_train_accuracy"):
        a, b = m1[col].to_numpy(), m2[col].to_numpy()
        assert ((abs(a - b) <= 1e-4 * (1 + abs(a))) | (a != a) & (b != b)).all(), (col, a, b)
    c1, c2 = (json.loads((p / "manifest.json").read_text())["counts"] for p in (p1, p2))
    assert c2["world_size"] == 2
    # the final fit on every training row, sharded over the two ranks and summed: the same reading
    assert c1["fit_rows"] == c2["fit_rows"] == c1["train_rows"]
    assert abs(c1["fit_exact"] - c2["fit_exact"]) <= 1 / c1["fit_rows"]


def test_two_gloo_ranks_stop_together_on_the_clock(dataset, tmp_path):
    """A time budget under torchrun: rank 0's clock, sent over the host group, stops both
    ranks on the same step (a rank that stopped alone would leave the other hanging in its
    next gradient all-reduce, which the timeout would catch)."""
    # The caller owns the process group here: train() must leave it usable (it frees only its
    # own host group), as in a notebook-style script that trains under torchrun and goes on.
    script = tmp_path / "run_train.py"
    script.write_text(
        "import torch.distributed as dist\ndist.init_process_group('gloo')\n" + SCRIPT
        + "dist.barrier()\nsay('GROUP OK', dist.get_rank())\ndist.destroy_process_group()\n"
    )
    kw = {**KW, "max_steps": None, "epochs": 1e6, "max_minutes": 0.05, "eval_every": 10**6, "checkpoint_every": 10**6}
    two = _train_two_ranks(script, dataset, tmp_path / "two", kw, timeout=240)
    assert two.stdout.count("GROUP OK") == 2
    path = _stage_path(two.stdout)
    counts = json.loads((path / "manifest.json").read_text())["counts"]
    metrics = pl.read_parquet(path / "metrics.parquet")
    assert counts["world_size"] == 2
    assert 0 < counts["steps"] == metrics["step"].max() < 10**6
    assert metrics["wall_s"].max() >= 0.05 * 60  # it ran until the budget, not a step limit
    assert metrics["eval_train_accuracy"][-1] is not None  # the clock stop still evaluates the final weights


PIPELINE = """
[data]
source = "arc1:training"
extra_train = "none"
max_side = 5
first = 3

[augment]
n_aug = 4
canvas = 6
jobs = 1

[train]
max_steps = 4
batch_size = 8
deterministic = true
lr = 3e-3
warmup_steps = 2
eval_every = 2
checkpoint_every = 2

[train.model]
hidden_size = 32
num_heads = 2
puzzle_emb_ndim = 32
halt_max_steps = 2
halt_exploration_prob = 0.0

[vote]
rule = ["hrm", "count"]

[sweep]
seeds = [0, 1]
"""


def test_pipeline_under_two_gloo_ranks_matches_one_process(tmp_path):
    """`torchrun -m arcpipe.cli run`: every rank walks the plan, both trainings and inferences
    are spread over the two ranks one after the other, and rank 0 alone votes, reports and
    prints. The stages are the ones a single process makes: the same cache keys (a run resumes
    under either), the same predictions."""
    from arcpipe import cache
    from arcpipe.infer import load_predictions

    env = _env()
    out = {}
    for name, launch in (("one", [sys.executable, "-m", "arcpipe.cli"]), ("two", [*TORCHRUN_2, "-m", "arcpipe.cli"])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "p.toml").write_text(PIPELINE)
        out[name] = run_launcher([*launch, "--cache", str(folder / "cache"), "run", "p.toml"],
                                 timeout=600, env=env, cwd=folder)
        assert out[name].returncode == 0, out[name].stdout + out[name].stderr
    two = out["two"].stdout
    assert two.count("report: reports/p/report.md") == 1 and two.count(">> train[train.seed=1]") == 1  # rank 0 speaks
    assert (tmp_path / "two" / "reports" / "p" / "report.md").is_file()

    def stages(name: str) -> dict[str, list[str]]:
        root = tmp_path / name / "cache"
        return {s: sorted(p.name for p in (root / s).iterdir() if not p.name.startswith(".")) for s in cache.STAGES}

    keys = stages("one")
    assert keys == stages("two") and [len(keys[s]) for s in ("augment", "train", "infer", "vote")] == [1, 2, 2, 4]
    for stage in ("train", "infer"):
        for key in keys[stage]:
            manifest = json.loads((tmp_path / "two" / "cache" / stage / key / "manifest.json").read_text())
            assert manifest["counts"]["world_size"] == 2, (stage, key)
    for key in keys["infer"]:
        (t1, p1), (t2, p2) = (load_predictions(tmp_path / n / "cache" / "infer" / key) for n in ("one", "two"))
        assert t1.select("task_id", "example", "variant", "step").equals(t2.select("task_id", "example", "variant", "step"))
        assert t1.select("pred_h", "pred_w").equals(t2.select("pred_h", "pred_w")) and p1.shape == p2.shape
        assert (p1 == p2).mean() >= 0.999  # weights equal to float rounding (the test above); argmax ties aside
        # an untrained model crops small answers, so the grids hold few cells: its signals on every
        # row (variant x ACT step) say more
        for col in ("q_halt", "q_continue", "logprob_sum"):
            np.testing.assert_allclose(t2[col].to_numpy(), t1[col].to_numpy(), rtol=1e-3, atol=1e-4, err_msg=col)
        assert t1.height >= 2 * 3 * 4  # ACT steps x tasks x variants at least


def test_train_then_infer_in_one_torchrun_process_share_one_group(dataset, tmp_path):
    """A script under torchrun that trains and then infers, calling neither init nor destroy:
    train makes the default group and leaves it up, infer reuses it (making a second group in
    one process after destroying the first is what hung before; the timeout would catch it),
    and the group is gone by interpreter exit (NCCL warns about a group left up). The script's
    own exit hook is registered before train's, so it runs after it (atexit is last in, first
    out) and sees what train's hook left."""
    script = tmp_path / "run_both.py"
    script.write_text(
        "import atexit\n"
        "import torch.distributed\n"
        "atexit.register(lambda: say('UP AT EXIT', torch.distributed.is_initialized()))\n"
        + SCRIPT
        + "import torch.distributed as dist\n"
        "from arcpipe.infer import infer\n"
        "group = dist.group.WORLD\n"
        "inf = infer(stage, dataset, root=root, batch_size=8, progress=False)\n"
        "assert dist.group.WORLD is group, 'infer made a new default group'\n"
        "dist.barrier()\n"
        "say('INFER', inf.path, dist.get_rank())\n"
    )
    two = _train_two_ranks(script, dataset, tmp_path / "two", KW, timeout=240)
    assert sorted(ln.split()[-1] for ln in two.stdout.splitlines() if ln.startswith("INFER ")) == ["0", "1"]
    infer_path = Path(next(ln.split()[1] for ln in two.stdout.splitlines() if ln.startswith("INFER ")))
    assert json.loads((infer_path / "manifest.json").read_text())["counts"]["world_size"] == 2
    assert _stage_path(two.stdout).parent.parent == tmp_path / "two"
    assert sorted(ln for ln in two.stdout.splitlines() if ln.startswith("UP AT EXIT")) == ["UP AT EXIT False"] * 2


def test_a_timed_out_launcher_takes_its_workers_with_it(tmp_path):
    """The torchrun tests above go through `run_launcher`: when one times out, the launcher's
    children (the ranks) must die with it, promptly, not go on holding a core (and the output
    pipes) for the rest of the suite."""
    import signal
    import time

    pid_file = tmp_path / "worker.pid"
    parent = (
        "import subprocess, sys\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(w.pid))\n"
        "w.wait()\n"
    )
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_launcher([sys.executable, "-c", parent], timeout=5)
    elapsed = time.monotonic() - start
    worker = int(pid_file.read_text())

    def running() -> bool:
        try:  # a zombie (State Z) waiting for a reaper is dead as far as the suite is concerned
            status = Path(f"/proc/{worker}/status").read_text().splitlines()
        except FileNotFoundError:
            return False
        return not any(line.startswith("State:") and "Z" in line for line in status)

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = running()
    if alive:  # do not leave it behind even when the test fails
        os.kill(worker, signal.SIGKILL)
    assert not alive and elapsed < 60, (alive, elapsed)
