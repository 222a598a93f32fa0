"""`arcpipe.threads`: a CPU stage on a busy machine runs on the cores the others leave free."""

from __future__ import annotations

import pytest
import torch

from arcpipe import threads


def test_free_threads_leaves_the_busy_cores_alone():
    assert threads.free_threads(2, 0.1, 2) == 2          # idle: torch's count
    assert threads.free_threads(2, 1.0, 2) == 1          # one core busy elsewhere
    assert threads.free_threads(2, 2.0, 2) == 1          # all busy: never fewer than one
    assert threads.free_threads(8, 2.6, 8) == 5
    assert threads.free_threads(2, 0.4, 8) == 2          # never more than torch's own count
    assert threads.free_threads(4, None, 4) == 4         # unknown (not Linux): unchanged


def test_others_busy_sees_another_process():
    """Measured, not mocked: a spinning child gets at least half a core on any machine it runs on."""
    import subprocess
    import sys
    import time

    if threads.others_busy(0.05) is None:
        pytest.skip("no /proc/stat here")
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads.others_busy(0.5)
    finally:
        child.kill()
        child.wait()
    assert busy >= 0.5, busy


def test_others_busy_leaves_out_this_process(monkeypatch):
    """All the machine's busy time in the sample was this process's own: nobody else is busy."""
    import os

    hz = os.sysconf("SC_CLK_TCK")
    ticks = iter([1000, 1000 + hz // 2])          # half a CPU-second busy, machine-wide
    cpu = iter([10.0, 10.5])                      # ... all of it this process's
    monkeypatch.setattr(threads, "_busy_ticks", lambda: next(ticks))
    monkeypatch.setattr(threads.time, "process_time", lambda: next(cpu))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert threads.others_busy() == pytest.approx(0.0, abs=1e-6)


def test_fit_takes_the_free_cores_says_so_and_gives_them_back_later(busy_machine):
    said: list[str] = []
    assert threads.fit("infer", said.append, busy=lambda: 1.9) == 1 == torch.get_num_threads()
    assert said == ["infer: other processes keep 1.9 of 2 CPUs busy: 1 torch thread(s) instead of 2 "
                    "(set OMP_NUM_THREADS to choose)"]
    assert threads.fit("train", said.append, busy=lambda: 0.1) == 2 == torch.get_num_threads()  # free again
    assert len(said) == 1


def test_fit_keeps_the_users_choice(busy_machine, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    assert threads.fit("train", pytest.fail, busy=lambda: 2.0) == 2
