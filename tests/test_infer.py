"""The infer stage end to end on CPU: real small ARC tasks, a tiny random HRM.

The checkpoint is built directly with ``hrm`` and wrapped in a train-stage
directory (model.pt + config.json, manifest inputs naming the augment stage),
so these tests do not depend on training. Its puzzle embeddings and Q head
are randomised (fresh ones are constant, which would make the puzzle-id
ablation and the q columns vacuous) and the PAD logit is zeroed so most
predicted boards start with a colour and crop to a non-empty grid.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_launcher
from typer.testing import CliRunner

import hrm
from arcpipe import cache
from arcpipe import infer as infer_mod
from arcpipe.augment import Plan, augment, materialize
from arcpipe.errors import ArcpipeError
from arcpipe.infer import (
    PREDICTION_SCHEMA,
    feed_puzzle_ids,
    infer,
    inference_rows,
    load_predictions,
    parse_steps,
    prediction_grid,
)
from arcpipe.transforms import PAD, crop_board

TASKS = ["6ea4a07e", "66e6c45b", "4cd1b7b2"]  # arc1:evaluation tasks with sides <= 4
CANVAS = 6
N_AUG = 4
HALT = 3
N_TEST_INPUTS = 4  # 6ea4a07e has 2 test inputs, the others 1
SHARD = 3  # rows per shard: 16 test rows -> 6 shards, the last one short
KEY = ["task_id", "example", "variant"]


def _augment(root: Path, **kw):
    args = dict(extra_train="none", n_aug=N_AUG, canvas=CANVAS, task_ids=TASKS, seed=0, n_jobs=1, root=root)
    return augment("arc1:evaluation", **{**args, **kw})


def _model_config(plan) -> hrm.HRMConfig:
    return hrm.HRMConfig.preset(
        "tiny",
        hidden_size=32,
        num_heads=2,
        puzzle_emb_ndim=32,
        halt_max_steps=HALT,
        seq_len=plan.canvas**2,
        num_puzzle_identifiers=plan.num_puzzle_identifiers,
        forward_dtype="float32",
    )


def _fake_train(root: Path, aug, plan, seed: int = 0) -> cache.Stage:
    """A train stage holding an untrained tiny HRM, as arcpipe.train would lay it out."""
    cfg = _model_config(plan)
    torch.manual_seed(seed)
    model = hrm.HRM(cfg)
    state = model.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if "puzzle_emb" in name and t.is_floating_point():
                t.copy_(torch.randn_like(t) * 0.5)
            if "lm_head" in name and name.endswith("weight"):
                t[PAD].zero_()
            if "q_head" in name:  # a fresh Q head is constant (zero weight, bias -5)
                t.copy_(torch.randn_like(t))

    def build(work: Path) -> dict:
        hrm.save_checkpoint(state, work / "model.pt")
        cache.atomic_write_json(work / "config.json", {"model": cfg.to_dict(), "train": {"untrained": True}})
        return {}

    return cache.run_stage("train", {"untrained_seed": seed}, {"augment": aug.key}, build, root=root)


def _direct_model(train: cache.Stage) -> hrm.HRM:
    cfg = hrm.HRMConfig.from_dict(json.loads((train.path / "config.json").read_text())["model"])
    model = hrm.HRM(cfg)
    model.load_state_dict(hrm.load_checkpoint(train.path / "model.pt", cfg))
    return model.eval()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    aug = _augment(root)
    plan = Plan.load(aug)
    train = _fake_train(root, aug, plan)
    stage = infer(root=root, batch_size=5, shard_rows=SHARD, progress=False)  # all defaults resolved from the cache
    table, preds = load_predictions(stage)
    return SimpleNamespace(root=root, aug=aug, plan=plan, train=train, stage=stage, table=table, preds=preds)


def test_end_to_end_table_matches_schema_and_plan(env):
    s, t, preds, plan = env.stage, env.table, env.preds, env.plan
    assert s.inputs == {"train": env.train.key, "augment": env.aug.key}
    assert dict(t.schema) == PREDICTION_SCHEMA
    rows = inference_rows(plan)
    assert rows.height == N_TEST_INPUTS * N_AUG
    # One row per (test row x recorded step), steps 1..halt_max_steps, plan order kept.
    assert t.height == rows.height * HALT
    assert t["step"].to_list() == list(range(1, HALT + 1)) * rows.height
    assert t.filter(pl.col("step") == 1).select(KEY).equals(rows.select(KEY))
    assert s.manifest["counts"]["variants"] == rows.height
    assert s.manifest["counts"]["predictions"] == t.height
    # Predictions are contiguous slices of preds.npy; colours only.
    area = (t["pred_h"].cast(pl.Int64) * t["pred_w"].cast(pl.Int64)).to_numpy()
    assert area.sum() == len(preds)
    assert np.array_equal(t["pred_off"].to_numpy(), np.concatenate([[0], np.cumsum(area)[:-1]]))
    assert preds.dtype == np.uint8 and (preds <= 9).all()
    assert (t["pred_h"] <= CANVAS).all() and (t["pred_w"] <= CANVAS).all()
    nonempty = area > 0
    assert nonempty.mean() > 0.5  # the fixture makes colours likely; crops must show up
    lp_sum, lp_mean = t["logprob_sum"].to_numpy(), t["logprob_mean"].to_numpy()
    assert (lp_sum <= 0).all() and np.isfinite(lp_sum[nonempty]).all()
    assert np.isneginf(lp_sum[~nonempty]).all() and np.isneginf(lp_mean[~nonempty]).all()
    np.testing.assert_allclose(lp_mean[nonempty], lp_sum[nonempty] / area[nonempty], rtol=1e-5)
    assert t["q_halt"].is_finite().all() and t["q_continue"].is_finite().all()


def test_predictions_equal_running_the_model_directly(env):
    """The stored grid, logprob and q-values for a row are what the model gives on that row."""
    plan, t, preds = env.plan, env.table, env.preds
    rows = inference_rows(plan)
    picks = np.array([0, rows.height // 2, rows.height - 1])
    inputs, _, pids = materialize(rows[picks], plan.grids, plan.canvas)
    model = _direct_model(env.train)
    x = torch.from_numpy(inputs).long()
    with torch.inference_mode():
        out = model.rollout(
            {"inputs": x, "labels": torch.full_like(x, -100), "puzzle_identifiers": torch.from_numpy(pids).long()}
        )
    assert out["preds"].shape == (HALT, len(picks), CANVAS * CANVAS)
    for b, r in enumerate(picks):
        for s in range(HALT):
            i = int(r) * HALT + s
            want = crop_board(out["preds"][s, b].numpy(), CANVAS)
            assert np.array_equal(prediction_grid(t, preds, i), want)
            h, w = want.shape
            lp = out["token_logprob"][s, b].numpy().reshape(CANVAS, CANVAS)[:h, :w].sum()
            if h * w:
                assert t["logprob_sum"][i] == pytest.approx(float(lp), abs=1e-4)
            assert t["q_halt"][i] == pytest.approx(float(out["q_halt"][s, b]), abs=1e-4)
            assert t["q_continue"][i] == pytest.approx(float(out["q_continue"][s, b]), abs=1e-4)


def test_steps_past_training_continue_the_recurrence(env):
    """Steps past the checkpoint's halt_max_steps are the same rollout run on: the trained steps'
    predictions are unchanged, and the later ones are what the model gives when unrolled that far."""
    more = infer(env.train, env.aug, steps=f"1-{HALT + 2}", batch_size=16, progress=False, root=env.root)
    t, preds = load_predictions(more)
    assert more.config["steps"] == list(range(1, HALT + 3)) and sorted(t["step"].unique()) == list(range(1, HALT + 3))
    cols = [c for c in PREDICTION_SCHEMA if c not in ("pred_off", "logprob_sum", "logprob_mean", "q_halt", "q_continue")]
    early = t.with_row_index("i").filter(pl.col("step") <= HALT)
    assert early.select(cols).equals(env.table.select(cols))
    for i, j in zip(early["i"].to_list()[:40], range(40)):
        assert np.array_equal(prediction_grid(t, preds, i), prediction_grid(env.table, env.preds, j))
    # the first row's last step: rows come one test row after another, its steps in order
    assert t["step"][HALT + 1] == HALT + 2 and t["variant"][HALT + 1] == t["variant"][0]
    rows = inference_rows(env.plan)
    inputs, _, pids = materialize(rows[[0]], env.plan.grids, env.plan.canvas)
    x = torch.from_numpy(inputs).long()
    out = _direct_model(env.train).rollout(
        {"inputs": x, "labels": torch.full_like(x, -100), "puzzle_identifiers": torch.from_numpy(pids).long()}, steps=HALT + 2)
    assert np.array_equal(prediction_grid(t, preds, HALT + 1), crop_board(out["preds"][-1, 0].numpy(), CANVAS))


def test_step_subset_is_the_full_run_filtered(env):
    sub = infer(env.train, env.aug, steps="1,3", batch_size=16, progress=False, root=env.root)
    t, preds = load_predictions(sub)
    assert sub.config["steps"] == [1, 3] and sub.key != env.stage.key
    full = env.table.filter(pl.col("step").is_in([1, 3]))
    cols = [c for c in PREDICTION_SCHEMA if c not in ("pred_off", "logprob_sum", "logprob_mean", "q_halt", "q_continue")]
    assert t.select(cols).equals(full.select(cols))
    idx = env.table.with_row_index("i").filter(pl.col("step").is_in([1, 3]))["i"].to_numpy()
    for i in range(t.height):
        assert np.array_equal(prediction_grid(t, preds, i), prediction_grid(env.table, env.preds, int(idx[i])))
    np.testing.assert_allclose(t["q_halt"].to_numpy(), full["q_halt"].to_numpy(), atol=1e-4)


def test_cached_second_call(env):
    again = infer(env.train, env.aug, batch_size=3, progress=False, root=env.root)
    assert again.cached and again.key == env.stage.key


def test_resume_after_crash_matches_uninterrupted_run(env, monkeypatch):
    """Kill the run after 2 shards; the rerun computes only the rest and writes identical files."""
    base = env.stage.path
    want_table = (base / "predictions.parquet").read_bytes()
    want_preds = (base / "preds.npy").read_bytes()
    n_shards = -(-inference_rows(env.plan).height // SHARD)
    assert n_shards >= 4

    real_write = infer_mod._write_shard
    written: list[int] = []

    def crash_after_two(work, i, table, colours):
        if len(written) == 2:
            raise RuntimeError("injected crash")
        real_write(work, i, table, colours)
        written.append(i)

    monkeypatch.setattr(infer_mod, "_write_shard", crash_after_two)
    with pytest.raises(RuntimeError, match="injected crash"):
        infer(root=env.root, batch_size=5, shard_rows=SHARD, progress=False, force=True)
    work = cache.work_dir("infer", env.stage.key, env.root)
    assert sorted(p.name for p in work.glob("shard-*.parquet")) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert (base / "manifest.json").is_file()  # the old result stays until the new one is whole

    ran: list[int] = []
    real_run = infer_mod._run_shard
    monkeypatch.setattr(infer_mod, "_write_shard", real_write)
    monkeypatch.setattr(infer_mod, "_run_shard", lambda *a, **k: ran.append(1) or real_run(*a, **k))
    again = infer(root=env.root, batch_size=4, shard_rows=SHARD, progress=False, force=True)
    assert len(ran) == n_shards - 2
    assert again.manifest["counts"]["variants_inferred"] == inference_rows(env.plan).height - 2 * SHARD
    assert not work.exists() and not list(again.path.glob("shard-*"))
    assert (again.path / "predictions.parquet").read_bytes() == want_table
    assert (again.path / "preds.npy").read_bytes() == want_preds


def test_out_of_memory_names_the_knob_and_keeps_finished_shards(env, monkeypatch):
    calls: list[int] = []
    real_run = infer_mod._run_shard

    def oom_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_run(*a, **k)

    monkeypatch.setattr(infer_mod, "_run_shard", oom_on_second)
    with pytest.raises(ArcpipeError, match=r"^infer: out of memory at batch 5 on cpu; lower --batch-size"):
        infer(root=env.root, batch_size=5, shard_rows=SHARD, progress=False, force=True)
    work = cache.work_dir("infer", env.stage.key, env.root)
    assert [p.name for p in work.glob("shard-*.parquet")] == ["shard-00000.parquet"]
    monkeypatch.setattr(infer_mod, "_run_shard", real_run)
    again = infer(root=env.root, batch_size=5, shard_rows=SHARD, progress=False, force=True)  # resumes the work dir
    assert again.manifest["counts"]["variants_inferred"] == inference_rows(env.plan).height - SHARD
    assert (again.path / "preds.npy").read_bytes() == (env.stage.path / "preds.npy").read_bytes()


def test_resume_drops_shards_of_another_layout(env, monkeypatch):
    """Shards from a run with another shard size would not line up: they are discarded."""
    stage = infer(env.train, env.aug, steps=2, shard_rows=5, progress=False, root=env.root)
    table, preds = load_predictions(stage)
    work = cache.work_dir("infer", stage.key, env.root)
    work.mkdir(parents=True)
    cache.atomic_write_json(work / "shards.json", {"shard_rows": 3, "rows": 99})
    shutil.copy(stage.path / "predictions.parquet", work / "shard-00000.parquet")
    shutil.copy(stage.path / "preds.npy", work / "shard-00000.npy")
    redo = infer(env.train, env.aug, steps=2, shard_rows=5, progress=False, root=env.root, force=True)
    assert redo.manifest["counts"]["variants_inferred"] == inference_rows(env.plan).height
    t2, p2 = load_predictions(redo)
    assert t2.equals(table) and np.array_equal(p2, preds)


def test_puzzle_id_modes_change_only_identifiers(env, monkeypatch):
    fed: list[np.ndarray] = []
    real_launch = infer_mod._launch
    monkeypatch.setattr(infer_mod, "_launch", lambda m, x, p, *a: fed.append(p.copy()) or real_launch(m, x, p, *a))
    true_rows = inference_rows(env.plan)
    ids = np.array(env.plan.identifiers)
    fixed = [c for c in PREDICTION_SCHEMA if c in ("task_id", "example", "variant", "dihedral", "perm", "step")]
    out = {}
    for mode in ("blank", "random"):
        fed.clear()
        s = infer(env.train, env.aug, puzzle_id=mode, seed=3, progress=False, root=env.root)
        t, preds = load_predictions(s)
        out[mode] = t
        assert s.config["puzzle_id"] == mode
        assert t.select(fixed).equals(env.table.select(fixed))
        fed_ids = np.concatenate(fed)
        assert np.array_equal(t.filter(pl.col("step") == 1)["puzzle_id"].to_numpy(), fed_ids)
        if mode == "blank":
            assert (fed_ids == 0).all()
        else:
            owners = np.array([n.rsplit("_t", 1)[0] for n in ids[fed_ids]])
            assert (owners != true_rows["task_id"].to_numpy()).all() and (fed_ids > 0).all()
        # Different identifiers reach the model: its signals move.
        assert not np.array_equal(t["q_halt"].to_numpy(), env.table["q_halt"].to_numpy())
        assert not np.array_equal(t["logprob_sum"].to_numpy(), env.table["logprob_sum"].to_numpy())
    assert out["random"]["puzzle_id"].n_unique() > 1
    assert infer(env.train, env.aug, puzzle_id=True, progress=False, root=env.root).key == env.stage.key


def test_feed_puzzle_ids_random_is_seeded_and_never_own_task(env):
    rows = inference_rows(env.plan)
    a = feed_puzzle_ids(rows, env.plan.table, "random", 0)
    b = feed_puzzle_ids(rows, env.plan.table, "random", 0)
    c = feed_puzzle_ids(rows, env.plan.table, "random", 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    table = env.plan.table
    owner = dict(zip(table["puzzle_id"].to_list(), table["task_id"].to_list()))
    trained = set(table.filter(pl.col("split") == "train")["puzzle_id"].to_list())
    for pid, task in zip(np.concatenate([a, c]), rows["task_id"].to_list() * 2):
        assert owner[int(pid)] != task and int(pid) in trained
    one_task = rows.filter(pl.col("task_id") == TASKS[0])
    with pytest.raises(ArcpipeError, match="at least two tasks"):
        feed_puzzle_ids(one_task, table.filter(pl.col("task_id") == TASKS[0]), "random", 0)


def test_parse_steps():
    assert parse_steps(None, 4) == [1, 2, 3, 4] == parse_steps("all", 4)
    assert parse_steps("3,1,3", 4) == [1, 3] and parse_steps(2, 4) == [2]
    assert parse_steps("1-3,8", 4) == [1, 2, 3, 8] and parse_steps("2-6", 4) == [2, 3, 4, 5, 6]  # past training's 4
    for bad in ("0", "1-2000", "1,x", "", "3-", "-2"):
        with pytest.raises(ArcpipeError, match="--steps"):
            parse_steps(bad, 4)


def test_clear_errors(env, tmp_path):
    with pytest.raises(ArcpipeError, match="no 'train' output in cache .*arcpipe train"):
        infer(root=tmp_path, progress=False)
    with pytest.raises(ArcpipeError, match="CHECKPOINT nope: no such train stage"):
        infer("nope", root=env.root, progress=False)
    with pytest.raises(ArcpipeError, match="is a 'augment' stage, expected a 'train' stage"):
        infer(env.aug.path, root=env.root, progress=False)
    other_canvas = _augment(env.root, canvas=CANVAS + 1)
    with pytest.raises(ArcpipeError, match=r"canvas 7 \(49 tokens\) does not match checkpoint .*seq_len 36"):
        infer(env.train, other_canvas, root=env.root, progress=False)
    more_ids = _augment(env.root, n_aug=N_AUG + 1)
    with pytest.raises(ArcpipeError, match="puzzle identifiers, but checkpoint .* has"):
        infer(env.train, more_ids, root=env.root, progress=False)
    reseeded = _augment(env.root, seed=1)  # same count, other colour maps: other identifiers
    assert len(Plan.load(reseeded).identifiers) == len(env.plan.identifiers)
    with pytest.raises(ArcpipeError, match=r"puzzle identifiers \(hash .*\) differ"):
        infer(env.train, reseeded, root=env.root, progress=False)
    with pytest.raises(ArcpipeError, match="--puzzle-id 'wrong'"):
        infer(env.train, root=env.root, puzzle_id="wrong", progress=False)
    with pytest.raises(ArcpipeError, match="--steps"):
        infer(env.train, root=env.root, steps="0", progress=False)
    assert not list((env.root / "infer").glob(".work-*"))  # nothing half-written by the failures


def test_cli(env):
    from arcpipe.cli import app

    r = CliRunner().invoke(
        app, ["--cache", str(env.root), "infer", "--steps", "1,2", "--max-variants", "2", "--batch-size", "8"]
    )
    assert r.exit_code == 0, r.output
    path = Path(r.output.split("infer: ", 1)[1].split(" (", 1)[0])
    stage = cache.load_stage(path, "infer")
    assert stage.config == {"steps": [1, 2], "puzzle_id": "true", "max_variants": 2}
    rows = inference_rows(env.plan, max_variants=2)
    assert f"{rows.height} variants x 2 steps" in r.output and "variants/s" in r.output
    t, _ = load_predictions(stage)
    assert set(t["variant"].unique().to_list()) == {0, 1}
    again = CliRunner().invoke(
        app, ["--cache", str(env.root), "infer", "--steps", "1,2", "--max-variants", "2"]
    )
    assert again.exit_code == 0 and "(cached)" in again.output
    bad = CliRunner().invoke(app, ["--cache", str(env.root), "infer", "--puzzle-id", "nope"])
    assert isinstance(bad.exception, ArcpipeError)


@pytest.mark.slow
def test_torchrun_two_ranks_merge_to_the_single_process_result(env, tmp_path):
    """Under torchrun (gloo on CPU) ranks split the shards and rank 0 merges them: same files.
    infer leaves the group up, and a second call in the same process reuses it."""
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "import torch.distributed as dist\n"
        "from arcpipe.infer import infer\n"
        "kw = dict(batch_size=5, shard_rows=3, progress=False, root=sys.argv[3])\n"
        "s = infer(sys.argv[1], sys.argv[2], force=True, **kw)\n"
        "assert dist.is_initialized()\n"
        "infer(sys.argv[1], sys.argv[2], **kw)\n"
        "dist.barrier()\n"
        "print('STAGE', s.path)\n"
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node=2", str(script), str(env.train.path), str(env.aug.path), str(env.root)]
    r = run_launcher(cmd, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    stage = cache.load_stage(env.stage.path, "infer")
    assert stage.manifest["counts"]["world_size"] == 2
    t, preds = load_predictions(stage)
    assert t.equals(env.table) and np.array_equal(preds, env.preds)


def test_extra_training_tasks_are_not_scored(tmp_path):
    """--extra-train tasks add training rows only: votes, scores and the submission cover the
    evaluated (source) tasks, not the extra tasks whose test pairs nobody inferred."""
    from arcpipe import vote as vote_mod

    aug = _augment(tmp_path, extra_train="arc1:training", max_side=4)
    assert aug.manifest["counts"]["extra_train_tasks"] > 0
    plan = Plan.load(aug)
    _fake_train(tmp_path, aug, plan)
    stage = infer(root=tmp_path, batch_size=16, progress=False)
    prepared = vote_mod.prepare(stage)
    assert sorted(prepared.tests["task_id"].unique().to_list()) == sorted(TASKS)
    voted = vote_mod.vote(stage, root=tmp_path)
    submission = json.loads((voted.path / "submission.json").read_text())
    assert sorted(submission) == sorted(TASKS)
    assert json.loads((voted.path / "scores.json").read_text())["n_tasks"] == len(TASKS)


def test_compile_flag_reaches_the_model_and_keys_its_own_entry(env, monkeypatch):
    """--compile wraps the ACT step in torch.compile (stubbed here: the plumbing, not inductor)
    and gets its own cache entry; eager keys are unchanged by the option's existence."""
    compiled: list[bool] = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(True) or module)
    stage = infer(root=env.root, batch_size=5, shard_rows=SHARD, progress=False, compile=True)
    assert compiled == [True]
    assert stage.key != env.stage.key and stage.manifest["config"]["compile"] is True
    assert (stage.path / "preds.npy").read_bytes() == (env.stage.path / "preds.npy").read_bytes()
    assert "compile" not in env.stage.manifest["config"]


@pytest.mark.slow
def test_really_compiled_inference_predicts_the_same(env, tmp_path):
    """Inductor on the CPU (fp32): the same argmax everywhere as the eager run."""
    stage = infer(root=env.root, batch_size=8, progress=False, compile=True, force=True)
    table, preds = load_predictions(stage)
    floats = ["q_halt", "q_continue", "logprob_sum", "logprob_mean"]
    assert np.array_equal(preds, env.preds) and table.drop(floats).equals(env.table.drop(floats))
    for c in floats:  # fused kernels round differently: close, not bitwise
        np.testing.assert_allclose(table[c].to_numpy(), env.table[c].to_numpy(), rtol=1e-4, atol=1e-4)


def test_progress_reaches_the_run_jobs_board(env, tmp_path, monkeypatch):
    """Under ``arcpipe run --jobs`` the bar's figures also go to the worker's cell of the shared
    board (``arcpipe.progress``): every variant, out of every variant."""
    from arcpipe import progress

    board = [0, 0]
    monkeypatch.setattr(progress, "_board", board)
    monkeypatch.setattr(progress, "_cell", 0)
    stage = infer(env.train, env.aug, batch_size=5, shard_rows=SHARD, progress=True, root=tmp_path)
    assert not stage.cached and board == [stage.manifest["counts"]["variants"]] * 2


def test_a_busy_machine_gets_one_line_and_the_free_cores(env, tmp_path, busy_machine, capsys):
    """With no OMP_NUM_THREADS and other processes holding the cores, inference says so and runs
    on the free ones (``arcpipe.threads``); the predictions are the stage's usual ones."""
    busy_machine(1.8)
    stage = infer(env.train, env.aug, batch_size=5, shard_rows=SHARD, progress=False, root=tmp_path)
    assert torch.get_num_threads() == 1
    assert "infer: other processes keep 1.8 of 2 CPUs busy: 1 torch thread(s) instead of 2" in capsys.readouterr().err
    assert stage.key == env.stage.key and load_predictions(stage)[0].equals(env.table)
