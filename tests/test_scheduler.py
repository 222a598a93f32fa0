"""`arcpipe.scheduler`: which worker gets which device and thread share, and dependency order.

The end-to-end checks (same stages and predictions as a serial run, a failing arm, Ctrl-C) are
in test_pipeline.py; these run a small function of this module, so the workers import no torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from arcpipe import scheduler
from arcpipe.errors import ArcpipeError


@dataclass(eq=False)
class N:
    label: str
    parents: dict = field(default_factory=dict)


def slow_getenv(key: str, delay: float) -> str:
    """The node function: long enough that every worker gets a node (workers import this module
    by name, as spawned processes do)."""
    time.sleep(delay)
    return os.environ.get(key, "unset")


def joblib_sum(n: int) -> int:
    """A node that uses joblib's process pool, as augment does."""
    import joblib

    return sum(joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(n)))


def counting(total: int, pause: float) -> int:
    """A node that reports its progress as a stage's bar does, one unit every ``pause`` seconds."""
    from arcpipe import progress

    for i in range(1, total + 1):
        time.sleep(pause)
        progress.report(i, total)
    time.sleep(1.0)  # the parent's poll sees the last figure before the node ends
    return total


def _run(nodes, tmp_path: Path, key: str, **kw) -> tuple[list[str], dict[str, str]]:
    events: list[str] = []
    results: dict[str, str] = {}

    def done(node: N, result: str) -> None:
        events.append(f"done {node.label}")
        results[node.label] = result

    scheduler.run_parallel(nodes, slow_getenv, lambda n: (key, 0.3), lambda n: tmp_path / f"{n.label}.log",
                           on_start=lambda n: events.append(f"start {n.label}"), on_done=done, **kw)
    return events, results


def test_each_worker_holds_one_device_and_a_share_of_the_threads(tmp_path):
    """Two workers over devices 3 and 5: every node runs on one of them and both are used (each
    worker claims its own slot); threads are set before the node runs."""
    nodes = [N(f"n{i}") for i in range(6)]
    _, devices = _run(nodes, tmp_path, "CUDA_VISIBLE_DEVICES", jobs=2, threads=3, devices=["3", "5"])
    assert set(devices.values()) == {"3", "5"}
    _, threads = _run(nodes[:2], tmp_path, "OMP_NUM_THREADS", jobs=2, threads=3, devices=[])
    assert set(threads.values()) == {"3"}
    _, cpu = _run(nodes[:2], tmp_path, "CUDA_VISIBLE_DEVICES", jobs=2, devices=[])
    assert set(cpu.values()) <= {"unset", os.environ.get("CUDA_VISIBLE_DEVICES")}  # no device: left alone


def test_a_node_starts_only_after_its_parents_are_done(tmp_path):
    a = N("a")
    b, c = N("b", {"augment": a}), N("c", {"augment": a})
    d = N("d", {"train": b})
    events, results = _run([a, b, c, d], tmp_path, "ARCPIPE_WORKER_SLOT", jobs=2, devices=[])
    assert set(results) == {"a", "b", "c", "d"} and set(results.values()) <= {"0", "1"}
    for child, parent in (("b", "a"), ("c", "a"), ("d", "b")):
        assert events.index(f"start {child}") > events.index(f"done {parent}")
    # b and c were both ready once a was done, and both were handed out before either came back
    assert events.index("start c") < min(events.index("done b"), events.index("done c"))


def test_the_highest_priority_ready_node_goes_first(tmp_path):
    """One worker, so the start order is the hand-out order: among the ready nodes the highest
    priority first, ties in ``nodes`` order, and each node's priority asked once, when it becomes
    ready (d's after a is done)."""
    a = N("a")
    b, c, d = N("b"), N("c"), N("d", {"augment": a})
    high = {"a": 1.0, "b": 1.0, "c": 5.0, "d": 9.0}
    asked: list[str] = []

    def priority(node: N) -> float:
        asked.append(node.label)
        return high[node.label]

    events, _ = _run([a, b, c, d], tmp_path, "X", jobs=1, devices=[], priority=priority)
    assert [e.split()[1] for e in events if e.startswith("start")] == ["c", "a", "d", "b"]
    assert asked == ["a", "b", "c", "d"]  # d only once it was ready, after the other three


def test_jobs_below_one_is_an_error(tmp_path):
    with pytest.raises(ArcpipeError, match="--jobs must be >= 1"):
        _run([N("a")], tmp_path, "X", jobs=0, devices=[])


def test_a_node_using_joblib_does_not_stall_the_end_of_the_run(tmp_path):
    """joblib keeps its worker processes alive after a call, and a worker process waits for its
    children as it exits; the scheduler shuts them down after each node, or the run would hang
    at the end until loky's 5-minute idle timeout. (Run in a thread so a regression fails here
    instead of hanging the suite.)"""
    import threading

    results: dict[str, int] = {}
    run = threading.Thread(target=scheduler.run_parallel, daemon=True, args=(
        [N("a"), N("b")], joblib_sum, lambda n: (10,), lambda n: tmp_path / f"{n.label}.log"),
        kwargs=dict(jobs=2, devices=[], on_start=lambda n: None, on_done=lambda n, r: results.__setitem__(n.label, r)))
    run.start()
    run.join(timeout=120)
    assert not run.is_alive(), "the pool's shutdown is waiting for joblib's idle workers"
    assert results == {"a": 45, "b": 45}


def test_the_parent_hears_how_far_each_running_node_has_got(tmp_path):
    """Two nodes at once, each reporting through its own cell: the parent hears each node's own
    total, its figures only grow and reach the end, and the second node on a reused cell starts
    from nothing, not from the figures the first node left there."""
    nodes = [N("a"), N("b"), N("c")]
    totals = {"a": 4, "b": 6, "c": 5}
    heard: dict[str, list[tuple[int, int]]] = {n.label: [] for n in nodes}
    scheduler.run_parallel(nodes, counting, lambda n: (totals[n.label], 0.4), lambda n: tmp_path / f"{n.label}.log",
                           jobs=2, devices=[], on_start=lambda n: None, on_done=lambda n, r: None,
                           on_progress=lambda n, done, total: heard[n.label].append((done, total)))
    for label, seen in heard.items():
        assert seen, f"{label}: no progress heard"
        assert {t for _, t in seen} == {totals[label]}, seen
        done = [d for d, _ in seen]
        assert done == sorted(done) and done[-1] == totals[label], seen



def test_run_prints_each_running_node_off_a_terminal(monkeypatch):
    """`arcpipe run --jobs` in a log file (nohup, CI): a line per running node with its rate and
    the time left at that rate, and no line more often than every ``every_s``."""
    import io

    from rich.console import Console

    from arcpipe.commands.run import Running

    clock = iter([0.0, 0.0, 60.0, 61.0, 400.0, 400.0])
    monkeypatch.setattr("arcpipe.commands.run.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    running = Running(Console(file=out, width=200), enabled=True)  # made at t=0
    train, infer = N("train[seed=4]"), N("infer[seed=4]")
    train.stage, infer.stage = "train", "infer"
    with running:
        running.update(train, 1000, 96000)   # t=0: first heard
        running.update(infer, 0, 690)        # t=60: under every_s, no line yet
        running.update(train, 2000, 96000)   # t=61
        assert out.getvalue() == ""
        running.update(infer, 345, 690)      # t=400: both nodes, one line each
        running.finished(train)
        running.update(infer, 690, 690)      # t=400: too soon for another line
    lines = out.getvalue().splitlines()
    assert lines == [
        "   train[seed=4]: 2000/96000 steps (2%), 16.4 steps/s, about 1 h 36 min left",
        "   infer[seed=4]: 345/690 variants (50%), 1.0 variants/s, about 6 min left",
    ], lines
