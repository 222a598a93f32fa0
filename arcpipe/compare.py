"""Differences between arms of built reports, pooled across reports if need be.

A report compares the runs it was built from. Two of its questions need more: runs of two
reports (the same stage keys trained on two CPU kinds, which are two draws of the trainings; or
an arm one report has and another lacks), and reports whose caches are gone, which cannot be
rebuilt with a newer layout. Both are answered from what a report leaves behind: its ``runs``
table (every run's own pass@2 and settings) and, from LAYOUT 15 on, its ``run_tasks`` table
(every run's per-task pass@2).

An arm is ``REPORT:col=value,...`` (a value may be several joined with ``|``, or a range of integers
``seed=4..11``), several joined with ``;`` to pool them; REPORT names a folder
under ``reports/`` or any path, or is a glob over the folders there (``outer-loop-*-amd``), or several
of either joined with ``|``: a sweep whose seeds were added over several sessions lives in several
reports, and a glob or a set pools those of them that hold runs of the settings named. A difference (or an interaction: four arms, two of each sign) is
given two ways: over runs, Welch's t interval on the per-run pass@2 (any report); and over tasks,
when every report involved has ``run_tasks``: paired over the tasks all arms share, with the
report's own two intervals (seeds averaged per task, and seeds resampled too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from arcpipe.errors import ArcpipeError
from arcpipe.runs import parse_settings
from arcpipe.stats import MOVED, least_difference, paired_effects, permutation_f, seed_bootstrap_ci, slope_within, welch


@dataclass
class Arm:
    """The runs one arm spec selects: rows of the reports' runs tables (with ``report``), and their
    per-task scores when every report involved kept them."""

    spec: str
    runs: Any  # pl.DataFrame
    tasks: Any | None  # pl.DataFrame (report, infer, task_id, pass@2) or None

    @property
    def values(self) -> np.ndarray:
        """Per-run pass@2, in points."""
        return 100 * self.runs["pass@2"].to_numpy()

    @property
    def task_ids(self) -> set[str] | None:
        """The tasks the arm's runs were scored on (None without run_tasks)."""
        return None if self.tasks is None else set(self.tasks["task_id"].to_list())

    def values_on(self, task_ids: Sequence[str]) -> np.ndarray:
        """Per-run pass@2 over ``task_ids`` only, in points, in the runs' order: a run's pass@2 is
        the mean of its tasks' scores, so this is the score it would have had on those tasks."""
        import polars as pl

        if self.tasks is None:
            raise ArcpipeError(f"compare {self.spec!r}: no per-task scores (run_tasks) to restrict to shared tasks")
        means = (self.tasks.filter(pl.col("task_id").is_in(list(task_ids)))
                 .group_by("report", "infer").agg(pl.col("pass@2").mean().alias("on")))
        return 100 * self.runs.select("report", "infer").join(means, on=["report", "infer"], how="left",
                                                             maintain_order="left")["on"].to_numpy()


#: The runs-table columns that name one training: its inference stage key and what it scored (every
#: report layout has them). Equal on a replay (the same key on the same CPU kind), which is one run.
RUN_IDENTITY = ("infer", "pass@2", "oracle", "train_exact")


def _report_dir(name: str, reports: Path) -> Path:
    path = Path(name)
    return path if path.is_dir() else reports / name


class _NoRuns(ArcpipeError):
    """A report's runs hold none of the values asked for: an error for a report named outright, a
    report left out for one a glob matched. (A report whose runs table lacks a column asked for
    cannot say whether its runs match: an error either way.)"""


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def _is_pool(name: str) -> bool:
    """Whether a part's REPORT may stand for several reports (a glob, or names joined with ``|``),
    which then pools those holding the runs asked for rather than requiring each to."""
    return "|" in name or _is_glob(name)


def names_several_reports(spec: str) -> bool:
    """Whether any part of an arm spec names its reports by a glob or a ``|`` set (the CLI then
    says which it pooled)."""
    return any(_is_pool(part.partition(":")[0]) for part in spec.split(";"))


def _report_parts(part: str, name: str, reports: Path) -> list[tuple[str, Path]]:
    """The (name, folder) pairs one part's REPORT ``name`` stands for: itself, every built report
    its glob matches, or those of each of several joined with ``|`` (each report once)."""
    out: dict[Path, tuple[str, Path]] = {}  # keyed by the folder itself: a report named twice is read once
    for alt in (a.strip() for a in name.split("|")):
        if not alt:
            raise ArcpipeError(f"compare {part!r}: an empty report name in {name!r}")
        if not _is_glob(alt):
            folder = _report_dir(alt, reports)
            out.setdefault(folder.resolve(), (alt, folder))
            continue
        root, pattern = (reports, alt) if not Path(alt).parent.parts else (Path(alt).parent, Path(alt).name)
        found = sorted(p for p in root.glob(pattern) if (p / "runs.parquet").is_file())
        if not found:
            raise ArcpipeError(f"compare {part!r}: no built report under {root} matches {pattern!r}")
        for p in found:
            out.setdefault(p.resolve(), (p.name if root == reports else str(p), p))
    return list(out.values())


#: The most values one ``a..b`` may stand for: a seed range, not a typo's ten billion.
MAX_RANGE = 10_000


def _alternatives(part: str, col: str, value: str) -> list[str]:
    """The values ``col=value`` accepts, lower-cased: the value itself, several joined with ``|``,
    or an inclusive range of integers ``a..b``. An arm's seeds 4-11 are then ``seed=4..11``, not eight
    ``;`` parts, and the arm stays eight seeds when a ninth lands in a report a glob matches."""
    out = []
    for alt in value.split("|"):
        m = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", alt)
        if m is None:
            out.append(alt.strip().lower())
            continue
        lo, hi = int(m[1]), int(m[2])
        if not 0 <= hi - lo < MAX_RANGE:
            raise ArcpipeError(f"compare {part!r}: {col}={value}: a range a..b needs a <= b and at most {MAX_RANGE} values")
        out += [str(i) for i in range(lo, hi + 1)]
    return out


def _select(part: str, where: str, name: str, folder: Path) -> Any:
    """The runs of one report that ``part``'s settings ``where`` pick (raises ``_NoRuns`` if none)."""
    import polars as pl

    table = folder / "runs.parquet"
    if not table.is_file():
        raise ArcpipeError(f"compare {part!r}: {table}: no runs table (not a built report?)")
    got = pl.read_parquet(table).with_columns(report=pl.lit(name))
    n_all = len(got)
    for col, value in parse_settings(where, f"compare {part!r}", "column"):
        if col not in got.columns:  # an error even for a glob: the report cannot say whether its runs match
            raise ArcpipeError(f"compare {part!r}: {folder.name}'s runs table has no column {col!r} "
                               f"(it did not vary there; columns: {', '.join(got.columns[:12])}, ...)")
        kept = got.filter(pl.col(col).cast(pl.String).str.to_lowercase().is_in(_alternatives(part, col, value)))
        if kept.is_empty():
            values = sorted(set(got[col].cast(pl.String).to_list()), key=lambda v: (len(v), v))
            among = " among the runs the earlier settings pick" if len(got) < n_all else ""
            raise _NoRuns(f"compare {part!r}: no run of {folder.name} has {col}={value}{among} "
                          f"({col} there: {', '.join(values)})")
        got = kept
    if got.is_empty():
        raise _NoRuns(f"compare {part!r}: no run of {folder.name} matches")
    return got


def arm(spec: str, reports: str | Path = "reports") -> Arm:
    """The runs ``spec`` selects (``REPORT:col=value,...[;REPORT:...]``). A column a report's runs
    table lacks is an error rather than a wildcard: it did not vary there, so the table cannot say
    which value its runs held. A glob REPORT pools the reports it matches that hold such runs and
    leaves out those whose runs hold other values (an error only if none is left):
    ``arm(...).runs["report"]`` names the reports pooled."""
    import polars as pl

    runs, tasks = [], []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        report, _, where = part.partition(":")
        picked, missed = [], []
        for name, folder in _report_parts(part, report, Path(reports)):
            try:
                picked.append((name, folder, _select(part, where, name, folder)))
            except _NoRuns as e:
                if not _is_pool(report):
                    raise
                missed.append(str(e))
        if not picked:
            raise ArcpipeError(f"compare {part!r}: none of the {len(missed)} reports it names holds such runs "
                               f"(first: {missed[0]})")
        for name, folder, got in picked:
            _one_setting(part, got)
            runs.append(got)
            per_task = folder / "run_tasks.parquet"
            tasks.append(pl.read_parquet(per_task).with_columns(report=pl.lit(name)) if per_task.is_file() else None)
    if not runs:
        raise ArcpipeError(f"compare {spec!r}: empty arm")
    # reports share runs (a baseline arm reused by a later sweep): one training counts once, known by
    # its stage key and what it scored. The same key trained on another CPU kind is another run, and
    # pass@2 alone cannot tell: two such runs of seed 8 scored 24.9% on both an EPYC and a Xeon, with
    # other predictions. A replay reproduces every column, so the oracle and the training fit join the
    # score. The per-task rows follow the runs kept.
    # Two inferences of one training that score alike are one run too (a report that reran a cached
    # model's inference to record more ACT steps, read at the step the other report read).
    table = pl.concat(runs, how="diagonal_relaxed")
    who = pl.coalesce("train", "infer") if "train" in table.columns else pl.col("infer")
    table = table.with_columns(_run=who)
    identity = ["_run", *(c for c in RUN_IDENTITY if c in table.columns and c != "infer")]
    table = table.unique(subset=identity, keep="first", maintain_order=True).drop("_run")
    # a report named by two parts (two of its settings pooled) brings its run_tasks twice: once is enough
    per_task = None if any(t is None for t in tasks) else (
        pl.concat(tasks).unique(subset=["report", "infer", "task_id"], keep="first", maintain_order=True)
        .join(table.select("report", "infer"), on=["report", "infer"]))
    return Arm(spec, table, per_task)


def _one_setting(part: str, got: Any) -> None:
    """Refuse a part whose runs differ in a setting other than the seed: ``L_cycles=1`` in a
    report that also holds the plain transformer (whose L_cycles is 1 too) would pool two models
    into one arm without a word. Pooling on purpose stays possible, one part per setting joined
    with ';'. The settings are the runs table's columns between its stage keys and ``seed``
    (``report.run_table``: FACTORS, then the factors that varied)."""
    cols = got.columns
    if "augment" not in cols or "seed" not in cols:
        return
    settings = cols[cols.index("augment") + 1:cols.index("seed")]
    mixed = {c: sorted(map(str, got[c].unique().to_list())) for c in settings if got[c].n_unique() > 1}
    if mixed:
        first = next(iter(mixed))
        raise ArcpipeError(f"compare {part!r}: its {got.height} runs differ in "
                           + ", ".join(f"{c} ({' / '.join(v)})" for c, v in mixed.items())
                           + f": add e.g. {first}={mixed[first][0]} (to pool them on purpose, give one part per "
                           f"setting joined with ';')")


def over_runs(arms: Sequence[tuple[float, np.ndarray]], level: float = 0.95) -> dict[str, float]:
    """A signed sum of arm means of per-run values and its Welch interval (Welch-Satterthwaite
    degrees of freedom): each arm a sample of trainings."""
    if any(len(v) < 2 for _, v in arms):
        raise ArcpipeError("compare: an arm of one run has no spread between runs to use")
    return welch(arms, level)


def shared_tasks(arms: Sequence[tuple[float, Arm]], only: Sequence[str] | None = None) -> tuple[list[str] | None, bool]:
    """The tasks every arm was scored on, and whether the arms' task sets differ. Arms of reports
    built on different task sets (the 13 evaluation tasks alone against the 59-task set) compare
    only on the tasks they share, over runs as over tasks: each run's pass@2 is then its mean over
    those tasks, not its report's whole score. Without run_tasks the task sets cannot be read; the
    runs tables' task counts must then agree, else the difference would mix two task sets.
    ``only`` restricts every arm to those tasks too (the 13 evaluation tasks within a 36-task
    and a 59-task run), which needs run_tasks; the second value is then True."""
    sets = [a.task_ids for _, a in arms]
    if only is not None and any(s is None for s in sets):
        raise ArcpipeError("compare: restricting to given tasks needs every report's per-task scores (run_tasks, LAYOUT 15 on)")
    if any(s is None for s in sets):
        counts = sorted({int(n) for _, a in arms if "tasks" in a.runs.columns for n in a.runs["tasks"].to_list()})
        if len(counts) > 1:
            raise ArcpipeError(f"compare: the arms were scored on different numbers of tasks ({' / '.join(map(str, counts))}) "
                               "and a report involved predates run_tasks, so they cannot be restricted to shared tasks")
        return None, False
    common = sorted(set.intersection(*sets, *([set(only)] if only is not None else [])))
    if not common:
        raise ArcpipeError("compare: the arms share no task" + (" among the tasks given" if only is not None else ""))
    return common, only is not None or any(s != sets[0] for s in sets)


def run_values(arms: Sequence[tuple[float, Arm]], only: Sequence[str] | None = None) -> tuple[list[np.ndarray], int | None]:
    """Each arm's per-run pass@2 in points, as a difference or a test over runs reads them: a run's
    own score where the arms share one task set, else its mean over the shared tasks (``shared_tasks``);
    and the number of tasks read that way (None for the runs' own scores)."""
    common, differ = shared_tasks(arms, only)
    return [a.values_on(common) if differ else a.values for _, a in arms], (len(common) if differ else None)


def over_tasks(arms: Sequence[tuple[float, Arm]], only: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The signed sum over the tasks every arm was scored on: paired over tasks with seeds averaged
    per task, and with each arm's runs resampled too (the intervals a report prints), in points;
    ``moved``: each task whose difference (seeds averaged) is not zero, largest first -- a handful
    of tasks often carries a whole difference, and two differences that move the same tasks tell
    more than their sizes. None when a report involved has no run_tasks table."""
    import polars as pl

    common, _ = shared_tasks(arms, only)
    if common is None:
        return None
    mats = []
    for _, a in arms:
        wide = (a.tasks.filter(pl.col("task_id").is_in(common))
                .pivot(on="task_id", index=["report", "infer"], values="pass@2").select(common))
        mats.append(wide.to_numpy().astype(np.float64))
    signs = np.array([s for s, _ in arms])
    diffs = sum(s * m.mean(axis=0) for s, m in zip(signs, mats))
    paired = paired_effects(diffs)
    lo, hi = seed_bootstrap_ci(mats, signs[None, :])
    order = np.argsort(-diffs, kind="stable")
    moved = {common[i]: 100 * float(diffs[i]) for i in order if abs(diffs[i]) > MOVED}
    return {"tasks": len(common), "delta": 100 * float(paired["delta"][0]),
            "low": 100 * float(paired["delta_ci_low"][0]), "high": 100 * float(paired["delta_ci_high"][0]),
            "seeds_low": 100 * float(lo[0]), "seeds_high": 100 * float(hi[0]),
            "better": int(paired["better"][0]), "worse": int(paired["worse"][0]), "moved": moved}


def compare(plus: Sequence[str], minus: Sequence[str] = (), reports: str | Path = "reports",
            tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """Sum of the ``plus`` arms' mean pass@2 minus the ``minus`` arms' (points), over runs and,
    where kept, over tasks; with each arm's runs and the per-run values used (each run's pass@2,
    or its mean over the shared tasks when the arms' task sets differ or ``tasks`` restricts
    them: ``tasks``, also in ``over_runs``, the number of tasks read). ``over_runs`` is None when
    an arm has one run (a difference over tasks holds the trainings fixed and needs none)."""
    if not plus and not minus:
        raise ArcpipeError("compare: give at least one arm")
    arms = [(1.0, arm(s, reports)) for s in plus] + [(-1.0, arm(s, reports)) for s in minus]
    values, n_read = run_values(arms, tasks)
    tasks_read = over_tasks(arms, tasks)
    if min(len(v) for v in values) < 2:  # no spread between runs: over tasks is all there is
        if tasks_read is None:
            raise ArcpipeError("compare: an arm of one run has no spread between runs to use, and a report involved "
                               "predates per-task scores")
        runs = None
    else:
        runs = {**over_runs([(s, v) for (s, _), v in zip(arms, values)]), "tasks": n_read}
    return {"arms": arms, "values": values, "over_runs": runs, "over_tasks": tasks_read, "tasks": n_read}


def among(specs: Sequence[str], reports: str | Path = "reports", tasks: Sequence[str] | None = None,
          n_perm: int = 20000, seed: int = 0) -> dict[str, Any]:
    """Whether several arms differ at all: the one-way F test of their per-run pass@2 with a
    permutation p-value (``stats.permutation_f``), on the tasks they share as in ``compare``.
    Asked before a pairwise difference is read when the pair was picked for being far apart
    (the best and worst of four random halves of the other tasks): with ``arms``, ``values``
    and ``tasks`` as ``compare`` returns them, and ``f``, ``p``, ``df_between``, ``df_within``,
    ``sd_within`` (runs' spread within an arm) and ``least_difference`` (the gap two arms of the
    fewest runs here must show for a 95% interval over runs to exclude zero)."""
    if len(specs) < 2:
        raise ArcpipeError("compare --among: give two or more arms")
    arms = [(1.0, arm(s, reports)) for s in specs]
    values, n_read = run_values(arms, tasks)
    fewest = min(len(v) for v in values)
    if fewest < 2:
        raise ArcpipeError("compare --among: an arm of one run has no spread between runs to test against")
    out = permutation_f(values, n_perm=n_perm, seed=seed)
    least = least_difference(out["sd_within"], out["df_within"], fewest, fewest)  # every arm has 2+ runs: df > 0
    return {"arms": arms, "values": values, "tasks": n_read, **out, "fewest_runs": fewest, "least_difference": least}


def fit_within(specs: Sequence[str], reports: str | Path = "reports", tasks: Sequence[str] | None = None,
               n_perm: int = 20000, seed: int = 0) -> dict[str, Any]:
    """Whether, within each arm, the runs that fit more of their training pairs (``train_exact``,
    in points) score more (pass@2, read as ``among`` reads it): the common slope within arms with
    its interval and permutation p (``stats.slope_within``), and ``arms_slope``, the line through
    the arms' means. Seeds of one arm differ by several points; this asks whether that spread goes
    through fit, as the spread between arms does ("Score follows training fit"), or around it. A
    run's fit in reports before LAYOUT 21 is measured on a sample of its training rows, and that
    sampling error flattens the slope (it is then a lower bound in size); where every run read its
    fit on all its rows (``train_exact_all``) that reading is used. With ``arms``, ``values``,
    ``fits``, ``fit_column`` (which of the two) and ``tasks``."""
    if not specs:
        raise ArcpipeError("compare --fit: give one or more arms")
    arms = [(1.0, arm(s, reports)) for s in specs]
    values, n_read = run_values(arms, tasks)
    # every training row's fit (LAYOUT 21) where every run has it, else the rows sampled in training
    whole = all("train_exact_all" in a.runs.columns and not a.runs["train_exact_all"].null_count() for _, a in arms)
    column = "train_exact_all" if whole else "train_exact"
    fits = []
    for _, a in arms:
        if column not in a.runs.columns or a.runs[column].null_count():
            raise ArcpipeError(f"compare --fit {a.spec!r}: a run without its training fit (train_exact) in its runs table")
        fits.append(100 * a.runs[column].to_numpy())
    try:  # slope_within refuses too few runs, or a fit that never varies, in words fit for the CLI
        out = slope_within(fits, values, n_perm=n_perm, seed=seed)
    except ValueError as e:
        raise ArcpipeError(f"compare --fit: {e}") from None
    return {"arms": arms, "values": values, "fits": fits, "fit_column": column, "tasks": n_read, **out}


def task_list(spec: str, reports: str | Path = "reports") -> list[str]:
    """The tasks ``spec`` names: a built report (every task its runs were scored on, from its
    run_tasks table) or task ids joined with ','."""
    import polars as pl

    folder = _report_dir(spec, Path(reports))
    if (folder / "runs.parquet").is_file():
        table = folder / "run_tasks.parquet"
        if not table.is_file():
            raise ArcpipeError(f"compare --tasks {spec}: {folder.name} has no per-task scores (run_tasks.parquet)")
        return sorted(pl.read_parquet(table, columns=["task_id"])["task_id"].unique().to_list())
    ids = [t.strip() for t in spec.split(",") if t.strip()]
    if not ids or any("/" in t for t in ids):
        raise ArcpipeError(f"compare --tasks {spec!r}: neither a built report nor task ids joined with ','")
    return ids
