"""The report's figures: ARC grids in the standard palette, score curves against inference
n_aug and ACT step, and one figure per compared factor. matplotlib only, Agg backend, no
knowledge of stages or caches (``arcpipe.report`` computes the tables they draw)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

#: The standard ARC palette, colour index -> hex.
ARC_PALETTE = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
               "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")
_RGB = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in ARC_PALETTE], dtype=np.uint8)


def grid_image(grid: np.ndarray, cell: int = 12, line: int = 1) -> np.ndarray:
    """An ARC grid as an RGB image in the standard palette, ``cell`` pixels per cell with grey borders.

    Built with a palette gather and ``np.repeat`` (no per-cell drawing), so a
    gallery costs one ``imshow`` per panel rather than hundreds of artists.
    """
    g = np.asarray(grid, dtype=np.int64)
    img = np.repeat(np.repeat(_RGB[g], cell, axis=0), cell, axis=1)
    img[::cell, :] = 85
    img[:, ::cell] = 85
    return np.pad(img, ((0, line), (0, line), (0, 0)), constant_values=85)


def draw_grid(ax: Any, grid: np.ndarray | None, title: str) -> None:
    """One ARC grid panel (a blank grey panel saying "none" for a missing attempt)."""
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if grid is None or np.asarray(grid).size == 0:
        ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=9, transform=ax.transAxes)
        ax.set_facecolor("#eeeeee")
        return
    ax.imshow(grid_image(grid), interpolation="nearest")


def plot_curves(path: Path, curves: Any, rules: list[str]) -> None:
    """pass@1 and pass@2 against inference n_aug (log axis), a line per rule with its bootstrap
    band, and the oracle dashed: how much each rule turns extra variants into score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ("pass@1", "pass@2")):
        for rule in rules:
            d = curves.filter((curves["rule"] == rule) & (curves["metric"] == metric)).sort("n_aug")
            x = d["n_aug"].to_numpy()
            ax.plot(x, d["mean"].to_numpy(), marker="o", ms=3, label=rule)
            # Many rules' bands on one axis turn to mud: fainter the more there are.
            ax.fill_between(x, d["ci_low"].to_numpy(), d["ci_high"].to_numpy(), alpha=0.3 / max(2, len(rules)))
        o = curves.filter((curves["rule"] == rules[0]) & (curves["metric"] == "oracle")).sort("n_aug")
        ax.plot(o["n_aug"].to_numpy(), o["mean"].to_numpy(), "k--", label="oracle (any variant right)")
        ax.set_xscale("log", base=2)
        _plain_ticks(ax, sorted(set(curves["n_aug"].to_list())))
        ax.set_xlabel("inference variants voted (n_aug)")
        ax.set_ylabel(f"{metric} (fraction of tasks)")
        ax.set_title(f"{metric} vs inference n_aug")
        ax.grid(alpha=0.3)
    top = float(curves["ci_high"].max() or 0.0)
    axes[0].set_ylim(0, max(0.05, min(1.0, top * 1.1)))
    axes[1].legend(title="voting rule", fontsize=8)
    fig.suptitle("ARC score vs test-time augmentation: mean over seeded subsamples, shaded 95% bootstrap CI over tasks",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plain_ticks(ax: Any, values: list[int]) -> None:
    """Label a log axis with the actual values (1, 4, 16, ..., 1000): at most ~9 labels,
    spread evenly in log space from the largest down, so neighbours never collide (768/1000)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    shown = log_spread(values)
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(v) for v in shown])


def log_spread(values: list[int], labels: int = 8) -> list[int]:
    """The largest value, then each next smaller one at least 1/``labels`` of the log span
    below the last kept (positive ``values``, ascending)."""
    if len(values) <= 2:
        return list(values)
    gap = math.log2(values[-1] / values[0]) / labels
    kept = [values[-1]]
    for v in reversed(values[:-1]):
        if math.log2(kept[-1] / v) >= gap * (1 - 1e-9):
            kept.append(v)
    return kept[::-1]


def plot_steps(path: Path, by_step: Any, rules: list[str]) -> None:
    """pass@2 against the ACT step whose predictions vote, a line per rule: what each outer
    refinement step adds at inference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for rule in rules:
        d = by_step.filter(by_step["rule"] == rule).sort("step")
        ax.errorbar(d["step"].to_numpy(), d["pass@2"].to_numpy(),
                    yerr=[d["pass@2"].to_numpy() - d["ci_low"].to_numpy(), d["ci_high"].to_numpy() - d["pass@2"].to_numpy()],
                    marker="o", ms=3, capsize=2, label=rule)
    o = by_step.filter(by_step["rule"] == rules[0]).sort("step")
    ax.plot(o["step"].to_numpy(), o["oracle"].to_numpy(), "k--", label="oracle")
    ax.set_ylim(0, max(0.05, min(1.0, float(max(by_step["ci_high"].max() or 0.0, by_step["oracle"].max() or 0.0)) * 1.1)))
    ax.set_xticks(sorted(set(by_step["step"].to_list())))
    ax.set_xlabel("ACT step used at inference")
    ax.set_ylabel("pass@2 (fraction of tasks)")
    ax.set_title("pass@2 vs ACT step (all variants, 95% CI)")
    ax.legend(title="voting rule", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_refinement(path: Path, table: Any) -> None:
    """pass@2 against the ACT step each arm's inference ran to, its trained step marked: what
    running the recurrence on past training buys, arm by arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arm in dict.fromkeys(table["arm"].to_list()):
        mine = (table["arm"] == arm) & table["step"].is_not_null()
        d = table.filter(mine & (table["variants"] == "all")).sort("step")
        line, = ax.plot(d["step"].to_numpy(), d["pass@2"].to_numpy(), marker="o", ms=3, label=arm)
        ax.axvline(int(d["trained_steps"][0]), color=line.get_color(), ls=":", lw=1)
        t = table.filter(mine & (table["variants"] == "trained")).sort("step")
        if t.height:  # the same arm with only its trained variants voting: dashed
            ax.plot(t["step"].to_numpy(), t["pass@2"].to_numpy(), marker="o", ms=3, ls="--",
                    color=line.get_color(), label=f"{arm} (trained variants)")
    past = (table["step"] > table["trained_steps"]).any()
    ax.set_xlabel("ACT step used at inference (dotted: the steps the arm was trained to run)")
    ax.set_ylabel("pass@2 (fraction of tasks)")
    ax.set_title("Test-time refinement: running the recurrence on past training" if past else "pass@2 at each ACT step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_refinement_votes(path: Path, votes: Any) -> None:
    """pass@2 against the answers voted per test input (log scale), per arm: the trained step alone
    (solid) and the trained steps voted together (dashed), each over its variant counts. Where the
    dashed line lies below the solid one at equal votes, a segment's answer is worth less than a
    fresh variant's. A second panel holds the trained variants alone where the plan voted others too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pools = list(dict.fromkeys(votes["variants"].to_list()))
    fig, axes = plt.subplots(1, len(pools), figsize=(6.5 * len(pools), 4.2), sharey=True, squeeze=False)
    for ax, pool in zip(axes[0], pools):
        mine = votes.filter(votes["variants"] == pool)
        for arm in dict.fromkeys(mine["arm"].to_list()):
            color = None
            for steps in dict.fromkeys(mine.filter(mine["arm"] == arm)["steps"].to_list()):
                d = mine.filter((mine["arm"] == arm) & (mine["steps"] == steps)).sort("votes")
                alone = "-" not in steps
                line, = ax.plot(d["votes"].to_numpy(), d["pass@2"].to_numpy(), marker="o", ms=3, color=color,
                                ls="-" if alone else "--",
                                label=f"{arm}: step {steps}" if alone else f"{arm}: steps {steps} together")
                color = line.get_color()
        ax.set_xscale("log", base=2)
        ax.set_xlabel("answers voted per test input (variants × ACT steps voting)")
        ax.set_title("Segments or variants as votes" + ("" if len(pools) == 1 else f" ({pool} variants voting)"))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("pass@2 (fraction of tasks)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _lines_per_value(ax: Any, frame: Any, f: str, values: list[Any], x: str) -> None:
    """One pass@2 line per value of factor ``f`` against column ``x``, with its 95% CI bars."""
    for v in values:
        d = frame.filter(frame[f] == v).sort(x)
        y = d["pass@2"].to_numpy()
        ax.errorbar(d[x].to_numpy(), y, yerr=[y - d["ci_low"].to_numpy(), d["ci_high"].to_numpy() - y],
                    marker="o", ms=3, capsize=2, label=str(v))


def plot_factor(path: Path, f: str, title: str, table: Any, steps: Any, voted: Any, rules: list[str], primary: str) -> None:
    """Left: pass@2 by factor value for every rule (lines on a log axis for counts, grouped bars
    otherwise); middle: pass@2 vs ACT step for each value; right: pass@2 vs the number of variants
    voted for each value (primary rule both). 95% bootstrap CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = list(dict.fromkeys(table[f].to_list()))
    numeric = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 5.0), sharey=True)
    width = 0.8 / max(1, len(rules))
    for j, rule in enumerate(rules):
        d = table.filter(table["rule"] == rule)
        y = d["pass@2"].to_numpy()
        err = [y - d["ci_low"].to_numpy(), d["ci_high"].to_numpy() - y]
        if numeric:
            ax.errorbar(d[f].to_numpy(), y, yerr=err, marker="o", ms=3, capsize=2, label=rule)
        else:
            x = np.arange(len(values)) + (j - (len(rules) - 1) / 2) * width
            ax.bar(x, y, width, yerr=err, capsize=2, label=rule)
    o = table.filter(table["rule"] == rules[0])
    if numeric:
        ax.plot(o[f].to_numpy(), o["oracle"].to_numpy(), "k--", label="oracle")
        ax.set_xscale("log")
        _plain_ticks(ax, values)
    else:
        ax.scatter(np.arange(len(values)), o["oracle"].to_numpy(), marker="_", s=900, c="k", zorder=3, label="oracle")
        ax.set_xticks(np.arange(len(values)))
        ax.set_xticklabels([str(v) for v in values])
    ax.set_xlabel(title)
    ax.set_ylabel("pass@2 (fraction of tasks)")
    ax.set_title(f"pass@2 by {title} (all variants)")
    ax.legend(title="voting rule", fontsize=7, title_fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    _lines_per_value(ax2, steps, f, values, "step")
    ax2.set_xticks(sorted(set(steps["step"].to_list())))
    ax2.set_xlabel("ACT step used at inference")
    ax2.set_title(f"pass@2 vs ACT step (rule {primary})")
    _lines_per_value(ax3, voted, f, values, "n_aug")
    ax3.set_xscale("log", base=2)
    _plain_ticks(ax3, sorted(set(voted["n_aug"].to_list())))
    ax3.set_xlabel("inference variants voted (n_aug)")
    ax3.set_title(f"pass@2 vs variants voted (rule {primary})")
    for a in (ax2, ax3):
        a.legend(title=f, fontsize=7, title_fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    top = max(float(table["ci_high"].max() or 0.0), float(table["oracle"].max() or 0.0), float(steps["ci_high"].max() or 0.0),
              float(voted["ci_high"].max() or 0.0))
    ax.set_ylim(0, max(0.05, min(1.0, top * 1.1)))
    for a in (ax, ax2, ax3):
        a.grid(alpha=0.3)
    fig.suptitle("95% bootstrap CI over tasks; training seeds averaged", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _number_arms(fig: Any, ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    """Arms numbered at their point (NaN points skipped) and named in a key beside the plot: labels
    of arms at one place would overprint each other. The compute and fit figures share the key, so
    an arm keeps its number in both."""
    for k, (xi, yi) in enumerate(zip(x, y)):
        if not np.isnan(xi):
            ax.annotate(str(k + 1), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8, zorder=4, weight="bold")
    fig.text(0.70, 0.92, "\n".join(f"{k + 1}  {label}" for k, label in enumerate(labels)),
             fontsize=7, va="top", ha="left", wrap=True)


def _pass_top(table: Any, per_run: list[np.ndarray]) -> float:
    """The y-axis top of a pass@2 figure of arms: room above every interval and every run."""
    return max(0.05, min(1.0, float(max(table["ci_high"].max(), *(r.max() for r in per_run))) * 1.15))


def plot_compute(path: Path, table: Any, per_run: list[np.ndarray]) -> None:
    """pass@2 of every arm against its training FLOPs (log axis): the arm's mean with its 95% CI,
    its runs as dots beside it, the frontier (the best score at most each compute buys) as a step
    line. The picture of an equal-compute comparison; arms within 2% of one cost are drawn a few
    percent apart, side by side, so that neither hides the other (the table has the exact FLOPs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.2))
    flops = table["train_flops"].to_numpy().astype(float)
    # arms at (about) the same compute side by side rather than on top of each other
    x = flops.copy()
    for i in range(len(flops)):
        same = [j for j in range(len(flops)) if abs(math.log(flops[j] / flops[i])) < 0.02]
        x[i] = flops[i] * 1.06 ** (same.index(i) - (len(same) - 1) / 2)
    y = table["pass@2"].to_numpy()
    for xi, runs in zip(x, per_run):  # beside the arm's bar, not under it
        ax.scatter(np.full(len(runs), xi / 1.04), runs, s=10, c="0.6", zorder=2)
    ax.errorbar(x, y, yerr=[y - table["ci_low"].to_numpy(), table["ci_high"].to_numpy() - y], fmt="o", ms=5, capsize=3,
                zorder=3, label="arm: seeds averaged per task, 95% CI")
    front = table["frontier"].to_numpy()
    # the best score bought with at most x FLOPs: a step up at each frontier arm
    ax.plot(np.append(x[front], x.max() * 1.6), np.append(y[front], y[front][-1]), "k--", lw=1, zorder=1,
            drawstyle="steps-post", label="frontier: best at most this compute")
    _number_arms(fig, ax, x, y, table["arm"].to_list())
    ax.scatter([], [], s=10, c="0.6", label="one training run")
    ax.set_xscale("log")
    ax.set_xlim(x.min() / 1.3, x.max() * 1.5)
    ax.set_ylim(0, _pass_top(table, per_run))
    ax.set_xlabel("training FLOPs (model matrix products, counted from the config)")
    ax.set_ylabel("pass@2 (fraction of tasks)")
    ax.set_title(f"pass@2 against training compute (rule {table['rule'][0]}, all variants)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout(rect=(0, 0, 0.69, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_fit(path: Path, table: Any, per_run: list[np.ndarray], fits: list[np.ndarray | None]) -> None:
    """pass@2 of every arm against its training fit (final train exact accuracy): the arm's mean with
    both intervals, its runs as dots, and the least-squares line through the means of the arms
    whose fit is on the main arm's scale (the others hollow). Arms numbered as in the compute
    figure. The picture of "does a model or a budget buy score by any
    route but fitting its training pairs?": arms on one line say no."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.2))
    # nulls (a run without a fit; an arm of one run has no interval) as NaN
    x, xlo, xhi = (table[c].cast(float).to_numpy() for c in ("train_exact", "train_exact_low", "train_exact_high"))
    y = table["pass@2"].to_numpy()
    for runs, f in zip(per_run, fits):
        if f is not None:
            ax.scatter(f, runs, s=10, c="0.6", zorder=2)
    known = ~np.isnan(x)
    ref = table["fit_ref"].to_numpy() & known
    xerr = np.array([np.nan_to_num(x - xlo), np.nan_to_num(xhi - x)])
    yerr = np.array([y - table["ci_low"].to_numpy(), table["ci_high"].to_numpy() - y])
    for mask, fmt, label in ((ref, "o", "arm: mean fit over its runs, pass@2 seeds averaged per task; 95% CIs"),
                             (known & ~ref, "s", "arm whose fit is on another scale (other rows or segments): read, not in the line")):
        if mask.any():
            ax.errorbar(x[mask], y[mask], xerr=xerr[:, mask], yerr=yerr[:, mask], fmt=fmt, ms=5, capsize=3, zorder=3,
                        mfc="C0" if fmt == "o" else "white", label=label)
    slope, intercept = np.polyfit(x[ref], y[ref], 1)
    grid = np.linspace(0, 1, 50)
    ax.plot(grid, slope * grid + intercept, "k--", lw=1, zorder=1,
            label=f"least squares through the main arm's scale: {100 * slope:+.1f} pass@2 points per 100 of fit")
    _number_arms(fig, ax, x, y, table["arm"].to_list())
    ax.scatter([], [], s=10, c="0.6", label="one training run")
    span = np.concatenate([x[known], *(f for f in fits if f is not None)])
    ax.set_xlim(max(0.0, span.min() - 0.05), min(1.0, span.max() + 0.05))
    ax.set_ylim(0, _pass_top(table, per_run))
    ax.set_xlabel("train exact: share of its sampled training rows (eval_size) the final model reproduces exactly")
    ax.set_ylabel("pass@2 (fraction of tasks)")
    ax.set_title(f"pass@2 against training fit (rule {table['rule'][0]}, all variants)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0, 0.69, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
