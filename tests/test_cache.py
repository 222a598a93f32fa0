"""The stage cache: keys, atomic finalisation, locking, killed builds, bad directories."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from arcpipe import cache
from arcpipe.errors import ArcpipeError


def _write(value: str):
    def build(work: Path) -> dict:
        (work / "out.txt").write_text(value)
        return {"chars": len(value)}

    return build


def test_key_depends_on_config_and_inputs_only():
    k = cache.stage_key("augment", {"n": 1, "a": [1, 2]}, {"tasks": "abc"})
    assert k == cache.stage_key("augment", {"a": [1, 2], "n": 1}, {"tasks": "abc"})  # key order irrelevant
    assert k != cache.stage_key("augment", {"n": 2, "a": [1, 2]}, {"tasks": "abc"})
    assert k != cache.stage_key("augment", {"n": 1, "a": [1, 2]}, {"tasks": "abd"})
    assert k != cache.stage_key("train", {"n": 1, "a": [1, 2]}, {"tasks": "abc"})


def test_build_once_then_cached_and_force(tmp_path):
    s1 = cache.run_stage("vote", {"rule": "hrm"}, {"infer": "k"}, _write("a"), root=tmp_path)
    assert not s1.cached and (s1.path / "out.txt").read_text() == "a"
    m = json.loads((s1.path / "manifest.json").read_text())
    assert m["counts"] == {"chars": 1} and m["inputs"] == {"infer": "k"} and "torch" in m["versions"]
    assert m["host"]["cpus"] == os.cpu_count() and m["host"]["cpu"] not in ("", "unknown")  # which machine made it
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "cpu family" in cpuinfo.read_text():
        assert m["host"]["cpu_id"].startswith("family ")  # the generation, which a VM's model name may hide

    calls = []

    def should_not_run(work):
        calls.append(work)

    s2 = cache.run_stage("vote", {"rule": "hrm"}, {"infer": "k"}, should_not_run, root=tmp_path)
    assert s2.cached and s2.path == s1.path and calls == []

    s3 = cache.run_stage("vote", {"rule": "hrm"}, {"infer": "k"}, _write("b"), root=tmp_path, force=True)
    assert not s3.cached and (s3.path / "out.txt").read_text() == "b"
    assert [p.name for p in (tmp_path / "vote").iterdir() if not p.name.startswith(".")] == [s1.key]


def test_failed_build_leaves_no_stage(tmp_path):
    def boom(work: Path):
        (work / "half.txt").write_text("partial")
        raise ArcpipeError("bad input")

    with pytest.raises(ArcpipeError):
        cache.run_stage("augment", {"x": 1}, {}, boom, root=tmp_path)
    assert cache.newest("augment", tmp_path) is None
    key = cache.stage_key("augment", {"x": 1}, {})
    assert not (tmp_path / "augment" / key).exists()
    # A non-resumable rerun starts from an empty work dir, not the half-written one.
    seen = []

    def build(work: Path):
        seen.extend(p.name for p in work.iterdir())
        return {}

    cache.run_stage("augment", {"x": 1}, {}, build, root=tmp_path)
    assert seen == []


def test_resumable_build_sees_previous_work(tmp_path):
    def first(work: Path):
        (work / "ckpt").write_text("step 5")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run_stage("train", {"s": 1}, {}, first, root=tmp_path, resumable=True)

    def second(work: Path):
        assert (work / "ckpt").read_text() == "step 5"
        return {"resumed": True}

    s = cache.run_stage("train", {"s": 1}, {}, second, root=tmp_path, resumable=True)
    assert s.manifest["counts"] == {"resumed": True}


def _slow_build_process(root: str, tag: str, started: mp.Event) -> None:  # pragma: no cover - child process
    def build(work: Path):
        started.set()
        time.sleep(0.5)
        (work / "who.txt").write_text(tag)
        return {}

    s = cache.run_stage("infer", {"same": True}, {}, build, root=root)
    (Path(root) / f"result-{tag}.json").write_text(json.dumps({"cached": s.cached, "path": str(s.path)}))


def test_two_processes_same_stage_build_once(tmp_path):
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    a = ctx.Process(target=_slow_build_process, args=(str(tmp_path), "a", started))
    a.start()
    assert started.wait(30)
    unused = ctx.Event()  # held here: spawn drops Process args after start()
    b = ctx.Process(target=_slow_build_process, args=(str(tmp_path), "b", unused))
    b.start()
    a.join(60)
    b.join(60)
    assert a.exitcode == 0 and b.exitcode == 0
    ra = json.loads((tmp_path / "result-a.json").read_text())
    rb = json.loads((tmp_path / "result-b.json").read_text())
    assert (ra["cached"], rb["cached"]) == (False, True) and ra["path"] == rb["path"]
    assert (Path(ra["path"]) / "who.txt").read_text() == "a"


def _killed_build_process(root: str, started: mp.Event) -> None:  # pragma: no cover - child process
    def build(work: Path):
        (work / "part.txt").write_text("x")
        started.set()
        time.sleep(60)
        return {}

    cache.run_stage("augment", {"k": 1}, {}, build, root=root)


def test_sigkill_mid_build_is_never_trusted(tmp_path):
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    p = ctx.Process(target=_killed_build_process, args=(str(tmp_path), started))
    p.start()
    assert started.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert cache.newest("augment", tmp_path) is None
    assert cache.find("augment", cache.stage_key("augment", {"k": 1}, {}), tmp_path) is None
    # the lock died with the process: a rerun proceeds and finishes
    s = cache.run_stage("augment", {"k": 1}, {}, _write("ok"), root=tmp_path)
    assert not s.cached and (s.path / "out.txt").read_text() == "ok"


def test_bad_stage_directories_give_one_line_errors(tmp_path):
    with pytest.raises(ArcpipeError, match="no such stage directory"):
        cache.load_stage(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArcpipeError, match="not an arcpipe stage"):
        cache.load_stage(tmp_path / "empty")
    s = cache.run_stage("train", {}, {}, _write("w"), root=tmp_path)
    with pytest.raises(ArcpipeError, match="expected a 'augment' stage"):
        cache.load_stage(s.path, "augment")
    m = json.loads((s.path / "manifest.json").read_text())
    m["format"] = 999
    (s.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArcpipeError, match="incompatible") as e:
        cache.load_stage(s.path)
    assert "\n" not in str(e.value)
    (s.path / "manifest.json").write_text("{trunc")
    with pytest.raises(ArcpipeError, match="corrupt manifest"):
        cache.load_stage(s.path)


def test_newest_picks_latest(tmp_path):
    a = cache.run_stage("vote", {"r": 1}, {}, _write("1"), root=tmp_path)
    time.sleep(0.02)
    b = cache.run_stage("vote", {"r": 2}, {}, _write("2"), root=tmp_path)
    os.utime(a.path / "manifest.json", (time.time() - 100, time.time() - 100))
    assert cache.newest("vote", tmp_path).key == b.key
    assert cache.newest("vote", tmp_path, where=lambda s: s.config["r"] == 1).key == a.key
    with pytest.raises(ArcpipeError, match="no 'train' output"):
        cache.require_newest("train", tmp_path)
    # reusing a cached output makes it the newest again (a fully cached demo run, then a bare
    # vote); only the manifest's mtime changes, not its bytes
    before = (a.path / "manifest.json").read_bytes()
    again = cache.run_stage("vote", {"r": 1}, {}, _write("1"), root=tmp_path)
    assert again.cached and cache.newest("vote", tmp_path).key == a.key
    assert (a.path / "manifest.json").read_bytes() == before


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "ckpt.pt"
    with pytest.raises(RuntimeError):
        with cache.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with cache.atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_host_records_a_forced_kernel_level():
    """The CPU kind that decides a run's numbers is the vendor with torch's kernel level, and a
    user may force that level (an AVX512 EPYC held to AVX2 replays an AVX2 EPYC's reports,
    benchmarks/README.md): the manifest has to record the level that ran, not the CPU's best."""
    import subprocess
    import sys

    code = "import torch; from arcpipe.cache import host; print(host()['cpu_capability'])"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "DEFAULT"


def test_host_kind_is_the_name_with_the_kernel_level():
    """`arcpipe compare` names an arm's machines by kind: two EPYC models with one kernel level are
    one kind (they replay each other), one model at two levels is two."""
    line = "AMD EPYC (family {}, {} kernels, 2 CPUs, 1 thread)"
    assert cache.host_kind(line.format("25 model 1", "AVX2")) == cache.host_kind(line.format("26 model 2", "AVX2")) \
        == "AMD EPYC, AVX2 kernels"
    assert cache.host_kind(line.format("26 model 2", "AVX512")) == "AMD EPYC, AVX512 kernels"
    assert cache.host_kind(cache.describe_host({"cpu": "AMD EPYC", "cpu_id": "family 26 model 2", "cpus": 2,
                                                "cpu_capability": "AVX2"})) == "AMD EPYC, AVX2 kernels"
    assert cache.host_kind("NVIDIA H100 ×1") == "NVIDIA H100 ×1"  # a GPU line: its name alone
    assert cache.host_kind("Apple M2 (2 CPUs)") == "Apple M2" and cache.host_kind(None) == "host not recorded"
