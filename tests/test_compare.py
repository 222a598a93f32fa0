"""arcpipe compare: differences between arms of built reports -- over runs (Welch, from runs
tables, any report) and over tasks (from run_tasks, with the report's own two intervals)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arcpipe import compare, stats
from arcpipe.errors import ArcpipeError


def _interval(d: dict) -> tuple[float, float, float]:
    """A difference and its interval as the docs print them: (delta, low, high) to 0.1 point."""
    return round(d["delta"], 1), round(d["low"], 1), round(d["high"], 1)


def _infer_keys(arm: str) -> list[str]:
    """The inference stage keys of an arm's runs, sorted: two arms with the same list are one
    set of stage keys, trained twice (a replay, here on another CPU kind)."""
    return compare.arm(arm).runs["infer"].sort().to_list()


def test_welch_on_two_arms_and_an_interaction():
    a, b = np.array([42.7, 40.1, 39.3, 38.4]), np.array([32.5, 28.8, 35.0, 33.3])
    r = compare.over_runs([(1.0, a), (-1.0, b)])
    se = np.sqrt(a.var(ddof=1) / 4 + b.var(ddof=1) / 4)
    assert r["delta"] == pytest.approx(a.mean() - b.mean()) and r["high"] - r["delta"] == pytest.approx(r["delta"] - r["low"])
    assert (r["high"] - r["delta"]) / se == pytest.approx(stats.t_quantile(0.975, r["df"])) and 3 < r["df"] < 6
    # four arms of equal spread and size: Welch's df is the pooled 4 x 3 = 12
    r = compare.over_runs([(s, np.array([1.0, 2.0, 3.0, 4.0]) + k) for k, s in enumerate((1.0, -1.0, -1.0, 1.0))])
    assert r["delta"] == pytest.approx(0.0) and r["df"] == pytest.approx(12.0)
    with pytest.raises(ArcpipeError, match="one run"):
        compare.over_runs([(1.0, a), (-1.0, b[:1])])


def test_committed_reports_over_runs():
    """The Xeon's one-segment lead at 24000 steps, from the committed runs tables; runs two reports
    share (the same stage key, the same score) count once when pooled."""
    out = compare.compare(["outer-loop-59tasks-24k:halt_max_steps=1"], ["outer-loop-59tasks-24k:halt_max_steps=4,core=hrm"])
    r = out["over_runs"]
    assert _interval(r) == (7.7, 3.7, 11.7)
    assert out["over_tasks"] is None  # built before run_tasks
    hrm = compare.arm("outer-loop-59tasks-samples:halt_max_steps=4,max_steps=24000;puzzle-emb-59tasks-24k:puzzle_emb_ndim=64,max_steps=24000")
    assert hrm.runs.height == 4 and sorted(hrm.values.round(1)) == [31.9, 34.5, 35.0, 41.0]
    with pytest.raises(ArcpipeError, match="no column 'max_steps'"):
        compare.arm("outer-loop-59tasks-24k:max_steps=24000")
    with pytest.raises(ArcpipeError, match=r"no run of outer-loop-59tasks-24k has halt_max_steps=3 \(halt_max_steps there: 1, 4\)"):
        compare.arm("outer-loop-59tasks-24k:halt_max_steps=3")
    with pytest.raises(ArcpipeError, match=r"has core=transformer among the runs the earlier settings pick \(core there: hrm\)"):
        compare.arm("outer-loop-59tasks-24k:halt_max_steps=1,core=transformer")
    with pytest.raises(ArcpipeError, match="no runs table"):
        compare.arm("no-such-report:halt_max_steps=1")


def test_an_arm_of_one_report_holds_one_setting():
    """L_cycles=1 also picks the plain transformer (its L_cycles is 1 as well): refused, naming the
    settings the matched runs differ in and one to add; one part per setting pools them on purpose."""
    with pytest.raises(ArcpipeError, match=r"8 runs differ in core \(hrm / transformer\), preset .*add e.g. core=hrm"):
        compare.arm("outer-loop-59tasks:L_cycles=1")
    assert compare.arm("outer-loop-59tasks:L_cycles=1,preset=tiny").runs.height == 4
    both = compare.arm("outer-loop-59tasks:L_cycles=1,preset=tiny;outer-loop-59tasks:preset=transformer-tiny")
    assert both.runs.height == 8 and set(both.runs["preset"]) == {"tiny", "transformer-tiny"}
    with pytest.raises(ArcpipeError, match=r"16 runs differ in H_cycles"):
        compare.arm("outer-loop-59tasks-hierarchy:L_cycles=2")


def test_cli_prints_both_ways_and_fails_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    reports = Path(__file__).resolve().parents[1] / "reports"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "arcpipe.cli", "compare", "--reports", str(reports), *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)

    ok = cli("--plus", "outer-loop-59tasks:core=transformer", "--minus", "outer-loop-59tasks:core=hrm,L_cycles=2,halt_max_steps=4")
    assert ok.returncode == 0, ok.stderr
    assert "4 runs, pass@2 35.0 / 39.3 / 31.9 / 26.6" in ok.stdout and "over runs: +5.2 [-3.1, +13.4]" in ok.stdout
    assert "over tasks: not available" in ok.stdout
    assert "TFLOP" not in ok.stdout  # built before runs tables held training FLOPs
    # reports since LAYOUT 18 say what a training of each arm cost
    ok = cli("--plus", "outer-loop-59tasks-H1-time:H_cycles=1,max_steps=21000", "--minus", "outer-loop-59tasks-H1-time:H_cycles=2")
    assert ok.returncode == 0, ok.stderr
    assert "Xeon(R) Processor, AVX512 kernels; 48.5 TFLOP a training)" in ok.stdout  # named by CPU kind
    assert "AVX512 kernels; 44.3 TFLOP a training)" in ok.stdout
    assert "tasks up (their pass@2, seeds averaged): " in ok.stdout and "tasks down" in ok.stdout
    bad = cli("--plus", "outer-loop-59tasks:max_steps=7400")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no column 'max_steps'" in bad.stderr


TRANSFER_ALONE = "transfer-13tasks:preset=transformer-tiny,max_steps=5058"  # the 13 evaluation tasks trained alone
TRANSFER_HALVES = {h: f"transfer-36tasks-{h}:preset=transformer-tiny" for h in "abcd"}  # ... beside each half of the 46
TRANSFER_ALL46 = "outer-loop-59tasks-fit:core=transformer,max_steps=24000"  # ... beside all 46, at 24000 steps
TRANSFER_ALONE_24K = "transfer-13tasks:preset=transformer-tiny,max_steps=24000"  # ... alone at those 24000 steps: equal compute
HRM_ALONE_24K_4_7 = "transfer-13tasks-hrm-24k:preset=tiny"  # HRM alone on the 13 at 24000 steps, its first report (seeds 4-7)
# HRM's transfer arms on the 13: alone, beside each half (eight seeds each, a and b over three reports), beside all 46
HRM_TRANSFER = {"alone": "transfer-13tasks:preset=tiny;transfer-13tasks-hrm:preset=tiny",
                **{x: f"transfer-36tasks-{x}:preset=tiny;transfer-36tasks-{x}-hrm:preset=tiny;transfer-36tasks-{x}-hrm-more:preset=tiny"
                   for x in "ab"},
                **{x: f"transfer-36tasks-{x}:preset=tiny" for x in "cd"},
                "all46": "outer-loop-59tasks-fit:core=hrm,max_steps=24000,halt_max_steps=4;outer-loop-59tasks-24k-amd:preset=tiny",
                "alone24k": f"{HRM_ALONE_24K_4_7};transfer-13tasks-hrm-24k-more:preset=tiny"}


def _on_seeds(spec: str, seeds: Iterable[int]) -> str:
    """An arm of one part narrowed to some of its seeds (a set of values): what its first runs read
    before more were added."""
    assert ";" not in spec, spec
    return f"{spec},seed={'|'.join(map(str, seeds))}"


# each half on seeds 4-9: all that halves c and d had before seeds 10-11, and all HRM has beside them
TRANSFER_HALVES_4_9 = {h: _on_seeds(spec, range(4, 10)) for h, spec in TRANSFER_HALVES.items()}


def _reading(plus: list[str], minus: list[str], only: list[str]) -> tuple:
    """A difference read on the tasks ``only`` as the transfer sections print it: paired over tasks
    (delta, low, high), the low end with seeds resampled, (tasks up, tasks down), and over runs."""
    out = compare.compare(plus, minus, tasks=only)
    o = out["over_tasks"]
    return _interval(o), round(o["seeds_low"], 1), (o["better"], o["worse"]), _interval(out["over_runs"])


def _every_way(plus: list[str], minus: list[str]) -> tuple:
    """A difference on every task the arms share, as the third-budget sections print it: paired
    over tasks (delta, low, high), with seeds resampled (low, high), and over runs."""
    c = compare.compare(plus, minus)
    o = c["over_tasks"]
    return _interval(o), (round(o["seeds_low"], 1), round(o["seeds_high"], 1)), _interval(c["over_runs"])


def _arm_runs(spec: str, only: list[str]) -> np.ndarray:
    """One arm's per-run pass@2 on the tasks ``only``, as compare reads it."""
    return compare.run_values([(1, compare.arm(spec))], only)[0][0]


def _fake_report(folder, task_ids, scores, *, run_tasks=True, fits=None):
    """A built report's two tables, as much as compare reads: one run per row of ``scores`` (the
    run's pass@2 on each of ``task_ids``), and each run's train exact if ``fits`` gives them."""
    import polars as pl

    folder.mkdir(parents=True)
    scores = np.asarray(scores, dtype=np.float64)
    infers = [f"{folder.name}-{i}" for i in range(len(scores))]
    pl.DataFrame({"infer": infers, "train": infers, "augment": ["a"] * len(scores), "preset": ["tiny"] * len(scores),
                  "seed": list(range(len(scores))), "tasks": [len(task_ids)] * len(scores),
                  "pass@2": scores.mean(axis=1), **({} if fits is None else {"train_exact": list(fits)})}
                 ).write_parquet(folder / "runs.parquet")
    if run_tasks:
        pl.DataFrame({"infer": np.repeat(infers, len(task_ids)).tolist(), "seed": np.repeat(np.arange(len(scores)), len(task_ids)).tolist(),
                      "task_id": list(task_ids) * len(scores), "rule": ["hrm"] * scores.size,
                      "pass@2": scores.ravel()}).write_parquet(folder / "run_tasks.parquet")


def test_an_arm_naming_one_report_twice_counts_its_tasks_once(tmp_path):
    """Two settings of one report pooled (``r:preset=a;r:preset=b``) bring its run_tasks table
    twice; the per-task pivot then met two scores per (run, task) and failed with a polars
    traceback. Each run's task scores are now read once."""
    scores = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [0, 1, 0]], dtype=float)
    _fake_report(tmp_path / "r", ["a", "b", "c"], scores)
    out = compare.compare(["r:seed=0;r:seed=1"], ["r:seed=2;r:seed=3"], tmp_path)
    t = out["over_tasks"]
    assert t["delta"] == pytest.approx(out["over_runs"]["delta"]) == pytest.approx(100 * (4 - 1) / 2 / 3)
    assert t["moved"] == pytest.approx({"a": 100.0, "c": 50.0})  # b: 0.5 each side



def test_a_value_may_be_a_set_or_a_range_of_seeds(tmp_path):
    """``seed=1..2`` and ``seed=1|2`` pick the runs ``r:seed=1;r:seed=2`` pools, and keep a glob arm to
    those seeds when a later report adds another; a reversed range is a one-line error, as is a set
    of settings that are not seeds (two arms in one part)."""
    import polars as pl

    tasks = ["a", "b", "c"]
    _fake_report(tmp_path / "s-1", tasks, [[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    _fake_report(tmp_path / "s-2", tasks, [[1, 1, 1]] * 5)  # seeds 0-4: its seed 4 is the "ninth"
    by_parts = compare.arm("s-1:seed=1;s-1:seed=2", tmp_path)
    for spec in ("s-1:seed=1..2", "s-1:seed=1|2", "s-1:seed= 2 | 1..1"):
        got = compare.arm(spec, tmp_path)
        assert got.runs["seed"].to_list() == [1, 2] and got.values.tolist() == pytest.approx(by_parts.values.tolist())
    assert compare.arm("s-*:seed=4..9", tmp_path).runs["report"].to_list() == ["s-2"]  # s-1 holds no seed past 3
    assert compare.arm("s-*:seed=2..3", tmp_path).runs.height == 4  # two of each
    with pytest.raises(ArcpipeError, match=r"seed=3\.\.1: a range a\.\.b needs a <= b"):
        compare.arm("s-1:seed=3..1", tmp_path)
    with pytest.raises(ArcpipeError, match="no run of s-1 has seed=7..9"):
        compare.arm("s-1:seed=7..9", tmp_path)
    path = tmp_path / "s-1" / "runs.parquet"
    pl.read_parquet(path).with_columns(preset=pl.Series(["tiny", "tiny", "big", "big"])).write_parquet(path)
    assert compare.arm("s-1:preset=BIG|x", tmp_path).runs["seed"].to_list() == [2, 3]  # case-insensitive, as one value is
    with pytest.raises(ArcpipeError, match="differ in preset"):
        compare.arm("s-1:preset=tiny|big", tmp_path)


def test_fit_within_reads_each_arms_runs_about_its_own_means(tmp_path):
    """``compare --fit``: the slope of pass@2 on train exact within arms, in points, from the runs
    tables; an arm lifted as a whole changes nothing; the CLI prints it and the line through the
    arms' means; a run without its fit, or --fit beside --among, is a one-line error."""
    import math

    from typer.testing import CliRunner

    from arcpipe.cli import app

    tasks = ["a", "b", "c", "d"]
    _fake_report(tmp_path / "lo", tasks, [[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]], fits=[0.40, 0.50, 0.60])
    _fake_report(tmp_path / "hi", tasks, [[0, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]], fits=[0.70, 0.80, 0.75])
    out = compare.fit_within(["lo:preset=tiny", "hi:preset=tiny"], tmp_path)
    assert [f.tolist() for f in out["fits"]] == [pytest.approx([40, 50, 60]), pytest.approx([70, 80, 75])]
    # within lo: +10 fit -> +25 pass@2; within hi: the run fitting 80% scores 25 more than the other two
    x = np.array([-10, 0, 10, -5, 5, 0])
    y = np.array([-25, 0, 25, -25 / 3, 50 / 3, -25 / 3])
    assert out["slope"] == pytest.approx(x @ y / (x @ x)) and (out["n"], out["groups"], out["df"]) == (6, 2, 3)
    assert math.isnan(out["arms_slope"])
    cli = CliRunner().invoke(app, ["compare", "--fit", "lo:preset=tiny", "--fit", "hi:preset=tiny", "--reports", str(tmp_path)])
    assert cli.exit_code == 0, cli.output
    assert f"within arms: {out['slope']:+.2f} pass@2 points per point of train exact" in cli.output
    assert "train exact (rows sampled in training), arm means: 50.0 / 75.0" in cli.output
    assert "through the arms' means: n/a" in cli.output and "flattens the slope" in cli.output
    # reports since LAYOUT 21: each run's fit on every training row, used where every run has it
    import polars as pl

    for name, whole in (("lo", [0.45, 0.50, 0.55]), ("hi", [0.70, 0.78, 0.74])):
        path = tmp_path / name / "runs.parquet"
        pl.read_parquet(path).with_columns(train_exact_all=pl.Series(whole)).write_parquet(path)
    again = compare.fit_within(["lo:preset=tiny", "hi:preset=tiny"], tmp_path)
    assert again["fit_column"] == "train_exact_all" and again["fits"][1].tolist() == pytest.approx([70, 78, 74])
    _fake_report(tmp_path / "older", tasks, [[0, 0, 1, 1], [0, 1, 1, 1]], fits=[0.60, 0.65])  # sampled rows only
    mixed = compare.fit_within(["lo:preset=tiny", "older:preset=tiny"], tmp_path)
    assert mixed["fit_column"] == "train_exact" and mixed["fits"][0].tolist() == pytest.approx([40, 50, 60])
    _fake_report(tmp_path / "nofit", tasks, [[0, 0, 0, 1], [0, 1, 1, 1]])
    with pytest.raises(ArcpipeError, match="without its training fit"):
        compare.fit_within(["nofit:preset=tiny", "lo:preset=tiny"], tmp_path)
    cli = CliRunner().invoke(app, ["compare", "--fit", "lo:preset=tiny", "--among", "hi:preset=tiny", "--reports", str(tmp_path)])
    assert cli.exit_code != 0 and "ask three different questions" in str(cli.exception)


def test_a_glob_pools_the_reports_holding_the_runs_named(tmp_path):
    """A sweep whose seeds were added over sessions lives in several reports: ``sweep-*:preset=tiny``
    pools those holding such runs, as the same parts joined with ';' do, and leaves out a report whose
    runs hold another value. A glob matching nothing, one whose reports all hold other values, and a
    report without the column asked for are errors; the CLI names the reports a glob pooled."""
    import polars as pl
    from typer.testing import CliRunner

    from arcpipe.cli import app

    tasks = ["a", "b", "c", "d"]
    _fake_report(tmp_path / "sweep-1", tasks, [[1, 0, 1, 1], [0, 0, 1, 0]])
    _fake_report(tmp_path / "sweep-2", tasks, [[1, 1, 1, 0]])
    _fake_report(tmp_path / "sweep-other", tasks, [[0, 0, 0, 0], [1, 1, 1, 1]])
    other = tmp_path / "sweep-other" / "runs.parquet"
    pl.read_parquet(other).with_columns(preset=pl.lit("trm-tiny")).write_parquet(other)
    _fake_report(tmp_path / "base", tasks, [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])

    glob = compare.arm("sweep-*:preset=tiny", tmp_path)
    assert glob.runs["report"].to_list() == ["sweep-1", "sweep-1", "sweep-2"]
    assert glob.values.tolist() == pytest.approx([75.0, 25.0, 75.0])
    by_hand = compare.compare(["sweep-1:preset=tiny;sweep-2:preset=tiny"], ["base:preset=tiny"], tmp_path)
    by_glob = compare.compare(["sweep-*:preset=tiny"], ["base:preset=tiny"], tmp_path)
    assert by_glob["over_tasks"]["delta"] == pytest.approx(by_hand["over_tasks"]["delta"])
    assert by_glob["over_runs"] == pytest.approx(by_hand["over_runs"])
    assert compare.arm(f"{tmp_path}/sweep-?:preset=tiny").runs.height == 3  # a glob in a path too

    with pytest.raises(ArcpipeError, match="no built report under .* matches 'nope-\\*'"):
        compare.arm("nope-*:preset=tiny", tmp_path)
    with pytest.raises(ArcpipeError, match="none of the 3 reports it names holds such runs"):
        compare.arm("sweep-*:preset=hrm", tmp_path)
    with pytest.raises(ArcpipeError, match="has no column 'max_steps'"):
        compare.arm("sweep-*:max_steps=48000", tmp_path)
    with pytest.raises(ArcpipeError, match="no run of sweep-other has preset=tiny"):  # named outright: still an error
        compare.arm("sweep-other:preset=tiny", tmp_path)

    cli = CliRunner().invoke(app, ["compare", "--plus", "sweep-*:preset=tiny", "--minus", "base:preset=tiny",
                                   "--reports", str(tmp_path)])
    assert cli.exit_code == 0, cli.output
    assert "pooled from: sweep-1 (2), sweep-2 (1)" in cli.output and cli.output.count("pooled from") == 1

def test_a_set_of_reports_pools_them_as_a_glob_would(tmp_path):
    """``a|b:preset=tiny`` names two reports for one part, as ``a:preset=tiny;b:preset=tiny`` does,
    with a glob's leniency: one whose runs hold other values is left out (``seed=0..1`` on a report
    of seed 2 alone) and only none left is an error. A glob may be one of the set; a report named
    twice counts once; a missing report, an empty name and a missing column stay errors, and the
    CLI names the reports a set pooled."""
    import polars as pl
    from typer.testing import CliRunner

    from arcpipe.cli import app

    tasks = ["a", "b", "c", "d"]
    _fake_report(tmp_path / "grid", tasks, [[1, 0, 1, 1], [0, 0, 1, 0]])
    _fake_report(tmp_path / "ninth", tasks, [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    ninth = tmp_path / "ninth" / "runs.parquet"
    pl.read_parquet(ninth).filter(pl.col("seed") == 2).write_parquet(ninth)
    _fake_report(tmp_path / "base", tasks, [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])

    both = compare.arm("grid|ninth:preset=tiny", tmp_path)
    assert both.runs["report"].to_list() == ["grid", "grid", "ninth"] and both.values.tolist() == pytest.approx([75.0, 25.0, 75.0])
    by_hand = compare.compare(["grid:preset=tiny;ninth:preset=tiny"], ["base:preset=tiny"], tmp_path)
    by_set = compare.compare(["grid|ninth:preset=tiny"], ["base:preset=tiny"], tmp_path)
    assert by_set["over_tasks"]["delta"] == pytest.approx(by_hand["over_tasks"]["delta"])
    assert by_set["over_runs"] == pytest.approx(by_hand["over_runs"])
    assert compare.arm("grid|ninth:preset=tiny,seed=0..1", tmp_path).runs["report"].to_list() == ["grid", "grid"]
    assert compare.arm("grid | n*:preset=tiny", tmp_path).runs.height == 3  # a glob in the set, spaces allowed
    assert compare.arm("grid|grid:preset=tiny", tmp_path).runs.height == 2  # one report named twice: its runs once
    assert compare.arm(f"grid|g*|{tmp_path}/grid:preset=tiny", tmp_path).runs.height == 2  # by name, glob and path
    assert compare.names_several_reports("grid|ninth:preset=tiny") and not compare.names_several_reports("grid:seed=0|1")

    for spec, message in (("grid|ninth:seed=7", "none of the 2 reports it names holds such runs"),
                          ("grid|gone:preset=tiny", "no runs table"), ("grid|:preset=tiny", "an empty report name"),
                          ("grid|ninth:max_steps=1", "has no column 'max_steps'")):
        with pytest.raises(ArcpipeError, match=message):
            compare.arm(spec, tmp_path)

    cli = CliRunner().invoke(app, ["compare", "--plus", "grid|ninth:preset=tiny", "--minus", "base:preset=tiny",
                                   "--reports", str(tmp_path)])
    assert cli.exit_code == 0, cli.output
    assert "pooled from: grid (2), ninth (1)" in cli.output


def test_among_tests_whether_arms_differ_on_their_shared_tasks(tmp_path):
    """``compare --among``: per-run pass@2 on the tasks every arm shares (a 4-task report read on
    the 3 a 3-task report scored), the F test's statistic and permutation p; refused with one
    arm, an arm of one run, or beside --plus."""
    from typer.testing import CliRunner

    from arcpipe.cli import app
    from arcpipe.stats import permutation_f

    low = np.array([[0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=float)
    high = np.array([[1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=float)
    _fake_report(tmp_path / "low", ["a", "b", "c"], low)
    _fake_report(tmp_path / "high", ["a", "b", "c", "x"], high)
    out = compare.among(["low:preset=tiny", "high:preset=tiny"], tmp_path)
    assert out["tasks"] == 3  # the task sets differ: both read on a, b, c
    np.testing.assert_allclose(out["values"][1], 100 * high[:, :3].mean(axis=1))
    assert out["f"] == pytest.approx(permutation_f(out["values"])["f"]) and out["p"] < 0.05
    # runs' pooled spread within an arm, and the gap two arms of 4 runs must show (t at 6 df: 2.4469)
    pooled = np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in out["values"]) / 6)
    assert out["sd_within"] == pytest.approx(pooled) and out["fewest_runs"] == 4
    assert out["least_difference"] == pytest.approx(2.4469 * pooled * np.sqrt(2 / 4), rel=1e-3)
    alike = compare.among(["low:seed=0;low:seed=1", "low:seed=2;low:seed=3"], tmp_path)
    assert alike["p"] > 0.5
    with pytest.raises(ArcpipeError, match="two or more arms"):
        compare.among(["low:preset=tiny"], tmp_path)
    with pytest.raises(ArcpipeError, match="one run"):
        compare.among(["low:seed=0", "high:preset=tiny"], tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["compare", "--reports", str(tmp_path), "--among", "low:preset=tiny", "--among", "high:preset=tiny"])
    assert res.exit_code == 0, res.output
    assert "* low:preset=tiny: 4 runs" in res.output
    assert f"among 2 arms over runs: F = {out['f']:.2f} on (1, 6) df, permutation p = {out['p']:.3f}" in res.output
    assert (f"runs spread within an arm by {pooled:.1f} points (pooled SD): two arms of 4 runs must differ by "
            f"{out['least_difference']:.1f}") in res.output
    res = runner.invoke(app, ["compare", "--reports", str(tmp_path), "--among", "low:preset=tiny", "--plus", "high:preset=tiny"])
    assert res.exit_code != 0 and "ask three different questions" in str(res.exception)


def test_one_stage_key_with_the_same_score_on_two_cpu_kinds_is_two_runs(tmp_path):
    """Seed 8 of HRM at 12000 steps scored 24.9% on an Intel Xeon and on an AMD EPYC, from other
    predictions (oracle 35.9% against 33.3%). Known by key and pass@2 alone, the two counted once;
    the oracle and the training fit tell them apart. A run two reports share (a replay, or a
    baseline reused) has every column equal and still counts once."""
    import polars as pl

    def report(name: str, oracle: float, train_exact: float) -> None:
        folder = tmp_path / name
        folder.mkdir()
        pl.DataFrame({"infer": ["k8", f"{name}-k9"], "train": ["t8", f"{name}-t9"], "augment": ["a", "a"],
                      "preset": ["tiny", "tiny"], "seed": [8, 9], "tasks": [59, 59], "pass@2": [0.249, 0.3],
                      "oracle": [oracle, 0.4], "train_exact": [train_exact, 0.5]}).write_parquet(folder / "runs.parquet")

    report("xeon", 0.359, 0.477)
    report("epyc", 0.333, 0.531)
    report("xeon-again", 0.359, 0.477)
    assert compare.arm("xeon:seed=8;epyc:seed=8", tmp_path).runs.height == 2
    assert compare.arm("xeon:seed=8;xeon-again:seed=8", tmp_path).runs.height == 1
    assert compare.arm("xeon;epyc;xeon-again", tmp_path).runs.height == 5


def test_arms_on_different_task_sets_compare_on_the_shared_tasks(tmp_path):
    """The 13 evaluation tasks trained alone against the 59-task runs: a run's whole-report pass@2
    would mix two task sets, so both ways read each run on the tasks the arms share."""
    rng = np.random.default_rng(0)
    alone = rng.integers(0, 3, size=(4, 3)) / 2  # 4 runs on tasks a, b, c
    together = rng.integers(0, 3, size=(5, 5)) / 2  # 5 runs on a, b, c and two others
    _fake_report(tmp_path / "alone", ["a", "b", "c"], alone)
    _fake_report(tmp_path / "together", ["a", "b", "c", "x", "y"], together)
    out = compare.compare(["alone:preset=tiny"], ["together:preset=tiny"], tmp_path)
    assert out["over_runs"]["tasks"] == 3 and out["over_tasks"]["tasks"] == 3
    np.testing.assert_allclose(out["values"][1], 100 * together[:, :3].mean(axis=1))
    assert out["over_runs"]["delta"] == pytest.approx(100 * (alone.mean() - together[:, :3].mean()))
    assert out["over_tasks"]["delta"] == pytest.approx(out["over_runs"]["delta"])  # the same mean, paired
    # the same task set: the runs' own pass@2, no restriction
    same = compare.compare(["together:preset=tiny"], ["together:preset=tiny"], tmp_path)
    assert same["over_runs"]["tasks"] is None and same["values"][0] is not None
    # without per-task scores the task sets cannot be matched: refused when their sizes differ
    _fake_report(tmp_path / "old", ["a", "b", "c"], alone, run_tasks=False)
    with pytest.raises(ArcpipeError, match=r"different numbers of tasks \(3 / 5\)"):
        compare.compare(["old:preset=tiny"], ["together:preset=tiny"], tmp_path)
    assert compare.compare(["old:preset=tiny"], ["alone:preset=tiny"], tmp_path)["over_tasks"] is None


def test_committed_reports_on_different_task_sets():
    """The 59-task transformer at 24000 steps against the 13 evaluation tasks trained alone: read
    on the 13 shared tasks, each 59-task run's value is its report's own per-source pass@2 (the
    runs table's 'pass@2 arc1:evaluation', computed by the report independently)."""
    out = compare.compare([TRANSFER_ALL46],
                          ["transfer-13tasks:preset=transformer-tiny,max_steps=5058"])
    assert out["over_runs"]["tasks"] == 13 and out["over_tasks"]["tasks"] == 13
    np.testing.assert_allclose(out["values"][0], 100 * out["arms"][0][1].runs["pass@2 arc1:evaluation"].to_numpy())
    np.testing.assert_allclose(out["values"][1], out["arms"][1][1].values)  # the 13-task runs: their own pass@2
    r, t = out["over_runs"], out["over_tasks"]
    assert _interval(r) == (10.6, 4.0, 17.2)
    assert t["delta"] == pytest.approx(r["delta"]) and (t["better"], t["worse"]) == (5, 0)


def test_tasks_restricts_every_arm(tmp_path):
    """--tasks: the 13 evaluation tasks inside a 36-task and a 59-task run, which share 36 tasks
    between them; a report names its task set, or ids are listed."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, size=(4, 4)) / 2  # tasks a, b, c, x
    b = rng.integers(0, 3, size=(5, 5)) / 2  # tasks a, b, c, x, y
    _fake_report(tmp_path / "mid", ["a", "b", "c", "x"], a)
    _fake_report(tmp_path / "big", ["a", "b", "c", "x", "y"], b)
    _fake_report(tmp_path / "small", ["a", "b", "c"], a[:, :3])
    whole = compare.compare(["big:preset=tiny"], ["mid:preset=tiny"], tmp_path)
    assert whole["over_runs"]["tasks"] == 4
    only = compare.task_list("small", tmp_path)
    assert only == ["a", "b", "c"] and compare.task_list("c, a", tmp_path) == ["c", "a"]
    out = compare.compare(["big:preset=tiny"], ["mid:preset=tiny"], tmp_path, only)
    assert out["over_runs"]["tasks"] == 3 and out["over_tasks"]["tasks"] == 3
    assert out["over_runs"]["delta"] == pytest.approx(100 * (b[:, :3].mean() - a[:, :3].mean()))
    assert out["over_tasks"]["delta"] == pytest.approx(out["over_runs"]["delta"])
    # restricting arms on one task set still reads each run on the given tasks only
    same = compare.compare(["mid:preset=tiny"], ["mid:preset=tiny"], tmp_path, ["x"])
    np.testing.assert_allclose(same["values"][0], 100 * a[:, 3])
    with pytest.raises(ArcpipeError, match="share no task among the tasks given"):
        compare.compare(["big:preset=tiny"], ["mid:preset=tiny"], tmp_path, ["zz"])
    _fake_report(tmp_path / "old", ["a", "b", "c", "x"], a, run_tasks=False)
    with pytest.raises(ArcpipeError, match="needs every report's per-task scores"):
        compare.compare(["old:preset=tiny"], ["mid:preset=tiny"], tmp_path, only)
    with pytest.raises(ArcpipeError, match="has no per-task scores"):
        compare.task_list("old", tmp_path)
    with pytest.raises(ArcpipeError, match="neither a built report nor task ids"):
        compare.task_list("no/such", tmp_path)


def test_committed_transfer_halves_on_the_13_tasks():
    """docs/ablations.md, "How much the other tasks give": the two 36-task reports read on the 13
    evaluation tasks transfer-13tasks scored (they score 36), pooled, minus the 13 trained alone."""
    only = compare.task_list("transfer-13tasks")
    assert len(only) == 13
    out = compare.compare(["transfer-36tasks-a:preset=transformer-tiny;transfer-36tasks-b:preset=transformer-tiny"], ["transfer-13tasks:preset=transformer-tiny,max_steps=5058"],
                          tasks=only)
    r, t = out["over_runs"], out["over_tasks"]
    assert r["tasks"] == 13 and len(out["values"][0]) == 16
    assert _interval(r) == (8.2, 1.9, 14.5)
    assert (round(t["low"], 1), round(t["high"], 1), t["better"], t["worse"]) == (0.5, 19.2, 5, 1)
    # the tasks that moved, largest first, sum to the paired difference over the 13
    assert len(t["moved"]) == 6 and list(t["moved"].values()) == sorted(t["moved"].values(), reverse=True)
    assert sum(t["moved"].values()) / 13 == pytest.approx(t["delta"])
    halves = compare.compare(["transfer-36tasks-a:preset=transformer-tiny"], ["transfer-36tasks-b:preset=transformer-tiny"], tasks=only)
    assert set(halves["over_tasks"]["moved"]) <= set(t["moved"])  # the halves differ where the other tasks lift
    # HRM beside the halves (two seeds each) is another setting of the same reports: refused unless picked
    with pytest.raises(ArcpipeError, match=r"differ in .*preset"):
        compare.arm("transfer-36tasks-a:")
    hrm = compare.compare(["transfer-36tasks-a:preset=tiny;transfer-36tasks-b:preset=tiny"], ["transfer-13tasks:preset=tiny"], tasks=only)
    assert hrm["over_runs"]["tasks"] == 13 and round(hrm["over_runs"]["delta"], 1) == 4.8
    # HRM on more seeds (transfer-*-hrm): twelve runs beside a half against eight alone resolve
    halves = "transfer-36tasks-a:preset=tiny;transfer-36tasks-b:preset=tiny;transfer-36tasks-a-hrm:preset=tiny;transfer-36tasks-b-hrm:preset=tiny"
    hrm = compare.compare([halves], [HRM_TRANSFER["alone"]], tasks=only)
    r, t = hrm["over_runs"], hrm["over_tasks"]
    assert [len(v) for v in hrm["values"]] == [12, 8]
    assert _interval(r) == (5.4, 1.4, 9.5)
    assert (round(t["low"], 1), round(t["high"], 1), round(t["seeds_low"], 1), t["better"], t["worse"]) == (1.0, 10.9, 1.0, 5, 0)
    more = compare.compare(["outer-loop-59tasks-fit:core=hrm,max_steps=24000,halt_max_steps=4"], [halves], tasks=only)["over_tasks"]
    assert (round(more["delta"], 1), round(more["seeds_low"], 1), round(more["seeds_high"], 1)) == (4.2, -5.5, 14.9)
    # ... and on eight 59-task runs (four more, on an AMD EPYC): paired over tasks only; all 46 over none every way
    all46 = HRM_TRANSFER["all46"]
    more = compare.compare([all46], [halves], tasks=only)["over_tasks"]
    assert (round(more["delta"], 1), round(more["low"], 1), round(more["high"], 1), round(more["seeds_low"], 1)) == (9.9, 1.4, 19.9, -0.8)
    alone = compare.compare([all46], [HRM_TRANSFER["alone"]], tasks=only)
    assert [len(v) for v in alone["values"]] == [8, 8]
    t = alone["over_tasks"]
    assert (round(t["delta"], 1), round(t["low"], 1), round(t["seeds_low"], 1), round(alone["over_runs"]["low"], 1)) == (15.4, 4.8, 3.0, 5.0)
    # half a minus half b over both models (a report named twice in an arm, each preset once)
    parts = {h: f"transfer-36tasks-{h}:preset=transformer-tiny;transfer-36tasks-{h}:preset=tiny;transfer-36tasks-{h}-hrm:preset=tiny"
             for h in "ab"}
    ab = compare.compare([parts["a"]], [parts["b"]], tasks=only)
    assert [len(v) for v in ab["values"]] == [14, 14]
    assert _interval(ab["over_tasks"]) == (-4.7, -11.7, 1.1)
    # HRM's seeds 10-11 (transfer-36tasks-{a,b}-hrm-more, on a second Xeon): eight runs a half
    eight, hrm_alone = HRM_TRANSFER, HRM_TRANSFER["alone"]
    assert _reading([eight["a"]], [hrm_alone], only)[:3] == ((4.8, -1.0, 11.5), -1.0, (4, 1))
    assert _reading([eight["b"]], [hrm_alone], only) == ((6.7, 1.4, 13.9), 1.4, (5, 0), (6.7, 1.3, 12.2))
    either = _reading([f"{eight['a']};{eight['b']}"], [hrm_alone], only)
    assert either == ((5.8, 1.2, 11.5), 1.2, (6, 0), (5.8, 2.3, 9.2))  # resolved every way, as on twelve runs
    second = _reading([all46], [f"{eight['a']};{eight['b']}"], only)
    assert second == ((9.6, 0.5, 20.4), -2.0, (6, 2), (9.6, -0.9, 20.1))  # paired over tasks only, as before
    assert _reading([eight["a"]], [eight["b"]], only)[0] == (-1.9, -9.9, 4.2)  # -5.8 on six runs each
    assert _reading([f"transfer-36tasks-a:preset=transformer-tiny;{eight['a']}"],
                    [f"transfer-36tasks-b:preset=transformer-tiny;{eight['b']}"], only)[0] == (-2.9, -8.7, 1.4)
    xeon2 = compare.compare(["transfer-36tasks-a-hrm-more:preset=tiny;transfer-36tasks-b-hrm-more:preset=tiny"],
                            ["transfer-36tasks-a:preset=tiny;transfer-36tasks-b:preset=tiny"], tasks=only)
    assert _interval(xeon2["over_tasks"]) == (2.9, -6.7, 14.4)  # the second Xeon over the first, beside a half
    # without --tasks the halves against the 59-task runs share 36 tasks, not 13
    assert compare.compare([TRANSFER_ALL46], ["transfer-36tasks-a:preset=transformer-tiny"])["over_runs"]["tasks"] == 36


def test_committed_second_draw_of_halves():
    """docs/ablations.md, "A second draw of halves": halves c and d (a second random split of the
    46, seeds 4-11 like a and b) on the 13 evaluation tasks; the four halves differ, c minus d is
    resolved, and (b + c) - (a + d) (under additive task effects twice the tasks in both b and c
    against those in both a and d) too; all 46 add nothing over a half. Seeds 10-11 firmed up what
    seeds 4-9 had read (c - d +9.6, p = 0.012)."""
    only = compare.task_list("transfer-13tasks")
    t, alone = TRANSFER_HALVES, TRANSFER_ALONE

    def both(plus, minus):
        return _reading(plus, minus, only)

    c = compare.compare([t["c"]], [alone], tasks=only)
    assert [len(v) for v in c["values"]] == [8, 8] and round(c["values"][0].mean(), 1) == 35.1
    assert both([t["c"]], [alone])[:3] == ((17.3, 4.8, 34.6), 5.1, (7, 0))
    assert both([t["d"]], [alone])[:3] == ((6.7, 0.5, 15.7), -0.2, (4, 0))
    assert both([t["c"]], [t["d"]]) == ((10.6, 1.0, 22.1), 1.0, (6, 2), (10.6, 5.3, 15.8))
    assert both([t["b"], t["c"]], [t["a"], t["d"]]) == ((14.4, 2.4, 29.3), 2.4, (7, 1), (14.4, 5.8, 23.0))
    assert both([t["b"], t["d"]], [t["a"], t["c"]])[0] == (-6.7, -19.2, 4.3)
    halves = ";".join(t.values())
    assert both([halves], [alone])[:3] == ((10.1, 3.0, 21.3), 2.4, (9, 0))
    assert both([TRANSFER_ALL46], [halves])[0] == (0.5, -2.8, 4.9)
    four = compare.among(list(t.values()), tasks=only)
    assert (round(four["f"], 2), round(four["p"], 3), four["df_within"]) == (6.00, 0.004, 28)
    assert (round(four["sd_within"], 1), round(four["least_difference"], 1)) == (5.9, 6.0)  # c - d, +10.6, clears it
    assert compare.among([t["a"], t["b"]], tasks=only)["p"] > 0.3
    # what seeds 4-9 of c and d had read
    first = TRANSFER_HALVES_4_9
    assert both([first["c"]], [first["d"]])[0] == (9.6, 1.3, 19.2)
    assert round(compare.among([t["a"], t["b"], first["c"], first["d"]], tasks=only)["p"], 3) == 0.012
    # tasks solved beside one half only, in no run of any other arm of the table (run_tasks)
    import polars as pl

    arms = {**t, "alone": alone, "all46": TRANSFER_ALL46}
    solved = {name: set(compare.arm(spec).tasks.filter(pl.col("pass@2") > 0)["task_id"]) for name, spec in arms.items()}
    only_in = {name: sorted(set(only) & (got - set().union(*(v for k, v in solved.items() if k != name))))
               for name, got in solved.items()}
    assert only_in == {"a": [], "b": [], "c": ["4cd1b7b2", "be03b35f"], "d": ["68b67ca3"], "alone": [], "all46": []}


def test_committed_quarters_alone():
    """docs/ablations.md, "The quarters alone": each quarter of the two splits alone beside the 13
    evaluation tasks, eight seeds each. b ∩ c leads a ∩ d by about two thirds of what (b + c) -
    (a + d) predicts, unresolved; the four quarters do not measurably differ (on seeds 4-7 of
    a ∩ c and b ∩ d they seemed to, p = 0.014); a half gives more than a quarter, resolved every
    way; half c's lean over its two quarters' gains added (11.1) resolves over runs only (on six
    seeds it did not), and c leads each of its quarters alone, resolved every way."""
    only = compare.task_list("transfer-13tasks")
    t, alone = TRANSFER_HALVES, TRANSFER_ALONE
    q = {h: f"transfer-{n}tasks-{h}:preset=transformer-tiny" for h, n in (("bc", 26), ("ad", 26), ("ac", 23), ("bd", 23))}

    def both(plus, minus):
        return _reading(plus, minus, only)

    means = {h: _arm_runs(spec, only) for h, spec in {**t, **q}.items()}
    assert {h: (len(v), round(v.mean(), 1)) for h, v in means.items() if h in q} == {
        "bc": (8, 24.0), "ad": (8, 19.2), "ac": (8, 17.8), "bd": (8, 23.6)}
    # the first four seeds of a ∩ c and b ∩ d, and what they said
    assert {h: round(means[h][:4].mean(), 1) for h in ("ac", "bd")} == {"ac": 15.4, "bd": 25.0}
    assert both([q["bc"]], [alone]) == ((6.2, -2.9, 19.2), -3.3, (3, 1), (6.2, -0.5, 13.0))
    assert both([q["ad"]], [alone])[0] == (1.4, -3.4, 6.7)
    assert both([q["ac"]], [alone]) == ((0.0, -12.0, 7.5), -12.4, (4, 1), (0.0, -6.8, 6.8))
    assert both([q["bd"]], [alone]) == ((5.8, 1.0, 12.0), -0.1, (5, 0), (5.8, -1.8, 13.3))
    # additive task effects: (b + c) - (a + d) is twice bc - ad
    predicted = (means["b"].mean() + means["c"].mean() - means["a"].mean() - means["d"].mean()) / 2
    assert round(predicted, 1) == 7.2
    assert both([q["bc"]], [q["ad"]]) == ((4.8, -1.9, 15.4), -1.9, (2, 1), (4.8, -0.8, 10.4))
    q6 = {h: _on_seeds(spec, range(4, 10)) for h, spec in q.items()}  # the quarters on seeds 4-9
    assert both([q6["bc"]], [q6["ad"]])[0] == (5.1, -1.3, 15.4)
    # what the quarters alone predict for c - d and b - a; the halves measured +10.6 and +3.8
    assert both([q["ac"], q["bc"]], [q["ad"], q["bd"]])[0] == (-1.0, -14.1, 12.5)
    assert both([q["bc"], q["bd"]], [q["ac"], q["ad"]])[3] == (10.6, 2.0, 19.2)
    four = compare.among([q["ac"], q["ad"], q["bc"], q["bd"]], tasks=only)
    assert (round(four["f"], 2), round(four["p"], 2), four["df_within"]) == (2.22, 0.12, 28)
    assert (round(four["sd_within"], 1), four["fewest_runs"], round(four["least_difference"], 1)) == (5.9, 8, 6.1)
    assert round(compare.among([*q.values(), alone], tasks=only)["p"], 2) == 0.11
    six = compare.among([q6[h] for h in ("ac", "ad", "bc", "bd")], tasks=only)
    assert (round(six["f"], 2), round(six["p"], 2)) == (1.40, 0.28)
    # each half + the 13 alone - its two quarters: the interaction; over tasks none resolves
    halves = {"c": ("ac", "bc"), "a": ("ac", "ad"), "d": ("ad", "bd"), "b": ("bc", "bd")}
    inter = {h: both([t[h], alone], [q[x], q[y]]) for h, (x, y) in halves.items()}
    assert inter["c"] == ((11.1, -2.4, 27.7), -1.8, (5, 1), (11.1, 2.6, 19.5))  # over runs only
    assert {h: v[0][0] for h, v in inter.items()} == {"c": 11.1, "a": 4.8, "d": -0.5, "b": -1.9}
    assert all(v[0][1] < 0 < v[0][2] and v[1] < 0 for v in inter.values())
    assert all(v[3][1] < 0 < v[3][2] for h, v in inter.items() if h != "c")
    assert both([TRANSFER_HALVES_4_9["c"], alone], [q6["ac"], q6["bc"]])[3] == (8.8, -1.0, 18.6)  # on six seeds: not over runs
    assert both([t["c"]], [q["ac"]]) == ((17.3, 2.4, 37.3), 2.4, (5, 1), (17.3, 11.6, 23.0))
    assert both([t["c"]], [q["bc"]]) == ((11.1, 2.4, 21.2), 2.4, (6, 1), (11.1, 5.4, 16.7))
    quarters = ";".join(q.values())
    assert round(_arm_runs(quarters, only).mean(), 1) == 21.2
    assert both([quarters], [alone])[0] == (3.4, -1.2, 8.9)
    assert both([";".join(t.values())], [quarters]) == ((6.7, 0.4, 14.7), 0.4, (6, 1), (6.7, 3.4, 10.1))
    # 4cd1b7b2 is solved only where a ∩ c is (beside it alone, and beside half c), once each
    import polars as pl

    arms = {**t, **q, "alone": alone, "all46": TRANSFER_ALL46}
    solved = {name: compare.arm(spec).tasks.filter((pl.col("task_id") == "4cd1b7b2") & (pl.col("pass@2") > 0)).height
              for name, spec in arms.items()}
    assert {name: n for name, n in solved.items() if n} == {"c": 1, "ac": 1}


def test_committed_hrm_beside_the_second_draw():
    """docs/ablations.md, "A second draw of halves", HRM: on eight runs an arm HRM neither repeats
    the transformer's c-over-d order nor reverses it (its first two runs had read -5.8, its first
    four -1.9, its first six +1.3), its four halves do not measurably differ, and the models'
    difference there resolves over runs only on the eight seeds both have, as on HRM's first four
    and not on its first six. Over all four halves (eight runs each, a's and b's seeds 10-11 the last
    in) HRM's first step (+4.3) resolves every way and the second 23 over a half (+11.1) over tasks
    and over runs, at the edge with seeds resampled; the second 23 adding more than the first does
    not resolve, but the models differ in what the second 23 add (the transformer's gain flattens)."""
    only = compare.task_list("transfer-13tasks")
    h = HRM_TRANSFER

    def both(plus, minus):
        return _reading(plus, minus, only)

    runs = {k: _arm_runs(v, only) for k, v in h.items()}
    assert {k: (len(v), round(v.mean(), 1)) for k, v in runs.items()} == {
        "alone": (8, 15.4), "a": (8, 20.2), "b": (8, 22.1), "c": (8, 18.8), "d": (8, 17.8), "all46": (8, 30.8),
        "alone24k": (8, 38.0)}
    assert runs["a"][6:].tolist() == pytest.approx([30.8, 23.1], abs=0.05)  # seeds 10-11
    assert runs["b"][6:].tolist() == pytest.approx([19.2, 15.4], abs=0.05)
    assert both([h["c"]], [h["alone"]]) == ((3.4, -6.2, 14.4), -6.2, (3, 1), (3.4, -1.4, 8.2))
    assert both([h["d"]], [h["alone"]])[:3] == ((2.4, -2.9, 11.1), -3.4, (2, 2))
    assert both([h["c"]], [h["d"]]) == ((1.0, -9.5, 7.7), -9.6, (5, 1), (1.0, -5.4, 7.3))
    hrm_on = {s: {x: _on_seeds(h[x], s) for x in "cd"} for s in ((4, 5), (4, 5, 6, 7), (4, 5, 6, 7, 8, 9))}
    earlier = [both([hrm_on[s]["c"]], [hrm_on[s]["d"]]) for s in hrm_on]  # the first, second and third readings
    assert [e[0] for e in earlier] == [(-5.8, -26.9, 11.5), (-1.9, -11.5, 5.8), (1.3, -7.3, 7.7)]
    assert earlier[2][3] == (1.3, -6.3, 8.9)
    assert runs["c"][6:].tolist() == pytest.approx([7.7, 23.1], abs=0.05)  # seeds 10-11
    assert runs["d"][6:].tolist() == pytest.approx([15.4, 15.4], abs=0.05)
    t = TRANSFER_HALVES
    same = TRANSFER_HALVES_4_9  # the transformer on HRM's first six seeds
    assert both([t["c"]], [t["d"]])[0] == (10.6, 1.0, 22.1)
    models = both([t["c"], h["d"]], [t["d"], h["c"]])  # (transformer c - d) - (HRM c - d), seeds 4-11 both
    assert models == ((9.6, -1.0, 20.2), -0.6, (6, 1), (9.6, 1.8, 17.5))
    six = hrm_on[(4, 5, 6, 7, 8, 9)]
    assert both([same["c"], six["d"]], [same["d"], six["c"]]) == ((8.3, -2.6, 17.9), -2.9, (7, 1), (8.3, -0.6, 17.3))
    four = hrm_on[(4, 5, 6, 7)]
    assert both([same["c"], four["d"]], [same["d"], four["c"]])[3] == (11.5, 2.0, 21.1)  # had resolved over runs
    assert both([f"{t['c']};{h['c']}"], [f"{t['d']};{h['d']}"]) == ((5.8, -2.9, 13.9), -3.0, (6, 1), (5.8, -0.3, 11.8))
    assert both([h["b"], h["c"]], [h["a"], h["d"]])[0] == (2.9, -8.3, 14.4)
    assert both([h["b"]], [h["d"]])[0] == (4.3, -3.8, 13.5)  # the widest gap
    among = compare.among([h[x] for x in "abcd"], tasks=only)
    assert (round(among["f"], 2), round(among["p"], 2), among["df_within"]) == (0.79, 0.52, 28)
    assert (round(among["sd_within"], 1), among["fewest_runs"], round(among["least_difference"], 1)) == (6.0, 8, 6.1)
    # a and b on their first six seeds, as the section read them before seeds 10-11
    first_six = {x: h[x].removesuffix(f";transfer-36tasks-{x}-hrm-more:preset=tiny") for x in "ab"}
    assert round(compare.among([first_six["a"], first_six["b"], h["c"], h["d"]], tasks=only)["p"], 2) == 0.23
    assert both([first_six["b"]], [h["d"]])[0] == (5.9, -1.8, 16.6)
    halves = ";".join(h[x] for x in "abcd")
    assert both([halves], [h["alone"]]) == ((4.3, 0.5, 11.1), 0.5, (5, 0), (4.3, 1.7, 6.9))
    assert both([h["all46"]], [halves]) == ((11.1, 2.9, 21.3), -0.2, (7, 1), (11.1, 0.7, 21.4))
    assert both([h["all46"], h["alone"]], [halves, halves])[0] == (6.7, -1.8, 17.6)  # second 23 minus first
    # the transformer: the second 23 add less than the first, resolved every way
    t_any, t_all46 = ";".join(t[x] for x in "abcd"), TRANSFER_ALL46
    t_second = both([t_all46, TRANSFER_ALONE], [t_any, t_any])
    assert t_second == ((-9.6, -20.2, -2.9), -20.4, (0, 8), (-9.6, -17.0, -2.3))
    # the models differ in what the second 23 add: over tasks and seeds resampled, not over runs
    models = both([h["all46"], t_any], [halves, t_all46])
    assert models == ((10.6, 3.4, 19.7), 0.3, (8, 0), (10.6, -0.4, 21.6))
    assert both([halves, TRANSFER_ALONE], [h["alone"], t_any])[0] == (-5.8, -17.1, 1.0)  # and the first 23


def test_committed_hrm_transfer_at_equal_compute():
    """docs/ablations.md, "Other tasks in training": HRM alone on the 13 evaluation tasks for the
    59-task run's 24000 steps (transfer-13tasks-hrm-24k) scores above HRM beside the 46 at the same
    steps and far above HRM alone at equal samples; at equal compute the models do not differ in
    what the 46 give. The extra steps, not the other tasks, carry HRM's transfer gain."""
    only = compare.task_list("transfer-13tasks")
    h24, h46 = HRM_ALONE_24K_4_7, HRM_TRANSFER["all46"]
    t24, t46 = TRANSFER_ALONE_24K, TRANSFER_ALL46
    runs = _arm_runs(h24, only)
    assert runs.tolist() == pytest.approx([30.8, 42.3, 50.0, 50.0], abs=0.05) and round(runs.mean(), 1) == 43.3
    assert _reading([h46], [h24], only)[:3] == ((-12.5, -24.0, -1.9), -26.4, (1, 6))
    xeon = "outer-loop-59tasks-fit:core=hrm,max_steps=24000,halt_max_steps=4"  # the table's seeds 4-7
    assert _reading([xeon], [h24], only) == ((-18.3, -34.6, -4.8), -35.9, (0, 6), (-18.3, -35.0, -1.5))
    assert _reading([h24], [HRM_TRANSFER["alone"]], only)[:3] == (
        (27.9, 9.6, 48.1), 10.0, (7, 0))
    assert _reading([h24], [t24], only)[0] == (14.4, 4.8, 24.5)
    assert _reading([h46, t24], [h24, t46], only)[:3] == ((-12.0, -25.0, -1.4), -26.9, (1, 6))


def test_committed_hrm_transfer_at_equal_compute_on_eight_seeds():
    """docs/ablations.md, "Other tasks in training": seeds 8-11 of HRM alone at 24000 steps
    (transfer-13tasks-hrm-24k-more) score below seeds 4-7, and on eight seeds what the four had
    resolved at equal compute (the 46 cost HRM points, HRM alone beats the transformer alone, the
    models differ) no longer resolves every way; the steps' worth at equal samples still does."""
    only = compare.task_list("transfer-13tasks")
    h24, more = HRM_TRANSFER["alone24k"], "transfer-13tasks-hrm-24k-more:preset=tiny"
    t24, t46 = TRANSFER_ALONE_24K, TRANSFER_ALL46
    runs = _arm_runs(more, only)
    assert runs.tolist() == pytest.approx([46.2, 30.8, 38.5, 15.4], abs=0.05) and round(runs.mean(), 1) == 32.7
    assert round(_arm_runs(h24, only).mean(), 1) == 38.0
    assert _reading([more], [HRM_ALONE_24K_4_7], only)[:3] == ((-10.6, -19.2, -3.8), -26.9, (0, 5))
    assert _reading([HRM_TRANSFER["all46"]], [h24], only) == ((-7.2, -19.2, 2.9), -21.9, (3, 4), (-7.2, -20.2, 5.8))
    assert _reading([h24], [HRM_TRANSFER["alone"]], only) == ((22.6, 6.7, 40.9), 5.5, (7, 0), (22.6, 12.6, 32.6))
    assert _reading([h24], [t24], only) == ((9.1, 1.4, 19.2), -1.3, (5, 0), (9.1, -1.6, 19.9))
    assert _reading([HRM_TRANSFER["all46"], t24], [h24, t46], only)[:3] == ((-6.7, -19.1, 3.7), -21.3, (2, 4))
    amd = "outer-loop-59tasks-24k-amd:preset=tiny"
    assert _reading([amd], [more], only)[0] == (3.8, -13.5, 18.3)


def test_committed_hrm_first_transfer_step_at_equal_compute():
    """docs/ablations.md, "How much the other tasks give": HRM alone on the 13 evaluation tasks for a
    half's steps (transfer-13tasks-hrm-14k) scores above HRM beside any half at those steps, as at
    24000 steps against all 46; the steps, not the other tasks, carry the first step's gain too."""
    only = compare.task_list("transfer-13tasks")
    h14 = "transfer-13tasks-hrm-14k:preset=tiny"
    any_half = ";".join(HRM_TRANSFER[x] for x in "abcd")
    runs = _arm_runs(h14, only)
    assert runs.tolist() == pytest.approx([23.1, 23.1, 42.3, 19.2, 23.1, 30.8], abs=0.05) and round(runs.mean(), 1) == 26.9
    assert round(_arm_runs(any_half, only).mean(), 1) == 19.7
    assert _reading([any_half], [h14], only) == ((-7.2, -18.8, -0.1), -19.2, (2, 5), (-7.2, -16.0, 1.6))
    assert _reading([any_half], [_on_seeds(h14, range(4, 8))], only)[0] == (-7.2, -19.5, 0.0)
    assert _reading([h14], [HRM_TRANSFER["alone"]], only) == ((11.5, 1.0, 29.8), -0.4, (5, 1), (11.5, 2.7, 20.4))
    assert _reading([HRM_TRANSFER["all46"], h14], [HRM_TRANSFER["alone24k"], any_half], only)[0] == (-0.0, -13.1, 11.1)
    assert _reading([HRM_TRANSFER["alone24k"]], [h14], only)[0] == (11.1, -1.4, 26.9)


def test_committed_equal_flops_lead_shrinks_with_budget_on_the_epyc():
    """docs/ablations.md, "Twice the budget at equal compute on the EPYC": the transformer's lead
    at HRM's FLOPs, 10.4 at 44 TFLOP and 1.5 at 89 on seeds 8-11, the shrinkage resolved; over
    both CPU kinds (the Xeon's seeds 4-7 pooled in) the lead at 89 TFLOP is 4.4."""
    r, x = "outer-loop-59tasks-compute-24k-amd", "outer-loop-59tasks-compute-24k"
    t48, h24 = f"{r}:preset=transformer-tiny,max_steps=48000", f"{r}:preset=tiny,max_steps=24000"
    t24, h12 = f"{r}:preset=transformer-tiny,max_steps=24000", f"{r}:preset=tiny,max_steps=12000"

    def over_tasks(plus, minus):
        return _interval(compare.compare(plus, minus)["over_tasks"])

    assert over_tasks([t24], [h12]) == (10.4, 4.9, 16.5)
    assert over_tasks([t48], [h24]) == (1.5, -1.9, 5.5)
    assert over_tasks([t48, h12], [h24, t24]) == (-8.9, -15.5, -2.4)
    both = over_tasks([f"{x}:preset=transformer-tiny,max_steps=48000;{t48}"], [f"{x}:preset=tiny,max_steps=24000;{h24}"])
    assert both == (4.4, 0.3, 9.0)


def test_committed_hrm_replay_at_24000_steps_on_the_epyc():
    """docs/ablations.md, "HRM at 24000 steps replayed on the EPYC": HRM's seeds 4-5 retrained on
    an AMD EPYC with the Xeon's stage keys score 33.3% against the Xeon's 35.0%; the EPYC's seeds
    8-11 (39.3%) are what score high, not the CPU kind."""
    r, m = "outer-loop-59tasks-24k-hrm-amd", "outer-loop-59tasks-24k-more"
    xeon = f"{m}:halt_max_steps=4,seed=4;{m}:halt_max_steps=4,seed=5"
    out = compare.compare([f"{r}:preset=tiny"], [xeon])
    assert _infer_keys(f"{r}:preset=tiny") == _infer_keys(xeon)
    assert _interval(out["over_tasks"]) == (-1.7, -8.1, 4.7)
    high = compare.compare([f"{r}:preset=tiny"], ["outer-loop-59tasks-24k-amd:preset=tiny"])["over_tasks"]
    assert _interval(high) == (-5.9, -10.8, -1.3)


def _equal_flops_grid(report: str, runs: int) -> dict[tuple[str, int], str]:
    """The four arms of an equal-FLOPs grid (HRM at 12000 and 24000 steps, the transformer at
    24000 and 48000) as compare specs, in that order, each checked to hold `runs` runs."""
    arms = {(p, n): f"{report}:preset={p},max_steps={n}" for p, n in
            (("tiny", 12000), ("tiny", 24000), ("transformer-tiny", 24000), ("transformer-tiny", 48000))}
    assert all(compare.arm(a).runs.height == runs for a in arms.values())
    return arms


def _every_24000_step_run(grid: str, transformer_seeds: tuple[int, ...], hrm_seeds: tuple[int, ...]) -> dict:
    """The transformer against HRM over every four-segment 24000-step run of the two in the
    committed reports before the EPYC's equal-FLOPs grids, plus the grid `grid`'s 24000-step runs
    on the seeds given (its other seeds there are cache hits already counted)."""
    a = "outer-loop-59tasks-24k-amd"

    def grid_runs(preset: str, seeds: tuple[int, ...]) -> str:
        return "".join(f";{grid}:preset={preset},max_steps=24000,seed={s}" for s in seeds)

    return compare.compare(
        ["outer-loop-59tasks-24k:core=transformer;outer-loop-59tasks-fit:core=transformer,max_steps=24000;"
         f"{a}:preset=transformer-tiny" + grid_runs("transformer-tiny", transformer_seeds)],
        ["outer-loop-59tasks-24k:core=hrm,halt_max_steps=4;outer-loop-59tasks-samples:halt_max_steps=4,max_steps=24000;"
         f"outer-loop-59tasks-fit:core=hrm,max_steps=24000,halt_max_steps=4;{a}:preset=tiny;outer-loop-59tasks-24k-hrm-amd:preset=tiny"
         + grid_runs("tiny", hrm_seeds)])


def test_committed_equal_flops_lead_on_six_epyc_seeds():
    """docs/ablations.md, "Equal compute on six EPYC seeds": with seeds 4-5 in, the transformer's
    lead at HRM's FLOPs still shrinks with budget (13.4 -> 4.7, the change resolved) but stays
    resolved at 89 TFLOP; over both CPU kinds 10.7 -> 5.7. The transformer's new runs there have
    the Xeon's stage keys."""
    r, x = "outer-loop-59tasks-compute-6seeds-amd", "outer-loop-59tasks-compute-24k"
    arms = _equal_flops_grid(r, runs=6)
    h12, h24, t24, t48 = arms.values()
    low = compare.compare([t48], [h24])
    assert _interval(low["over_tasks"]) == (4.7, 0.8, 8.5) and round(low["over_tasks"]["seeds_low"], 1) == 0.3
    assert _interval(compare.compare([t24], [h12])["over_tasks"]) == (13.4, 7.4, 19.7)
    assert _interval(compare.compare([t48, h12], [h24, t24])["over_tasks"]) == (-8.7, -14.6, -3.0)
    pooled = {k: f"{x}:preset={k[0]},max_steps={k[1]};{v}" for k, v in arms.items()}
    both = compare.compare([pooled["transformer-tiny", 48000]], [pooled["tiny", 24000]])
    assert [len(v) for v in both["values"]] == [10, 10] and _interval(both["over_tasks"]) == (5.7, 1.7, 10.1)
    change = compare.compare([pooled["transformer-tiny", 48000], pooled["tiny", 12000]],
                             [pooled["tiny", 24000], pooled["transformer-tiny", 24000]])
    assert _interval(change["over_tasks"]) == (-5.0, -10.0, -0.1)
    assert _interval(compare.compare([t24], [h24])["over_tasks"]) == (3.0, -0.6, 6.9)  # equal steps: near level
    every = _every_24000_step_run(r, transformer_seeds=(4, 5), hrm_seeds=())  # 18 an arm
    assert [len(v) for v in every["values"]] == [18, 18] and _interval(every["over_runs"]) == (3.9, 1.5, 6.3)
    for n in (24000, 48000):
        ours = f"{r}:preset=transformer-tiny,max_steps={n},seed=4;{r}:preset=transformer-tiny,max_steps={n},seed=5"
        xeon = f"{x}:preset=transformer-tiny,max_steps={n},seed=4;{x}:preset=transformer-tiny,max_steps={n},seed=5"
        assert _infer_keys(ours) == _infer_keys(xeon)


def test_committed_equal_flops_lead_on_eight_epyc_seeds():
    """docs/ablations.md, "Equal compute on eight EPYC seeds": with seeds 6-7 in, the transformer's
    lead at HRM's FLOPs shrinks with budget (12.6 -> 4.4) and what remains at 89 TFLOP is resolved
    over runs too; over both CPU kinds, 12 runs an arm, the narrowing is resolved with seeds
    resampled. The six new trainings have the Xeon's stage keys."""
    r, x = "outer-loop-59tasks-compute-8seeds-amd", "outer-loop-59tasks-compute-24k"
    arms = _equal_flops_grid(r, runs=8)
    h12, h24, t24, t48 = arms.values()
    low = compare.compare([t48], [h24])
    assert _interval(low["over_tasks"]) == (4.4, 1.1, 8.2) and _interval(low["over_runs"]) == (4.4, 0.6, 8.3)
    assert round(low["over_tasks"]["seeds_low"], 1) == 0.4
    assert _interval(compare.compare([t24], [h12])["over_tasks"]) == (12.6, 7.2, 18.5)
    change = compare.compare([t48, h12], [h24, t24])
    assert _interval(change["over_tasks"]) == (-8.1, -13.6, -2.7) and _interval(change["over_runs"]) == (-8.1, -13.7, -2.5)
    pooled = {k: f"{x}:preset={k[0]},max_steps={k[1]};{v}" for k, v in arms.items()}
    both = compare.compare([pooled["transformer-tiny", 48000]], [pooled["tiny", 24000]])
    assert [len(v) for v in both["values"]] == [12, 12] and _interval(both["over_tasks"]) == (5.4, 1.6, 9.5)
    both_change = compare.compare([pooled["transformer-tiny", 48000], pooled["tiny", 12000]],
                                  [pooled["tiny", 24000], pooled["transformer-tiny", 24000]])["over_tasks"]
    assert _interval(both_change) == (-5.2, -9.9, -0.7) and round(both_change["seeds_high"], 1) == -0.2
    assert _interval(compare.compare([t24], [h24])["over_tasks"]) == (1.9, -1.1, 4.9)  # equal steps: near level
    m = "outer-loop-59tasks-12k-more-amd"  # per step: the lead at 24000 minus the lead at 12000, the same seeds
    assert _interval(compare.compare([t24, f"{m}:preset=tiny"], [h24, f"{m}:preset=transformer-tiny"])["over_tasks"]) == (-8.7, -12.7, -5.1)
    a = "outer-loop-59tasks-24k-amd"
    ours = ";".join(f"{r}:preset=tiny,max_steps=24000,seed={s}" for s in (4, 5, 6, 7))
    assert _interval(compare.compare([ours], [f"{a}:preset=tiny"])["over_tasks"]) == (-4.0, -8.5, 0.2)
    every = _every_24000_step_run(r, transformer_seeds=(4, 5, 6, 7), hrm_seeds=(6, 7))  # 20 an arm
    assert [len(v) for v in every["values"]] == [20, 20] and _interval(every["over_runs"]) == (3.4, 1.1, 5.7)
    for arm in arms.values():
        new = f"{arm},seed=6;{arm},seed=7"
        assert _infer_keys(new) == _infer_keys(new.replace(r, x))


def test_committed_xeon_eight_seeds_replayed_on_the_epyc():
    """docs/ablations.md, "The Xeon's eight seeds replayed on the EPYC": the same 16 stage keys as
    outer-loop-59tasks-12k-more, trained on an AMD EPYC: the transformer +10.6 there against +7.0
    on the Xeon; 16 runs an arm over both kinds +8.8; and HRM's per-key scores on the two kinds
    barely correlate (0.09), one key's two runs as far apart as two seeds."""
    import polars as pl

    r, x = "outer-loop-59tasks-12k-more-amd", "outer-loop-59tasks-12k-more"
    for preset in ("tiny", "transformer-tiny"):
        assert _infer_keys(f"{r}:preset={preset}") == _infer_keys(f"{x}:preset={preset}")
    assert _interval(compare.compare([f"{r}:preset=transformer-tiny"], [f"{r}:preset=tiny"])["over_tasks"]) == (10.6, 6.3, 15.4)
    kinds = compare.compare([f"{r}:preset=transformer-tiny", f"{x}:preset=tiny"], [f"{r}:preset=tiny", f"{x}:preset=transformer-tiny"])
    assert _interval(kinds["over_tasks"]) == (3.6, 0.1, 7.1) and kinds["over_tasks"]["seeds_low"] < 0
    both = compare.compare([f"{r}:preset=transformer-tiny;{x}:preset=transformer-tiny"], [f"{r}:preset=tiny;{x}:preset=tiny"])
    assert [len(v) for v in both["values"]] == [16, 16] and _interval(both["over_tasks"]) == (8.8, 5.0, 13.2)
    every = compare.compare([f"outer-loop-59tasks:preset=transformer-tiny;{x}:preset=transformer-tiny;{r}:preset=transformer-tiny"],
                            [f"outer-loop-59tasks:preset=tiny,halt_max_steps=4,L_cycles=2;{x}:preset=tiny;{r}:preset=tiny"])
    assert [len(v) for v in every["values"]] == [20, 20] and _interval(every["over_runs"]) == (8.1, 5.6, 10.5)
    root = Path(__file__).resolve().parents[1] / "reports"
    j = pl.read_parquet(root / r / "runs.parquet").join(pl.read_parquet(root / x / "runs.parquet"), on=["preset", "seed"], suffix="_x")
    hrm = j.filter(pl.col("preset") == "tiny").sort("seed")
    e, i = 100 * hrm["pass@2"].to_numpy(), 100 * hrm["pass@2_x"].to_numpy()
    assert hrm.height == 8 and round(float(np.corrcoef(e, i)[0, 1]), 2) == 0.09
    assert (round(float((e - i).std(ddof=1) / 2**0.5), 1), round(float(e.std(ddof=1)), 1), round(float(i.std(ddof=1)), 1)) == (4.4, 4.2, 4.9)


def test_committed_59_task_runs_leave_43_tasks_to_move():
    """docs/ablations.md, "Where the differences live": the 156 runs with per-task scores on the
    59-task set never solve 13 tasks (10 not even by the oracle) and always solve 3. Any new
    59-task report must keep this true or the section be updated. A run is its infer key, its
    score and its oracle, as in `compare`: one key retrained on another CPU kind is another run."""
    import glob

    import polars as pl

    root = Path(__file__).resolve().parents[1] / "reports"
    tables = [pl.read_parquet(f).join(pl.read_parquet(f.replace("run_tasks", "runs")).select("infer", "train"), on="infer")
              for f in sorted(glob.glob(str(root / "*" / "run_tasks.parquet")))]
    # a training read again by another inference (act-steps-59tasks-amd records 16 ACT steps of
    # models other reports read at 4) scores the same at the same step: one run, as in `compare`
    t = pl.concat(x.select("task_id", "pass@2", "oracle", infer=pl.coalesce("train", "infer"),
                           run=pl.col("pass@2").mean().over("infer"), run_oracle=pl.col("oracle").mean().over("infer"))
                  for x in tables if x["task_id"].n_unique() == 59).unique(["infer", "run", "run_oracle", "task_id"])
    per = t.group_by("task_id").agg(best=pl.col("pass@2").max(), worst=pl.col("pass@2").min(), oracle=pl.col("oracle").max(),
                                    m=pl.col("pass@2").mean())
    assert t.select("infer", "run", "run_oracle").unique().height == 156
    counts = (per.filter(pl.col("best") == 0).height, per.filter(pl.col("oracle") == 0).height,
              per.filter(pl.col("worst") == 1).height)
    assert counts == (13, 10, 3)
    x = t.join(per.select("task_id", "m"), on="task_id")
    share = 1 - ((x["pass@2"] - x["m"]) ** 2).mean() / x["pass@2"].var(ddof=0)
    assert round(100 * share) == 68  # the share of per-task variance that task identity explains


def test_committed_core_gap_on_the_epyc_at_12000_steps():
    """docs/ablations.md, "12000 steps and equal compute on the EPYC": the transformer's lead over
    HRM at 12000 steps and at equal FLOPs, trained on an AMD EPYC, and seed 8's two runs of each
    model (24.9% and 34.2% on both CPU kinds) counted as two runs when the Xeon's are pooled in."""
    r, x = "outer-loop-59tasks-12k-amd", "outer-loop-59tasks-12k-more"
    steps = compare.compare([f"{r}:preset=transformer-tiny,max_steps=12000"], [f"{r}:preset=tiny,max_steps=12000"])
    flops = compare.compare([f"{r}:preset=transformer-tiny,max_steps=24000"], [f"{r}:preset=tiny,max_steps=12000"])
    for out, want in ((steps, (9.4, 4.3, 15.5)), (flops, (12.5, 6.3, 18.8))):
        assert _interval(out["over_tasks"]) == want
    pooled = compare.arm(f"{r}:preset=tiny,max_steps=12000;{x}:preset=tiny")
    assert pooled.runs.height == 14 and sorted(pooled.values.round(1))[:3] == [18.9, 20.6, 24.9]
    assert list(pooled.values.round(1)).count(24.9) == 3  # seed 8 on each CPU kind, and the EPYC's seed 4


def test_a_training_read_by_two_inferences_counts_once():
    """act-steps-59tasks-amd reran the inference of the eight-seed grid's models to record 16 ACT
    steps; read at step 4, as the grid read them, they are the same eight runs, not sixteen."""
    a = "act-steps-59tasks-amd:preset=tiny,max_steps=24000"
    g = "outer-loop-59tasks-compute-8seeds-amd:preset=tiny,max_steps=24000"
    pooled = compare.arm(f"{a};{g}")
    assert compare.arm(a).runs["infer"].to_list() != compare.arm(g).runs["infer"].to_list()  # other inferences
    assert pooled.runs.height == 8 and pooled.tasks["infer"].n_unique() == 8 and pooled.tasks.height == 8 * 59
    assert sorted(pooled.values) == sorted(compare.arm(g).values)


def test_committed_refinement_figures():
    """docs/ablations.md, "Test-time refinement": the four-segment models run on to 16 segments
    gain nothing past training, and their four segments voted together beat the last alone on
    every arm, resolved with seeds resampled."""
    import polars as pl

    t = pl.read_parquet(Path(__file__).resolve().parents[1] / "reports" / "act-steps-59tasks-amd" / "refinement.parquet")

    def row(arm: str, step: int | None = None, pooled: str | None = None) -> tuple[float, float, float, float, float]:
        r = t.filter((pl.col("arm") == arm) & (pl.col("step") == step if step else pl.col("pooled") == pooled)).row(0, named=True)
        return tuple(round(100 * r[k], 1) for k in ("delta", "delta_ci_low", "delta_ci_high", "delta_seeds_low", "delta_seeds_high"))

    hrm12, hrm24 = "core=hrm, max_steps=12000", "core=hrm, max_steps=24000"
    tf12, tf24 = "core=transformer, max_steps=12000", "core=transformer, max_steps=24000"
    assert set(t["runs"]) == {8} and set(t["trained_steps"]) == {4}
    assert row(hrm12, 1) == (3.7, 0.6, 7.3, 0.2, 7.5) and row(hrm24, 2) == (3.1, 0.6, 5.9, 0.6, 5.9)
    assert row(hrm24, 16)[:3] == (-2.5, -5.0, -0.3) and row(hrm24, 16)[4] > 0  # over tasks only
    past = [row(a, s) for a in (hrm12, hrm24, tf12, tf24) for s in range(5, 17)]
    assert max(r[0] for r in past) == 0.8 and all(r[1] < 0 for r in past)  # no gain past training resolved
    together = {a: row(a, pooled="1-4") for a in (hrm12, hrm24, tf12, tf24)}
    assert [v[0] for v in together.values()] == [5.2, 4.4, 3.1, 2.0]
    assert all(v[3] > 0 for v in together.values())  # every one resolved with seeds resampled


def test_committed_segment_votes_figures():
    """docs/ablations.md, "Segments or variants as votes": on 59 tasks a segment's answer is a
    weaker vote than a fresh variant's on every arm, resolved with seeds resampled; at the demo's
    1000 variants (eight seeds) the segments voted together gain +3.4 with every variant voting
    (resolved) and +2.9 with the trained ones, never losing a task; at equal answers a segment
    beats a variant drawn from all 1000 (mostly untrained) and loses to a trained one."""
    import polars as pl

    reports = Path(__file__).resolve().parents[1] / "reports"
    v = pl.read_parquet(reports / "act-steps-59tasks-amd" / "refinement_votes.parquet")
    pairs = v.filter(pl.col("vs_alone_n_aug").is_not_null())
    assert pairs.select("steps", "n_aug", "votes", "vs_alone_n_aug").unique().sort("n_aug").rows() == [
        ("1-4", 1, 4, 4), ("1-4", 2, 8, 8)]
    assert sorted(round(100 * d, 1) for d in pairs["delta"]) == [-9.6, -7.1, -6.8, -6.4, -4.9, -4.8, -4.7, -3.7]
    assert (pairs["delta_seeds_high"] < 0).all()  # every arm, both counts: resolved with seeds resampled
    r = pl.read_parquet(reports / "act-steps-59tasks-amd" / "refinement.parquet").filter(pl.col("pooled") == "1-4")
    agree = {a: (round(100 * x, 1), round(100 * y, 1)) for a, x, y in r.select("arm", "agree_steps", "agree_variants").rows()}
    assert agree == {"core=hrm, max_steps=12000": (45.2, 14.9), "core=hrm, max_steps=24000": (48.9, 20.0),
                     "core=transformer, max_steps=12000": (58.4, 21.4), "core=transformer, max_steps=24000": (59.6, 24.5)}
    demo = pl.read_parquet(reports / "act-steps-demo" / "refinement.parquet")
    assert set(demo["runs"]) == {8} and demo["variants"].unique(maintain_order=True).to_list() == ["all", "trained"]
    together = demo.filter(pl.col("pooled") == "1-4")
    assert [round(100 * x, 1) for x in together["pass@2"]] == [28.8, 38.9]
    assert [round(100 * x, 1) for x in together["delta"]] == [3.4, 2.9] and (together["worse"] == 0).all()
    assert round(100 * together["delta_seeds_low"][0], 1) == 0.5  # every variant voting: resolved on eight seeds
    assert round(100 * together["agree_steps"][0], 1) == 27.3 and round(100 * together["agree_variants"][0], 1) == 4.1
    second = demo.filter((pl.col("step") == 2) & (pl.col("variants") == "trained"))
    assert round(100 * second["delta"][0], 1) == 4.8 and second["delta_seeds_low"][0] > 0
    past = demo.filter(pl.col("step") > 4)
    assert (past["better"] <= 1).all() and (past["worse"] <= 1).all()
    votes = pl.read_parquet(reports / "act-steps-demo" / "refinement_votes.parquet").filter(pl.col("vs_alone_n_aug").is_not_null())
    # every variant voting: a segment beats a variant drawn from all 1000 (mostly untrained) at 4 and 8 answers
    dv = votes.filter(pl.col("variants") == "all")
    assert dv["votes"].to_list() == [4, 8, 16, 32, 64, 128, 256, 512]
    assert [round(100 * d, 1) for d in dv["delta"][:2]] == [3.7, 2.5] and (dv["delta_seeds_low"][:2] > 0).all()
    assert (dv["delta_ci_low"][2:] < 0).all() and (dv["delta_ci_high"][2:] > 0).all()
    # only the 32 trained variants voting: segments are the weaker votes, as on 59 tasks, resolved at 4 and 8 answers
    tv = votes.filter(pl.col("variants") == "trained")
    assert tv["votes"].to_list() == [4, 8, 16, 32]
    assert [round(100 * d, 1) for d in tv["delta"]] == [-8.7, -4.0, -1.8, -0.8]
    assert (tv["delta_seeds_high"][:2] < 0).all() and (tv["delta_seeds_high"][2:] > 0).all()
    trained = together.filter(pl.col("variants") == "trained")
    assert (round(100 * trained["agree_steps"][0], 1), round(100 * trained["agree_variants"][0], 1)) == (44.4, 18.8)


THIRD_BUDGET, THIRD_BUDGET_MORE = "outer-loop-59tasks-compute-48k-amd", "outer-loop-59tasks-compute-48k-more-amd"
EIGHT_SEED_GRID = "outer-loop-59tasks-compute-8seeds-amd"  # every seed's 44 and 89 TFLOP runs (seeds 4-6's also in THIRD_BUDGET)
# the report holding each added seed's 178 TFLOP pair (seeds 10 to 13 were each trained where the
# earlier files' caches were not, each in a file of its own)
THIRD_BUDGET_LATER = dict.fromkeys((7, 8, 9), THIRD_BUDGET_MORE) | {s: f"outer-loop-59tasks-compute-48k-seed{s}-amd" for s in range(10, 14)}
# the report holding each seed's 44 and 89 TFLOP runs: seeds 12 and 13 were trained after the grid, each in a file of its own
GRID_OF = dict.fromkeys(range(4, 12), EIGHT_SEED_GRID) | {s: f"outer-loop-59tasks-compute-seed{s}-amd" for s in (12, 13)}


def _third_budget_arms(more: tuple[int, ...]) -> tuple[dict[int, str], dict[int, str]]:
    """HRM's and the transformer's arms at 44, 89 and 178 TFLOP (keyed by steps) on seeds 4-6 and
    the seeds ``more`` added later (none: the three-seed arms): their 178 TFLOP runs in
    THIRD_BUDGET_LATER, their 44 and 89 TFLOP runs in the eight-seed grid, the reports pooled."""
    r = THIRD_BUDGET

    def arm(preset: str, steps: int, grid: bool) -> str:
        """Seeds 4-6, then the added seeds: from the grid, which names its steps, or from the
        reports of the 178 TFLOP pairs, which have one budget a preset and are named by preset."""
        added = [f"{GRID_OF[s]}:preset={preset},max_steps={steps},seed={s}" if grid else f"{THIRD_BUDGET_LATER[s]}:preset={preset},seed={s}"
                 for s in more]
        return ";".join([f"{r}:preset={preset},max_steps={steps}", *added])

    h = {n: arm("tiny", n, True) for n in (12000, 24000)} | {48000: arm("tiny", 48000, False)}
    t = {n: arm("transformer-tiny", n, True) for n in (24000, 48000)} | {96000: arm("transformer-tiny", 96000, False)}
    return h, t


def _third_budget_readings(more: tuple[int, ...]) -> dict[str, tuple]:
    """The pooled readings over seeds 4-6 plus ``more``: the lead at each budget and each model's
    last doubling read every way, the lead's changes between budgets over tasks."""
    h, t = _third_budget_arms(more)
    assert {len(compare.arm(a).runs) for a in (*h.values(), *t.values())} == {3 + len(more)}
    change = {"44->178": ([t[96000], h[12000]], [h[48000], t[24000]]), "89->178": ([t[96000], h[24000]], [h[48000], t[48000]]),
              "44->89": ([t[48000], h[12000]], [h[24000], t[24000]])}
    return {"lead 44": _every_way([t[24000]], [h[12000]]), "lead 89": _every_way([t[48000]], [h[24000]]),
            "lead 178": _every_way([t[96000]], [h[48000]]), "hrm 89->178": _every_way([h[48000]], [h[24000]]),
            "transformer 89->178": _every_way([t[96000]], [t[48000]]),
            **{f"lead {k}": _interval(compare.compare(*arms)["over_tasks"]) for k, arms in change.items()}}


def _command_arms(seeds: str = "") -> dict[tuple[str, int], str]:
    """The third budget's six arms, keyed by (preset, steps), as the docs' commands name them: the
    178 TFLOP runs by the first file and the glob over the later ones, the 44 and 89 TFLOP runs by
    the set of the grid and seeds 12 and 13's files; ``seeds`` (``",seed=4..12"``) narrows every part."""
    later, grid = "outer-loop-59tasks-compute-48k-*-amd", "|".join([EIGHT_SEED_GRID, GRID_OF[12], GRID_OF[13]])
    top = {(p, n): f"{THIRD_BUDGET}:preset={p},max_steps={n}{seeds};{later}:preset={p}{seeds}"
           for p, n in (("tiny", 48000), ("transformer-tiny", 96000))}
    mid = {(p, n): f"{grid}:preset={p},max_steps={n}{seeds}"
           for p, n in (("tiny", 12000), ("tiny", 24000), ("transformer-tiny", 24000), ("transformer-tiny", 48000))}
    return mid | top


def _one_seed(seed: int) -> dict[str, Any]:
    """One seed through the three budgets, as the seed-by-seed table prints it: each model's pass@2
    at 44 / 89 / 178 TFLOP and its fit at 178, the 178 TFLOP lead paired over tasks (an arm of one
    run has nothing over runs), and each model's doubling from 89 TFLOP."""
    e = GRID_OF[seed]
    top = {p: f"{THIRD_BUDGET}:preset={p},max_steps={n},seed={seed}" if seed < 7 else f"{THIRD_BUDGET_LATER[seed]}:preset={p},seed={seed}"
           for p, n in (("tiny", 48000), ("transformer-tiny", 96000))}
    arms = {"tiny": [f"{e}:preset=tiny,max_steps={n},seed={seed}" for n in (12000, 24000)] + [top["tiny"]],
            "transformer-tiny": [f"{e}:preset=transformer-tiny,max_steps={n},seed={seed}" for n in (24000, 48000)] + [top["transformer-tiny"]]}
    out: dict[str, Any] = {}
    for p, specs in arms.items():
        runs = [compare.arm(s).runs for s in specs]
        assert [r.height for r in runs] == [1, 1, 1]
        out[p] = (*[round(100 * r["pass@2"][0], 1) for r in runs], round(100 * runs[-1]["train_exact"][0]))
    lead = compare.compare([top["transformer-tiny"]], [top["tiny"]])
    assert lead["over_runs"] is None
    out["lead 178"] = _interval(lead["over_tasks"])
    out["doubling"] = {p: _interval(compare.compare([s[2]], [s[1]])["over_tasks"]) for p, s in arms.items()}
    return out


# docs/ablations.md, "A third budget: 178 TFLOP on ten seeds", the seed-by-seed table: HRM's and the
# transformer's pass@2 at 44 / 89 / 178 TFLOP with the fit at 178, and the 178 TFLOP lead over tasks
THIRD_BUDGET_SEEDS = {
    4: ((24.9, 37.6, 37.6, 73), (45.8, 41.8, 39.3, 87), (1.7, -7.6, 11.0)),
    5: ((20.6, 29.1, 37.6, 73), (38.4, 46.9, 50.6, 95), (13.0, 3.4, 23.7)),
    6: ((29.1, 40.7, 44.4, 85), (36.7, 43.5, 45.8, 90), (1.4, -7.3, 9.6)),
    7: ((22.3, 33.6, 41.0, 80), (35.0, 38.4, 42.9, 90), (2.0, -6.5, 10.2)),
    8: ((24.9, 41.0, 44.4, 84), (38.4, 40.1, 46.0, 95), (1.7, -5.1, 9.3)),
    9: ((33.6, 41.0, 36.7, 70), (36.2, 41.0, 49.7, 93), (13.0, 4.2, 23.2)),
    10: ((29.1, 35.9, 44.4, 70), (45.2, 41.0, 43.5, 86), (-0.8, -7.6, 6.8)),
    11: ((28.2, 39.3, 41.8, 78), (37.6, 41.0, 52.5, 91), (10.7, 0.6, 21.5)),
    12: ((33.3, 35.9, 40.1, 80), (44.4, 42.7, 47.7, 89), (7.6, -1.7, 17.8)),
    13: ((29.9, 33.3, 37.6, 72), (34.2, 45.2, 41.0, 83), (3.4, -5.9, 12.7))}


def test_committed_third_budget_seed_by_seed():
    """docs/ablations.md, "A third budget: 178 TFLOP on ten seeds": each seed's runs at the three
    budgets as the table prints them; the seeds whose second doubling the bullets name; and the
    AVX2 kernels the later EPYC models were held to, as their manifests record."""
    seeds = {s: _one_seed(s) for s in THIRD_BUDGET_SEEDS}
    assert {s: (o["tiny"], o["transformer-tiny"], o["lead 178"]) for s, o in seeds.items()} == THIRD_BUDGET_SEEDS
    assert seeds[9]["doubling"] == {"tiny": (-4.2, -12.7, 4.2), "transformer-tiny": (8.8, 0.6, 18.6)}
    assert seeds[10]["doubling"] == {"tiny": (8.5, 0.8, 16.9), "transformer-tiny": (2.5, -3.4, 10.2)}
    assert seeds[11]["doubling"]["transformer-tiny"] == (11.6, 2.8, 21.6)
    assert seeds[12]["doubling"] == {"tiny": (4.2, -2.5, 11.5), "transformer-tiny": (5.1, -4.2, 15.3)}
    assert seeds[13]["doubling"] == {"tiny": (4.2, -5.1, 14.4), "transformer-tiny": (-4.2, -11.9, 2.1)}
    # the first eight's two groups at 178 TFLOP: five near zero, three near +12; the ninth and tenth between
    assert sorted(s for s, o in seeds.items() if o["lead 178"][0] > 10) == [5, 9, 11]
    assert all(-1 < o["lead 178"][0] < 2.5 for s, o in seeds.items() if s not in (5, 9, 11, 12, 13))
    assert 2.5 < seeds[13]["lead 178"][0] < seeds[12]["lead 178"][0] < 10
    # seed 12 the steadiest across budgets: its three leads (+11.0, +6.8, +7.6) lie closest together
    leads = {s: [round(h - t, 1) for h, t in zip(o["transformer-tiny"][:3], o["tiny"][:3])] for s, o in seeds.items()}
    assert min(leads, key=lambda s: max(leads[s]) - min(leads[s])) == 12
    # the transformers that end below their own 89 TFLOP run at 178
    assert [s for s, o in seeds.items() if o["transformer-tiny"][2] < o["transformer-tiny"][1]] == [4, 13]
    for seed, model in ((10, "family 26 model 2"), (11, "family 25 model 17"), (12, "family 25 model 17"), (13, "family 25 model 17")):
        assert compare.arm(f"{THIRD_BUDGET_LATER[seed]}:preset=tiny").runs["train_host"].to_list() == [
            f"AMD EPYC ({model}, AVX2 kernels, 2 CPUs, 1 thread)"]
    grid12 = ";".join(_equal_flops_grid(GRID_OF[12], 1).values())
    assert set(compare.arm(grid12).runs["train_host"]) == {"AMD EPYC (family 25 model 17, AVX2 kernels, 2 CPUs, 1 thread)"}


def test_committed_third_budget_ninth_seed():
    """docs/ablations.md, "A third budget": seed 12, trained at 178 TFLOP in one file and at 44 and
    89 TFLOP in another, on the family 25 model 17 EPYC held to AVX2 kernels: its 178 TFLOP pair and
    its lead at each budget, between the eight's two groups at 178 and resolved at none alone; and
    ("Seeds and fit") the later file's fit on every training row beside the sampled one."""
    s = THIRD_BUDGET_LATER[12]
    runs = {p: compare.arm(f"{s}:preset={p}").runs for p in ("tiny", "transformer-tiny")}
    assert {p: (round(100 * r["pass@2"][0], 1), round(100 * r["train_exact"][0])) for p, r in runs.items()} == {
        "tiny": (40.1, 80), "transformer-tiny": (47.7, 89)}
    g = GRID_OF[12]
    leads = [compare.compare([f"{s}:preset=transformer-tiny"], [f"{s}:preset=tiny"])["over_tasks"]] + [
        compare.compare([f"{g}:preset=transformer-tiny,max_steps={2 * n}"], [f"{g}:preset=tiny,max_steps={n}"])["over_tasks"]
        for n in (12000, 24000)]
    assert [(_interval(o), o["better"], o["worse"]) for o in leads] == [
        ((7.6, -1.7, 17.8), 7, 3), ((11.0, -1.7, 22.9), 10, 4), ((6.8, -3.4, 16.9), 8, 3)]
    # its 44 and 89 TFLOP runs read their fit on every training row as well as on 128 sampled ones
    fit = {k: compare.arm(a).runs.select("train_exact_all", "train_exact").row(0) for k, a in _equal_flops_grid(g, 1).items()}
    assert [tuple(round(100 * v, 1) for v in f) for f in fit.values()] == [(57.5, 54.7), (72.6, 70.3), (87.1, 89.8), (88.1, 89.1)]


def test_committed_third_budget_tenth_seed():
    """docs/ablations.md, "A third budget": seed 13, trained at 44 and 89 TFLOP in one file and at
    178 in another a session later, on the family 25 model 17 EPYC held to AVX2 kernels: its runs,
    its lead growing with the first doubling against the grid's trend and shrinking with the second,
    its fit on every training row beside the sampled one; and HRM's 178 TFLOP run the first run of
    any report to solve e9afcf9a."""
    import polars as pl

    g, s = GRID_OF[13], THIRD_BUDGET_LATER[13]
    runs = {k: compare.arm(a).runs for k, a in _equal_flops_grid(g, 1).items()}
    assert [round(100 * r["pass@2"][0], 1) for r in runs.values()] == [29.9, 33.3, 34.2, 45.2]
    # ("Seeds and fit") the fit on every training row beside the 128 sampled rows
    assert [(round(100 * r["train_exact_all"][0], 1), round(100 * r["train_exact"][0], 1)) for r in runs.values()] == [
        (51.0, 43.8), (68.1, 63.3), (79.7, 80.5), (86.6, 86.7)]
    top = {p: compare.arm(f"{s}:preset={p}").runs for p in ("tiny", "transformer-tiny")}
    assert {p: (round(100 * r["pass@2"][0], 1), round(100 * r["train_exact"][0], 1), round(100 * r["train_exact_all"][0], 1))
            for p, r in top.items()} == {"tiny": (37.6, 71.9, 75.5), "transformer-tiny": (41.0, 82.8, 88.8)}
    assert {r["train_host"][0] for r in (*runs.values(), *top.values())} == {"AMD EPYC (family 25 model 17, AVX2 kernels, 2 CPUs, 1 thread)"}
    leads = [compare.compare([f"{g}:preset=transformer-tiny,max_steps={2 * n}"], [f"{g}:preset=tiny,max_steps={n}"])["over_tasks"]
             for n in (12000, 24000)] + [compare.compare([f"{s}:preset=transformer-tiny"], [f"{s}:preset=tiny"])["over_tasks"]]
    assert [(_interval(o), o["better"], o["worse"]) for o in leads] == [
        ((4.2, -4.2, 12.7), 5, 2), ((11.9, 2.5, 22.9), 9, 2), ((3.4, -5.9, 12.7), 5, 4)]
    assert leads[2]["moved"]["e9afcf9a"] == -100.0  # HRM solves it, the transformer does not
    others = [f for f in (Path(__file__).resolve().parents[1] / "reports").glob("*/run_tasks.parquet") if f.parent.name != s]
    earlier = pl.concat(pl.read_parquet(f).filter(pl.col("task_id") == "e9afcf9a").select("pass@2", "oracle") for f in others)
    assert earlier.height > 150 and earlier.max().row(0) == (0.0, 0.0)


# the pooled table, one row as the seeds came in: the lead at each budget and each model's doubling
# from 89 TFLOP (paired over tasks; seeds resampled; over runs), the lead's changes over tasks
THIRD_BUDGET_POOLED = {
    (): {"lead 44": ((15.4, 8.3, 23.2), (6.2, 25.7), (15.4, 5.1, 25.8)),
         "lead 89": ((8.3, 2.6, 14.5), (-0.9, 18.0), (8.3, -4.4, 21.0)),
         "lead 178": ((5.4, 0.0, 11.3), (-3.6, 14.2), (5.4, -6.2, 17.0)),
         "hrm 89->178": ((4.0, -2.0, 9.9), (-4.9, 13.7), (4.0, -8.2, 16.3)),
         "transformer 89->178": ((1.1, -4.8, 6.2), (-8.2, 9.9), (1.1, -10.8, 13.1)),
         "lead 44->178": (-10.1, -18.7, -2.1), "lead 89->178": (-2.9, -11.8, 5.0), "lead 44->89": (-7.2, -14.6, 0.7)},
    (7,): {"lead 44": ((14.8, 8.4, 21.5), (7.4, 22.6), (14.8, 7.3, 22.2)),
           "lead 89": ((7.4, 2.1, 13.1), (0.6, 14.4), (7.4, -0.3, 15.1)),
           "lead 178": ((4.5, 0.1, 9.2), (-1.7, 11.1), (4.5, -2.8, 11.8)),
           "hrm 89->178": ((4.9, 0.8, 9.5), (-1.5, 11.2), (4.9, -2.7, 12.5)),
           "transformer 89->178": ((2.0, -3.1, 7.0), (-5.0, 8.5), (2.0, -5.4, 9.4)),
           "lead 44->178": (-10.2, -18.0, -2.9), "lead 89->178": (-2.9, -10.1, 3.5), "lead 44->89": (-7.3, -14.2, -0.0)},
    (7, 8): {"lead 44": ((14.5, 8.1, 21.6), (7.6, 22.2), (14.5, 9.1, 19.9)),
             "lead 89": ((5.8, 1.5, 10.3), (0.5, 11.7), (5.8, -0.6, 12.1)),
             "lead 178": ((4.0, 0.2, 7.7), (-0.8, 8.8), (4.0, -1.6, 9.5)),
             "hrm 89->178": ((4.6, 1.4, 8.1), (-0.1, 10.1), (4.6, -1.8, 11.0)),
             "transformer 89->178": ((2.8, -1.5, 7.3), (-2.3, 8.1), (2.8, -2.8, 8.3)),
             "lead 44->178": (-10.6, -18.3, -3.2), "lead 89->178": (-1.8, -7.6, 3.8), "lead 44->89": (-8.8, -15.6, -2.1)},
    (7, 8, 9): {"lead 44": ((12.5, 6.9, 18.9), (5.7, 19.8), (12.5, 6.9, 18.1)),
                "lead 89": ((4.8, 0.8, 8.9), (0.0, 10.2), (4.8, -0.5, 10.1)),
                "lead 178": ((5.5, 1.9, 9.1), (1.1, 9.9), (5.5, 0.5, 10.5)),
                "hrm 89->178": ((3.1, 0.1, 6.5), (-1.2, 7.6), (3.1, -2.4, 8.6)),
                "transformer 89->178": ((3.8, -0.2, 7.8), (-1.0, 8.7), (3.8, -1.0, 8.5)),
                "lead 44->178": (-7.1, -13.3, -0.8), "lead 89->178": (0.7, -4.1, 5.4), "lead 44->89": (-7.7, -14.2, -1.5)},
    (7, 8, 9, 10): {"lead 44": ((13.0, 7.4, 19.2), (6.4, 19.9), (13.0, 7.9, 18.2)),
                    "lead 89": ((4.8, 1.0, 9.0), (0.3, 9.7), (4.8, 0.4, 9.3)),
                    "lead 178": ((4.6, 1.3, 7.9), (0.6, 8.6), (4.6, 0.2, 8.9)),
                    "hrm 89->178": ((3.9, 1.1, 7.0), (0.2, 7.9), (3.9, -0.9, 8.6)),
                    "transformer 89->178": ((3.6, -0.3, 7.6), (-1.0, 8.1), (3.6, -0.4, 7.6)),
                    "lead 44->178": (-8.5, -14.3, -2.7), "lead 89->178": (-0.3, -5.1, 4.1), "lead 44->89": (-8.2, -14.1, -2.7)},
    (7, 8, 9, 10, 11): {"lead 44": ((12.6, 7.2, 18.5), (6.6, 19.5), (12.6, 8.1, 17.0)),
                        "lead 89": ((4.4, 1.1, 8.2), (0.4, 8.8), (4.4, 0.6, 8.3)),
                        "lead 178": ((5.3, 2.3, 8.6), (1.4, 9.5), (5.3, 1.1, 9.6)),
                        "hrm 89->178": ((3.7, 1.1, 6.6), (0.5, 7.3), (3.7, -0.4, 7.8)),
                        "transformer 89->178": ((4.6, 1.2, 8.2), (0.5, 8.9), (4.6, 0.6, 8.6)),
                        "lead 44->178": (-7.2, -12.7, -1.9), "lead 89->178": (0.9, -3.1, 4.8), "lead 44->89": (-8.1, -13.6, -2.7)},
    (7, 8, 9, 10, 11, 12): {"lead 44": ((12.4, 7.3, 18.1), (6.4, 18.9), (12.4, 8.0, 16.8)),
                            "lead 89": ((4.7, 1.2, 8.4), (0.9, 8.7), (4.7, 1.4, 8.1)),
                            "lead 178": ((5.6, 2.4, 8.9), (1.7, 9.4), (5.6, 1.9, 9.3)),
                            "hrm 89->178": ((3.8, 1.3, 6.8), (0.7, 7.4), (3.8, 0.2, 7.3)),
                            "transformer 89->178": ((4.6, 1.2, 8.1), (0.7, 8.6), (4.6, 1.2, 8.1)),
                            "lead 44->178": (-6.8, -11.6, -2.0), "lead 89->178": (0.9, -3.1, 4.8), "lead 44->89": (-7.7, -12.9, -3.0)},
    (7, 8, 9, 10, 11, 12, 13): {"lead 44": ((11.6, 6.4, 17.2), (5.7, 17.7), (11.6, 7.5, 15.7)),
                                "lead 89": ((5.4, 2.0, 9.0), (1.7, 9.3), (5.4, 2.3, 8.6)),
                                "lead 178": ((5.4, 2.2, 8.6), (1.6, 9.1), (5.4, 1.8, 8.9)),
                                "hrm 89->178": ((3.8, 1.3, 6.9), (0.8, 7.4), (3.8, 0.5, 7.2)),
                                "transformer 89->178": ((3.8, 0.9, 6.6), (0.3, 7.3), (3.8, 0.4, 7.1)),
                                "lead 44->178": (-6.2, -11.3, -1.2), "lead 89->178": (-0.1, -3.9, 3.5), "lead 44->89": (-6.2, -11.3, -1.4)}}


@pytest.mark.parametrize("more", list(THIRD_BUDGET_POOLED), ids=lambda m: f"seeds-4-{6 + len(m)}")
def test_committed_third_budget_as_the_seeds_came_in(more):
    """docs/ablations.md, "A third budget: 178 TFLOP on ten seeds", the pooled table: its row for
    seeds 4-6 and those added after; from eight seeds on the lead is resolved every way at each
    budget and each model's doubling from 89 TFLOP with seeds resampled, and from nine HRM's over
    runs too."""
    readings = _third_budget_readings(more)
    assert readings == THIRD_BUDGET_POOLED[more]
    if len(more) >= 5:
        assert all(readings[k][0][1] > 0 and readings[k][1][0] > 0 and readings[k][2][1] > 0 for k in ("lead 44", "lead 89", "lead 178"))
        assert readings["hrm 89->178"][1][0] > 0 and readings["transformer 89->178"][1][0] > 0
        assert (readings["hrm 89->178"][2][1] > 0) == (len(more) >= 6)


def test_committed_third_budget_commands():
    """The section's commands read what its tables print: the glob pools the five later reports
    into the ten-seed 178 TFLOP arms, the set of the grid and seeds 12 and 13's files holds the 44
    and 89 TFLOP runs, and the change from 44 to 89 TFLOP reads as the bullets say every way. With
    every part held to seeds 4-12 (seed 13's reports then left out) they read the nine seeds, and
    held to 4-11 the grid's eight."""
    a, a9, a8 = _command_arms(), _command_arms(",seed=4..12"), _command_arms(",seed=4..11")
    h12, h24, h48 = a["tiny", 12000], a["tiny", 24000], a["tiny", 48000]
    t24, t48, t96 = a["transformer-tiny", 24000], a["transformer-tiny", 48000], a["transformer-tiny", 96000]
    ten, nine, eight = (THIRD_BUDGET_POOLED[tuple(range(7, n))] for n in (14, 13, 12))
    assert _every_way([t96], [h48]) == ten["lead 178"]
    assert sorted(set(compare.arm(h48).runs["report"])) == sorted({THIRD_BUDGET, *THIRD_BUDGET_LATER.values()})
    assert _every_way([t48], [h24]) == ten["lead 89"]
    assert _every_way([h48], [h24]) == ten["hrm 89->178"]
    assert _every_way([t48, h12], [h24, t24]) == (ten["lead 44->89"], (-12.4, -0.2), (-6.2, -11.1, -1.2))
    assert _every_way([h24], [h12])[0] == (9.1, 5.3, 13.4)
    assert _every_way([t48], [t24])[0] == (3.0, 0.3, 5.7)
    assert set(compare.arm(h24).runs["report"]) == {EIGHT_SEED_GRID, GRID_OF[12], GRID_OF[13]}
    for arms, want in ((a9, nine), (a8, eight)):
        assert _every_way([arms["transformer-tiny", 96000]], [arms["tiny", 48000]]) == want["lead 178"]
        assert _every_way([arms["transformer-tiny", 48000]], [arms["tiny", 24000]]) == want["lead 89"]
        assert _every_way([arms["tiny", 48000]], [arms["tiny", 24000]]) == want["hrm 89->178"]
    assert _every_way([a9["transformer-tiny", 48000], a9["tiny", 12000]], [a9["tiny", 24000], a9["transformer-tiny", 24000]]) == (
        nine["lead 44->89"], (-13.9, -2.1), (-7.7, -13.0, -2.4))
    assert set(compare.arm(a9["tiny", 48000]).runs["report"]) == {THIRD_BUDGET, *THIRD_BUDGET_LATER.values()} - {THIRD_BUDGET_LATER[13]}


def test_arms_of_one_run_compare_over_tasks(tmp_path):
    """An arm of one run (a budget's first seed) has no spread between runs, so over runs is left
    out (it used to refuse the whole comparison) while the paired difference over tasks stands, and
    the CLI says so in its table."""
    import math

    from typer.testing import CliRunner

    from arcpipe.cli import app

    scores = np.array([[1, 0, 1, 1], [0, 0, 1, 0]], dtype=float)
    _fake_report(tmp_path / "r", ["a", "b", "c", "d"], scores)
    out = compare.compare(["r:seed=0"], ["r:seed=1"], tmp_path)
    assert out["over_runs"] is None and out["over_tasks"]["delta"] == pytest.approx(50.0)
    assert math.isnan(out["over_tasks"]["seeds_low"]) and out["over_tasks"]["low"] <= 50.0 <= out["over_tasks"]["high"]
    cli = CliRunner().invoke(app, ["compare", "--plus", "r:seed=0", "--minus", "r:seed=1", "--reports", str(tmp_path)])
    assert cli.exit_code == 0, cli.output
    assert "over runs: not available (an arm of one run" in cli.output and "seeds resampled n/a" in cli.output


def test_committed_seeds_and_fit_within_arms():
    """docs/ablations.md, "Seeds and fit: within an arm": the slope of pass@2 on train exact within
    the Xeon's ten four-segment arms of the fit section and within the EPYC's six third-budget arms
    on ten seeds (and on nine, and on the grid's eight), each resolved and below the line through its arms'
    means; none for one ACT segment; and the share of the fit's spread within arms that its 128
    sampled rows alone account for."""
    f = "outer-loop-59tasks-fit"
    hrm = [(2, 2, 7400), (2, 2, 12000), (2, 2, 24000), (1, 2, 12000), (1, 2, 21000), (2, 1, 12000), (2, 1, 16000)]
    xeon = [f"{f}:core=hrm,H_cycles={h},L_cycles={l_},halt_max_steps=4,max_steps={n}" for h, l_, n in hrm] + [
        f"{f}:core=transformer,halt_max_steps=4,max_steps={n}" for n in (12000, 24000, 48000)]
    one = [f"{f}:halt_max_steps=1,max_steps={n}" for n in (7400, 12000, 24000)]
    order = [("tiny", 12000), ("tiny", 24000), ("tiny", 48000),
             ("transformer-tiny", 24000), ("transformer-tiny", 48000), ("transformer-tiny", 96000)]

    def epyc_arms(seeds: str = "") -> list[str]:
        """The third budget's six arms on the ten seeds, or narrowed (``",seed=4..11"``: the grid's eight)."""
        arms = _command_arms(seeds)
        return [arms[k] for k in order]

    def reading(specs):
        o = compare.fit_within(specs)
        fits = o["fits"]
        within = sum(((x - x.mean()) ** 2).sum() for x in fits) / (o["n"] - len(fits))
        sampled = np.concatenate([x * (100 - x) / 128 for x in fits]).mean()
        return ((round(o["slope"], 2), round(o["low"], 2), round(o["high"], 2)), round(o["r"], 2), round(o["p"], 4),
                int(o["n"]), round(o["arms_slope"], 2), round(sampled / within, 2))

    assert reading(xeon) == ((0.23, 0.04, 0.42), 0.30, 0.0196, 72, 0.37, 0.86)
    epyc = epyc_arms()
    assert reading(epyc) == ((0.35, 0.14, 0.56), 0.42, 0.0023, 60, 0.42, 0.60)
    assert reading(xeon + epyc)[:5] == ((0.29, 0.15, 0.43), 0.36, 0.0002, 132, 0.39)
    # on nine seeds and on the grid's eight, as the section read them before
    assert reading(epyc_arms(",seed=4..12"))[:5] == ((0.35, 0.12, 0.58), 0.40, 0.0045, 54, 0.44)
    assert reading(xeon + epyc_arms(",seed=4..12"))[:4] == ((0.28, 0.14, 0.43), 0.35, 0.0003, 126)
    assert reading(epyc_arms(",seed=4..11"))[:4] == ((0.32, 0.07, 0.57), 0.37, 0.0154, 48)
    assert reading(xeon + epyc_arms(",seed=4..11"))[0] == (0.27, 0.12, 0.41)
    assert reading(one)[:4] == ((-0.05, -0.56, 0.47), -0.06, 0.8035, 16)
    assert reading(xeon[-3:-1])[0] == (-0.07, -0.44, 0.30)  # the Xeon's transformer at 12000 and 24000 alone
    at_178 = [compare.arm(s).runs for s in (epyc[2], epyc[5])]  # both models' ten runs at 178 TFLOP
    assert [round(float(np.corrcoef(r["train_exact"], r["pass@2"])[0, 1]), 2) for r in at_178] == [0.63, 0.70]
