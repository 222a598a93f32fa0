"""Content-addressed stage directories (DESIGN.md "Stages").

A stage's output is a pure function of its config and its inputs' keys, so
its directory is named by the hash of both: ``<root>/<stage>/<key>/``. It is
built in ``<root>/<stage>/.work-<key>/`` and renamed into place only when
complete, with ``manifest.json`` written last, so a directory under its final
name is always whole. A killed run leaves only the work directory behind:
resumable stages (train, infer) pick up their checkpoints/shards from it,
the others start it afresh. An exclusive ``flock`` per key makes two
processes building the same stage take turns; the second finds the first's
result and returns it.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcpipe.errors import ArcpipeError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STAGES = ("augment", "train", "infer", "vote", "report")


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The cache root: explicit argument, else ``$ARCPIPE_CACHE``, else ``./.arcpipe``."""
    return Path(root if root is not None else os.environ.get("ARCPIPE_CACHE", ".arcpipe"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(obj: Any, length: int = 16) -> str:
    """Short sha256 of an object's canonical JSON form."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def stage_key(stage: str, config: dict, inputs: dict[str, str]) -> str:
    return content_key({"stage": stage, "format": FORMAT_VERSION, "config": config, "inputs": inputs})


def versions() -> dict[str, str]:
    """Library versions recorded in every manifest."""
    from importlib import metadata

    from arcpipe import __version__

    out = {"arcpipe": __version__, "python": platform.python_version()}
    for dist in ("numpy", "polars", "torch"):  # metadata, not import: importing torch costs seconds
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            pass
    return out


def host() -> dict[str, Any]:
    """The machine a stage ran on, recorded in every manifest beside ``versions``.

    A stage key names the computation, not the hardware, and float results of
    the same key differ between machines: a training is chaotic, so fp32
    rounding on another CPU model sends it down another path (24000 steps of
    `tiny` HRM, same keys, rerun on an Intel Xeon after an AMD EPYC: pass@2
    moved by 3 and 8.5 points on two seeds). A report has to be able to say
    which hardware made each figure. The model name alone does not: a cloud VM
    may call every Xeon generation "Intel(R) Xeon(R) Processor", so the CPUID
    family/model (``cpu_id``) and the kernel level torch dispatches to
    (``cpu_capability``: AVX2, AVX512, ...) are kept too; those decide which
    float kernels ran. Torch threads are recorded, though 1 and 2 gave
    bit-identical trainings on one CPU. GPUs are listed only when the stage
    itself initialised CUDA (asking would otherwise initialise it, seconds and
    memory, in a vote).
    """
    info = _cpuinfo()
    out: dict[str, Any] = {"cpu": info.get("model name") or platform.processor() or platform.machine() or "unknown",
                           "cpus": os.cpu_count(), "system": platform.system()}
    if "cpu family" in info and "model" in info:
        out["cpu_id"] = f"family {info['cpu family']} model {info['model']}"
    torch = sys.modules.get("torch")  # only when the stage imported it: importing torch costs seconds
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
        capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
        if capability is not None:
            out["cpu_capability"] = capability()
        if torch.cuda.is_initialized():
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def describe_host(h: dict[str, Any]) -> str:
    """One line for a ``host()`` record, as reports and benchmarks print it: the GPUs when the
    stage used any, else the CPU model with what tells CPUs of one name apart."""
    if h.get("gpus"):
        names = list(dict.fromkeys(h["gpus"]))
        return ", ".join(f"{n} ×{h['gpus'].count(n)}" for n in names)
    n = h.get("torch_threads")
    details = [h.get("cpu_id"), h.get("cpu_capability") and f"{h['cpu_capability']} kernels",
               f"{h.get('cpus', '?')} CPUs", n and f"{n} thread{'s' * (n != 1)}"]
    return f"{h.get('cpu', '?')} ({', '.join(d for d in details if d)})"


def host_kind(line: str | None) -> str:
    """The CPU kind in a ``describe_host`` line: the model name with torch's kernel level. That
    pair, not the CPU model, has decided which runs replay each other so far (an AVX512 EPYC held
    to AVX2 replays an AVX2 EPYC's runs; benchmarks/README.md), so pooled runs are named by it."""
    if line is None:
        return "host not recorded"
    name, _, details = str(line).partition(" (")
    level = next((d.removesuffix(" kernels") for d in details.rstrip(")").split(", ") if d.endswith(" kernels")), None)
    return f"{name}, {level} kernels" if level else name


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty off Linux)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # end of the first processor's block
                key, sep, value = line.partition(":")
                if sep:
                    out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------- atomic files


def _umask_mode() -> int:
    """Permissions a plain ``open()`` would give (``mkstemp`` makes files 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed onto ``path``.

    For writers that want a filename (``torch.save``, ``np.save``,
    ``DataFrame.write_parquet``) rather than bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _umask_mode())
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """A finished stage directory and its manifest."""

    name: str
    key: str
    path: Path
    manifest: dict
    cached: bool = False

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def inputs(self) -> dict:
        return self.manifest.get("inputs", {})


def read_manifest(path: str | os.PathLike, stage: str | None = None) -> dict:
    """Load and check a stage directory's manifest, with a one-line error if it is not one."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise ArcpipeError(f"{path}: no such stage directory")
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ArcpipeError(f"{path}: not an arcpipe stage directory (no {MANIFEST})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArcpipeError(f"{mpath}: corrupt manifest ({e})") from None
    if not isinstance(manifest, dict) or "stage" not in manifest:
        raise ArcpipeError(f"{mpath}: not an arcpipe manifest (missing 'stage')")
    if manifest.get("format") != FORMAT_VERSION:
        raise ArcpipeError(
            f"{path}: written by an incompatible arcpipe (format {manifest.get('format')!r}, this version reads {FORMAT_VERSION}); rebuild it"
        )
    if stage is not None and manifest["stage"] != stage:
        raise ArcpipeError(f"{path}: is a '{manifest['stage']}' stage, expected a '{stage}' stage")
    return manifest


def load_stage(path: str | os.PathLike, stage: str | None = None) -> Stage:
    path = Path(path)
    m = read_manifest(path, stage)
    return Stage(m["stage"], m["key"], path, m)


def find(stage: str, key: str, root: str | os.PathLike | None = None) -> Stage | None:
    path = cache_root(root) / stage / key
    if (path / MANIFEST).is_file():
        return load_stage(path, stage)
    return None


def _mark_used(final: Path) -> None:
    """A cache hit refreshes the manifest's mtime (content untouched), so that "the newest"
    output is the one the user last produced *or reused*: right after a fully cached
    ``arcpipe run pipelines/demo.toml``, a bare ``arcpipe vote`` votes the demo's predictions,
    not those of whatever pipeline happened to be computed last. Read-only caches just skip it."""
    try:
        os.utime(final / MANIFEST)
    except OSError:
        pass


def newest(
    stage: str, root: str | os.PathLike | None = None, where: Callable[[Stage], bool] | None = None
) -> Stage | None:
    """The most recently finished or reused ``stage`` output under ``root`` (optionally filtered)."""
    base = cache_root(root) / stage
    if not base.is_dir():
        return None
    found: list[tuple[float, Stage]] = []
    for p in base.iterdir():
        if p.name.startswith(".") or not (p / MANIFEST).is_file():
            continue
        try:
            s = load_stage(p, stage)
        except ArcpipeError:
            continue
        if where is None or where(s):
            found.append(((p / MANIFEST).stat().st_mtime, s))
    return max(found, key=lambda t: (t[0], t[1].key))[1] if found else None


def require_newest(stage: str, root: str | os.PathLike | None = None, hint: str = "") -> Stage:
    s = newest(stage, root)
    if s is None:
        raise ArcpipeError(
            f"no '{stage}' output in cache {cache_root(root)}{'; ' + hint if hint else ''}"
        )
    return s


def resolve_stage(
    arg: Stage | str | os.PathLike | None,
    stage: str,
    root: str | os.PathLike | None = None,
    *,
    label: str = "",
    noun: str | None = None,
    hint: str = "",
) -> Stage:
    """A stage named the ways users name one: a ``Stage``, its directory, a file
    inside it (``.../train/<key>/model.pt``), a cache key or unique key prefix,
    or ``None`` for the newest in the cache. This is how every stage's input
    argument is defaulted and checked, so the bare verbs chain as typed.

    ``label`` prefixes errors with the argument's name (``CHECKPOINT``);
    ``noun`` says what was expected (default ``"<stage> stage directory"``).
    """
    if arg is None:
        return require_newest(stage, root, hint)
    if isinstance(arg, Stage):
        if arg.name != stage:
            raise ArcpipeError(f"{arg.path}: is a '{arg.name}' stage, expected a '{stage}' stage")
        return arg
    path = Path(arg)
    if path.is_file():
        path = path.parent
    if path.exists():
        return load_stage(path, stage)
    base = cache_root(root) / stage
    if "/" not in str(arg) and base.is_dir():
        hits = sorted(p for p in base.glob(f"{arg}*") if not p.name.startswith(".") and (p / MANIFEST).is_file())
        if len(hits) == 1:
            return load_stage(hits[0], stage)
        if len(hits) > 1:
            raise ArcpipeError(f"{arg}: ambiguous {stage} key prefix ({len(hits)} stages match in {base})")
    prefix = f"{label} " if label else ""
    raise ArcpipeError(
        f"{prefix}{arg}: no such {noun or stage + ' stage directory'}, file in one, or key in cache {cache_root(root)}"
    )


def lock_path(base: Path, key: str) -> Path:
    """The file a key's builders take turns on (``<root>/<stage>/.<key>.lock``); it is never
    removed, since a process waiting on it holds it open by name."""
    return base / f".{key}.lock"


@contextmanager
def key_lock(base: Path, key: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the key's exclusive lock: what building a stage, resuming its work directory and
    removing it (``cache_admin.prune``) take. With ``wait=False`` it yields False at once when
    another process holds it, instead of waiting."""
    base.mkdir(parents=True, exist_ok=True)
    with open(lock_path(base, key), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def work_dir(stage: str, key: str, root: str | os.PathLike | None = None) -> Path:
    return cache_root(root) / stage / f".work-{key}"


def run_stage(
    stage: str,
    config: dict,
    inputs: dict[str, str],
    build: Callable[[Path], dict | None],
    *,
    root: str | os.PathLike | None = None,
    force: bool = False,
    resumable: bool = False,
    writer: bool = True,
) -> Stage:
    """Return the cached stage for (config, inputs), building it first if needed.

    ``build(work)`` writes the stage's files into ``work`` and returns counts
    for the manifest. Non-resumable stages get an empty work directory;
    resumable ones (train, infer) get whatever a killed run left there.
    Under torchrun every rank calls this with the same arguments and
    ``writer=(rank == 0)``; only the writer locks, finalises and renames, the
    others just run ``build`` (which synchronises ranks itself).
    """
    key = stage_key(stage, config, inputs)
    base = cache_root(root) / stage
    final = base / key
    work = base / f".work-{key}"
    if not writer:
        existing = find(stage, key, root)
        if existing is not None and not force:
            return Stage(stage, key, final, existing.manifest, cached=True)
        work.mkdir(parents=True, exist_ok=True)
        build(work)
        return Stage(stage, key, final, {}, cached=False)
    with key_lock(base, key):
        existing = find(stage, key, root)
        if existing is not None and not force:
            _mark_used(final)
            return Stage(stage, key, final, existing.manifest, cached=True)
        if work.exists() and not resumable:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        counts = build(work) or {}
        manifest = {
            "stage": stage,
            "format": FORMAT_VERSION,
            "key": key,
            "config": config,
            "inputs": inputs,
            "versions": versions(),
            "host": host(),
            "counts": counts,
            "wall_time_s": round(time.perf_counter() - t0, 3),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(work / MANIFEST, manifest)
        if final.exists():  # --force: move the old result aside, then drop it
            trash = base / f".trash-{key}-{os.getpid()}"
            os.replace(final, trash)
            os.replace(work, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(work, final)
        return Stage(stage, key, final, manifest, cached=False)
