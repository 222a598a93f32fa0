"""Test-wide settings.

One intra-op thread per process: several tests start 2-process torchrun or
subprocess CLIs on a 2-core machine, and oversubscribed OpenMP threads made
them an order of magnitude slower. Subprocesses inherit the variable.
"""

import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import arcpipe  # noqa: E402
from arcpipe import cache  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def autograd_graph_size(t: torch.Tensor) -> int:
    """Number of autograd nodes behind ``t``: how the one-step-gradient tests see which
    recurrent updates were recorded."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return len(seen)


def run_launcher(cmd: list[str], *, timeout: float, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` in a session of its own, so that a
    timeout kills the whole process group: torchrun's workers are its children, and
    ``subprocess.run`` kills only torchrun, leaving a hung worker running (and holding a core)
    after the test has failed."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kw) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class FakeStages:
    """Stand-ins for augment/train/infer/vote/report with the real signatures' shape."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def _stage(self, name: str, config: dict, inputs: dict, root, force) -> cache.Stage:
        self.calls.append((name, config))

        def build(work: Path) -> dict:
            (work / "out.json").write_text(json.dumps(config, sort_keys=True))
            return {"n": 1}

        return cache.run_stage(name, config, inputs, build, root=root, force=force)

    def augment(self, source="arc1:evaluation", *, extra_train="arc1:training", n_aug=1000, train_aug=None, seed=0,
                canvas=30, max_side=None, task_ids=None, first=None, translate=True, dihedral=True, colour=True,
                retries=5, n_jobs=-1, root=None, force=False):
        cfg = dict(source=source, extra_train=extra_train, n_aug=n_aug, train_aug=train_aug, seed=seed, canvas=canvas,
                   max_side=max_side, task_ids=task_ids, first=first, translate=translate,
                   **{k: False for k, on in (("dihedral", dihedral), ("colour", colour)) if not on})
        return self._stage("augment", cfg, {"tasks": "fp"}, root, force)

    def train(self, dataset=None, *, preset="tiny", overrides=None, max_steps=None, max_minutes=None, epochs=None,
              seed=0, batch_size=None, lr=None, root=None, force=False, resume=False):
        cfg = dict(preset=preset, overrides=overrides, max_steps=max_steps, epochs=epochs, seed=seed,
                   batch_size=batch_size, lr=lr)
        return self._stage("train", cfg, {"augment": dataset.key}, root, force)

    def infer(self, checkpoint=None, dataset=None, *, steps=None, batch_size=None, puzzle_id="true", seed=0,
              compile=False, root=None, force=False):
        cfg = dict(steps=steps, puzzle_id=puzzle_id, seed=seed) | ({"compile": True} if compile else {})
        return self._stage("infer", cfg, {"train": checkpoint.key, "augment": dataset.key}, root, force)

    def vote(self, predictions=None, *, n_aug=None, top=2, rule="hrm", step=None, seed=0, variants="all", root=None, force=False):
        cfg = dict(n_aug=n_aug, top=top, rule=rule, step=step, seed=seed) | ({} if variants == "all" else {"variants": variants})
        return self._stage("vote", cfg, {"infer": predictions.key}, root, force)

    def report(self, runs=None, *, name="latest", out_dir="reports", n_aug_points=None, seeds=20, rules=None,
               step=None, root=None, force=False):
        cfg = dict(name=name, n_aug_points=n_aug_points, seeds=seeds, rules=rules, step=step)
        st = self._stage("report", cfg, {f"vote{i}": r.key for i, r in enumerate(runs)}, root, force)
        out = Path(out_dir) / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("# report\n")
        return cache.Stage("report", st.key, out, st.manifest, st.cached)

    def count(self, stage: str) -> int:
        return sum(1 for name, _ in self.calls if name == stage)


@pytest.fixture
def fake(monkeypatch) -> FakeStages:
    f = FakeStages()
    for name in ("augment", "train", "infer", "vote", "report"):
        mod = types.ModuleType(f"arcpipe.{name}")
        setattr(mod, name, getattr(f, name))
        if name == "report":
            mod.LAYOUT = 1  # the plan keys the report on it
        monkeypatch.setitem(sys.modules, f"arcpipe.{name}", mod)
        monkeypatch.setattr(arcpipe, name, mod, raising=False)
    return f


@pytest.fixture
def busy_machine(monkeypatch):
    """A 2-CPU machine whose torch default is 2 threads, with no OMP_NUM_THREADS set: call the
    returned function with how many cores other processes keep busy (``arcpipe.threads``).
    torch's thread count is restored afterwards."""
    from arcpipe import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_default", 2)
    monkeypatch.setattr(threads, "cpus", lambda: 2)
    before = torch.get_num_threads()

    def busy(cores: float) -> None:
        monkeypatch.setattr(threads, "others_busy", lambda: cores)

    yield busy
    torch.set_num_threads(before)
