"""The augment stage: variants of real ARC tasks invert exactly, plans are distinct,
deterministic, cached, and the CLI drives it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from arcpipe import augment as A
from arcpipe import transforms as T
from arcpipe.cli import app
from arcpipe.data import Example, Task, load_tasks
from arcpipe.errors import ArcpipeError

# Real ARC-AGI-1 evaluation tasks of different sizes and colour counts.
EVAL_IDS = ["00576224", "009d5c81", "00dbd492", "03560426"]


@pytest.fixture(scope="module")
def eval_tasks() -> list[Task]:
    return load_tasks("arc1:evaluation", task_ids=EVAL_IDS)


@pytest.fixture(scope="module")
def plan(eval_tasks):
    return A.build_plan(eval_tasks, [], n_aug=24, train_aug=24, seed=3, canvas=30, translate=True, retries=5, n_jobs=1)


def _grid(task: Task, part: str, example: int, which: str) -> np.ndarray | None:
    return getattr(getattr(task, part)[example], which)


def _uncrop(board: np.ndarray, dr: int, dc: int, canvas: int) -> np.ndarray:
    """Move a translated board's grid back to the top-left corner (PAD fills the rest)."""
    b = board.reshape(canvas, canvas)[dr:, dc:]
    out = np.full((canvas, canvas), T.PAD, np.uint8)
    out[: b.shape[0], : b.shape[1]] = b
    return out.ravel()


def test_real_task_variants_invert_to_the_original(eval_tasks, plan):
    """Every materialised board, cropped and mapped back through the inverse transform, is the original grid."""
    table, grids, identifiers, counts = plan
    tasks = {t.id: t for t in eval_tasks}
    x, y, pid = A.materialize(table, grids, 30)
    assert x.shape == y.shape == (len(table), 900) and x.dtype == y.dtype == np.uint8
    assert np.array_equal(pid, table["puzzle_id"].to_numpy())
    rows = table.to_dicts()
    for k, r in enumerate(rows):
        task = tasks[r["task_id"]]
        perm = np.array(r["perm"], np.uint8)
        for board, which in ((x[k], "input"), (y[k], "output")):
            original = _grid(task, r["part"], r["example"], which)
            if original is None:
                assert (board == T.PAD).all()
                continue
            got = T.inverse_augment_grid(T.crop_board(_uncrop(board, r["dr"], r["dc"], 30), 30), r["dihedral"], perm)
            assert np.array_equal(got, original), (r, which)
    # The vectorised inverse used by voting agrees on the untranslated (test) rows.
    test = table.filter(pl.col("split") == "test")
    bx, by, _ = A.materialize(test, grids, 30)
    back, h0, w0 = T.inverse_boards(bx, *T.crop_shapes(bx, 30), test["dihedral"].to_numpy(), test["perm"].to_numpy(), 30)
    for k, r in enumerate(test.iter_rows(named=True)):
        g = _grid(tasks[r["task_id"]], "test", r["example"], "input")
        assert np.array_equal(back[k, : h0[k], : w0[k]], g)


def test_identity_first_distinct_variants_and_names(eval_tasks, plan):
    table, grids, identifiers, counts = plan
    assert identifiers[0] == "<blank>"
    assert counts["variants"] == 24 * len(eval_tasks) and not counts["short_tasks"]
    v0 = table.filter(pl.col("variant") == 0)
    assert (v0["dihedral"] == 0).all()
    assert (v0["perm"].to_numpy() == np.arange(10)).all()
    for task in eval_tasks:
        rows = table.filter(pl.col("task_id") == task.id).unique("variant").sort("variant")
        assert rows["variant"].to_list() == list(range(24))
        # Distinct by content: the augmented task's grids differ between any two variants.
        contents = set()
        for r in rows.iter_rows(named=True):
            perm = np.array(r["perm"], np.uint8)
            blob = b"".join(
                T.augment_grid(g, r["dihedral"], perm).tobytes() + bytes(T.augment_grid(g, r["dihedral"], perm).shape)
                for e in task.train + task.test
                for g in (e.input, e.output)
                if g is not None
            )
            contents.add(blob)
            name = identifiers[r["puzzle_id"]]
            assert name == f"{task.id}_t{r['dihedral']}_{''.join(map(str, perm))}"
        assert len(contents) == 24
    assert len(set(identifiers)) == len(identifiers) == table["puzzle_id"].max() + 1


def test_variant_keys_are_exact():
    """Equal key <=> equal augmented grids, on random small tasks with symmetries and few colours."""
    rng = np.random.default_rng(0)
    for trial in range(40):
        n_col = 1 + trial % 4
        side = 1 + trial % 3
        base = rng.integers(0, n_col + 1, (side, side)).astype(np.uint8)
        grids = [base, np.ascontiguousarray(base.T) if trial % 2 else base[::-1].copy()]
        tids = rng.integers(0, 8, 300)
        perms = T.random_colour_perms(rng, 300)
        keys = A.variant_keys(grids, tids, perms)
        blobs = [b"|".join(T.augment_grid(g, t, p).tobytes() + bytes(T.augment_grid(g, t, p).shape) for g in grids) for t, p in zip(tids, perms)]
        _, by_blob = np.unique(np.array(blobs, dtype=object).astype(bytes), return_inverse=True)
        _, by_key = np.unique(keys, return_inverse=True)
        # Same partition of the 300 draws.
        pairs = set(zip(by_blob.tolist(), by_key.tolist()))
        assert len(pairs) == len(set(by_blob.tolist())) == len(set(by_key.tolist()))


def test_symmetric_single_colour_task_reports_short(tmp_path, capsys):
    one = np.array([[0, 3, 0], [3, 3, 3], [0, 3, 0]], np.uint8)  # all 8 transforms agree: 9 variants exist
    task = Task("plus", (Example(one, one),), (Example(one, None),), "hand-built")
    table, grids, ids, counts = A.build_plan([task], [], n_aug=20, train_aug=20, seed=0, canvas=5, translate=True, retries=5, n_jobs=1)
    assert counts["short_tasks"] == {"plus": 9}
    assert sorted(table.filter(pl.col("split") == "test")["perm"].to_numpy()[:, 3].tolist()) == list(range(1, 10))


def test_train_aug_and_extra_train_semantics(eval_tasks):
    src, extra = eval_tasks[:2], eval_tasks[2:]
    table, grids, ids, counts = A.build_plan(src, extra, n_aug=10, train_aug=3, seed=0, canvas=30, translate=True, retries=5, n_jobs=1)
    train, test = table.filter(pl.col("split") == "train"), table.filter(pl.col("split") == "test")
    assert train["variant"].max() == 2
    assert set(test["task_id"]) == {t.id for t in src}
    for t in src:
        rows = test.filter(pl.col("task_id") == t.id)
        assert len(rows) == 10 * len(t.test) and rows["variant"].n_unique() == 10
        assert len(train.filter(pl.col("task_id") == t.id)) == 3 * len(t.train)
        assert (train.filter(pl.col("task_id") == t.id)["part"] == "train").all()
    for t in extra:  # all solved pairs, train split only, only the trained variants get puzzle ids
        rows = train.filter(pl.col("task_id") == t.id)
        assert len(rows) == 3 * (len(t.train) + len(t.test))
        assert rows["puzzle_id"].n_unique() == 3
    assert counts["puzzle_identifiers"] == 1 + 10 * len(src) + 3 * len(extra)
    assert sorted(table["puzzle_id"].unique().to_list()) == list(range(1, counts["puzzle_identifiers"]))
    # Known test outputs become labels on test rows.
    assert (test["out_off"] >= 0).all()


def test_translation_fits_and_reference_example_stays(plan):
    table = plan[0]
    th_in, tw_in = T.transformed_shape(table["in_h"].to_numpy(), table["in_w"].to_numpy(), table["dihedral"].to_numpy())
    th_out, tw_out = T.transformed_shape(table["out_h"].to_numpy(), table["out_w"].to_numpy(), table["dihedral"].to_numpy())
    dr, dc = table["dr"].to_numpy(), table["dc"].to_numpy()
    assert (dr >= 0).all() and (dc >= 0).all()
    assert (dr + np.maximum(th_in, th_out) <= 30).all() and (dc + np.maximum(tw_in, tw_out) <= 30).all()
    train = table.filter(pl.col("split") == "train")
    assert (train["dr"] > 0).any() and (train["dc"] > 0).any()
    first = train.group_by("puzzle_id").agg(pl.col("dr").first(), pl.col("dc").first(), pl.col("example").first())
    assert (first["example"] == 0).all() and (first["dr"] == 0).all() and (first["dc"] == 0).all()
    test = table.filter(pl.col("split") == "test")
    assert (test["dr"] == 0).all() and (test["dc"] == 0).all()


def test_no_translate(eval_tasks):
    table = A.build_plan(eval_tasks[:1], [], n_aug=5, train_aug=5, seed=0, canvas=30, translate=False, retries=5, n_jobs=1)[0]
    assert (table["dr"] == 0).all() and (table["dc"] == 0).all()


def test_transform_kinds_switch_off(eval_tasks):
    """The recipe's parts ablate one by one: no dihedral = colour permutations only, no colour =
    at most the 8 dihedral variants (not reported short), neither = the identity alone; each
    variant still distinct and still inverting exactly (the plan fixture's checks cover that path)."""
    kw = dict(n_aug=24, train_aug=24, seed=3, canvas=30, translate=True, retries=5, n_jobs=1)
    identity = np.arange(T.NUM_COLOURS)

    table, _, _, counts = A.build_plan(eval_tasks, [], dihedral=False, **kw)
    test = table.filter(pl.col("split") == "test")
    assert (table["dihedral"] == 0).all()
    assert counts["variants"] == 24 * len(eval_tasks) and not counts["short_tasks"]
    for tid, rows in test.filter(pl.col("example") == 0).group_by("task_id"):  # one row per variant
        perms = np.stack(rows["perm"].to_numpy())
        assert len({p.tobytes() for p in perms}) == len(perms) == 24, tid  # distinct by colour alone

    table, _, _, counts = A.build_plan(eval_tasks, [], colour=False, **kw)
    assert (np.stack(table["perm"].to_numpy()) == identity).all()
    for tid, rows in table.filter((pl.col("split") == "test") & (pl.col("example") == 0)).group_by("task_id"):
        assert rows["dihedral"].n_unique() == len(rows) <= T.NUM_DIHEDRAL, tid
    assert not counts["short_tasks"]  # fewer than n_aug, but as many as the kind allows

    table, _, ids, counts = A.build_plan(eval_tasks, [], dihedral=False, colour=False, **kw)
    assert counts["variants"] == len(eval_tasks) and (table["variant"] == 0).all()
    assert (table.filter(pl.col("split") == "train")["dr"] > 0).any()  # translation is its own switch


def test_transform_switches_keep_default_plans_keys(tmp_path):
    """Plans built before the switches existed keep their cache keys: the config names a kind
    only when it is off, and the default plan's bytes do not depend on the new code path."""
    kw = dict(extra_train="none", task_ids=EVAL_IDS[:2], n_aug=6, n_jobs=1, root=tmp_path)
    default = A.augment("arc1:evaluation", **kw)
    assert "dihedral" not in default.config and "colour" not in default.config
    off = A.augment("arc1:evaluation", colour=False, **kw)
    assert off.config["colour"] is False and "dihedral" not in off.config and off.key != default.key
    assert A.augment("arc1:evaluation", dihedral=True, colour=True, **kw).key == default.key


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deterministic_across_jobs_and_cached(tmp_path):
    kw = dict(extra_train="arc1:training", task_ids=EVAL_IDS[:3], max_side=6, n_aug=12, seed=5)
    # max_side=6 keeps the test quick (a few dozen training tasks) while still using two task sets.
    s1 = A.augment("arc1:evaluation", n_jobs=1, root=tmp_path / "a", **kw)
    s2 = A.augment("arc1:evaluation", n_jobs=2, root=tmp_path / "b", **kw)
    assert not s1.cached and s1.key == s2.key
    for f in (A.PLAN_FILE, A.GRIDS_FILE, A.IDENTIFIERS_FILE, A.TASKS_FILE):
        assert _sha(s1.path / f) == _sha(s2.path / f), f
    again = A.augment("arc1:evaluation", n_jobs=1, root=tmp_path / "a", **kw)
    assert again.cached and again.path == s1.path
    forced = A.augment("arc1:evaluation", n_jobs=1, root=tmp_path / "a", force=True, **kw)
    assert not forced.cached and forced.key == s1.key and _sha(forced.path / A.PLAN_FILE) == _sha(s1.path / A.PLAN_FILE)
    other = A.augment("arc1:evaluation", n_jobs=1, root=tmp_path / "a", **{**kw, "seed": 6})
    assert other.key != s1.key and _sha(other.path / A.PLAN_FILE) != _sha(s1.path / A.PLAN_FILE)


def test_plan_load_and_materialize_to_disk(tmp_path, eval_tasks):
    stage = A.augment("arc1:evaluation", extra_train="none", task_ids=EVAL_IDS[:2], n_aug=6, train_aug=4, root=tmp_path, n_jobs=1, materialize=True)
    plan = A.Plan.load(stage)
    assert plan.canvas == 30 and plan.num_puzzle_identifiers == 1 + 12
    assert plan.table.schema == pl.Schema(A.PLAN_SCHEMA)
    assert isinstance(plan.grids, np.memmap)
    assert set(plan.tasks) == set(EVAL_IDS[:2])
    assert np.array_equal(plan.tasks[EVAL_IDS[0]].test[0].input, eval_tasks[0].test[0].input)
    for split in ("train", "test"):
        rows = plan.split(split)
        x, y, p = plan.materialize(rows)
        d = stage.path / split
        assert np.array_equal(np.load(d / "inputs.npy"), x)
        assert np.array_equal(np.load(d / "labels.npy"), y)
        assert np.array_equal(np.load(d / "puzzle_identifiers.npy"), p)
    assert stage.manifest["counts"]["materialized_train_rows"] == len(plan.split("train"))
    assert A.Plan.load(stage.path).identifiers == plan.identifiers
    assert A.Plan.load(root=tmp_path).path == stage.path  # newest in the cache
    with pytest.raises(ArcpipeError):
        plan.split("valid")


def test_materialize_torch_matches_numpy(plan):
    torch = pytest.importorskip("torch")
    table, grids, _, _ = plan
    x, y, p = A.materialize(table, grids, 30)
    tx, ty, tp = A.materialize_torch(table, torch.as_tensor(grids), 30)
    assert np.array_equal(tx.numpy(), x) and np.array_equal(ty.numpy(), y) and np.array_equal(tp.numpy(), p)
    # Also from a dict of numpy columns, on a smaller canvas with untranslated rows.
    rows = {c: table[c].to_numpy() for c in table.columns if c != "task_id"}
    rows["dr"] = np.zeros_like(rows["dr"])
    rows["dc"] = np.zeros_like(rows["dc"])
    assert np.array_equal(A.materialize_torch(rows, grids, 30)[0].numpy(), A.materialize(rows, grids, 30)[0])


@pytest.mark.gpu
def test_materialize_torch_on_cuda_matches_numpy_without_host_sync(plan):
    """The training loader's GPU path: same tokens as numpy, and no host synchronisation
    (packed pinned uploads, device-cached tables), so it can run ahead of the GPU."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    table, grids, _, _ = plan
    x, y, p = A.materialize(table, grids, 30)
    g = torch.as_tensor(grids, device="cuda")
    A.materialize_torch(table.head(4), g, 30)  # tables uploaded once, outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tx, ty, tp = A.materialize_torch(table, g, 30)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert np.array_equal(tx.cpu().numpy(), x) and np.array_equal(ty.cpu().numpy(), y) and np.array_equal(tp.cpu().numpy(), p)


def test_canvas_too_small_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(ArcpipeError, match=r"00576224.*larger than the 5x5 canvas.*--max-side"):
        A.augment("arc1:evaluation", extra_train="none", task_ids=["00576224"], canvas=5, n_aug=2, root=tmp_path)
    assert not list(tmp_path.rglob("manifest.json"))
    with pytest.raises(ArcpipeError, match="train_aug"):
        A.augment("arc1:evaluation", extra_train="none", first=1, n_aug=2, train_aug=3, root=tmp_path)


def test_cli_smoke(tmp_path):
    runner = CliRunner()
    args = ["--cache", str(tmp_path), "augment", "arc1:evaluation", "--task-ids", ",".join(EVAL_IDS[:2]), "--extra-train", "none", "--n-aug", "4", "--jobs", "1", "--no-translate"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "augment:" in first.output and "built" in first.output and "2 tasks" in first.output
    stage_dir = Path(first.output.split("augment: ")[1].split(" (")[0])
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert manifest["config"]["n_aug"] == 4 and manifest["config"]["translate"] is False
    assert "colour" not in manifest["config"]
    no_colour = runner.invoke(app, [*args, "--no-colour"])
    assert no_colour.exit_code == 0 and "built" in no_colour.output, no_colour.output
    off_dir = Path(no_colour.output.split("augment: ")[1].split(" (")[0])
    assert json.loads((off_dir / "manifest.json").read_text())["config"]["colour"] is False
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "(cached)" in second.output
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and "built" in forced.output


def test_cli_error_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "arcpipe.cli", "--cache", str(tmp_path), "augment", "--extra-train", "none", "--first", "1", "--canvas", "2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "canvas" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("manifest.json"))
