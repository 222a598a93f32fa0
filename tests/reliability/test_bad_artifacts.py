"""Malformed artifacts fed to the stages that read them: one-line error, non-zero exit, nothing cached.

Users hand arcpipe prediction tables copied between machines, checkpoints
from other runs or half-finished downloads, hand-edited pipeline files and
Kaggle solution files. Each case here corrupts one artifact of a real (tiny)
run and feeds it to the verb that reads it, through ``arcpipe.cli.main`` —
the same entry point as the installed ``arcpipe`` script — and checks:

* the exit status is non-zero and stderr is exactly one ``error: ...`` line
  naming the file and the problem (no traceback unless ``--debug``);
* the cache afterwards holds exactly the finished stages it held before and
  no partial stage data (a leftover work dir may hold bookkeeping only).

The checkpoint cases include a pickle whose unpickling would run code: it
must be refused by ``torch.load(weights_only=True)``, and the marker file its
payload would create must not exist afterwards. A grep test keeps every
``torch.load`` / ``np.load`` in ``arcpipe/`` and ``hrm/`` on the safe path.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus_artifacts"
TASKS_SMALL = REPO / "tests" / "data" / "tasks_small"
#: Files a failed run may leave in a resumable stage's work dir without it counting as stage data.
BOOKKEEPING = {"shards.json"}


# --------------------------------------------------------------------------- helpers


def run_cli(argv: list[str], cache: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Run ``arcpipe ARGV`` in-process through ``arcpipe.cli.main``; return (exit code, stderr)."""
    from arcpipe import cli

    monkeypatch.setenv("ARCPIPE_CACHE", str(cache))
    monkeypatch.delenv("ARCPIPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["arcpipe", *argv])
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def cache_state(cache: Path) -> tuple[set[str], list[str]]:
    """(finished stage dirs ``stage/key``, data files inside work dirs) under a cache root."""
    finished, partial = set(), []
    if cache.is_dir():
        for stage in cache.iterdir():
            if not stage.is_dir():
                continue
            for d in stage.iterdir():
                if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").is_file():
                    finished.add(f"{stage.name}/{d.name}")
                elif d.is_dir():
                    partial += [str(p) for p in d.rglob("*") if p.is_file() and p.name not in BOOKKEEPING]
    return finished, partial


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"


def check_refused(argv: list[str], cache: Path, needles: tuple[str, ...], capsys, monkeypatch) -> str:
    before = cache_state(cache)
    code, err = run_cli(argv, cache, capsys, monkeypatch)
    assert_one_line_error(code, err, *needles)
    after = cache_state(cache)
    assert after[0] == before[0], f"finished stages changed: {after[0] ^ before[0]}"
    assert not after[1], f"partial stage data left in the cache: {after[1]}"
    return err


# --------------------------------------------------------------------------- a real tiny run


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """augment -> train -> infer on the three small tasks (seconds on CPU); returns stage paths."""
    import torch

    from arcpipe.augment import augment
    from arcpipe.infer import infer
    from arcpipe.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("base-cache")
    aug = augment(str(TASKS_SMALL), extra_train="none", n_aug=4, canvas=8, n_jobs=1, root=root)
    tr = train(aug, preset="tiny", overrides={"hidden_size": 32, "puzzle_emb_ndim": 32}, max_steps=2,
               global_batch_size=8, device="cpu", deterministic=True, progress=False, root=root)
    inf = infer(tr, aug, device="cpu", progress=False, root=root)
    other = train(aug, preset="tiny", overrides={"hidden_size": 64, "puzzle_emb_ndim": 64}, max_steps=1,
                  global_batch_size=8, device="cpu", progress=False, root=root)
    return {"root": root, "augment": aug.path, "train": tr.path, "infer": inf.path, "other_train": other.path}


def fresh_cache(tmp_path: Path, base: dict[str, Path], *stages: str) -> Path:
    """A cache root holding copies of only the named base stages (so a result cannot be a cache hit)."""
    cache = tmp_path / "cache"
    for s in stages:
        src = base[s]
        shutil.copytree(src, cache / src.parent.name / src.name)
    cache.mkdir(exist_ok=True)
    return cache


# --------------------------------------------------------------------------- prediction tables -> vote


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rewrite(fn: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    def go(path: Path) -> None:
        fn(pl.read_parquet(path)).write_parquet(path)

    return go


PREDICTION_CASES: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "truncated_parquet": ("predictions.parquet", _truncate, ("predictions.parquet", "not a readable parquet")),
    "not_parquet": ("predictions.parquet", lambda p: p.write_text("task_id,variant\na,1\n"), ("predictions.parquet", "not a readable parquet")),
    "missing_columns": ("predictions.parquet", _rewrite(lambda df: df.drop("q_halt", "pred_off")), ("predictions.parquet", "missing columns", "pred_off")),
    "wrong_dtype_string_offsets": ("predictions.parquet", _rewrite(lambda df: df.with_columns(pl.col("pred_off").cast(pl.String))), ("predictions.parquet", "pred_off")),
    "wrong_dtype_float_dihedral": ("predictions.parquet", _rewrite(lambda df: df.with_columns(pl.col("dihedral").cast(pl.Float64) + 0.5)), ("predictions.parquet", "dihedral")),
    "wrong_dtype_perm_string": ("predictions.parquet", _rewrite(lambda df: df.with_columns(pl.col("perm").cast(pl.List(pl.String)).list.join(""))), ("predictions.parquet", "perm")),
    "offsets_out_of_range": ("predictions.parquet", _rewrite(lambda df: df.with_columns(pl.col("pred_off") + 10**6)), ("predictions.parquet", "outside preds.npy")),
    "truncated_npy": ("preds.npy", _truncate, ("preds.npy",)),
    "npy_pickled_objects": ("preds.npy", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), ("preds.npy",)),
}


@pytest.mark.parametrize("case", sorted(PREDICTION_CASES))
def test_vote_refuses_bad_prediction_table(case: str, base, tmp_path: Path, capsys, monkeypatch) -> None:
    name, corrupt, needles = PREDICTION_CASES[case]
    # The damaged table sits in a cached infer stage (vote finds the true outputs through its cache root).
    cache = fresh_cache(tmp_path, base, "augment", "infer")
    bad = cache / "infer" / base["infer"].name
    corrupt(bad / name)
    check_refused(["vote", str(bad)], cache, needles, capsys, monkeypatch)


# --------------------------------------------------------------------------- checkpoints -> infer


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: what a malicious checkpoint would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _torch_save(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _ckpt_other_preset(base, tmp: Path) -> bytes:
    return (base["other_train"] / "model.pt").read_bytes()


def _ckpt_truncated(base, tmp: Path) -> bytes:
    data = (base["train"] / "model.pt").read_bytes()
    return data[: len(data) // 3]


def _ckpt_not_state_dict(base, tmp: Path) -> bytes:
    return _torch_save([1, 2, 3])


def _ckpt_plain_pickle(base, tmp: Path) -> bytes:
    return pickle.dumps({"weights": [0.0] * 4})


def _ckpt_arbitrary_object(base, tmp: Path) -> bytes:
    return pickle.dumps({"model": _Payload(str(tmp / "PWNED"))})


def _ckpt_arbitrary_object_torch(base, tmp: Path) -> bytes:
    import torch

    return _torch_save({"w": torch.zeros(2), "x": _Payload(str(tmp / "PWNED"))})


def _ckpt_empty(base, tmp: Path) -> bytes:
    return b""


CHECKPOINT_CASES: dict[str, tuple[Callable[[dict, Path], bytes], tuple[str, ...]]] = {
    "other_preset_shape_mismatch": (_ckpt_other_preset, ("model.pt", "shape")),
    "truncated": (_ckpt_truncated, ("model.pt", "not a loadable")),
    "empty_file": (_ckpt_empty, ("model.pt", "not a loadable")),
    "list_not_state_dict": (_ckpt_not_state_dict, ("model.pt", "not a dict of tensors")),
    "plain_pickle_not_torch": (_ckpt_plain_pickle, ("model.pt", "not a loadable")),
    "pickle_with_code": (_ckpt_arbitrary_object, ("model.pt", "not a loadable")),
    "torch_save_with_code": (_ckpt_arbitrary_object_torch, ("model.pt", "not a loadable")),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the hostile pickles are the point of the test
def test_infer_refuses_bad_checkpoint(case: str, base, tmp_path: Path, capsys, monkeypatch) -> None:
    make, needles = CHECKPOINT_CASES[case]
    ckpt = tmp_path / "bad-train"
    shutil.copytree(base["train"], ckpt)
    (ckpt / "model.pt").write_bytes(make(base, tmp_path))
    cache = fresh_cache(tmp_path, base, "augment")
    check_refused(["infer", str(ckpt / "model.pt"), str(base["augment"]), "--device", "cpu"], cache, needles, capsys, monkeypatch)
    assert not (tmp_path / "PWNED").exists(), "a pickled payload ran while loading a checkpoint"


# --------------------------------------------------------------------------- pipeline TOMLs -> run


TOML_CASES = {
    "syntax_error.toml": ("syntax_error.toml", "invalid TOML", "line 4"),
    "unknown_key.toml": ("unknown_key.toml", "unknown key 'n_augs'", "[augment]"),
    "unknown_section.toml": ("unknown_section.toml", "unknown section [infrence]"),
    "wrong_type.toml": ("wrong_type.toml", "train.max_steps", "str"),
    "wrong_type_list.toml": ("wrong_type_list.toml", "vote.top"),
    "sweep_not_list.toml": ("sweep_not_list.toml", "sweep"),
    "not_utf8.toml": ("not_utf8.toml",),
}


@pytest.mark.parametrize("name", sorted(TOML_CASES))
def test_run_refuses_bad_pipeline(name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    cache = tmp_path / "cache"
    check_refused(["run", str(CORPUS / name)], cache, TOML_CASES[name], capsys, monkeypatch)
    assert not cache.exists() or not any(cache.iterdir()), "a rejected pipeline touched the cache"


# --------------------------------------------------------------------------- Kaggle solutions -> score


SCORE_CASES = {
    # solutions for tasks the submission never mentions
    "unknown_tasks": ("submission_small.json", "unknown_tasks_solutions.json", ("submission_small.json", "missing task", "zzzz0000")),
    "solutions_not_grids": ("submission_small.json", "bad_grid_solutions.json", ("bad_grid_solutions.json", "grid")),
    "solutions_truncated": ("submission_small.json", "truncated_solutions.json", ("truncated_solutions.json", "not valid JSON")),
    "submission_unknown_task_only": ("submission_unknown.json", "small_solutions.json", ("submission_unknown.json", "missing task")),
}


@pytest.mark.parametrize("case", sorted(SCORE_CASES))
def test_score_refuses_mismatched_solutions(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    sub, sol, needles = SCORE_CASES[case]
    check_refused(["score", str(CORPUS / sub), "--solutions", str(CORPUS / sol)], tmp_path / "cache", needles, capsys, monkeypatch)


# --------------------------------------------------------------------------- the real process, and --debug


def test_real_process_one_line_and_debug_traceback(base, tmp_path: Path) -> None:
    """Through the installed entry point: one line without --debug, a traceback with it."""
    ckpt = tmp_path / "bad-train"
    shutil.copytree(base["train"], ckpt)
    (ckpt / "model.pt").write_bytes(_ckpt_truncated(base, tmp_path))
    env = {**os.environ, "ARCPIPE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("ARCPIPE_DEBUG", None)
    cmd = [sys.executable, "-c", "from arcpipe.cli import main; main()"]
    args = ["infer", str(ckpt), str(base["augment"]), "--device", "cpu"]
    plain = subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(plain.returncode, plain.stderr, "model.pt", "not a loadable")
    debug = subprocess.run(cmd + ["--debug"] + args, env=env, capture_output=True, text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


# --------------------------------------------------------------------------- no unsafe deserialisation


UNSAFE = [
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)[^)]*\)", re.S), "torch.load without weights_only=True"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"^\s*(import pickle|from pickle import|import dill|import cloudpickle)", re.M), "pickle import"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
]


def test_no_unsafe_deserialisation_in_sources() -> None:
    """Every loader of checkpoints/caches is weights-only / pickle-free; a new unsafe call fails here."""
    files = sorted([*(REPO / "arcpipe").rglob("*.py"), *(REPO / "hrm").rglob("*.py")])
    assert len(files) > 10
    hits = []
    for f in files:
        text = f.read_text()
        for pattern, what in UNSAFE:
            for m in pattern.finditer(text):
                hits.append(f"{f.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {what}")
    assert not hits, "\n".join(hits)


def test_unsafe_grep_catches_what_it_should() -> None:
    """The patterns above are not vacuous: they flag the unsafe forms and pass the safe ones."""
    bad = ['torch.load(p, map_location="cpu")', "torch.load(p, weights_only=False)", "np.load(p, allow_pickle=True)", "import pickle"]
    good = ['torch.load(p, map_location="cpu", weights_only=True)', "np.load(p, mmap_mode='r')"]
    for s in bad:
        assert any(p.search(s) for p, _ in UNSAFE), s
    for s in good:
        assert not any(p.search(s) for p, _ in UNSAFE), s
