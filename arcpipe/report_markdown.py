"""report.md: the report's tables rendered as markdown, section by section.

Pure formatting over the frames ``arcpipe.report`` computed (nothing here queries the cache or
scores a prediction), so the text of a section can change without touching its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from arcpipe import signals
from arcpipe.runs import EQUAL_COMPUTE, FACTOR_TITLES, FACTORS, Run, same_partition, varying_factors
from arcpipe.stats import expanded_tail

#: The metrics of the headline table, in its column order.
HEADLINE = ("pass@1", "pass@2", "oracle")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    return {"params": lambda x: f"{x / 1e3:.0f}k" if x < 1e6 else f"{x / 1e6:.2f}M",
            "train_exact": _pct, "train_s": lambda x: f"{x / 60:.1f} min",
            "train_samples": lambda x: f"{x:.0f}" if x < 1e4 else f"{x / 1e3:.0f}k", "train_flops": flops_text}[kind](v)


def flops_text(x: float) -> str:
    """FLOPs with an SI prefix: 2.9e13 -> "29.1 TFLOP"."""
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} FLOP"


def _held(runs: Sequence[Run], main: Run, moved: Sequence[str]) -> str:
    """The main run's other settings, as a section states them: every factor but the ``moved``
    ones and those that only restate one of them (preset for core)."""
    vals = {h: [r.factor(h) for r in runs] for h in dict.fromkeys([*FACTORS, *varying_factors(runs)])}
    names = [h for h in vals if h not in moved and main.factor(h) is not None
             and not any(same_partition(vals[m], vals[h]) for m in moved)]
    text = ", ".join(f"{h}={main.factor(h)}" for h in names) or "nothing else fixed"
    if {"core", "preset"} & set(moved) and any(h not in FACTORS for h in names):
        text += "; where another preset fixes one of these itself, its runs keep their preset's value"
    return text


def _factor_markdown(f: str, table: Any, steps: Any, voted: Any, runs: Sequence[Run], main: Run, rules: list[str], primary: str,
                     seeds: int, split: Any = None) -> list[str]:
    import polars as pl

    title = FACTOR_TITLES.get(f, f)
    parts = [f"## pass@2 by {title}", "",
             f"Runs that differ from the main run only in `{f}` ({_held(runs, main, [f])}); "
             f"training seeds averaged per task; every cached variant voted. Rule columns: pass@2 [95% CI]. "
             f"Train exact = exact accuracy on the training pairs at the end of training. Column Δ: the "
             f"difference from `{f}={main.factor(f)}` on the same tasks, pass@2 points ({primary}), with a paired "
             f"bootstrap interval (tasks that gained ↑ / lost ↓).", "",
             f"![pass@2 by {title}](by_{f}.png)", ""]
    values = list(dict.fromkeys(table[f].to_list()))
    rows = []
    for v in values:
        d = table.filter(pl.col(f) == v)
        first = d.row(0, named=True)
        cells = []
        for rule in rules:
            r = d.filter(pl.col("rule") == rule).row(0, named=True)
            cells.append(f"{_pct(r['pass@2'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]")
        prim = d.filter(pl.col("rule") == primary).row(0, named=True)
        rows.append([v, first["runs"], _fmt(first["params"], "params"), _fmt(first["train_exact"], "train_exact"),
                     _fmt(first.get("train_samples"), "train_samples"), _fmt(first["train_s"], "train_s")] + cells + [_pct(first["oracle"]),
                                                                  "—" if v == main.factor(f) else _delta(prim),
                                                                  "—" if v == main.factor(f) else _seeds(prim)])
    parts += [_md_table([f, "runs", "dense params", "train exact", "samples trained", "train time"] + rules
                        + ["oracle", f"Δ vs {main.factor(f)}", "seeds resampled"], rows), ""]
    if split is not None:
        counts = dict(zip(split["source"].to_list(), split["tasks"].to_list()))
        parts += [f"pass@2 by task source (rule {primary}; " + ", ".join(f"{k}: {n} tasks" for k, n in counts.items())
                  + f"): [95% CI] over that source's tasks, and the paired difference from `{f}={main.factor(f)}` on them:", "",
                  _by_value_table(split, f, values, "source",
                                  lambda r: f"{_pct(r['pass@2'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
                                  + ("" if r[f] == main.factor(f) else f", Δ {_delta(r)}")), ""]
    parts += [f"pass@2 by ACT step used at inference (rule {primary}):", "",
              _by_value_table(steps, f, values, "step", lambda r: _pct(r["pass@2"])), ""]
    parts += [f"pass@2 · oracle by inference variants voted (rule {primary}; below an arm's variant count, the "
              f"mean over {seeds} seeded subsamples, identity kept; training seeds averaged):", "",
              _by_value_table(voted, f, values, "n_aug", lambda r: f"{_pct(r['pass@2'])} · {_pct(r['oracle'])}"), ""]
    return parts


def _by_value_table(frame: Any, f: str, values: list[Any], x: str, cell: Any) -> str:
    """A markdown table with a row per value of column ``x`` and a column per value of factor
    ``f``: ``cell(row)`` where the frame has that pair, "-" where it does not."""
    import polars as pl

    rows = []
    for n in sorted(set(frame[x].to_list())):
        d = {r[f]: r for r in frame.filter(pl.col(x) == n).iter_rows(named=True)}
        rows.append([n] + [cell(d[v]) if v in d else "-" for v in values])
    return _md_table([x] + [str(v) for v in values], rows)


def _pools_markdown(pools: Any, rules: list[str], seeds: int) -> list[str]:
    names = {"all": "all", "trained": "trained identifier", "untrained": "untrained identifier"}
    parts = ["## Trained vs untrained variants", "",
             "The plan voted variants whose puzzle identifier never received a gradient (variant ≥ train_aug: "
             "a zero embedding). pass@2 [95% CI] voting each pool alone (`arcpipe vote --variants`); the last row "
             f"draws as many untrained variants as there are trained ones (mean over {seeds} subsamples). Table `variant_pools`.", ""]
    rows = []
    for (pool, n), d in pools.group_by(["variants", "n_aug"], maintain_order=True):
        get = {r["rule"]: r for r in d.iter_rows(named=True)}
        rows.append([names[pool], n] + [f"{_pct(get[r]['pass@2'])} [{_pct(get[r]['ci_low'])}, {_pct(get[r]['ci_high'])}]" for r in rules]
                    + [_pct(get[rules[0]]["oracle"])])
    return parts + [_md_table(["variants", "per task"] + rules + ["oracle"], rows), ""]


def _auroc_text(v: float | None, lo: float | None = None, hi: float | None = None) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{v:.2f}"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def _signals_markdown(sig: Any, cal: Any) -> list[str]:
    """The "do the signals know" section: AUROC per ACT step and signal, then q_halt's calibration."""
    import polars as pl

    parts = ["## Do the signals know when a prediction is right?", "",
             "Every prediction of the main run (one per test input, variant and ACT step, inverse-transformed) is "
             "right or wrong. The Q head was trained (BCE) to tell which; the halting decision and the rules other than "
             "`count` rank by sigmoid(q_halt), `logprob` by the summed token log-probability. AUROC = the chance a right "
             "prediction scores above a wrong one (0.50: no information; 1: perfect), [95% bootstrap over tasks], "
             "counted two ways: *within an input* compares only predictions for the same test input (what a rule needs "
             "to rank the right answer first), *pooled* compares any two (it also credits a signal for being high on "
             "easy tasks and low on hard ones: what halting or abstaining needs). For reference, *agreement* is the "
             "signal `count` votes with: the share of the input's predictions giving the same answer. Table `signals` "
             "(also the mean of each signal on right and on wrong predictions).", ""]
    rows = []
    for s in sig["step"].unique(maintain_order=True).to_list():
        get = {r["signal"]: r for r in sig.filter(pl.col("step") == s).iter_rows(named=True)}
        qh = get["q_halt"]
        row = [s, qh["predictions"], _pct(qh["right"]), qh["pairs"]]
        for name in signals.SIGNALS:
            r = get[name]
            row += [_auroc_text(r["auroc"], r["ci_low"], r["ci_high"]),
                    _auroc_text(r["pooled_auroc"], r["pooled_ci_low"], r["pooled_ci_high"])]
        rows.append(row)
    names = {"q_halt": "sigmoid(q_halt)", "logprob": "logprob", "agreement": "agreement"}
    parts += [_md_table(["step", "predictions", "right", "pairs within an input"]
                        + [h for n in signals.SIGNALS for h in (f"{names[n]}: within an input", "pooled")], rows), ""]
    if (sig["pooled_ci_low"].is_nan() & sig["pooled_auroc"].is_not_nan()).any():
        parts += [f"Pooled AUROCs without an interval: predictions × tasks is above {signals.POOLED_CI_CELLS:,}, where "
                  "its bootstrap (a tasks × tasks pair count per signal and step) would dominate the report's time; the "
                  "within-input intervals are complete.", ""]
    if cal.height:
        parts += [f"Calibration of sigmoid(q_halt) at step {cal['step'][0]}: the predictions in {cal.height} equal-count "
                  "bins, lowest first; a calibrated head has each bin's share right near its mean sigmoid. Table `calibration`.", ""]
        rows = [[r["bin"] + 1, f"{r['q_low']:.4f}–{r['q_high']:.4f}", r["predictions"], f"{r['mean_q']:.4f}", _pct(r["right"])]
                for r in cal.iter_rows(named=True)]
        parts += [_md_table(["bin", "sigmoid(q_halt)", "predictions", "mean sigmoid", "right"], rows), ""]
    return parts


def _delta(r: dict) -> str:
    return (f"{100 * r['delta']:+.1f} [{100 * r['delta_ci_low']:+.1f}, {100 * r['delta_ci_high']:+.1f}] "
            f"({r['better']}↑ {r['worse']}↓)")


def _seeds(r: dict) -> str:
    """The difference's interval with training runs resampled too; "(one run)" where an arm had one."""
    lo, hi = r.get("delta_seeds_low"), r.get("delta_seeds_high")
    if lo is None or hi is None or lo != lo or hi != hi:  # NaN: one run, no seed spread to resample
        return "(one run)"
    return f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _tails(n_tasks: int) -> str:
    tail = expanded_tail(n_tasks)
    return f"{100 * tail:.2f}% and {100 * (1 - tail):.2f}%"


#: What the second interval of every paired difference means (factor, grid and rule tables), said
#: once at the top of a report of several runs.
SEEDS_NOTE = ("Every paired difference below has a second interval, *seeds resampled*: its 95% interval when each "
              "arm's training runs are resampled as well as the tasks (each arm's whole-run offsets drawn on top of "
              "the task draw, with t tails for the few runs an arm has; in the rules table a drawn run brings every "
              "rule's votes). The paired interval holds the trainings fixed, so it says how "
              "these runs would fare on other tasks, not how other trainings (other seeds, or another CPU model, "
              "which draws another training) would: read a difference as resolved when the seed-resampled interval "
              "excludes zero too. An arm of one run has no spread to resample: *(one run)*.")


def _grid_markdown(f: str, g: str, grid: Any, effects: Any, runs: Sequence[Run], main: Run) -> list[str]:
    import polars as pl

    tf, tg = FACTOR_TITLES.get(f, f), FACTOR_TITLES.get(g, g)
    rule = grid["rule"][0]
    fv, gv = list(dict.fromkeys(grid[f].to_list())), list(dict.fromkeys(grid[g].to_list()))

    def matrix(cell) -> str:
        rows = [[a] + [cell(grid.filter((pl.col(f) == a) & (pl.col(g) == b)).row(0, named=True)) for b in gv] for a in fv]
        return _md_table([f"{f} \\ {g}"] + [str(b) for b in gv], rows)

    return [f"## pass@2 by {tf} × {tg}", "",
            f"Every combination of `{f}` and `{g}` was run ({_held(runs, main, [f, g])}); training seeds averaged per task; rule {rule}, "
            f"every cached variant voted. Table `grid_{f}_{g}`.", "",
            "pass@2 [95% CI]:", "", matrix(lambda r: f"{_pct(r['pass@2'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"), "",
            "oracle (any variant right) · train exact (end of training) · samples trained (sequences run to their halt):", "",
            matrix(lambda r: f"{_pct(r['oracle'])} · {_fmt(r['train_exact'], 'train_exact')} · {_fmt(r.get('train_samples'), 'train_samples')}"), "",
            "Effects, paired over tasks: pass@2 points [95% paired bootstrap CI] (tasks that gained ↑ / lost ↓). "
            f"A joint row moves both from the first corner at once (the two runs differ in both: does one move make up "
            f"for the other?); a trade row sets `{f}` moved (with `{g}` at its first value) against `{g}` moved (with `{f}` at "
            f"its first): which of the two moves is worth more? An interaction row is the effect of moving `{g}` where `{f}` is moved minus where it is not (equally: "
            f"the effect of moving `{f}` where `{g}` is moved minus where it is not); an interval excluding zero says "
            f"the two settings do not act separately. Table `grid_{f}_{g}_effects`.", "",
            _md_table(["setting moved", "held at", f"Δ pass@2 ({rule})", "seeds resampled"],
                      [[f"`{r['factor']}` {r['from']} → {r['to']}", r["at"], _delta(r), _seeds(r)]
                       for r in effects.iter_rows(named=True)]), ""]


def _compute_markdown(table: Any, pairs: Any) -> list[str]:
    rows = [[r["arm"], r["runs"], f"{_fmt(r['train_flops'], 'train_flops')} ({r['flops_ratio']:.2f}×)", _fmt(r["train_s"], "train_s"),
             _fmt(r["train_exact"], "train_exact"), f"{_pct(r['pass@2'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]",
             "—" if r["main"] else _delta(r), "—" if r["main"] else _seeds(r), "✓" if r["frontier"] else ""]
            for r in table.iter_rows(named=True)]
    return ["## pass@2 against training compute", "",
            "Every arm (the runs sharing all settings but the training seed; seeds averaged per task, every cached variant "
            f"voted, rule {table['rule'][0]}) by the arithmetic its training took, cheapest first. A factor section moves one "
            "setting; here arms that trade one setting for another (a cheaper model given more steps) meet at the "
            "compute they cost. Training FLOPs are counted from each run's model config and steps (`hrm.flops`: the "
            "matrix products of every step's forward, Q-target forward and backward; the same on any machine), × = "
            "the ratio to the main run's arm; train time is wall clock, comparable only between runs trained on one "
            "kind of machine at one concurrency. Δ: the paired difference from the main run's arm (tasks that gained ↑ / "
            "lost ↓). Frontier ✓: no arm of at most its compute scored more (point estimates: the intervals say which "
            "gaps are real). Table `compute`.", "", "![pass@2 against training compute](compute.png)", "",
            _md_table(["arm", "runs", "training FLOPs", "train time", "train exact", "pass@2", "Δ vs main run's arm",
                       "seeds resampled", "frontier"], rows), ""] + ([] if pairs is None else [
            f"Arms at about equal compute (training FLOPs within {EQUAL_COMPUTE}× of each other) that differ in two "
            "settings or more, which no factor section compares, paired directly: the dearer arm (at a tie, the later "
            "row) minus the other. Table `compute_pairs`.", "",
            _md_table(["arm", "against", "FLOPs ratio", "Δ pass@2", "seeds resampled"],
                      [[r["to"], r["from"], f"{r['flops_ratio']:.2f}×", _delta(r), _seeds(r)] for r in pairs.iter_rows(named=True)]),
            ""]) + _fit_markdown(table)


def _refinement_steps(steps: list[int], k: int) -> list[int]:
    """The steps a markdown table shows (the CSV has every one): up to the trained step ``k`` all of
    them when k <= 8 (which of its own segments a model does best at), else powers of two; then
    doubling from k, and the last."""
    shown = {s for s in steps if s <= k and (k <= 8 or s & (s - 1) == 0)} | {k, steps[-1]}
    s = 2 * k
    while s < steps[-1]:
        shown.add(s)
        s *= 2
    return [s for s in steps if s in shown]


def _refinement_markdown(table: Any, vs_main: Any, votes: Any = None) -> list[str]:
    rows = []
    split = (table["variants"] == "trained").any()  # the plan voted untrained variants too: both pools get rows
    for arm in dict.fromkeys(table["arm"].to_list()):
        d = table.filter(table["arm"] == arm)
        k = int(d["trained_steps"][0])
        show = _refinement_steps(d["step"].drop_nulls().to_list(), k)
        for r in d.iter_rows(named=True):
            if r["step"] in show or r["pooled"] is not None:
                trained = r["step"] == k
                what = f"{r['step']}" + (" (trained)" if trained else "") if r["pooled"] is None else \
                    f"{r['pooled'].replace('-', '–')} voted together"
                rows.append([arm, *([r["variants"]] if split else []), r["runs"], what, _pct(r["pass@2"]),
                             "—" if trained else _delta(r), "—" if trained else _seeds(r)])
    past = (table["step"] > table["trained_steps"]).any()  # steps recorded past training
    title, opening = (("Test-time refinement: ACT steps past training",
                       "Each arm's inference ran its recurrence on past the ACT segments it was trained to run (the "
                       "HRM paper's inference-time scaling: a higher ACT limit without retraining). ") if past else
                      ("ACT segments at inference: each alone and voted together",
                       "Inference computes every ACT segment the arms were trained to run; which of their answers "
                       "should vote? "))
    out = [f"## {title}", "",
           opening + "pass@2 at each step (rule "
           f"{table['rule'][0]}, every cached variant voted"
           + ("; *variants* trained: only the variants whose puzzle embedding was trained vote" if split else "")
           + ", seeds averaged per task) and its difference from the step "
           "the arm was trained to, paired within each run: the same model and variants, only the steps differ (tasks "
           "that gained ↑ / lost ↓); seeds resampled draws the runs' differences too. *Voted together*: every variant's "
           f"answer at each of those steps is a vote ({'the trained steps, then every step' if past else 'the trained steps'}), as a vote over more "
           "variants would be. Table `refinement` (every step).",
           "", f"![pass@2 against the ACT step{', past training' if past else ''}](refinement.png)", "",
           _md_table(["arm", *(["variants"] if split else []), "runs", "ACT step", "pass@2", "Δ vs trained step",
                      "seeds resampled"], rows), ""]
    if vs_main is not None:
        main = vs_main["main"][0]
        m = table.filter(table["arm"] == main)
        show = _refinement_steps(m["step"].drop_nulls().to_list(), int(m["trained_steps"][0]))
        out += [f"Does one arm gain more from running on than the main arm ({main})? Each arm's gain from its trained "
                "step to the step shown, minus the main arm's gain to the same step. Table `refinement_vs_main`.", "",
                _md_table(["arm", "ACT step", "gain − main arm's gain", "seeds resampled"],
                          [[r["arm"], r["step"], _delta(r), _seeds(r)] for r in vs_main.iter_rows(named=True)
                           if r["step"] in show]), ""]
    pairs = None if votes is None else votes.filter(votes["vs_alone_n_aug"].is_not_null())
    if pairs is not None and pairs.height:
        one_step = ~votes["steps"].str.contains("-")  # "4" against "1-4"
        alone = {(r["arm"], r["variants"], r["n_aug"]): r for r in votes.filter(one_step).iter_rows(named=True)}
        vsplit = votes["variants"].n_unique() > 1  # the plan voted untrained variants too: both pools get rows
        rows = [[r["arm"], *([r["variants"]] if vsplit else []), r["votes"],
                 f"{_pct(alone[(r['arm'], r['variants'], r['vs_alone_n_aug'])]['pass@2'])} ({r['vs_alone_n_aug']} variants)",
                 f"{_pct(r['pass@2'])} ({r['n_aug']})", _delta(r), _seeds(r)]
                for r in pairs.iter_rows(named=True)]
        out += ["Segments or variants as votes: the trained steps' answers voted together against the trained step "
                "alone from as many answers per test input, drawn from more variants (mean over seeded subsamples of "
                "the variants, " + ("every variant voting, then only the trained ones" if vsplit else "every variant voting")
                + "; paired within each run). A segment's answer shares its variant's "
                "input and puzzle embedding with the other segments; a fresh variant's answer does not. Table "
                "`refinement_votes` (every variant count, both ways of voting).", "",
                "![pass@2 against the answers voted per test input](refinement_votes.png)", "",
                _md_table(["arm", *(["variants"] if vsplit else []), "answers voted", "trained step alone",
                           "trained steps together", "Δ together − alone", "seeds resampled"], rows), ""]
        # the trained steps' pool ("1-4", not "1-16") of each arm, in each variant pool
        agree = [r for r in table.iter_rows(named=True) if r["agree_steps"] is not None
                 and r["pooled"].endswith(f"-{r['trained_steps']}") and (vsplit or r["variants"] == "all")]
        if agree:
            out += ["How alike the answers are (runs averaged): the chance that two of the trained steps give one "
                    "variant the same answer, against the chance that two variants give the same answer at the "
                    "trained step. " + "; ".join(
                        f"{r['arm']}" + (f" ({r['variants']} variants)" if vsplit else "") + f": {_pct(r['agree_steps'])} against "
                        + (_pct(r["agree_variants"]) if r["agree_variants"] is not None else "— (one variant)")
                        for r in agree) + ".", ""]
    return out


def _fit_markdown(table: Any) -> list[str]:
    """The compute section's second reading: each arm's score against its training fit."""
    if table["fit_line"].is_null().all():
        return []

    def fit(r: dict) -> str:
        if r["train_exact_low"] is None:
            return _fmt(r["train_exact"], "train_exact")
        return f"{_pct(r['train_exact'])} [{_pct(r['train_exact_low'])}, {_pct(r['train_exact_high'])}]"

    def line(r: dict) -> str:
        if r["fit_line"] is None:
            return "-"
        return _pct(r["fit_line"]) + (" (beyond)" if r["fit_beyond"] else "")

    rows = [[k + 1, r["arm"] + ("" if r["fit_ref"] else " †"), r["runs"], fit(r),
             f"{_pct(r['pass@2'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]", line(r),
             *(["-", "-"] if r["off_fit_line"] is None else [_delta(_off(r)), _seeds(_off(r))])]
            for k, r in enumerate(table.iter_rows(named=True))]
    return ["Does a model or a budget buy score by any route but fitting more of its training pairs? Each arm's "
            "pass@2 against its train exact (the share of its sampled training rows -- its own demonstration pairs "
            "under its own variants -- that the final model reproduces exactly; 95% t interval over its runs), read "
            "against the least-squares line through the other arms' points. On the line, an arm scores what its fit "
            "predicts: whatever moved it bought score only by fitting more; above or below it, the arm generalises "
            "more or less from the same fit. Off the line = pass@2 minus the line's value there, which is a weighted "
            "sum of the other arms' scores, so it is paired over tasks like every difference here (tasks above ↑ / "
            "below ↓ the line); the noise of the fits themselves is not in its intervals, and (beyond) marks a fit "
            "outside the range the line was drawn through. Fits are on one scale only between arms trained on the "
            "same rows and read after the same number of ACT segments (same augment stage, same halt_max_steps): "
            "lines are drawn through the arms on the main arm's scale, and an arm on another († -- other variants, "
            "other augmentation, other segments) is read against the line through all of them, which says how its "
            "score compares with what the main arm's kind of fit would buy. Columns `train_exact_low`, "
            "`train_exact_high`, `fit_ref`, `fit_line`, `fit_beyond` and `off_fit_*` of table `compute`.", "",
            "![pass@2 against training fit](fit.png)", "",
            _md_table(["", "arm", "runs", "train exact", "pass@2", "line through the others", "off the line",
                       "seeds resampled"], rows), ""]


def _off(r: dict) -> dict:
    """A compute row's distance from its fit line, under the names ``_delta`` and ``_seeds`` read."""
    return {"delta": r["off_fit_line"], "delta_ci_low": r["off_fit_low"], "delta_ci_high": r["off_fit_high"],
            "better": r["off_fit_better"], "worse": r["off_fit_worse"], "delta_seeds_low": r["off_fit_seeds_low"],
            "delta_seeds_high": r["off_fit_seeds_high"]}


def markdown(config, runs, main, info, curves, by_step, factors, per_input, rules, primary, gallery,
              max_n, points, seeds, run_scores, pools=None, grids=(), by_rule=None, signal_tables=None,
              sources=None, by_source=None, compute=None, refinement=None) -> str:
    import polars as pl

    name = config["name"]
    n_tasks = len(info["task_ids"])
    parts = [f"# arcpipe report: {name}", ""]
    parts.append(
        f"{n_tasks} tasks, {per_input.height} test inputs, {max_n} cached inference variants per test input, "
        f"ACT steps recorded: {info['steps'][0]}..{info['steps'][-1]}. Scores are ARC-style: a test input is solved "
        f"when one of the top-2 attempts is exactly right; a task's score is the fraction of its test inputs solved. "
        f"Each n_aug point is the mean over {seeds} seeded subsamples of the cached variants (identity always kept); "
        f"intervals are 95% bootstrap over tasks, read at the small-sample tails of a mean over {n_tasks} tasks "
        f"({_tails(n_tasks)}: Student's width, where 2.5% and 97.5% would cover less)."
    )
    extra = [f for f in varying_factors(runs) if f not in FACTORS] if len(runs) > 1 else []
    if len(runs) > 1:
        parts += ["", f"{len(runs)} runs. The sections up to the per-input table describe the main run "
                      f"({main.describe(extra)}): "
                      + (f"the baseline the report was asked for (`main = \"{config['main']}\"`). " if config.get("main")
                         else "the one sharing the most settings with the others. ") + SEEDS_NOTE]
    trained = [h for r, h in zip(runs, run_scores["train_host"]) if r.train is not None]  # runs table's column
    hosts = list(dict.fromkeys(h for h in trained if h))
    if hosts:
        unknown = sum(h is None for h in trained)
        where = f"Trained on {hosts[0]}" if len(hosts) == 1 else f"Trained on {len(hosts)} kinds of hardware ({'; '.join(hosts)})"
        parts += ["", where + (f"; {unknown} of {len(trained)} runs unrecorded (manifests from before arcpipe recorded it)"
                               if unknown else "")
                  + (". Float rounding differs between machines and a training amplifies it, so runs of the same "
                     "settings trained on different ones are different draws; each run's machine is in the Inputs table."
                     if len(hosts) > 1 or unknown else ".")]
    parts += ["", "## Headline (all variants)", ""]
    rows = []
    for rule in rules:
        d = curves.filter((pl.col("rule") == rule) & (pl.col("n_aug") == max_n))
        get = {r["metric"]: r for r in d.iter_rows(named=True)}
        rows.append([rule] + [f"{_pct(get[m]['mean'])} [{_pct(get[m]['ci_low'])}, {_pct(get[m]['ci_high'])}]" for m in HEADLINE])
    parts.append(_md_table(["rule", *HEADLINE], rows))
    if sources:
        own = run_scores.row(runs.index(main), named=True)
        parts += ["", f"By task source (rule {primary}, all variants): "
                      + " · ".join(f"{name} ({int(mask.sum())} tasks) {_pct(own[f'pass@2 {name}'])}" for name, mask in sources.items())
                      + ". Each factor section below splits its arms the same way (tables `by_<factor>_sources`; "
                        "`per_task` and `runs` carry the source too)."]
    if by_rule is not None and by_rule.height > 1:
        n = by_rule["runs"][0]
        parts += ["", "## Voting rules compared", "",
                  f"The main run's arm ({n} run{'s, training seeds averaged per task' if n > 1 else ''}), every cached "
                  f"variant voted: pass@2 [95% CI], and the paired difference from `{primary}` over the same tasks "
                  f"(tasks that gained ↑ / lost ↓). Table `rules`.", ""]
        rows = [[r["rule"], f"{_pct(r['pass@2'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]", _pct(r["oracle"]),
                 "—" if r["rule"] == primary else _delta(r), "—" if r["rule"] == primary else _seeds(r)]
                for r in by_rule.iter_rows(named=True)]
        parts.append(_md_table(["rule", "pass@2", "oracle", f"Δ vs {primary}", "seeds resampled"], rows))
    parts += ["", "## Scores vs inference n_aug", "", "![pass@1 and pass@2 vs n_aug](n_aug_curves.png)", ""]
    rows = []
    for n in points:
        row = [n]
        for rule in rules:
            v = curves.filter((pl.col("rule") == rule) & (pl.col("n_aug") == n) & (pl.col("metric") == "pass@2"))["mean"][0]
            row.append(_pct(v))
        row.append(_pct(curves.filter((pl.col("rule") == rules[0]) & (pl.col("n_aug") == n) & (pl.col("metric") == "oracle"))["mean"][0]))
        rows.append(row)
    parts.append("pass@2 by rule (mean over subsamples):")
    parts += ["", _md_table(["n_aug"] + rules + ["oracle"], rows), ""]
    if pools is not None:
        parts += _pools_markdown(pools, rules, seeds)
    parts += ["## pass@2 vs ACT step", "", "![pass@2 vs ACT step](act_steps.png)", ""]
    rows = [[s] + [_pct(by_step.filter((pl.col("rule") == r) & (pl.col("step") == s))["pass@2"][0]) for r in rules]
            for s in info["steps"]]
    parts += [_md_table(["step"] + rules, rows), ""]
    if signal_tables is not None:
        parts += _signals_markdown(*signal_tables)
    for f, (table, steps, voted) in factors.items():
        parts += _factor_markdown(f, table, steps, voted, runs, main, rules, primary, seeds, (by_source or {}).get(f))
    for f, g, grid, effects in grids:
        parts += _grid_markdown(f, g, grid, effects, runs, main)
    if compute is not None:
        parts += _compute_markdown(compute[0], compute[1])
    if refinement is not None:
        parts += _refinement_markdown(*refinement)
    parts += ["## Per test input (all variants)", "",
              "✓ = solved within the top-2 attempts; margin = votes for the top answer minus votes for the runner-up.", ""]
    header = ["task", "test"] + rules + [f"margin ({primary})"]
    rows = [[r["task_id"], r["example"]] + [{True: "✓", False: "·"}.get(r[f"{x}_solved"], "?") for x in rules]
            + [r[f"{primary}_margin"]]
            for r in per_input.iter_rows(named=True)]
    parts += [_md_table(header, rows), ""]
    if gallery:
        parts += ["## Gallery", ""]
        for kind, png, picked in gallery:
            parts += [f"{kind.capitalize()} (rule {primary}): " + ", ".join(f"{t}#{e}" for t, e in picked), "",
                      f"![{kind} test inputs]({png})", ""]
    parts += ["## Inputs", "", f"Each run's own pass@2 (rule {primary}, all its variants), the AUROC of its sigmoid(q_halt) "
                               f"for right vs wrong predictions within a test input / pooled (its last ACT step, all "
                               f"variants; see the signals section) and its exact accuracy on "
                               f"its training pairs at the end of training, and the hardware its training ran on; table `runs`.", ""]
    rows = []
    for r, sc in zip(runs, run_scores.iter_rows(named=True)):
        rows.append([r.describe(extra), _pct(sc["pass@2"]), f"{_auroc_text(sc['q_auroc'])} / {_auroc_text(sc['q_pooled_auroc'])}", _fmt(sc["train_exact"], "train_exact"),
                     r.augment.key if r.augment else "-", r.train.key if r.train else "-", r.infer.key,
                     ", ".join(v.key for v in r.votes) or "-", sc["train_host"] or "-"])
    parts += [_md_table(["run", "pass@2", "q AUROC within / pooled", "train exact", "augment", "train", "infer", "vote", "trained on"], rows), "",
              "Tables: `n_aug_curves`, `act_steps`, `signals`, `calibration`, `per_task`, `runs`" + "".join(f", `by_{f}`, `by_{f}_steps`, `by_{f}_n_aug`" + (f", `by_{f}_sources`" if f in (by_source or {}) else "")
                      for f in factors)
              + "".join(f", `grid_{f}_{g}`, `grid_{f}_{g}_effects`" for f, g, _, _ in grids)
              + (", `compute`" + (", `compute_pairs`" if compute[1] is not None else "") if compute is not None else "")
              + (", `refinement`" + (", `refinement_vs_main`" if refinement[1] is not None else "")
                 + (", `refinement_votes`" if refinement[2] is not None else "") if refinement is not None else "")
              + " (.csv and .parquet). Every input stage's manifest is in `manifest.json`.", ""]
    return "\n".join(parts)
