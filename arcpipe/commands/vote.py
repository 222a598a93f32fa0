"""`arcpipe vote`: rank the cached predictions' answers, score them, write an ARC Prize submission."""

from __future__ import annotations

from typing import Optional

import typer


def command(
    predictions: Optional[str] = typer.Argument(None, help="Infer stage (directory or cache key) (default: newest in cache)."),
    n_aug: Optional[int] = typer.Option(None, "--n-aug", help="Variants voted per task (identity + seeded random subset) (default: all cached)."),
    top: int = typer.Option(2, "--top", help="Answers kept per test input (attempts)."),
    rule: str = typer.Option(
        "hrm", "--rule",
        help="Voting rule: count (majority) | hrm (count, ties by mean halting confidence; the reference) | "
             "q-mean / logprob (mean confidence / log-prob of an answer's votes: ignore how many, so a rare answer can win at large n_aug) | "
             "q-max (the single most confident vote).",
    ),
    step: Optional[str] = typer.Option(None, "--step", help="ACT step whose predictions vote (default: the last recorded), "
                                       "or several voting together: 1-4 or 1,2,4."),
    seed: int = typer.Option(0, "--seed", help="Seed of the variant subset."),
    variants: str = typer.Option(
        "all", "--variants",
        help="Which variants may vote: all | trained (puzzle identifier trained: variant < train_aug) | untrained (the others).",
    ),
    force: bool = typer.Option(False, "--force", help="Recompute even if cached."),
) -> None:
    """Vote the cached predictions (no re-inference) and score them against known outputs."""
    import json

    from rich.console import Console

    from arcpipe.vote import resolve_infer, vote

    console = Console()
    src = resolve_infer(predictions)
    if predictions is None:
        console.print(f"voting the newest predictions: {src.path}", soft_wrap=True)
    stage = vote(src, n_aug=n_aug, top=top, rule=rule, step=step, seed=seed, variants=variants, force=force)
    sc = json.loads((stage.path / "scores.json").read_text())
    if sc["n_test_inputs"]:
        pool = "" if variants == "all" else f" of the {variants} variants"
        console.print(scores_table(sc, f"{rule}, n_aug={n_aug or 'all'}{pool}, top={top}"))
    else:  # e.g. a Kaggle test file: a table of zeros would read as a score
        console.print(f"nothing scored: none of the {sc.get('n_unknown', 0)} test inputs has a known output")
    console.print(f"vote stage: {stage.path}{' (cached)' if stage.cached else ''}", soft_wrap=True)
    console.print(f"submission: {stage.path / 'submission.json'}", soft_wrap=True)


def scores_table(sc: dict, title: str):
    """A rich table of the task-averaged and per-test-input scores in a scores dict."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column(f"tasks ({sc['n_tasks']})", justify="right")
    table.add_column(f"test inputs ({sc['n_test_inputs']})", justify="right")
    names = sorted(k for k in sc if k.startswith("pass@")) + (["oracle"] if "oracle" in sc else [])
    for k in names:
        by = sc["by_test_input"]
        table.add_row(k, f"{100 * sc[k]:.2f}%", f"{100 * by[k]:.2f}% ({by[k + '_solved']})")
    if sc.get("n_unknown"):
        table.caption = f"{sc['n_unknown']} test inputs without a known output (not scored)"
    return table
