"""`arcpipe cache ls` / `prune`: what is kept (pipelines, reports, their inputs to the end), what goes,
and that a prune never touches a stage a running process holds nor leaves a half stage behind.
The stages are the fake ones of conftest.py, written through the real ``cache.run_stage``."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arcpipe import cache, cache_admin, pipeline
from arcpipe.cli import app
from arcpipe.errors import ArcpipeError

PIPE = """
[data]
source = "arc1:evaluation"
first = 2
[augment]
n_aug = 8
[train]
preset = "tiny"
max_steps = 10
seed = {seed}
[report]
name = "r{seed}"
out_dir = "{out}"
"""


def two_pipelines(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two pipelines that share their augment stage and differ in the training seed, both run."""
    root = tmp_path / "cache"
    paths = []
    for seed in (0, 1):
        p = tmp_path / f"p{seed}.toml"
        p.write_text(PIPE.format(seed=seed, out=tmp_path / "reports"))
        pipeline.run(p, root=root)
        paths.append(p)
    return root, paths[0], paths[1]


def keys(root: Path) -> set[tuple[str, str]]:
    return {(r["stage"], r["key"]) for r in cache_admin.stages(root).iter_rows(named=True)}


def test_prune_keeps_a_pipeline_and_what_it_reads_and_lists_before_it_removes(fake, tmp_path):
    root, keep, other = two_pipelines(tmp_path)
    before = keys(root)
    assert {s for s, _ in before} == set(cache.STAGES) and len(before) == 1 + 2 * 4  # augment shared
    mine = {(n.stage, n.key) for n in pipeline.run(keep, root=root, dry_run=True)}
    theirs = {(n.stage, n.key) for n in pipeline.run(other, root=root, dry_run=True)}

    dry = cache_admin.prune([keep], root)
    assert dry.dry_run and keys(root) == before  # listing only
    assert {(r["stage"], r["key"]) for r in dry.removed.iter_rows(named=True)} == theirs - mine
    assert dry.kept == len(mine) and dry.bytes == sum(dry.removed["bytes"]) > 0

    done = cache_admin.prune([keep], root, dry_run=False)
    assert keys(root) == mine and done.removed.height == 4
    assert all(n.status == "cached" for n in pipeline.run(keep, root=root, dry_run=True))
    again = pipeline.run(other, root=root, dry_run=True)
    assert [n.stage for n in again if n.status == "would run"] == ["train", "infer", "vote", "report"]
    assert not any(p.name.startswith(".trash-") for s in cache.STAGES for p in (root / s).iterdir())


def test_a_built_report_keeps_its_inputs_to_the_end(fake, tmp_path):
    """A report directory (committed, or copied elsewhere) names what it read; the closure over
    manifests' inputs keeps the trainings and the dataset behind them too."""
    root, keep, other = two_pipelines(tmp_path)
    report = next(n for n in pipeline.run(other, root=root, dry_run=True) if n.stage == "report")
    manifest = cache.read_manifest(root / "report" / report.key)
    copy = tmp_path / "committed" / "r1"
    copy.mkdir(parents=True)
    (copy / cache.MANIFEST).write_text(json.dumps(manifest))
    kept = cache_admin.needed([copy], root).stages
    assert {s for s, _ in kept} == set(cache.STAGES)
    assert kept == {(n.stage, n.key) for n in pipeline.run(other, root=root, dry_run=True)}
    # a folder of reports keeps each one; STAGE/KEY keeps one stage and its inputs
    assert cache_admin.needed([copy.parent], root).stages == kept
    train = next((s, k) for s, k in kept if s == "train")
    assert cache_admin.needed([f"{train[0]}/{train[1]}"], root).stages == {train, next(x for x in kept if x[0] == "augment")}


def test_prune_leaves_alone_what_a_running_process_holds(fake, tmp_path):
    root, keep, other = two_pipelines(tmp_path)
    train = next(n for n in pipeline.run(other, root=root, dry_run=True) if n.stage == "train")
    work = root / "train" / ".work-0123456789abcdef"  # a stopped run's resumable progress
    work.mkdir()
    (work / "step.pt").write_bytes(b"x" * 100)
    with open(root / "train" / f".{train.key}.lock", "a") as fh:  # another open file: flock conflicts
        fcntl.flock(fh, fcntl.LOCK_EX)
        dry = cache_admin.prune([keep], root)
        assert train.key not in dry.removed["key"].to_list() and any(train.key in n for n in dry.notes)
        got = cache_admin.prune([keep], root, dry_run=False)
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert (root / "train" / train.key / cache.MANIFEST).is_file()
    assert any("left alone" in n and train.key in n for n in got.notes)
    assert work.is_dir()  # work directories go only when asked for
    lock = root / "train" / ".0123456789abcdef.lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        cache_admin.prune([keep], root, work=True, dry_run=False)
        assert work.is_dir()
        fcntl.flock(fh, fcntl.LOCK_UN)
    got = cache_admin.prune([keep], root, work=True, dry_run=False)
    assert not work.exists() and not (root / "train" / train.key).exists()
    assert "unfinished run (work directory)" in got.removed["summary"].to_list()


def test_unused_days_spares_recent_stages(fake, tmp_path):
    root, keep, _ = two_pipelines(tmp_path)
    assert cache_admin.prune([keep], root, unused_days=1).removed.is_empty()
    assert cache_admin.prune([keep], root, unused_days=0).removed.height == 4


def test_bad_keep_arguments_are_one_line_errors(fake, tmp_path):
    root, keep, _ = two_pipelines(tmp_path)
    with pytest.raises(ArcpipeError, match="nothing kept would empty the cache"):
        cache_admin.prune([], root)
    with pytest.raises(ArcpipeError, match="missing.toml: no such pipeline file"):
        cache_admin.prune([tmp_path / "missing.toml"], root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArcpipeError, match="holds no pipeline"):
        cache_admin.prune([empty], root)
    with pytest.raises(ArcpipeError, match="unknown stage 'trian'"):
        cache_admin.stages(root, "trian")


def test_cli_ls_and_prune(fake, tmp_path):
    root, keep, _ = two_pipelines(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["--cache", str(root), "cache", "ls", "--sort", "size", "--csv", str(tmp_path / "ls.csv")])
    assert out.exit_code == 0, out.output
    assert "9 stages" in out.output and (tmp_path / "ls.csv").read_text().count("\n") == 10
    dry = runner.invoke(app, ["--cache", str(root), "cache", "prune", str(keep)])
    assert dry.exit_code == 0 and "would remove 4 stages" in dry.output and "--yes" in dry.output
    assert len(keys(root)) == 9
    done = runner.invoke(app, ["--cache", str(root), "cache", "prune", str(keep), "--yes"])
    assert done.exit_code == 0 and "removed 4 stages" in done.output and len(keys(root)) == 5
    bad = runner.invoke(app, ["--cache", str(root), "cache", "ls", "--sort", "age"])
    assert bad.exit_code != 0


def test_a_prune_killed_mid_delete_leaves_no_half_stage(fake, tmp_path, monkeypatch):
    """Deleting files takes time; the rename before it is one step. Dying between the two (here:
    the delete raising) leaves a `.trash-*` that no lookup reads, and the next prune clears it."""
    root, keep, other = two_pipelines(tmp_path)
    theirs = {(n.stage, n.key) for n in pipeline.run(other, root=root, dry_run=True)}

    def killed(path, ignore_errors=False):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(cache_admin.shutil, "rmtree", killed)
        cache_admin.prune([keep], root, dry_run=False)
    trash = [p for s in cache.STAGES for p in (root / s).glob(".trash-*")]
    assert len(trash) == 1 and not (trash[0] / "missing").exists()
    assert len(keys(root)) == 8 and (trash[0].parent.name, trash[0].name.split("-")[1]) in theirs
    assert cache.find(trash[0].parent.name, trash[0].name.split("-")[1], root) is None
    runner = CliRunner()
    out = runner.invoke(app, ["--cache", str(root), "cache", "prune", str(keep), "--yes"])
    assert out.exit_code == 0 and not [p for s in cache.STAGES for p in (root / s).glob(".trash-*")]
    assert len(keys(root)) == 5


def test_pipelines_that_find_nothing_refuse_a_prune(fake, tmp_path, monkeypatch):
    """The index that finds a pipeline's stages is keyed by its plan, arcpipe's version included:
    after an upgrade no stage is found, and a prune on that would empty the cache. It refuses;
    rerunning the pipeline (all cache hits) indexes the stages again."""
    root, keep, _ = two_pipelines(tmp_path)
    monkeypatch.setattr("arcpipe.__version__", "9.9.9")
    assert cache_admin.prune([keep], root).removed.height == 9  # the listing shows what it would do
    with pytest.raises(ArcpipeError, match="none of the 1 pipeline"):
        cache_admin.prune([keep], root, dry_run=False)
    assert len(keys(root)) == 9
    assert all(n.cached for n in pipeline.run(keep, root=root) if n.stage != "report")
    assert cache_admin.prune([keep], root, dry_run=False).removed.height == 4
