"""Run a pipeline's stage nodes on several worker processes at once (``arcpipe run --jobs N``).

An ablation sweep is mostly independent trainings: every seed and every arm is its own
augment -> train -> infer -> vote chain once the shared nodes exist. One training uses a
2-core CPU poorly (its small matrices do not scale past a thread or two) and a multi-GPU node
not at all past its first device, so ``jobs`` chains run side by side. Nothing about a stage
changes: each node still goes through the stages' content-hash cache, so a run with
``--jobs 4`` names and finds the same stage directories as one without, and a killed run
resumes either way.

Each worker is a fresh (spawned, not forked) process holding one *slot*: with CUDA devices
the slot picks the device (``CUDA_VISIBLE_DEVICES``, round robin over the visible ones), and
each worker gets an equal share of the CPU's threads (``OMP_NUM_THREADS``), set before the
worker imports torch. A node's console output (progress bars, warnings) goes to its own log
file, since N interleaved progress bars are unreadable; the parent prints one line when a
node starts and one when it ends, and ``on_progress`` hears how far each running node has got
(``arcpipe.progress``: the stage's own bar also writes to a shared cell). Among the nodes ready
to start, the caller's ``priority`` picks (the pipeline's: a training's FLOPs, dearest first,
the classic longest-job-first rule for a short makespan). When a node fails, no new node starts, the ones running
finish (their results are cached and recorded), then the first error is raised, naming the
node and its log.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from arcpipe import progress
from arcpipe.errors import ArcpipeError


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def visible_devices() -> list[str]:
    """CUDA device ids the workers share, as ``CUDA_VISIBLE_DEVICES`` names them; empty on CPU.
    Counting devices does not create a CUDA context, and workers are spawned, so the parent
    holding torch does not stop them from using the GPU."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    given = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return given[:n] if given else [str(i) for i in range(n)]


def _die_with_parent() -> None:
    """Have the kernel send this worker SIGTERM when the parent dies, even by SIGKILL (Linux
    ``prctl(PR_SET_PDEATHSIG)``); without it an orphaned worker trains on, holding its stage's
    lock, and then waits forever to hand back a result no one reads. Elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(slots: Any, threads: int, devices: Sequence[str], board: Any) -> None:
    """Claim a slot and pin this worker's threads and device, before anything imports torch."""
    _die_with_parent()
    progress.use(board)
    slot = slots.get()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    os.environ["ARCPIPE_WORKER_SLOT"] = str(slot)


def _stop_joblib_workers() -> None:
    """Shut down joblib's reusable process pool if the node used it (augment does). Its idle
    workers outlive the call on purpose, and a worker process waits for its children when it
    exits, so at the end of a run the pool's shutdown would stall until loky's idle timeout
    (5 min)."""
    if "joblib.externals.loky" not in sys.modules:
        return
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _call_logged(fn: Callable[..., Any], args: tuple, log: Path, cell: int) -> Any:
    """``fn(*args)`` with this process's stdout and stderr (file descriptors included, so C-level
    warnings too) appended to ``log``; appended, so a resumed node keeps its earlier output. Its
    progress goes to the board's ``cell``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        progress.attach(cell)
        try:
            return fn(*args)
        finally:
            progress.attach(None)
            _stop_joblib_workers()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupt_workers(pool: ProcessPoolExecutor, running: Sequence[Future], grace_s: float = 10.0) -> None:
    """Send the workers SIGINT (a training stops as on Ctrl-C: its last resume checkpoint stays,
    so rerunning resumes it), wait up to ``grace_s`` for their stages to end, then terminate the
    processes, idle by then (or deaf to SIGINT). A signal to the parent alone (``kill -INT``,
    ``timeout``) reaches no worker by itself, and waiting for their stages to end could take hours.
    Only the pool's own processes (its private ``_processes``, stable since Python 3.2): any other
    child of the caller, a notebook's for instance, is left alone."""
    children = list((getattr(pool, "_processes", None) or {}).values())
    for proc in children:
        try:
            os.kill(proc.pid, signal.SIGINT)
        except (ProcessLookupError, TypeError):
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not all(f.done() for f in running):
        time.sleep(0.1)
    for proc in children:
        proc.terminate()
    for proc in children:
        proc.join(5.0)
    pool.shutdown(wait=False, cancel_futures=True)


def run_parallel(
    nodes: Sequence[Any],
    fn: Callable[..., Any],
    args: Callable[[Any], tuple],
    log: Callable[[Any], Path],
    *,
    jobs: int,
    on_start: Callable[[Any], None],
    on_done: Callable[[Any, Any], None],
    threads: int | None = None,
    devices: Sequence[str] | None = None,
    priority: Callable[[Any], float] | None = None,
    on_progress: Callable[[Any, int, int], None] | None = None,
) -> None:
    """Run ``fn(*args(node))`` for every node on ``jobs`` worker processes, each node once all of
    its ``node.parents`` (those among ``nodes``) are done. Among the ready nodes the highest
    ``priority(node)`` goes first (asked once a node, as it becomes ready, so it may read its
    parents' results), ties and a missing ``priority`` in ``nodes`` order. ``on_start(node)``
    fires as a node is handed to a worker and ``on_done(node, result)`` as its result comes back
    (both in this process), and ``on_progress(node, done, total)`` about every half second for each
    running node whose stage reports its progress (``arcpipe.progress``). ``threads`` per worker
    defaults to an equal share of ``cpu_count()``; ``devices`` to ``visible_devices()``.

    ``fn`` and what ``args`` returns are pickled to the worker, so ``fn`` must be a module-level
    function and the arguments plain data."""
    if jobs < 1:
        raise ArcpipeError(f"--jobs must be >= 1 (got {jobs})")
    threads = threads or max(1, cpu_count() // jobs)
    devices = visible_devices() if devices is None else list(devices)
    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for i in range(jobs):
        slots.put(i)
    waiting = list(nodes)
    ours = {id(n) for n in nodes}
    ranks: dict[int, float] = {}  # priority, asked once a node

    def rank(node: Any) -> float:
        if id(node) not in ranks:
            ranks[id(node)] = priority(node) if priority is not None else 0.0
        return -ranks[id(node)]

    done: set[int] = set()
    running: dict[Future, Any] = {}
    error: tuple[Any, BaseException] | None = None
    board = progress.board(ctx, jobs)
    cells: dict[Future, int] = {}  # a running node's cell on the board; at most ``jobs`` in use
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots, threads, devices, board))
    on_term = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():  # ``kill``: stop the workers as on Ctrl-C, leave none behind
        signal.signal(signal.SIGTERM, _terminated)
    try:
        while waiting or running:
            if error is None:
                ready = [n for n in waiting if all(id(p) in done or id(p) not in ours for p in n.parents.values())]
                ready.sort(key=rank)  # stable: ties keep ``nodes`` order
                for node in ready[: max(0, jobs - len(running))]:
                    waiting.remove(node)
                    on_start(node)
                    cell = min(set(range(jobs)) - set(cells.values()))
                    progress.clear(board, cell)  # not the last node's figures until this one reports
                    fut = pool.submit(_call_logged, fn, args(node), log(node), cell)
                    running[fut], cells[fut] = node, cell
            if not running:
                break
            # a timeout, not a blocking wait: a signal may land on one of the pool's threads, and the
            # main thread runs Python's handlers (Ctrl-C, kill) only when it wakes
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                node = running.pop(fut)
                cells.pop(fut)
                try:
                    result = fut.result()
                except KeyboardInterrupt:  # a worker was interrupted: stop them all
                    raise
                except BaseException as e:  # noqa: BLE001 - re-raised below, after the running nodes finish
                    error = error or (node, e)
                    continue
                done.add(id(node))
                on_done(node, result)
            if on_progress is not None:
                for fut, node in running.items():
                    n, total = progress.read(board, cells[fut])
                    if total > 0:
                        on_progress(node, n, total)
    except BaseException:  # Ctrl-C (or a bug here): stop the workers too, as a serial run would stop
        _interrupt_workers(pool, list(running))
        raise
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)
    pool.shutdown(wait=True)
    if error is not None:
        node, e = error
        if isinstance(e, ArcpipeError):
            raise ArcpipeError(f"{e} (stage {node.label}; its output: {log(node)})") from None
        if isinstance(e, BrokenProcessPool):
            raise ArcpipeError(f"stage {node.label}: its worker process died (killed, or out of host memory); "
                               f"its output: {log(node)}; rerun the same command to resume") from None
        raise e
