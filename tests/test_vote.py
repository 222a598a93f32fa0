"""Vote: inverse mapping + answer ids, every rule's ranking on hand-built tables, n_aug
subsets, scores, the stage files and the bad-input errors.

``write_stages`` builds a synthetic augment stage (tasks.json + plan.parquet) and an
infer stage (predictions.parquet + preds.npy) through ``run_stage``, so these tests
need neither a model nor the infer helper's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcpipe import cache, transforms
from arcpipe.errors import ArcpipeError
from arcpipe.vote import RULES, answer_grids, answer_ids, prepare, rank, scores, vote

IDENT = np.arange(10, dtype=np.uint8)


def write_stages(root: Path, truth: dict[str, list], rows: list[dict], *, plan_rows: list[dict] | None = None, tag: str = "",
                 train_aug: int | None = None, train_key: str | None = None) -> cache.Stage:
    """Augment-like stage (tasks.json with ``truth`` as test outputs, plan.parquet) + infer stage.

    ``rows``: dicts with task_id, example, variant, dihedral, perm, grid (variant frame,
    may be 0x0), and optional step, q_halt, logprob_sum. The plan gets each row's
    (task, variant) transform unless ``plan_rows`` overrides it. ``train_aug`` is recorded
    in the augment config as ``arcpipe augment`` does; ``train_key`` names the infer's train stage.
    """
    tasks = {t: {"train": [], "test": [{"input": [[0]], "output": None if g is None else np.asarray(g).tolist()} for g in outs]} for t, outs in truth.items()}
    plan_src = plan_rows if plan_rows is not None else rows
    plan = pl.DataFrame({
        "task_id": [r["task_id"] for r in plan_src], "variant": [r["variant"] for r in plan_src], "split": ["test"] * len(plan_src),
        "dihedral": [r["dihedral"] for r in plan_src], "perm": [list(map(int, r["perm"])) for r in plan_src],
    }, schema_overrides={"variant": pl.Int32, "dihedral": pl.Int8, "perm": pl.Array(pl.UInt8, 10)}).unique(["task_id", "variant"], maintain_order=True)

    def build_aug(work: Path) -> dict:
        cache.atomic_write_json(work / "tasks.json", tasks)
        plan.write_parquet(work / "plan.parquet")
        return {}

    aug_cfg = {"synthetic": tag, "tasks": tasks} | ({} if train_aug is None else {"train_aug": train_aug})
    aug = cache.run_stage("augment", aug_cfg, {}, build_aug, root=root)
    grids = [np.asarray(r["grid"], dtype=np.uint8).reshape(np.shape(r["grid"]) if np.size(r["grid"]) else (0, 0)) for r in rows]
    sizes = np.array([g.size for g in grids], dtype=np.int64)
    table = pl.DataFrame({
        "task_id": [r["task_id"] for r in rows], "example": [r["example"] for r in rows], "variant": [r["variant"] for r in rows],
        "puzzle_id": [1] * len(rows), "dihedral": [r["dihedral"] for r in rows], "perm": [list(map(int, r["perm"])) for r in rows],
        "step": [r.get("step", 1) for r in rows], "pred_off": np.cumsum(sizes) - sizes,
        "pred_h": [g.shape[0] for g in grids], "pred_w": [g.shape[1] for g in grids],
        "q_halt": [float(r.get("q_halt", 0.0)) for r in rows], "q_continue": [0.0] * len(rows),
        "logprob_sum": [float(r.get("logprob_sum", 0.0)) for r in rows], "logprob_mean": [0.0] * len(rows),
    }, schema_overrides={"example": pl.Int16, "variant": pl.Int32, "puzzle_id": pl.Int32, "dihedral": pl.Int8, "perm": pl.Array(pl.UInt8, 10),
                         "step": pl.Int16, "pred_h": pl.Int16, "pred_w": pl.Int16, "q_halt": pl.Float32, "q_continue": pl.Float32,
                         "logprob_sum": pl.Float32, "logprob_mean": pl.Float32})
    flat = np.concatenate([g.ravel() for g in grids]) if grids else np.zeros(0, np.uint8)

    def build_inf(work: Path) -> dict:
        table.write_parquet(work / "predictions.parquet")
        np.save(work / "preds.npy", flat)
        return {"rows": len(table)}

    return cache.run_stage("infer", {"synthetic": tag, "n": len(rows), "h": int(sizes.sum())}, {"train": train_key or "t" + tag, "augment": aug.key}, build_inf, root=root)


def random_task_truth(rng: np.random.Generator, n_tasks: int, max_tests: int = 2) -> dict[str, list[np.ndarray]]:
    """Asymmetric multi-colour answers, so every dihedral/colour change is visible."""
    out = {}
    for t in range(n_tasks):
        outs = []
        for _ in range(int(rng.integers(1, max_tests + 1))):
            h, w = int(rng.integers(2, 7)), int(rng.integers(2, 7))
            g = rng.integers(0, 10, size=(h, w)).astype(np.uint8)
            g[0, 0], g[0, 1], g[1, 0] = 1, 2, 3  # breaks every symmetry
            outs.append(g)
        out[f"task{t:03d}"] = outs
    return out


def forward_rows(rng: np.random.Generator, truth: dict, n_variants: int, *, lie=None, corrupt: float = 0.0) -> list[dict]:
    """Predictions = each variant's forward transform of the true answer.

    ``lie(t, perm) -> (t', perm')`` records a different transform than the one applied
    (a wrong inverse); ``corrupt`` flips one cell in that fraction of predictions.
    """
    rows = []
    for task, outs in truth.items():
        tids = np.concatenate([[0], rng.integers(0, 8, n_variants - 1)])
        perms = np.concatenate([IDENT[None], transforms.random_colour_perms(rng, n_variants - 1)])
        for v in range(n_variants):
            for e, y in enumerate(outs):
                g = transforms.augment_grid(y, int(tids[v]), perms[v])
                if corrupt and v > 0 and rng.random() < corrupt:
                    g = g.copy()
                    g[-1, -1] = (g[-1, -1] + 1) % 10
                t, p = (int(tids[v]), perms[v]) if lie is None else lie(int(tids[v]), perms[v])
                rows.append({"task_id": task, "example": e, "variant": v, "dihedral": t, "perm": p, "grid": g, "q_halt": rng.normal()})
    return rows


# --------------------------------------------------------------------------- answer ids


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 7), st.integers(0, 2**32 - 1))
def test_answer_id_inverts_every_variant(h, w, tid, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=(h, w)).astype(np.uint8)
    perm = transforms.random_colour_perms(rng, 1)[0]
    g = transforms.augment_grid(y, tid, perm)
    flat = np.concatenate([y.ravel(), g.ravel()])
    ids, h0, w0 = answer_ids(flat, [0, y.size], [h, g.shape[0]], [w, g.shape[1]], [0, tid], np.stack([IDENT, perm]))
    assert ids[0] == ids[1] and (h0[1], w0[1]) == (h, w)
    # A different answer (one cell changed, or the variant-frame grid read as original) gets another id.
    z = y.copy()
    z[rng.integers(h), rng.integers(w)] += 1
    z %= 10
    ids2, _, _ = answer_ids(np.concatenate([z.ravel(), g.ravel()]), [0, z.size], [h, g.shape[0]], [w, g.shape[1]], [0, 0], np.stack([IDENT, IDENT]))
    assert ids2[0] != ids[0]
    if not np.array_equal(g, y):
        assert ids2[1] != ids[0]


def test_answer_ids_chunked_and_scattered_offsets_agree(monkeypatch):
    """Chunking and non-contiguous pred_off give the same ids as one contiguous pass."""
    import arcpipe.vote as v

    rng = np.random.default_rng(1)
    grids = [rng.integers(0, 10, size=(int(rng.integers(1, 31)), int(rng.integers(1, 31)))).astype(np.uint8) for _ in range(300)]
    tid = rng.integers(0, 8, len(grids))
    perm = transforms.random_colour_perms(rng, len(grids))
    sizes = np.array([g.size for g in grids])
    flat = np.concatenate([g.ravel() for g in grids])
    args = (np.array([g.shape[0] for g in grids]), np.array([g.shape[1] for g in grids]), tid, perm)
    ref = answer_ids(flat, np.cumsum(sizes) - sizes, *args)[0]
    monkeypatch.setattr(v, "_CHUNK_CELLS", 1000)
    assert np.array_equal(answer_ids(flat, np.cumsum(sizes) - sizes, *args)[0], ref)
    order = rng.permutation(len(grids))  # store grids in another order
    flat2 = np.concatenate([grids[i].ravel() for i in order])
    off2 = np.empty(len(grids), np.int64)
    off2[order] = np.cumsum(sizes[order]) - sizes[order]
    assert np.array_equal(answer_ids(flat2, off2, *args)[0], ref)
    truth = [transforms.inverse_augment_grid(g, int(t), p) for g, t, p in zip(grids, tid, perm)]
    ts = np.array([g.size for g in truth])
    tids = answer_ids(np.concatenate([g.ravel() for g in truth]), np.cumsum(ts) - ts, [g.shape[0] for g in truth], [g.shape[1] for g in truth],
                      np.zeros(len(truth), np.int64), np.tile(IDENT, (len(truth), 1)))[0]
    assert np.array_equal(tids, ref)


# --------------------------------------------------------------------------- rules on hand-built tables


def hand_table(tmp_path):
    """One test input, 8 predictions (identity variant frame) with known answers:

    A: variants 1,2,3   q_halt 0,0,0        logprob -5,-5,-5   (most votes, low confidence)
    B: variants 4,5     q_halt 3,3          logprob -1,-1
    C: variant 6        q_halt 5            logprob -0.5       (single most confident)
    D: variants 0,7     q_halt 3, 3         logprob -1, -1     (ties B on count, q, logprob; has variant 0)
    """
    A, B, C, D = ([[c, 1], [2, 3]] for c in (4, 5, 6, 7))
    spec = [(0, D, 3.0, -1.0), (1, A, 0.0, -5.0), (2, A, 0.0, -5.0), (3, A, 0.0, -5.0), (4, B, 3.0, -1.0), (5, B, 3.0, -1.0), (6, C, 5.0, -0.5), (7, D, 3.0, -1.0)]
    rows = [{"task_id": "t", "example": 0, "variant": v, "dihedral": 0, "perm": IDENT, "grid": np.array(g), "q_halt": q, "logprob_sum": lp} for v, g, q, lp in spec]
    stage = write_stages(tmp_path, {"t": [np.array(B)]}, rows)
    return prepare(stage), {"A": A, "B": B, "C": C, "D": D}


@pytest.mark.parametrize("rule,expected", [
    ("count", "ADBC"),  # A=3 votes; D,B tie at 2 and on q_mean -> smaller first variant (D has 0); C last
    ("hrm", "ADBC"),
    ("q-mean", "CDBA"),  # C 0.993; D,B tie at sigmoid(3) -> more votes (tie) -> mean q (tie) -> variant 0
    ("q-max", "CDBA"),
    ("logprob", "CDBA"),  # mean of summed log-prob: C -0.5; D,B -1 tie -> variant; A -5
])
def test_every_rule_ranks_hand_table(tmp_path, rule, expected):
    prepared, grids = hand_table(tmp_path)
    ids = {k: answer_ids(np.array(g, np.uint8).ravel(), [0], [2], [2], [0], IDENT[None])[0][0] for k, g in grids.items()}
    ranked = rank(prepared, rule=rule, top=4)
    got = "".join(next(k for k, i in ids.items() if i == a) for a in ranked["answer"].to_list())
    assert got == expected
    assert ranked["rank"].to_list() == [1, 2, 3, 4]
    assert ranked["correct"].to_list() == [k == "B" for k in expected]
    assert set(ranked["oracle"].to_list()) == {True}
    top2 = rank(prepared, rule=rule, top=2)
    sc = scores(top2, prepared, ks=(1, 2))
    assert sc["pass@1"] == float(expected[0] == "B") and sc["pass@2"] == float("B" in expected[:2]) and sc["oracle"] == 1.0


def test_tie_break_is_independent_of_row_order(tmp_path):
    prepared, _ = hand_table(tmp_path / "a")
    stage = prepared.stage
    df = pl.read_parquet(stage.path / "predictions.parquet")
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=3)
    out = tmp_path / "b" / "infer" / stage.key
    import shutil

    shutil.copytree(stage.path, out)
    shuffled.write_parquet(out / "predictions.parquet")
    shutil.copytree(stage.path.parent.parent / "augment", tmp_path / "b" / "augment")
    other = prepare(out)
    for rule in RULES:
        a, b = rank(prepared, rule=rule, top=4), rank(other, rule=rule, top=4)
        assert a.drop("pred_row").equals(b.drop("pred_row"))


def test_empty_predictions_are_not_answers(tmp_path):
    rows = [{"task_id": "t", "example": 0, "variant": v, "dihedral": 0, "perm": IDENT, "grid": np.zeros((0, 0))} for v in range(3)]
    rows.append({"task_id": "t", "example": 0, "variant": 3, "dihedral": 0, "perm": IDENT, "grid": np.array([[1]])})
    p = prepare(write_stages(tmp_path, {"t": [np.array([[1]])]}, rows))
    ranked = rank(p, rule="count", top=2)
    assert ranked["count"].to_list() == [1] and ranked["correct"].to_list() == [True]


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("rule", list(RULES))
def test_forward_transformed_truth_votes_back_for_every_n_aug(tmp_path, rule):
    rng = np.random.default_rng(7)
    truth = random_task_truth(rng, 4)
    n_var = 12
    p = prepare(write_stages(tmp_path, truth, forward_rows(rng, truth, n_var)))
    assert int(p.variants_per_task.max()) == n_var
    for n_aug in range(1, n_var + 1):
        for seed in (0, 1):
            ranked = rank(p, n_aug=n_aug, rule=rule, seed=seed, top=2)
            sc = scores(ranked, p)
            assert sc["pass@1"] == 1.0 and sc["by_test_input"]["pass@1"] == 1.0, (n_aug, seed)
            assert (ranked.filter(pl.col("rank") == 1)["count"] == n_aug).all()


def test_count_vote_survives_corruption(tmp_path):
    rng = np.random.default_rng(8)
    truth = random_task_truth(rng, 3)
    p = prepare(write_stages(tmp_path, truth, forward_rows(rng, truth, 40, corrupt=0.3)))
    assert scores(rank(p, rule="count"), p)["pass@1"] == 1.0


def test_wrong_inverse_does_not_vote_back(tmp_path):
    """Recording the inverse transform instead of the forward one (t <-> inverse t, perm <-> its
    inverse) maps predictions to wrong answers: variant 0 stays right, rot90/rot270 and
    any non-involutive colour change do not, so the vote is no longer always right."""
    rng = np.random.default_rng(9)
    truth = random_task_truth(rng, 4)
    lie = lambda t, p: (int(transforms.DIHEDRAL_INVERSE[t]), transforms.invert_perms(p))  # noqa: E731
    rows = forward_rows(rng, truth, 30, lie=lie)
    p = prepare(write_stages(tmp_path, truth, rows))
    r = rank(p, rule="count", top=1000)
    nonzero = r.filter(pl.col("first_variant") > 0)
    assert not nonzero["correct"].any()  # every non-identity variant now gives a wrong answer
    # n_aug=1 still has only the identity (right); any larger subset has wrong answers tied at one vote,
    # and with the hrm rule q decides, so the vote is no longer reliably right:
    sc = [scores(rank(p, n_aug=n, rule="q-mean"), p)["pass@1"] for n in (5, 30)]
    assert min(sc) < 1.0
    # whereas honest transforms always vote back:
    honest = prepare(write_stages(tmp_path / "h", truth, forward_rows(np.random.default_rng(9), truth, 30)))
    assert scores(rank(honest, n_aug=30, rule="q-mean"), honest)["pass@1"] == 1.0


# --------------------------------------------------------------------------- n_aug, steps, scores


def test_n_aug_subsets_are_seeded_nested_and_include_identity(tmp_path):
    rng = np.random.default_rng(10)
    truth = random_task_truth(rng, 2)
    p = prepare(write_stages(tmp_path, truth, forward_rows(rng, truth, 20, corrupt=1.0)))
    rank_ = p.variant_rank(5)
    assert (rank_[p.tv_variant == 0] == 0).all()
    for task in np.unique(p.tv_task):
        assert sorted(rank_[p.tv_task == task]) == list(range(20))
    assert not np.array_equal(p.variant_rank(5), p.variant_rank(6))
    a, b = rank(p, n_aug=4, seed=5, top=100), rank(p, n_aug=4, seed=5, top=100)
    assert a.equals(b)
    assert (a.group_by("tex").agg(pl.col("count").sum())["count"] == 4).all()


def pool_rows(n_tasks: int, n_var: int, n_trained: int) -> tuple[dict, list[dict]]:
    """Trained variants (v < n_trained) answer right, the others agree on one wrong answer."""
    truth = {f"t{i}": [np.array([[1, 2], [3, i % 10]], dtype=np.uint8)] for i in range(n_tasks)}
    rows = [{"task_id": t, "example": 0, "variant": v, "dihedral": 0, "perm": IDENT,
             "grid": y[0] if v < n_trained else np.array([[9]]), "q_halt": 0.0}
            for t, y in truth.items() for v in range(n_var)]
    return truth, rows


def test_variant_pools_split_trained_from_untrained(tmp_path):
    truth, rows = pool_rows(3, 10, 4)
    p = prepare(write_stages(tmp_path, truth, rows, train_aug=4))
    assert p.train_aug == 4
    assert p.pool_sizes("trained").tolist() == [4, 4, 4] and p.pool_sizes("untrained").tolist() == [6, 6, 6]
    # six untrained votes outvote four trained ones; each pool alone scores its own answer
    assert scores(rank(p, rule="count"), p)["pass@1"] == 0.0
    assert scores(rank(p, rule="count", variants="trained"), p)["pass@1"] == 1.0
    sc = scores(rank(p, rule="count", variants="untrained"), p)
    assert sc["pass@2"] == 0.0 and sc["oracle"] == 0.0
    # a pool's n_aug counts that pool's variants: nested, the identity first in the trained pool, never in the untrained
    for pool, lo in (("trained", 0), ("untrained", 4)):
        prev: set = set()
        for n in range(1, int(p.pool_sizes(pool).max()) + 1):
            r = rank(p, rule="count", variants=pool, n_aug=n, seed=3, top=10)
            assert (r.group_by("tex").agg(pl.col("count").sum())["count"] == n).all()
            ranks = p.pool_rank(3, pool)
            got = {(int(t), int(v)) for t, v, k in zip(p.tv_task, p.tv_variant, ranks) if k < n}
            assert prev < got and all(v >= lo and (v < 4) == (pool == "trained") for _, v in got)
            if pool == "trained":
                assert all((t, 0) in got for t in range(3))
            prev = got
    with pytest.raises(ArcpipeError, match=r"n_aug=5 is outside the cached trained variants: 1\.\.4"):
        rank(p, variants="trained", n_aug=5)
    with pytest.raises(ArcpipeError, match="unknown variant pool 'some'"):
        rank(p, variants="some")


def test_variant_pools_need_train_aug_and_a_nonempty_pool(tmp_path):
    truth, rows = pool_rows(2, 3, 3)
    bare = prepare(write_stages(tmp_path, truth, rows, tag="bare"))
    assert bare.train_aug is None and scores(rank(bare), bare)["pass@1"] == 1.0
    with pytest.raises(ArcpipeError, match="records no train_aug"):
        rank(bare, variants="trained")
    full = prepare(write_stages(tmp_path, truth, rows, tag="full", train_aug=3))
    with pytest.raises(ArcpipeError, match="variants='untrained': no cached variant is in that pool"):
        rank(full, variants="untrained")


def test_trained_variants_follow_the_checkpoints_augment_stage(tmp_path):
    """Inferred on a dataset with the same identifiers but another train_aug: the checkpoint's own
    augment stage says which identifiers it trained."""
    truth, rows = pool_rows(2, 6, 2)
    trained_on = cache.run_stage("augment", {"other": 1, "train_aug": 2}, {}, lambda w: {}, root=tmp_path)
    train = cache.run_stage("train", {"t": 1}, {"augment": trained_on.key}, lambda w: {}, root=tmp_path)
    p = prepare(write_stages(tmp_path, truth, rows, train_aug=6, train_key=train.key))
    assert p.train_aug == 2
    assert scores(rank(p, rule="count", variants="trained"), p)["pass@1"] == 1.0


def test_vote_stage_variants_key(tmp_path):
    truth, rows = pool_rows(2, 5, 2)
    infer = write_stages(tmp_path, truth, rows, train_aug=2)
    plain = vote(infer, root=tmp_path, rule="count")
    assert "variants" not in plain.config  # every vote cached before the option keeps its key
    assert vote(infer, root=tmp_path, rule="count", variants="all").key == plain.key
    tr = vote(infer, root=tmp_path, rule="count", variants="trained")
    assert tr.key != plain.key and tr.config["variants"] == "trained"
    sc = json.loads((tr.path / "scores.json").read_text())
    assert sc["pass@1"] == 1.0 and sc["query"]["variants"] == "trained"
    assert json.loads((plain.path / "scores.json").read_text())["pass@1"] == 0.0
    with pytest.raises(ArcpipeError, match="unknown variant pool"):
        vote(infer, root=tmp_path, variants="bogus")


def test_steps_select_rows(tmp_path):
    rows = []
    for step, grid in ((1, [[1]]), (2, [[2]])):
        for v in range(3):
            rows.append({"task_id": "t", "example": 0, "variant": v, "dihedral": 0, "perm": IDENT, "grid": np.array(grid), "step": step})
    p = prepare(write_stages(tmp_path, {"t": [np.array([[1]])]}, rows))
    assert p.steps == (1, 2)
    assert scores(rank(p), p)["pass@1"] == 0.0  # default: last step
    assert scores(rank(p, step=1), p)["pass@1"] == 1.0
    with pytest.raises(ArcpipeError, match="recorded ACT steps: 1, 2"):
        rank(p, step=7)


def test_scores_arc_convention_and_unknown_outputs(tmp_path):
    """Task a: 2 test inputs, one solved -> 0.5; task b: solved -> 1; task c: output unknown (not scored)."""
    ya, yb = np.array([[1, 2]]), np.array([[3]])
    truth = {"a": [ya, np.array([[5]])], "b": [yb], "c": [None]}
    mk = lambda t, e, g, v=0: {"task_id": t, "example": e, "variant": v, "dihedral": 0, "perm": IDENT, "grid": np.array(g)}  # noqa: E731
    rows = [mk("a", 0, ya), mk("a", 1, [[6]]), mk("a", 1, [[7]], 1), mk("a", 1, [[7]], 2), mk("b", 0, yb), mk("c", 0, [[1]])]
    rows += [mk("b", 0, [[4]], 1), mk("b", 0, [[4]], 2), mk("a", 0, ya, 1), mk("a", 0, ya, 2), mk("c", 0, [[1]], 1), mk("c", 0, [[1]], 2)]
    p = prepare(write_stages(tmp_path, truth, rows))
    sc = scores(rank(p, rule="count"), p, ks=(1, 2))
    assert sc["pass@1"] == pytest.approx((0.5 + 0.0) / 2)  # b's right answer has 1 vote vs 2
    assert sc["pass@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert sc["by_test_input"]["pass@2"] == pytest.approx(2 / 3) and sc["by_test_input"]["pass@2_solved"] == 2
    assert sc["n_tasks"] == 2 and sc["n_unknown"] == 1 and sc["n_test_inputs"] == 3
    assert sc["oracle"] == pytest.approx(0.75)
    assert sc["per_task"].filter(pl.col("task_id") == "a")["pass@2"].item() == 0.5
    with pytest.raises(ArcpipeError, match="k >= 1"):
        scores(rank(p), p, ks=(0,))
    with pytest.raises(ArcpipeError, match="rank with top >= 2"):
        scores(rank(p, top=1), p, ks=(2,))
    assert scores(rank(p, top=2), p, ks=(3,))["pass@3"] == sc["pass@2"]  # nothing was cut: all answers kept


# --------------------------------------------------------------------------- stage + bad input


def test_vote_stage_files_and_bare_call(tmp_path):
    rng = np.random.default_rng(11)
    truth = random_task_truth(rng, 3)
    truth["unk"] = [None]
    rows = forward_rows(rng, {k: v for k, v in truth.items() if k != "unk"}, 6)
    rows += [{"task_id": "unk", "example": 0, "variant": v, "dihedral": 0, "perm": IDENT, "grid": np.array([[v % 2]])} for v in range(3)]
    infer = write_stages(tmp_path, truth, rows)
    st = vote(root=tmp_path, n_aug=6, top=2)
    assert st.inputs == {"infer": infer.key} and not st.cached
    sc = json.loads((st.path / "scores.json").read_text())
    assert sc["pass@1"] == 1.0 and sc["n_unknown"] == 1 and len(sc["per_task"]) == 3
    sub = json.loads((st.path / "submission.json").read_text())
    assert set(sub) == set(truth) and [len(sub[t]) for t in sorted(truth)] == [len(truth[t]) for t in sorted(truth)]
    for t, outs in truth.items():
        if t != "unk":
            assert [e["attempt_1"] for e in sub[t]] == [y.tolist() for y in outs]
    assert sub["unk"][0]["attempt_1"] in ([[0]], [[1]]) and sub["unk"][0]["attempt_1"] != sub["unk"][0]["attempt_2"]
    ans = pl.read_parquet(st.path / "answers.parquet")
    assert {"task_id", "example", "rank", "grid", "h", "w", "correct"} <= set(ans.columns)
    assert vote(infer.path, root=tmp_path, n_aug=6, top=2).cached


def test_bad_inputs(tmp_path):
    rng = np.random.default_rng(12)
    truth = random_task_truth(rng, 2)
    rows = forward_rows(rng, truth, 5)
    p = prepare(write_stages(tmp_path, truth, rows))
    with pytest.raises(ArcpipeError, match=r"n_aug=6 .*1\.\.5 available"):
        rank(p, n_aug=6)
    with pytest.raises(ArcpipeError, match="known rules: count, hrm, q-mean, q-max, logprob"):
        rank(p, rule="borda")
    with pytest.raises(ArcpipeError, match="top must be >= 1"):
        rank(p, top=0)
    with pytest.raises(ArcpipeError, match="known rules"):
        vote(root=tmp_path, rule="nope")
    # Predictions made under other transforms than the augment plan's (another dataset/seed):
    other = [dict(r, dihedral=(r["dihedral"] + 1) % 8) if r["variant"] == 2 else r for r in rows]
    bad = write_stages(tmp_path / "x", truth, rows, plan_rows=other, tag="x")
    with pytest.raises(ArcpipeError, match="hash mismatch.*variant 2"):
        prepare(bad)
    # Predictions for a task the dataset does not have:
    stray = write_stages(tmp_path / "y", {k: truth[k] for k in list(truth)[:1]}, rows, plan_rows=rows, tag="y")
    with pytest.raises(ArcpipeError, match="hash mismatch"):
        prepare(stray)
    # An infer stage whose augment stage is not in this cache:
    import shutil

    shutil.rmtree(tmp_path / "y" / "augment")
    with pytest.raises(ArcpipeError, match="augment stage .* is not in cache"):
        prepare(stray)
    dup = write_stages(tmp_path / "d", truth, rows + rows[:1], tag="d")
    with pytest.raises(ArcpipeError, match="duplicate predictions"):
        prepare(dup)
    with pytest.raises(ArcpipeError, match="no 'infer' output"):
        vote(root=tmp_path / "empty")


# --------------------------------------------------------------------------- end to end on real stages


def test_end_to_end_tiny_checkpoint_infer_vote(tmp_path):
    """augment (3 real ARC tasks) -> untrained tiny HRM -> infer -> bare vote. The answers of
    every test input equal a per-prediction reference (``inverse_augment_grid`` + dict), and
    predictions pointed at another augment stage are refused."""
    import collections
    import shutil

    import torch

    import hrm
    from arcpipe.augment import Plan, augment
    from arcpipe.infer import infer

    tasks = ["6ea4a07e", "66e6c45b", "4cd1b7b2"]  # small arc1:evaluation tasks
    args = dict(extra_train="none", n_aug=6, canvas=6, task_ids=tasks, n_jobs=1, root=tmp_path)
    aug = augment("arc1:evaluation", seed=0, **args)
    plan = Plan.load(aug)
    cfg = hrm.HRMConfig.preset("tiny", hidden_size=32, num_heads=2, puzzle_emb_ndim=32, halt_max_steps=2, seq_len=36,
                               num_puzzle_identifiers=plan.num_puzzle_identifiers, forward_dtype="float32")
    torch.manual_seed(0)
    state = hrm.HRM(cfg).state_dict()
    with torch.no_grad():  # random q head and no PAD logit, so q varies and crops are mostly non-empty
        for name, t in state.items():
            if "q_head" in name or "puzzle_emb" in name:
                t.copy_(torch.randn_like(t))
            if "lm_head" in name and name.endswith("weight"):
                t[transforms.PAD].zero_()

    def build(work: Path) -> dict:
        hrm.save_checkpoint(state, work / "model.pt")
        cache.atomic_write_json(work / "config.json", {"model": cfg.to_dict(), "train": {"untrained": True}})
        return {}

    cache.run_stage("train", {"vote_e2e": 0}, {"augment": aug.key}, build, root=tmp_path)
    inf = infer(root=tmp_path, progress=False)
    st = vote(root=tmp_path, n_aug=6, top=3, rule="count")
    sub = json.loads((st.path / "submission.json").read_text())
    assert sorted(sub) == sorted(tasks) and len(sub["6ea4a07e"]) == 2

    p = prepare(inf)
    df = pl.read_parquet(inf.path / "predictions.parquet")
    preds = np.load(inf.path / "preds.npy")
    last = df.filter(pl.col("step") == df["step"].max())
    ref: dict = collections.defaultdict(collections.Counter)
    for r in last.iter_rows(named=True):
        if r["pred_h"] and r["pred_w"]:
            g = transforms.inverse_augment_grid(preds[r["pred_off"] : r["pred_off"] + r["pred_h"] * r["pred_w"]].reshape(r["pred_h"], r["pred_w"]),
                                                r["dihedral"], np.array(r["perm"], np.uint8))
            ref[(r["task_id"], r["example"])][(g.shape, g.tobytes())] += 1
    ranked = rank(p, rule="count", top=1000)
    got = collections.defaultdict(collections.Counter)
    for (t, e, c), g in zip(ranked.select("task_id", "example", "count").iter_rows(), answer_grids(p, ranked)):
        got[(t, e)][(g.shape, g.tobytes())] += c
    assert got == ref
    answers = pl.read_parquet(st.path / "answers.parquet")
    assert answers["count"].to_list() == ranked.filter(pl.col("rank") <= 3)["count"].to_list()

    # Predictions whose cache holds another dataset's augment stage under the expected key
    # (another seed -> other transforms): its manifest key gives it away.
    other = augment("arc1:evaluation", seed=1, **args)
    moved = tmp_path / "elsewhere" / "infer" / inf.key
    shutil.copytree(inf.path, moved)
    shutil.copytree(other.path, tmp_path / "elsewhere" / "augment" / aug.key)
    with pytest.raises(ArcpipeError, match="hash mismatch"):
        prepare(moved)


def test_several_steps_vote_together(tmp_path):
    """``step=[1, 2]``: every variant's answer at each step is a vote, so an answer's count is the
    sum of its counts at each step alone; one step in a list is that step."""
    answers = {1: [[[1]], [[1]], [[2]]], 2: [[[2]], [[3]], [[3]]]}  # step -> the grid of variants 0, 1, 2
    rows = [{"task_id": "t", "example": 0, "variant": v, "dihedral": 0, "perm": IDENT, "grid": np.array(g), "step": step}
            for step, grids in answers.items() for v, g in enumerate(grids)]
    p = prepare(write_stages(tmp_path, {"t": [np.array([[2]])]}, rows))
    alone = [rank(p, rule="count", step=s, top=5) for s in (1, 2)]
    both = rank(p, rule="count", step=[1, 2], top=5)
    assert sorted(both["count"].to_list()) == [2, 2, 2] and both["n_votes"][0] == 6
    counts = pl.concat(x.select("answer", "count") for x in alone).group_by("answer").agg(pl.col("count").sum())
    got = both.select("answer", "count").join(counts, on="answer", suffix="_sum")
    assert got.height == 3 and (got["count"] == got["count_sum"]).all()
    assert both["first_variant"].to_list() == [0, 0, 1]  # a three-way tie: the smallest voting variant first
    assert scores(both, p)["pass@2"] == 1.0 and scores(rank(p, step=1), p)["pass@2"] == 1.0
    assert rank(p, rule="hrm", step=[2]).equals(rank(p, rule="hrm", step=2))
    with pytest.raises(ArcpipeError, match="not recorded"):
        rank(p, step=[1, 7])
    # the stage: "1-2" is its own entry; one step, however written, keeps the int key of old
    from arcpipe.vote import vote

    stage = write_stages(tmp_path / "s", {"t": [np.array([[2]])]}, rows)
    together, last = vote(stage, step="1-2", root=tmp_path / "s"), vote(stage, step=2, root=tmp_path / "s")
    assert together.config["step"] == [1, 2] and together.key != last.key
    assert vote(stage, step="2", root=tmp_path / "s").key == last.key and last.config["step"] == 2
    assert json.loads((together.path / "scores.json").read_text())["query"]["step"] == [1, 2]
    with pytest.raises(ArcpipeError, match="--step '1-x'"):
        vote(stage, step="1-x", root=tmp_path / "s")
