"""The train stage: sampler, outputs, caching, exact resume, learning, errors, CLI.

Every run here is a tiny HRM on a few real ARC-AGI-1 training tasks with
sides <= 5 on a 6x6 canvas, so the default-suite tests take seconds; the
memorisation test (>90% exact on the training pairs) is marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from arcpipe import cache
from arcpipe.errors import ArcpipeError
from arcpipe.train import METRIC_COLUMNS, fit_by_task, load_trained, train
from arcpipe.trainer import GroupSampler

#: A small model (fast on CPU) that still has two levels, two cycles and ACT.
SMALL = {"hidden_size": 32, "num_heads": 2, "puzzle_emb_ndim": 32, "halt_max_steps": 2}
TIMING = ("tokens_per_s", "wall_s")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> cache.Stage:
    """Three real ARC tasks (sides <= 5), 4 variants each, 6x6 canvas."""
    from arcpipe.augment import augment

    root = tmp_path_factory.mktemp("aug")
    return augment("arc1:training", extra_train=None, max_side=5, first=3, n_aug=4, canvas=6, n_jobs=1, root=root)


def _run(dataset, root, **kw):
    args = dict(overrides=SMALL, max_steps=4, eval_every=2, checkpoint_every=2, global_batch_size=8,
                deterministic=True, progress=False, root=root)  # fmt: skip
    args.update(kw)
    return train(dataset.path, **args)


def _weights(stage) -> dict[str, torch.Tensor]:
    return torch.load(Path(stage.path) / "model.pt", weights_only=True)


# --------------------------------------------------------------------------- sampler


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
    size=st.integers(1, 40),
    cursor=st.integers(0, 100),
)
def test_sampler_epochs_visit_every_row_once_with_groups_together(sizes, seed, size, cursor):
    groups = np.repeat(np.random.default_rng(seed).permutation(len(sizes)) + 1, sizes)
    np.random.default_rng(seed + 1).shuffle(groups)  # rows of a group scattered in the plan
    s = GroupSampler(groups, seed)
    order = s.epoch_order(1)
    assert np.array_equal(np.sort(order), np.arange(groups.size))  # each row exactly once per epoch
    g = groups[order]
    assert (np.diff(g) != 0).sum() == len(sizes) - 1  # each group one contiguous run
    # The stream is a pure function of (seed, position): slices concatenate across epoch boundaries.
    a = s.take(cursor, size)
    b = np.concatenate([GroupSampler(groups, seed).take(cursor + i, 1) for i in range(size)])
    assert np.array_equal(a, b)


def test_sampler_epochs_differ_and_seed_matters():
    groups = np.repeat(np.arange(1, 21), 3)
    s = GroupSampler(groups, 0)
    assert not np.array_equal(s.epoch_order(0), s.epoch_order(1))
    assert not np.array_equal(s.epoch_order(0), GroupSampler(groups, 1).epoch_order(0))
    assert np.array_equal(s.epoch_order(3), GroupSampler(groups, 0).epoch_order(3))


# --------------------------------------------------------------------------- outputs, cache


def test_outputs_cache_and_load_trained(dataset, tmp_path):
    stage = _run(dataset, tmp_path, max_steps=4, eval_every=2, overrides={**SMALL, "holdout": True})
    assert not stage.cached and stage.inputs == {"augment": dataset.key}
    for name in ("model.pt", "config.json", "metrics.parquet", "training.png", "manifest.json"):
        assert (stage.path / name).is_file(), name
    assert not (stage.path / "resume").exists()  # resume state is work-dir only
    import torch

    host = stage.manifest["host"]  # the hardware that made it, down to the kernels torch dispatched to
    assert host["torch_threads"] == torch.get_num_threads()
    assert host["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    m = pl.read_parquet(stage.path / "metrics.parquet")
    assert m.columns == list(METRIC_COLUMNS)
    assert m["step"].to_list() == [1, 2, 3, 4]
    assert m["lm_loss"].is_finite().all() and (m["lr"] > 0).all()
    ev = m.filter(pl.col("eval_train_exact_accuracy").is_not_null())
    assert ev["step"].to_list() == [2, 4]
    assert ev["eval_holdout_exact_accuracy"].is_not_null().all()  # holdout=True evaluates held-out pairs
    cfg = json.loads((stage.path / "config.json").read_text())
    assert cfg["model"]["seq_len"] == 36 and cfg["model"]["hidden_size"] == 32
    assert cfg["train"]["holdout"] is True and cfg["dataset"]["holdout_rows"] > 0
    assert (stage.path / "training.png").read_bytes()[:4] == b"\x89PNG"

    again = _run(dataset, tmp_path, max_steps=4, eval_every=2, overrides={**SMALL, "holdout": True})
    assert again.cached and again.path == stage.path

    model, mcfg = load_trained(stage)
    assert mcfg.hidden_size == 32 and not model.training
    saved = _weights(stage)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_holdout_rows_leave_training_in_every_variant(dataset):
    from arcpipe.train import _load_data

    data = _load_data(dataset, holdout=True)
    c = data.columns
    held = {(c["task_id"][i], c["part"][i], int(c["example"][i])) for i in data.holdout_rows}
    trained = {(c["task_id"][i], c["part"][i], int(c["example"][i])) for i in data.train_rows}
    assert held and not (held & trained)  # no variant of a held-out pair is trained on
    for task in set(c["task_id"]):
        demos = [e for (t, p, e) in trained | held if t == task and p == "train"]
        assert (task, "train", max(demos)) in held
    assert np.unique(c["variant"][data.holdout_rows]).size == 4  # held out in every variant


def test_bare_train_uses_newest_augment_stage_and_says_so(dataset, tmp_path, capsys, monkeypatch):
    import shutil

    root = tmp_path / "cache"
    shutil.copytree(dataset.path, root / "augment" / dataset.key)
    monkeypatch.setenv("ARCPIPE_CACHE", str(root))
    stage = train(overrides=SMALL, max_steps=1, global_batch_size=4, progress=False)
    assert stage.inputs == {"augment": dataset.key}
    assert f"using the newest augment stage {root / 'augment' / dataset.key}" in capsys.readouterr().err


# --------------------------------------------------------------------------- resume


def test_kill_and_resume_equals_uninterrupted(dataset, tmp_path):
    whole = _run(dataset, tmp_path / "a", max_steps=7, checkpoint_every=3, eval_every=2)

    class Killed(Exception):
        pass

    def kill_at_5(step, row):
        if step == 5:  # last checkpoint was step 3: steps 4-5 are lost and must be redone identically
            raise Killed

    with pytest.raises(Killed):
        _run(dataset, tmp_path / "b", max_steps=7, checkpoint_every=3, eval_every=2, callback=kill_at_5)
    work = next((tmp_path / "b" / "train").glob(".work-*"))
    assert json.loads((work / "resume" / "latest.json").read_text())["step"] == 3
    seen = []
    resumed = _run(dataset, tmp_path / "b", max_steps=7, checkpoint_every=3, eval_every=2,
                   callback=lambda step, row: seen.append(step))  # fmt: skip
    assert seen == [4, 5, 6, 7]  # continued from the checkpoint, not from scratch
    assert resumed.key == whole.key
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = pl.read_parquet(whole.path / "metrics.parquet").drop(TIMING)
    mb = pl.read_parquet(resumed.path / "metrics.parquet").drop(TIMING)
    assert ma.equals(mb, null_equal=True)


def test_ablation_core_with_ema_resumes_exactly_and_publishes_the_average(dataset, tmp_path):
    """trm-tiny with weight averaging: EMA state is part of the resume state; model.pt is the average."""
    kw = dict(preset="trm-tiny", overrides={**SMALL, "ema_decay": 0.5}, max_steps=5, checkpoint_every=2)
    whole = _run(dataset, tmp_path / "a", **kw)

    def kill(step, row):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(dataset, tmp_path / "b", callback=kill, **kw)
    resumed = _run(dataset, tmp_path / "b", **kw)
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Averaging does not steer training, so the same run without it ends with the live weights:
    # model.pt differs from them in every averaged (dense) tensor, not in the puzzle table.
    live = _weights(_run(dataset, tmp_path / "c", **{**kw, "overrides": {**SMALL, "ema_decay": 0.0}}))
    same = {k for k in a if torch.equal(a[k], live[k])}
    assert same == {k for k in a if "puzzle_emb" in k or k.endswith("_init")}, same


@pytest.mark.slow
def test_sigkill_and_rerun_equals_uninterrupted(dataset, tmp_path):
    """A real kill (SIGKILL mid-run, no clean-up at all), then the same call again."""
    import os
    import signal
    import time

    kw = dict(max_steps=40, checkpoint_every=4, eval_every=10)
    whole = _run(dataset, tmp_path / "a", **kw)
    code = (
        "import sys, json; sys.path.insert(0, %r); import test_train as t; from arcpipe import cache;"
        "t._run(cache.load_stage(%r), %r, **json.loads(sys.argv[1]))"
    ) % (str(Path(__file__).parent), str(dataset.path), str(tmp_path / "b"))
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(kw)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    latest = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "b" / "train").glob(".work-*/resume/latest.json"))
        if found and json.loads(found[0].read_text())["step"] >= 8:
            latest = found[0]
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest is not None, "the run finished or never checkpointed before the kill"
    assert not any((tmp_path / "b" / "train").glob("[!.]*"))  # no final stage from the killed run
    seen = []
    resumed = _run(dataset, tmp_path / "b", callback=lambda s, r: seen.append(s), **kw)
    assert seen[0] > 1 and seen[-1] == 40
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma = pl.read_parquet(whole.path / "metrics.parquet").drop(TIMING)
    assert ma.equals(pl.read_parquet(resumed.path / "metrics.parquet").drop(TIMING), null_equal=True)


def test_no_resume_starts_over(dataset, tmp_path):
    def stop(step, row):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(dataset, tmp_path, max_steps=5, checkpoint_every=2, callback=stop)
    seen = []
    _run(dataset, tmp_path, max_steps=5, checkpoint_every=2, resume=False, callback=lambda s, r: seen.append(s))
    assert seen == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- learning


def _eval_exact(stage) -> pl.DataFrame:
    m = pl.read_parquet(stage.path / "metrics.parquet")
    return m.filter(pl.col("eval_train_accuracy").is_not_null())


def test_samples_trained_counts_sequences_run_to_their_halt(dataset, tmp_path):
    """The report's "samples trained": one ACT segment draws a fresh batch every step; with two,
    a sequence that does not halt stays in the batch, so the same steps train fewer samples."""
    from arcpipe.runs import Run

    one = _run(dataset, tmp_path, overrides={**SMALL, "halt_max_steps": 1}, max_steps=6)
    two = _run(dataset, tmp_path, overrides={**SMALL, "halt_max_steps": 2, "halt_exploration_prob": 0.0}, max_steps=6)
    samples = [Run(infer=st, votes=[], train=st, augment=None).train_summary()["train_samples"] for st in (one, two)]
    halted = pl.read_parquet(two.path / "metrics.parquet")["halted"]
    assert samples[0] == 6 * 8  # every row halts at its only segment
    assert samples[1] == int(halted.sum()) and 3 * 8 <= samples[1] < 6 * 8  # at most 2 steps each, some fewer


def test_training_learns(dataset, tmp_path):
    """Cheap version of the memorisation test: accuracy on the training pairs clearly rises in 50 steps."""
    model = {"hidden_size": 64, "num_heads": 4, "puzzle_emb_ndim": 64, "halt_max_steps": 2}
    stage = _run(dataset, tmp_path, max_steps=50, eval_every=10, checkpoint_every=100, global_batch_size=16,
                 overrides={**model, "lr": 3e-3, "puzzle_emb_lr": 3e-2, "warmup_steps": 5})  # fmt: skip
    ev = _eval_exact(stage)
    m = pl.read_parquet(stage.path / "metrics.parquet")
    assert ev["eval_train_accuracy"][-1] > ev["eval_train_accuracy"][0] + 0.1, ev
    assert ev["eval_train_halt_exact_accuracy"][-1] >= 0.1, ev  # whole grids right, not just tokens
    assert m["lm_loss"][-10:].mean() < 0.6 * m["lm_loss"][:5].mean()
    # every training row read per task: with fewer rows than the 128 the run samples, the
    # run's own final train exact is the same rows' reading, so the two agree
    fit = fit_by_task(stage)
    rows = json.loads((stage.path / "config.json").read_text())["dataset"]["train_rows"]
    assert fit["task_id"].n_unique() == fit.height == 3 and fit["rows"].sum() == rows < 128
    assert (fit["rows"] * fit["exact"]).sum() / rows == pytest.approx(ev["eval_train_exact_accuracy"][-1])
    assert 0 < (fit["rows"] * fit["exact"]).sum()
    # and the training read the same fit itself, on every row, after its last step
    counts = stage.manifest["counts"]
    assert counts["fit_rows"] == rows and counts["fit_exact"] == pytest.approx((fit["rows"] * fit["exact"]).sum() / rows)


def test_final_fit_reads_a_seeded_draw_of_rows_past_its_cap(dataset, tmp_path, monkeypatch):
    """Past FIT_ROWS training rows (paper scale) the final fit reads that many, drawn with the
    training seed: the same draw on a rerun, a share of whole rows."""
    from arcpipe import trainer

    monkeypatch.setattr(trainer, "FIT_ROWS", 7)
    counts = [_run(dataset, tmp_path / name, max_steps=2).manifest["counts"] for name in ("a", "b")]
    assert counts[0]["train_rows"] > 7 and [c["fit_rows"] for c in counts] == [7, 7]
    assert counts[0]["fit_exact"] == counts[1]["fit_exact"] and round(7 * counts[0]["fit_exact"], 9).is_integer()


@pytest.mark.slow
def test_memorises_small_real_tasks(tmp_path):
    """Puzzle-ID embeddings let a tiny HRM memorise its training pairs (>90% exact)."""
    from arcpipe.augment import augment

    ds = augment("arc1:training", extra_train=None, max_side=5, first=4, n_aug=4, canvas=6, n_jobs=1, root=tmp_path)
    stage = train(ds.path, preset="tiny", max_steps=800, eval_every=100, deterministic=True, progress=False, root=tmp_path)
    ev = _eval_exact(stage)
    # Both readings: the reference's (after all halt_max_steps steps) and where the Q head halts.
    assert ev["eval_train_exact_accuracy"][-1] > 0.9, ev
    assert ev["eval_train_halt_exact_accuracy"][-1] > 0.9, ev


# --------------------------------------------------------------------------- errors


def test_clear_errors(dataset, tmp_path):
    with pytest.raises(ArcpipeError, match="no such dataset directory"):
        train(tmp_path / "nope", root=tmp_path, progress=False)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ArcpipeError, match="not an arcpipe stage directory"):
        train(tmp_path / "plain", root=tmp_path, progress=False)
    with pytest.raises(ArcpipeError, match=r"unknown preset 'huge' \(known: arc, tiny"):
        train(dataset.path, preset="huge", root=tmp_path, progress=False)
    with pytest.raises(ArcpipeError, match=r"seq_len=100 does not fit the dataset's 6x6 canvas \(needs seq_len=36\)"):
        train(dataset.path, overrides={"seq_len": 100}, root=tmp_path, progress=False)
    with pytest.raises(ArcpipeError, match="unknown setting.*hidden_sise"):
        train(dataset.path, overrides={"hidden_sise": 8}, root=tmp_path, progress=False)
    with pytest.raises(ArcpipeError, match="hidden_size='big': expected int"):
        train(dataset.path, overrides={"hidden_size": "big"}, root=tmp_path, progress=False)
    with pytest.raises(ArcpipeError, match="no 'augment' output in cache"):
        train(root=tmp_path / "empty", progress=False)
    # An augment stage from an incompatible arcpipe (different cache format).
    old = tmp_path / "old"
    import shutil

    shutil.copytree(dataset.path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format": 0}))
    with pytest.raises(ArcpipeError, match="incompatible arcpipe"):
        train(old, root=tmp_path, progress=False)
    # A train stage given where a dataset is expected.
    stage = _run(dataset, tmp_path / "t", max_steps=1)
    with pytest.raises(ArcpipeError, match="is a 'train' stage, expected a 'augment' stage"):
        train(stage.path, root=tmp_path, progress=False)
    assert not any((tmp_path / "train").glob("*")) if (tmp_path / "train").exists() else True


def test_out_of_memory_names_the_knob(dataset, tmp_path, monkeypatch):
    from arcpipe import train as train_mod

    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_mod._Trainer, "train_step", oom)
    with pytest.raises(ArcpipeError, match=r"out of memory at global batch 8 \(8 per rank\) on cpu; lower --batch-size"):
        _run(dataset, tmp_path)
    assert not any((tmp_path / "train").glob("[!.]*"))  # nothing half-written under a final name


# --------------------------------------------------------------------------- CLI


def test_cli_dry_run_and_train(dataset, tmp_path):
    from arcpipe.cli import app

    runner = CliRunner()
    env = {"ARCPIPE_CACHE": str(tmp_path)}
    r = runner.invoke(app, ["train", str(dataset.path), "--set", "hidden_size=32", "--set", "num_heads=2", "--dry-run"], env=env)
    assert r.exit_code == 0, r.output
    assert "parameters:" in r.output and "puzzle-embedding" in r.output and '"hidden_size": 32' in r.output
    assert "compute:" in r.output and "steps over" in r.output and "H100 at 40% MFU" in r.output
    assert not (tmp_path / "train").exists()
    args = ["train", str(dataset.path), "--max-steps", "2", "--batch-size", "4", "--eval-every", "1",
            "--set", "hidden_size=32", "--set", "num_heads=2", "--set", "puzzle_emb_ndim=32", "--deterministic"]  # fmt: skip
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output and str(tmp_path / "train") in r.output
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0 and "cached 2 steps" in r.output


def test_cli_error_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "arcpipe.cli", "--cache", str(tmp_path), "train", "--preset", "huge"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train: unknown preset 'huge' (known: arc, tiny"), lines


def test_dry_run_compute_estimate_counts_steps_and_flops(dataset, tmp_path):
    """The dry run's cost line: steps from the stage's training rows, FLOPs from hrm.flops."""
    import hrm
    from hrm.flops import step_flops

    res = train(dataset.path, root=tmp_path, epochs=3, global_batch_size=4, dry_run=True,
                overrides={"hidden_size": 32, "num_heads": 2})  # fmt: skip
    c = res["compute"]
    rows = dataset.manifest["counts"]["train_rows"]
    assert c["train_rows"] == rows and c["steps"] == -(-3 * rows // 4)
    cfg = hrm.HRMConfig.from_dict(res["model"])
    assert c["flops"] == c["steps"] * step_flops(cfg, 4).train
    timed = train(dataset.path, root=tmp_path, max_minutes=1.0, dry_run=True)["compute"]
    assert timed["steps"] is None and timed["flops"] is None and timed["flops_per_step"] > 0


def test_arc_preset_budget_is_the_reference_epochs_in_arcpipe_epochs():
    """The reference's 100000 epochs (one variant per task each) are 100 arcpipe epochs (every
    variant each) at 1000 variants: 365,789 steps for ARC-AGI-1, not ~1000x that."""
    from arcpipe.train import TRAIN_PRESETS, TrainConfig, total_steps_for

    arc = TRAIN_PRESETS["arc"]
    tc = TrainConfig(**arc)
    assert arc["epochs"] == 100.0
    assert total_steps_for(tc, 2_809_254) == 365_789


def test_preset_settings_are_the_training_and_model_defaults_a_run_gets(dataset, tmp_path):
    """What ``preset_settings`` calls a preset's own is what a run that leaves everything out
    trains with: the dry run's resolved lr and model fields for the ablation cores' CPU presets."""
    from arcpipe.train import preset_settings, train_defaults

    for preset in ("tiny", "transformer-tiny", "trm-tiny"):
        own = preset_settings(preset)
        res = train(dataset.path, root=tmp_path, preset=preset, dry_run=True)
        given = {k: v for k, v in res["model"].items() if k not in ("seq_len", "num_puzzle_identifiers", "vocab_size")}
        assert {k: own[k] for k in given} == given and "seq_len" not in own
        assert {k: own[k] for k in train_defaults(preset)} == {k: res["train"][k] for k in train_defaults(preset)}
    assert preset_settings("transformer-tiny")["L_cycles"] == 1 != preset_settings("tiny")["L_cycles"]
    assert preset_settings("trm-tiny")["lr"] == 1e-3 != preset_settings("tiny")["lr"]
    with pytest.raises(ValueError):
        preset_settings("no-such-preset")


def test_compute_estimate_counts_steps_and_h100_hours():
    """The dry run's budget: epochs over the stage's rows (capped by max_steps), model FLOPs per
    step, and hours on one H100 at 40% MFU of its datasheet peak (hrm.flops.DATASHEET_BF16)."""
    import dataclasses

    import hrm
    from arcpipe.train import TrainConfig, compute_estimate
    from hrm.flops import step_flops

    cfg = hrm.HRMConfig.preset("tiny", seq_len=49, num_puzzle_identifiers=10)
    base = dict(global_batch_size=768, lr=1e-4, lr_min_ratio=1.0, warmup_steps=10, beta1=0.9, beta2=0.95, weight_decay=0.1,
                puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=0.1, eval_every=100, eval_size=64, checkpoint_every=100)
    stage = cache.Stage("augment", "k", Path("."), {"counts": {"train_rows": 76_800}})
    est = compute_estimate(cfg, TrainConfig(**base, epochs=2.5), stage)
    assert est["steps"] == 250 and est["flops"] == 250 * step_flops(cfg, 768).train
    assert est["h100_hours_at_40pct_mfu"] == pytest.approx(est["flops"] / (0.4 * 989e12) / 3600)
    assert compute_estimate(cfg, TrainConfig(**base, epochs=2.5, max_steps=7), stage)["steps"] == 7
    timed = compute_estimate(cfg, dataclasses.replace(TrainConfig(**base), max_minutes=5.0), stage)
    assert timed["steps"] is None and timed["h100_hours_at_40pct_mfu"] is None


def test_progress_off_a_terminal_prints_plain_lines(capsys, monkeypatch):
    """In a log file (nohup, ``arcpipe run --jobs``) the bar draws only at its end; a plain line per
    interval is what shows a long run is alive."""
    from arcpipe.trainer import _Progress

    monkeypatch.setattr(_Progress, "every_s", 0.0)
    with _Progress(10, 0, enabled=True) as bar:
        bar.update(5, {"lm_loss": 1.0, "accuracy": 0.5, "exact_accuracy": float("nan")})
    out = capsys.readouterr().out
    assert "train step 5/10 loss 1.000 acc 0.500 exact   -  " in out


def test_progress_reaches_the_run_jobs_board(dataset, tmp_path, monkeypatch):
    """Under ``arcpipe run --jobs`` the bar's figures also go to the worker's cell of the shared
    board (``arcpipe.progress``), which the parent shows: here a plain list stands in for it."""
    from arcpipe import progress

    board = [0, 0]
    monkeypatch.setattr(progress, "_board", board)
    monkeypatch.setattr(progress, "_cell", 0)
    _run(dataset, tmp_path, progress=True)
    assert board == [4, 4]  # max_steps 4 of 4


def test_a_busy_machine_gets_one_line_and_the_free_cores(dataset, tmp_path, busy_machine, capsys):
    busy_machine(1.2)
    stage = _run(dataset, tmp_path, deterministic=False)
    assert "train: other processes keep 1.2 of 2 CPUs busy: 1 torch thread(s) instead of 2" in capsys.readouterr().err
    assert stage.manifest["host"]["torch_threads"] == 1  # the manifest says what it ran on
