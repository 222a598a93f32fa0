"""What the stage cache holds, and pruning what no pipeline or report needs any more.

A cache grows with every setting tried: a sweep of trainings, each with its checkpoints and its
cached predictions at every ACT step, and at paper scale one inference stage alone is gigabytes.
Stages are content-addressed, so nothing says which ones are still wanted; what does is the
pipelines a researcher keeps and the reports built from them. ``prune`` keeps every stage those
name and every stage those depend on (a manifest's ``inputs``, followed to the end), and removes
the rest — by default only listing them.

Removal is the cache's own discipline in reverse: a stage is renamed out of its final name
(``.trash-<key>-<pid>``) before its files go, so a killed prune never leaves a half stage that
looks whole, and a stage whose key another process holds locked (being built, or rebuilt with
``--force``) is skipped. Work directories of killed runs (``.work-<key>``) hold resumable
checkpoints, so they go only when asked for and never while locked.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcpipe import cache
from arcpipe.errors import ArcpipeError


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def _summary(stage: str, config: dict, counts: dict) -> str:
    """One line that tells runs of a sweep apart without opening their manifests."""
    if stage == "augment":
        tasks = counts.get("tasks")
        return (f"{config.get('source')} n_aug={config.get('n_aug')} train_aug={config.get('train_aug')} "
                f"canvas={config.get('canvas')}" + (f" ({tasks} tasks)" if tasks is not None else ""))
    if stage == "train":
        t, m = config.get("train", {}), config.get("model", {})
        return (f"{config.get('preset')} ({m.get('core')}) max_steps={t.get('max_steps')} seed={t.get('seed')} "
                f"batch={t.get('global_batch_size')}")
    if stage == "infer":
        steps = config.get("steps") or []
        return f"steps={steps[-1] if steps else '?'} puzzle_id={config.get('puzzle_id')} variants={counts.get('variants')}"
    if stage == "vote":
        p2 = counts.get("pass@2")
        return (f"rule={config.get('rule')} n_aug={config.get('n_aug')} top={config.get('top')}"
                + (f" pass@2={100 * p2:.1f}%" if isinstance(p2, (int, float)) else ""))
    if stage == "report":
        return f"{config.get('name')} ({counts.get('runs')} runs)"
    return ""


def _when(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).replace(microsecond=0)


def stages(root: str | os.PathLike | None = None, stage: str | None = None) -> Any:
    """Every finished stage under the cache root, one row each (a polars DataFrame): stage, key,
    summary, size in bytes, when it was built and last used (a cache hit refreshes that), its
    wall time and the CPU or GPU host it ran on. Directories that are not whole stages (work
    directories, a corrupt manifest) are not rows; ``unfinished`` lists the work directories."""
    import polars as pl

    base = cache.cache_root(root)
    kinds = cache.STAGES if stage is None else (stage,)
    if stage is not None and stage not in cache.STAGES:
        raise ArcpipeError(f"cache: unknown stage {stage!r} (one of {', '.join(cache.STAGES)})")
    rows = []
    for kind in kinds:
        folder = base / kind
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not (p / cache.MANIFEST).is_file():
                continue
            try:
                m = cache.read_manifest(p, kind)
            except ArcpipeError:
                continue
            host = m.get("host")
            rows.append({
                "stage": kind, "key": p.name, "summary": _summary(kind, m.get("config", {}), m.get("counts") or {}),
                "bytes": _size(p), "created": m.get("created"), "last_used": _when((p / cache.MANIFEST).stat().st_mtime),
                "wall_s": m.get("wall_time_s"), "host": cache.describe_host(host) if host else None, "path": str(p),
            })
    schema = {"stage": pl.String, "key": pl.String, "summary": pl.String, "bytes": pl.Int64, "created": pl.String,
              "last_used": pl.Datetime("us", "UTC"), "wall_s": pl.Float64, "host": pl.String, "path": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _locked(base: Path, key: str) -> bool:
    """Whether another process holds the key's lock (building it, or resuming its work directory);
    a key never locked has no lock file, and listing does not create one."""
    if not cache.lock_path(base, key).exists():
        return False
    with cache.key_lock(base, key, wait=False) as got:
        return not got


def unfinished(root: str | os.PathLike | None = None) -> Any:
    """Work directories left by runs that stopped before finishing (or are running now: ``locked``).
    A train or infer work directory resumes where it stopped when the same stage is asked for again."""
    import polars as pl

    base = cache.cache_root(root)
    rows = []
    for kind in cache.STAGES:
        folder = base / kind
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob(".work-*")):
            key = p.name.removeprefix(".work-")
            rows.append({"stage": kind, "key": key, "bytes": _size(p), "modified": _when(p.stat().st_mtime),
                         "locked": _locked(folder, key), "path": str(p)})
    schema = {"stage": pl.String, "key": pl.String, "bytes": pl.Int64, "modified": pl.Datetime("us", "UTC"),
              "locked": pl.Boolean, "path": pl.String}
    return pl.DataFrame(rows, schema=schema)


_INPUT = re.compile(r"^([a-z]+?)\d*$")  # a manifest's input names: "augment", "train", "infer0", "infer12", ...


def _inputs(manifest: dict) -> Iterable[tuple[str, str]]:
    for name, key in (manifest.get("inputs") or {}).items():
        kind = _INPUT.match(name)
        if kind and kind.group(1) in cache.STAGES and isinstance(key, str):
            yield kind.group(1), key


@dataclass
class Kept:
    """The stages a prune keeps, and why some of what was asked to be kept could not be found."""

    stages: set[tuple[str, str]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    pipelines: int = 0  # pipeline files read
    pipeline_hits: int = 0  # their stages found in the cache


def needed(keep: Sequence[str | os.PathLike], root: str | os.PathLike | None = None) -> Kept:
    """The (stage, key) pairs that ``keep`` names, closed over their inputs. ``keep`` holds pipeline
    files (every stage a dry run of it finds cached), report directories (a built report's
    ``manifest.json``: the predictions it read), folders of either (``pipelines/``, ``reports/``),
    stage directories, or ``stage/key``."""
    from arcpipe import pipeline

    base = cache.cache_root(root)
    out = Kept()
    seeds: list[tuple[str, str]] = []
    for item in keep:
        p = Path(item)
        if p.is_dir() and not (p / cache.MANIFEST).is_file():
            found = sorted(p.glob("*.toml")) + sorted(d for d in p.iterdir() if (d / cache.MANIFEST).is_file())
            if not found:
                raise ArcpipeError(f"cache prune: {p}: holds no pipeline (*.toml) or built report to keep")
            targets: list[Path] = found
        elif p.exists():
            targets = [p]
        elif re.fullmatch(r"[a-z]+/[0-9a-f]+", str(item)) and str(item).split("/")[0] in cache.STAGES:
            seeds.append(tuple(str(item).split("/")))  # type: ignore[arg-type]
            continue
        else:
            raise ArcpipeError(f"cache prune: {item}: no such pipeline file, report or stage directory, nor stage/key")
        for t in targets:
            if t.is_file() and t.suffix == ".toml":
                nodes = list(pipeline.run(t, dry_run=True, root=base))
                hits = [(n.stage, n.key) for n in nodes if n.key]
                seeds.extend(hits)
                out.pipelines += 1
                out.pipeline_hits += len(hits)
                if len(hits) < len(nodes):
                    out.notes.append(f"{t}: {len(nodes) - len(hits)} of {len(nodes)} stages not in the cache (never run here)")
            else:
                m = cache.read_manifest(t.parent if t.is_file() else t)
                seeds.append((m["stage"], m["key"]))
                seeds.extend(_inputs(m))
    todo = list(dict.fromkeys(seeds))
    while todo:
        kind, key = todo.pop()
        if (kind, key) in out.stages:
            continue
        out.stages.add((kind, key))
        try:
            m = cache.read_manifest(base / kind / key, kind)
        except ArcpipeError:
            continue  # kept though absent here (a committed report whose stages live elsewhere)
        todo.extend(s for s in _inputs(m) if s not in out.stages)
    return out


@dataclass
class Pruned:
    """What a prune removed (or, dry, would remove): a table of stages like ``stages()``'s, the
    bytes they hold, and notes (keep targets not found in this cache, stages skipped as locked)."""

    removed: Any
    bytes: int
    kept: int
    notes: list[str]
    dry_run: bool


def prune(
    keep: Sequence[str | os.PathLike],
    root: str | os.PathLike | None = None,
    *,
    unused_days: float | None = None,
    work: bool = False,
    dry_run: bool = True,
) -> Pruned:
    """Remove every finished stage that ``keep`` (see ``needed``) does not reach; with
    ``unused_days``, only those also unused for that many days. ``work`` also removes work
    directories of stopped runs (their resumable progress is lost). ``dry_run`` (the default)
    only says what would go."""
    import polars as pl

    if not keep:
        raise ArcpipeError("cache prune: name what to keep (pipeline files, reports, or folders of them): "
                           "pruning with nothing kept would empty the cache")
    base = cache.cache_root(root)
    kept = needed(keep, base)
    if kept.pipelines and not kept.pipeline_hits and not dry_run:
        # a pipeline's stages are found through the index `arcpipe run` writes, keyed by the plan
        # (arcpipe's version included): after an upgrade, or from another directory's cache, none
        # is found, and pruning on that would remove everything the pipelines made
        raise ArcpipeError(f"cache prune: none of the {kept.pipelines} pipeline(s) named finds a stage in {base} (never run "
                           "here, or run by another arcpipe version: `arcpipe run PIPELINE` again re-indexes them as "
                           "cache hits); refusing to remove anything on that")
    table = stages(base)
    wanted = pl.DataFrame(sorted(kept.stages), schema={"stage": pl.String, "key": pl.String}, orient="row")
    drop = table.join(wanted, on=["stage", "key"], how="anti")
    if unused_days is not None:
        cutoff = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=unused_days)
        drop = drop.filter(pl.col("last_used") < cutoff)
    notes = list(kept.notes)
    if work:
        stale = unfinished(base)
        for row in stale.filter(pl.col("locked")).iter_rows(named=True):
            notes.append(f"{row['path']}: a run holds it now; left alone")
        stale = stale.filter(~pl.col("locked")).with_columns(
            summary=pl.lit("unfinished run (work directory)"), created=pl.lit(None, pl.String),
            last_used=pl.col("modified"), wall_s=pl.lit(None, pl.Float64), host=pl.lit(None, pl.String))
        drop = pl.concat([drop, stale.select(drop.columns)])
    gone = []
    for row in drop.iter_rows(named=True):
        path = Path(row["path"])
        held = _locked(path.parent, row["key"]) if dry_run else not _remove(path, path.parent, row["key"])
        if held:
            notes.append(f"{path}: a run holds its lock now; left alone")
            continue
        gone.append(row)
    removed = pl.DataFrame(gone, schema=drop.schema)
    return Pruned(removed, int(removed["bytes"].sum() or 0), table.height - drop.height, notes, dry_run)


def _remove(path: Path, folder: Path, key: str) -> bool:
    """Remove a stage or work directory unless a run holds its key (False then: checking and
    taking the lock are one step, so no run can start on it in between, and a long ``--force``
    rebuild is skipped rather than waited for). It is renamed out of its final name first, so a
    killed prune leaves only ``.trash-*``, never a half stage."""
    with cache.key_lock(folder, key, wait=False) as got:
        if got and path.exists():
            trash = folder / f".trash-{key}-{os.getpid()}"
            os.replace(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return got


def sweep_trash(root: str | os.PathLike | None = None) -> int:
    """Remove ``.trash-*`` left by a prune or a ``--force`` rebuild that was killed mid-way; bytes freed."""
    base = cache.cache_root(root)
    freed = 0
    for kind in cache.STAGES:
        for p in (base / kind).glob(".trash-*") if (base / kind).is_dir() else ():
            freed += _size(p)
            shutil.rmtree(p, ignore_errors=True)
    return freed


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover

