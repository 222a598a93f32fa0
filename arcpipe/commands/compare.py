"""`arcpipe compare --plus ARM --minus ARM`: a difference between arms of built reports;
`arcpipe compare --among ARM --among ARM ...`: whether several arms differ at all."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    plus: List[str] = typer.Option([], "--plus", help="An arm added: REPORT:col=value,... (';' pools several reports, as does a glob in REPORT or several "
                                   "REPORTs joined with '|'; a value may be several joined with '|' or a range 'seed=4..11'; a part "
                                   "must pick runs of one setting)."),
    minus: List[str] = typer.Option([], "--minus", help="An arm subtracted (two --plus and two --minus: an interaction)."),
    reports: Path = typer.Option(Path("reports"), "--reports", help="Folder holding reports (REPORT may also be a path)."),
    among: List[str] = typer.Option([], "--among", help="Instead of a difference: do these arms (two or more) differ at all? "
                                    "One-way F over runs, permutation p-value."),
    fit: List[str] = typer.Option([], "--fit", help="Instead of a difference: within these arms (one or more), do the runs that "
                                  "fit more of their training pairs (train exact) score more? The common slope within arms."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Read every arm on these tasks only: a built report (the tasks "
                                        "it scored, e.g. transfer-13tasks) or task ids joined with ','."),
) -> None:
    """Compare arms of built reports: mean pass@2 of the --plus arms minus the --minus arms.

    Arms may pool runs from several reports (e.g. the same stage keys trained on two CPU kinds). The
    difference comes over runs (Welch's interval on per-run pass@2, any report) and over the tasks every
    arm shares (paired, and with each arm's runs resampled too) where every report involved kept
    per-task scores (run_tasks, reports built since LAYOUT 15). Arms of reports scored on different
    task sets are compared on the tasks they share, over runs as over tasks (--tasks narrows that
    further). With --among instead: whether several arms differ at all (the one-way F test of per-run
    pass@2, its p-value from shuffling the arms' labels among the runs), the question to ask before
    reading the gap between the highest and lowest of several arms, and how far apart two arms of
    so few runs must be for an interval over runs to tell them apart. Each arm's line names the CPU
    kinds its runs were trained on (model name and torch's kernel level). With --fit instead: whether
    an arm's seeds that fit more of their training pairs score more (the slope of pass@2 on train
    exact within arms, its interval and a permutation p from shuffling scores within each arm), beside
    the line through the arms' means. Nothing is retrained."""
    import math

    from rich.console import Console

    from arcpipe.cache import host_kind
    from arcpipe.compare import among as among_arms
    from arcpipe.compare import compare, fit_within, names_several_reports, task_list
    from arcpipe.errors import ArcpipeError
    from arcpipe.report_markdown import flops_text

    only = None if tasks is None else task_list(tasks, reports)
    if sum(map(bool, (among, fit, plus or minus))) > 1:
        raise ArcpipeError("compare: --among, --fit and --plus/--minus ask three different questions; give one")
    out = (among_arms(among, reports, only) if among else fit_within(fit, reports, only) if fit
           else compare(plus, minus, reports, only))
    console = Console(highlight=False, soft_wrap=True)
    shared = out["tasks"]
    if only is not None:
        console.print(f"--tasks: every figure below is on the {shared} of its {len(only)} tasks that all arms were scored on")
    elif shared is not None:
        console.print(f"the arms were scored on different task sets: every figure below is on the {shared} tasks they share")
    for (sign, a), v in zip(out["arms"], out["values"]):
        hosts = sorted({host_kind(h) for h in (a.runs["train_host"].to_list() if "train_host" in a.runs.columns else [None])})
        flops = a.runs["train_flops"].drop_nulls() if "train_flops" in a.runs.columns else []
        cost = f"; {flops_text(float(flops.mean()))} a training" if len(flops) == a.runs.height else ""
        mark = "*" if among or fit else "+" if sign > 0 else "-"
        console.print(f"{mark} {a.spec}: {len(v)} runs, pass@2 {' / '.join(f'{x:.1f}' for x in v)} "
                      f"(mean {v.mean():.1f}; trained on {', '.join(hosts)}{cost})")
        if names_several_reports(a.spec):  # say what a glob or set pooled: a report it left out is not silent
            counts = a.runs.group_by("report", maintain_order=True).len()
            console.print("  pooled from: " + ", ".join(f"{r} ({n})" for r, n in counts.iter_rows()))
    if fit:
        fits = " / ".join(f"{f.mean():.1f}" for f in out["fits"])
        whole = out["fit_column"] == "train_exact_all"
        console.print(f"train exact ({'every training row' if whole else 'rows sampled in training'}), arm means: {fits}")
        console.print(f"within arms: {out['slope']:+.2f} pass@2 points per point of train exact [{out['low']:+.2f}, "
                      f"{out['high']:+.2f}] (95% t interval, df {out['df']:.0f}; r {out['r']:+.2f} over {out['n']:.0f} runs "
                      f"in {out['groups']:.0f} arms; permutation p = {out['p']:.3f}, scores shuffled within each arm)")
        between = "n/a (fewer than three arms)" if math.isnan(out["arms_slope"]) else f"{out['arms_slope']:+.2f}"
        console.print(f"through the arms' means: {between}." + ("" if whole else " Each run's fit was read on a sample of its "
                      "training rows, which flattens the slope within arms (reports since LAYOUT 21 read every row)"))
        return
    if among:
        console.print(f"among {len(out['arms'])} arms over runs: F = {out['f']:.2f} on ({out['df_between']:.0f}, "
                      f"{out['df_within']:.0f}) df, permutation p = {out['p']:.3f} ({out['n_perm']:.0f} shuffles of the "
                      "arms' labels among the runs)")
        console.print(f"runs spread within an arm by {out['sd_within']:.1f} points (pooled SD): two arms of "
                      f"{out['fewest_runs']} runs must differ by {out['least_difference']:.1f} for a 95% interval "
                      "over runs to exclude zero")
        return
    r = out["over_runs"]
    if r is None:
        console.print("over runs: not available (an arm of one run has no spread between runs)")
    else:
        console.print(f"over runs: {r['delta']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}] (95% Welch interval, df {r['df']:.1f})")
    t = out["over_tasks"]
    if t is None:
        console.print("over tasks: not available (a report involved predates run_tasks)")
    else:
        console.print(f"over tasks ({t['tasks']} shared): {t['delta']:+.1f} [{t['low']:+.1f}, {t['high']:+.1f}] paired "
                      f"({t['better']} up, {t['worse']} down); seeds resampled "
                      + ("n/a (an arm of one run)" if math.isnan(t["seeds_low"]) else f"[{t['seeds_low']:+.1f}, {t['seeds_high']:+.1f}]"))
        for label, pick in (("up", lambda d: d > 0), ("down", lambda d: d < 0)):
            ids = [f"{task} {d:+.0f}" for task, d in t["moved"].items() if pick(d)]
            if ids:
                console.print(f"  tasks {label} (their pass@2, seeds averaged): {', '.join(ids if label == 'up' else reversed(ids))}")
