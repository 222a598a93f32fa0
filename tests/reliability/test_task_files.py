"""Malformed task files: every one gets a one-line error naming the file and the problem.

The corpus in ``corpus/`` holds real files of the kinds users actually hand
us (hand-edited task JSON, half-downloaded Kaggle files, mismatched solution
files). Each case is checked twice:

(a) ``arcpipe.data.load_tasks`` raises ``ArcpipeError`` whose message is one
    line and contains the file's name and a word for the problem;
(b) the CLI (``python -m arcpipe.cli augment ...`` in a subprocess) exits
    non-zero with a single ``error:`` line, no traceback, and writes no stage
    into the cache.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from arcpipe.data import load_tasks
from arcpipe.errors import ArcpipeError

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Case:
    """One malformed input: a source spec (corpus paths, ``+``-joined) and what its error must say."""

    source: str  # relative to CORPUS, joined with '+'; bundled names pass through
    expect: tuple[str, ...]  # substrings of the error (the first is the file the message must name)
    require_test_outputs: bool = False
    cli: tuple[str, ...] | None = None  # augment arguments with {src}; None = default form; () = no CLI case
    companions: tuple[str, ...] = field(default=())  # other corpus files this case reads

    def spec(self) -> str:
        return "+".join(p if ":" in p else str(CORPUS / p) for p in self.source.split("+"))


CASES: dict[str, Case] = {
    "truncated_json": Case("truncated.json", ("truncated.json", "truncated JSON", "line 46")),
    "not_json": Case("not_json.json", ("not_json.json", "not valid JSON", "line 1 col 1")),
    "trailing_comma": Case("trailing_comma.json", ("trailing_comma.json", "not valid JSON", "col 46")),
    "empty_file": Case("empty_file.json", ("empty_file.json", "empty")),
    "not_an_object": Case("not_object.json", ("not_object.json", "expected a JSON object", "got a list")),
    "empty_object": Case("empty_object.json", ("empty_object.json", "no tasks")),
    "train_not_a_list": Case("train_not_list.json", ("train_not_list.json", "train:", "expected a list")),
    "grid_is_string": Case("grid_is_string.json", ("grid_is_string.json", "test[0].input", "got a string")),
    "example_not_object": Case("example_not_object.json", ("example_not_object.json", "train[0]", "got a list")),
    "missing_input": Case("missing_input.json", ("missing_input.json", "train[0]", "missing 'input'")),
    "train_missing_output": Case(
        "train_missing_output.json", ("train_missing_output.json", "train[0].output", "missing")
    ),
    "ragged": Case("ragged.json", ("ragged.json", "train[1].output", "row 2 has 2 cells, row 0 has 3", "ragged")),
    "colour_10": Case("colour_10.json", ("colour_10.json", "train[0].input", "colour 10 out of range")),
    "colour_negative": Case("colour_negative.json", ("colour_negative.json", "test[0].input", "colour -1 out of range")),
    "colour_float": Case("colour_float.json", ("colour_float.json", "train[1].input", "2.5", "not an integer")),
    "colour_bool": Case("colour_bool.json", ("colour_bool.json", "test[0].output", "boolean")),
    "colour_null": Case("colour_null.json", ("colour_null.json", "train[0].input", "colour null")),
    "zero_width_grid": Case("zero_width.json", ("zero_width.json", "train[0].output", "3x0", "sides must be 1..30")),
    "zero_rows_grid": Case("zero_rows.json", ("zero_rows.json", "test[0].input", "0x0", "sides must be 1..30")),
    "side_31": Case("side_31.json", ("side_31.json", "train[0].input", "31x31", "sides must be 1..30")),
    "missing_train": Case("missing_train.json", ("missing_train.json", "missing 'train'")),
    "missing_test": Case("missing_test.json", ("missing_test.json", "missing 'test'")),
    "empty_train": Case("empty_train.json", ("empty_train.json", "train:", "empty")),
    "empty_test": Case("empty_test.json", ("empty_test.json", "test:", "empty")),
    "test_without_output": Case(
        "no_test_output.json",
        ("no_test_output.json", "test[0].output", "required"),
        require_test_outputs=True,
        cli=(),  # no augment option requires answers: --extra-train skips unsolved test pairs
    ),
    "kaggle_without_solutions_when_required": Case(
        "kaggle_no_solutions_challenges.json",
        ("kaggle_no_solutions_challenges.json", "required", "kaggle_no_solutions_solutions.json not found"),
        require_test_outputs=True,
        cli=(),
    ),
    "kaggle_task_not_object": Case(
        "kaggle_task_not_object_challenges.json",
        ("kaggle_task_not_object_challenges.json", "'aaaa0005'", "got a list"),
    ),
    "duplicate_ids_two_files": Case(
        "dup_a_challenges.json+dup_b_challenges.json",
        ("dup_b_challenges.json", "'0d3d703e'", "duplicate task id", "dup_a_challenges.json"),
    ),
    "duplicate_id_file_and_bundled": Case(
        "007bbfb7.json+arc1:training", ("007bbfb7.json", "'007bbfb7'", "duplicate task id")
    ),
    "solutions_for_unknown_task": Case(
        "unknown_sol_challenges.json",
        ("unknown_sol_solutions.json", "unknown task", "'ffff9999'"),
        companions=("unknown_sol_solutions.json",),
    ),
    "solution_count_mismatch": Case(
        "count_mismatch_challenges.json",
        ("count_mismatch_solutions.json", "'aaaa0002'", "2 solutions for 1 test inputs"),
        companions=("count_mismatch_solutions.json",),
    ),
    "solution_colour_out_of_range": Case(
        "bad_solution_grid_challenges.json",
        ("bad_solution_grid_solutions.json", "'aaaa0003'", "colour 12 out of range"),
        companions=("bad_solution_grid_solutions.json",),
    ),
    "solutions_truncated": Case(
        "truncated_sol_challenges.json",
        ("truncated_sol_solutions.json", "truncated JSON"),
        companions=("truncated_sol_solutions.json",),
    ),
    "solutions_file_as_source": Case("unknown_sol_solutions.json", ("unknown_sol_solutions.json", "solutions file")),
    "bad_file_in_folder": Case(
        "dir_with_bad", ("bbbb0002.json", "'bbbb0002'", "train[0].input", "ragged"),
        companions=("dir_with_bad/bbbb0001.json", "dir_with_bad/bbbb0002.json"),
    ),
}


def test_corpus_is_covered():
    """Every file in the corpus is exercised by some case, and the corpus is as large as promised."""
    used = set()
    for case in CASES.values():
        used.update(p for p in case.source.split("+") if ":" not in p)
        used.update(case.companions)
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file()}
    folders = {p for p in used if (CORPUS / p).is_dir()}
    assert files - used == set(), "corpus files no case reads"
    assert {p for p in used if not (CORPUS / p).exists()} == set(), "cases naming missing corpus files"
    assert len(files) >= 14 and len(CASES) >= 14
    assert folders == {"dir_with_bad"}
    assert CLI_DEFAULT <= set(CLI_CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_tasks_rejects(name: str):
    case = CASES[name]
    with pytest.raises(ArcpipeError) as info:
        load_tasks(case.spec(), require_test_outputs=case.require_test_outputs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ARCPIPE_CACHE", "ARCPIPE_DEBUG")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _augment_is_placeholder() -> bool:
    """True while arcpipe/commands/augment.py is still the skeleton's no-argument stub."""
    from arcpipe.commands import augment

    return not inspect.signature(augment.command).parameters


# One case per error family runs by default; each CLI case is a fresh Python
# process (~0.5 s of CPU), so the full set runs with `-m slow`.
CLI_DEFAULT = {
    "truncated_json",
    "ragged",
    "colour_10",
    "colour_bool",
    "side_31",
    "missing_train",
    "duplicate_ids_two_files",
    "solutions_for_unknown_task",
    "solution_count_mismatch",
    "bad_file_in_folder",
}
CLI_CASES = sorted(n for n, c in CASES.items() if c.cli != ())


@pytest.mark.xfail(_augment_is_placeholder(), reason="augment CLI pending", strict=False)
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in CLI_DEFAULT else pytest.mark.slow) for n in CLI_CASES]
)
def test_cli_rejects_without_writing(name: str, tmp_path: Path):
    case = CASES[name]
    cache = tmp_path / "cache"
    args = case.cli or ("{src}", "--extra-train", "none")
    args = [a.replace("{src}", case.spec()) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "arcpipe.cli", "--cache", str(cache), "augment", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=_cli_env(),
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert case.expect[0] in errors[0]
    assert not list(cache.rglob("manifest.json")), "a failed run left a stage in the cache"
    stage_dirs = [p for p in (cache / "augment").glob("*") if not p.name.startswith(".")] if cache.exists() else []
    assert stage_dirs == []
