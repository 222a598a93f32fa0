"""Reports: numbers equal what vote computes, files exist, statistics, caching, CLI, errors.

The fixture builds a real augment plan over small synthetic tasks and an
infer stage laid out exactly as ``arcpipe.infer`` writes one, whose
predictions are the forward-augmented truth (right), one fixed wrong answer
pushed through the same variant transform (a consistent wrong vote), or
noise, with a per-task, per-step chance of being right. So voting has real
work to do, rules disagree, and the ACT-step curve is not flat.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from arcpipe import cache, figures, report, report_compute, report_markdown, signals, stats, transforms
from arcpipe.errors import ArcpipeError

N_AUG = 32
STEPS = (1, 2, 3)


def write_tasks(folder: Path, n_tasks: int = 8, seed: int = 0) -> Path:
    """Small tasks whose rule is 'flip left-right'; test outputs known."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n_tasks):
        def pair():
            h, w = rng.integers(2, 6, size=2)
            g = rng.integers(0, 10, size=(h, w))
            return {"input": g.tolist(), "output": g[:, ::-1].tolist()}

        task = {"train": [pair(), pair()], "test": [pair() for _ in range(1 + t % 2)]}
        (folder / f"t{t:02d}.json").write_text(json.dumps(task))
    return folder


def make_augment(root: Path, tasks: Path, train_aug: int | None = None, **kinds):
    from arcpipe.augment import augment

    return augment(str(tasks), extra_train=None, n_aug=N_AUG, train_aug=train_aug, canvas=8, seed=0, n_jobs=1, root=root,
                   **kinds)


def make_train(root: Path, aug: cache.Stage, preset: str, *, seed: int = 0, steps: int = 10, exact: float = 0.5,
               fit_all: float | None = None, **model_over) -> cache.Stage:
    """A train stage's manifest as ``arcpipe.train`` writes one (config + counts; ``exact`` its final
    train exact accuracy on sampled rows, ``fit_all`` on every row, left out as before trainings
    read it), without the weights."""
    import hrm

    model = hrm.HRMConfig.preset(preset, **model_over).to_dict()

    def build(work: Path) -> dict:
        # 10 logged steps of 32 rows, each sequence halting at the model's last ACT segment
        pl.DataFrame({"step": range(1, 11), "halted": [32.0 / model["halt_max_steps"]] * 10}).write_parquet(work / "metrics.parquet")
        return {"eval_train_exact_accuracy": exact, "steps": steps,
                **({} if fit_all is None else {"fit_exact": fit_all, "fit_rows": 1784})}

    train = {"seed": seed, "global_batch_size": 32, "max_steps": steps}
    return cache.run_stage("train", {"model": model, "preset": preset, "train": train}, {"augment": aug.key}, build, root=root)


def make_infer(root: Path, aug: cache.Stage, *, skill: float = 0.5, seed: int = 0, train: cache.Stage | None = None,
               puzzle_id: str = "true") -> cache.Stage:
    """An infer stage with predictions.parquet + preds.npy per docs/contracts.md."""
    from arcpipe.augment import Plan

    plan = Plan.load(aug)
    rows = plan.table.filter(pl.col("split") == "test").sort(["task_id", "example", "variant"])
    rng = np.random.default_rng(seed)
    task_names = sorted(set(rows["task_id"].to_list()))
    p_task = {t: rng.uniform(0, 1) * skill * 2 for t in task_names}
    cols: dict[str, list] = {k: [] for k in ("task_id", "example", "variant", "puzzle_id", "dihedral", "perm_i", "step",
                                             "pred_off", "pred_h", "pred_w", "q_halt", "q_continue", "logprob_sum",
                                             "logprob_mean")}
    chunks, off = [], 0
    for i, r in enumerate(rows.iter_rows(named=True)):
        truth = plan.tasks[r["task_id"]].test[r["example"]].output
        wrong = truth.copy()
        wrong[0, 0] = (wrong[0, 0] + 1) % 10
        perm = np.asarray(r["perm"], dtype=np.uint8)
        for s in STEPS:
            u = rng.uniform()
            p_right = min(1.0, p_task[r["task_id"]] * s / len(STEPS))
            if u < p_right:
                g, q = transforms.augment_grid(truth, r["dihedral"], perm), rng.normal(1.0, 1.0)
            elif u < p_right + 0.4:
                g, q = transforms.augment_grid(wrong, r["dihedral"], perm), rng.normal(0.0, 1.0)
            else:
                g, q = rng.integers(0, 10, size=rng.integers(1, 5, size=2)).astype(np.uint8), rng.normal(-1.0, 1.0)
            for k, v in (("task_id", r["task_id"]), ("example", r["example"]), ("variant", r["variant"]),
                         ("puzzle_id", r["puzzle_id"]), ("dihedral", r["dihedral"]), ("perm_i", i), ("step", s),
                         ("pred_off", off), ("pred_h", g.shape[0]), ("pred_w", g.shape[1]), ("q_halt", q),
                         ("q_continue", -q), ("logprob_sum", -abs(q) * g.size), ("logprob_mean", -abs(q))):
                cols[k].append(v)
            chunks.append(g.ravel())
            off += g.size
    df = pl.DataFrame({
        "task_id": cols["task_id"], "example": pl.Series(cols["example"], dtype=pl.Int16),
        "variant": pl.Series(cols["variant"], dtype=pl.Int32), "puzzle_id": pl.Series(cols["puzzle_id"], dtype=pl.Int32),
        "dihedral": pl.Series(cols["dihedral"], dtype=pl.Int8), "perm": rows["perm"].gather(cols["perm_i"]),
        "step": pl.Series(cols["step"], dtype=pl.Int16), "pred_off": pl.Series(cols["pred_off"], dtype=pl.Int64),
        "pred_h": pl.Series(cols["pred_h"], dtype=pl.Int16), "pred_w": pl.Series(cols["pred_w"], dtype=pl.Int16),
        **{k: pl.Series(cols[k], dtype=pl.Float32) for k in ("q_halt", "q_continue", "logprob_sum", "logprob_mean")},
    })

    def build(work: Path) -> dict:
        df.write_parquet(work / "predictions.parquet")
        np.save(work / "preds.npy", np.concatenate(chunks).astype(np.uint8))
        return {"rows": df.height}

    return cache.run_stage("infer", {"fake": {"skill": skill}, "seed": seed, "puzzle_id": puzzle_id},
                           {"train": train.key if train is not None else f"fake-{seed}", "augment": aug.key},
                           build, root=root)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    tasks = write_tasks(base / "tasks")
    root = base / "cache"
    aug = make_augment(root, tasks)
    inf = make_infer(root, aug)
    return root, tasks, aug, inf


MAIN = dict(name="r", n_aug_points=[1, 4, N_AUG], seeds=20)


@pytest.fixture(scope="module")
def built(cached, tmp_path_factory):
    root, _, _, inf = cached
    out_dir = tmp_path_factory.mktemp("reports")
    return out_dir, report.report([inf], out_dir=out_dir, root=root, **MAIN)


def test_report_numbers_equal_vote(cached, built):
    from arcpipe import vote

    root, _, aug, inf = cached
    out_dir, st = built
    out = out_dir / "r"
    assert st.path == out and not st.cached
    for f in ("report.md", "manifest.json", "n_aug_curves.png", "act_steps.png", "gallery_solved.png",
              "gallery_failed.png", "n_aug_curves.csv", "n_aug_curves.parquet", "per_task.csv", "per_task.parquet",
              "runs.csv", "runs.parquet", "run_tasks.csv", "run_tasks.parquet",
              "act_steps.csv", "act_steps.parquet"):
        assert (out / f).is_file(), f
    # every run's per-task scores, what the intervals resample: their mean is the run's own score
    per_run = pl.read_parquet(out / "run_tasks.parquet")
    assert per_run["infer"].unique().to_list() == [inf.key] and per_run["task_id"].n_unique() == per_run.height
    assert per_run["pass@2"].mean() == pytest.approx(pl.read_parquet(out / "runs.parquet")["pass@2"][0])
    curves = pl.read_parquet(out / "n_aug_curves.parquet")
    assert set(curves["rule"]) == set(vote.RULES) and set(curves["n_aug"]) == {1, 4, N_AUG}
    prepared = vote.prepare(inf)
    for rule in vote.RULES:
        # all variants: the point is exactly the vote stage's score
        vst = vote.vote(inf, n_aug=N_AUG, top=2, rule=rule, root=root)
        sc = json.loads((vst.path / "scores.json").read_text())
        for m in ("pass@1", "pass@2", "oracle"):
            got = curves.filter((pl.col("rule") == rule) & (pl.col("n_aug") == N_AUG) & (pl.col("metric") == m))
            assert got["mean"][0] == pytest.approx(sc[m], abs=1e-12), (rule, m)
            assert got["ci_low"][0] <= got["mean"][0] <= got["ci_high"][0]
        # a subsampled point: the mean over seeds 0..19 of what vote scores for each seed
        want = np.mean([vote.scores(vote.rank(prepared, n_aug=4, rule=rule, seed=s, top=2), prepared)["pass@2"]
                        for s in range(20)])
        got = curves.filter((pl.col("rule") == rule) & (pl.col("n_aug") == 4) & (pl.col("metric") == "pass@2"))
        assert got["mean"][0] == pytest.approx(want, abs=1e-12)
        assert got["subsamples"][0] == 20
    # per test input: solved flags and margins are the vote stage's answers
    per = pl.read_parquet(out / "per_task.parquet")
    ans = pl.read_parquet(vote.vote(inf, n_aug=N_AUG, rule="hrm", root=root).path / "answers.parquet")
    for r in per.iter_rows(named=True):
        a = ans.filter((pl.col("task_id") == r["task_id"]) & (pl.col("example") == r["example"])).sort("rank")
        assert r["hrm_solved"] == bool(a["correct"].fill_null(False).any())
        counts = a["count"].to_list() + [0]
        assert r["hrm_margin"] == counts[0] - counts[1]
    # ACT steps: pass@2 at each step equals vote at that step
    steps = pl.read_parquet(out / "act_steps.parquet")
    assert sorted(set(steps["step"])) == list(STEPS)
    for s in STEPS:
        want = vote.scores(vote.rank(prepared, rule="count", step=s, top=2), prepared)["pass@2"]
        assert steps.filter((pl.col("rule") == "count") & (pl.col("step") == s))["pass@2"][0] == pytest.approx(want)
    # the markdown names the headline numbers and links every image
    md = (out / "report.md").read_text()
    for png in ("n_aug_curves.png", "act_steps.png", "gallery_solved.png", "gallery_failed.png"):
        assert f"]({png})" in md
    hrm_p2 = curves.filter((pl.col("rule") == "hrm") & (pl.col("n_aug") == N_AUG) & (pl.col("metric") == "pass@2"))["mean"][0]
    assert f"{100 * hrm_p2:.1f}%" in md
    # and the tails its intervals are read at, for its number of tasks
    from arcpipe.stats import expanded_tail

    n_tasks = len(pl.read_parquet(out / "per_task.parquet")["task_id"].unique())
    assert f"a mean over {n_tasks} tasks ({100 * expanded_tail(n_tasks):.2f}% and" in md
    # the manifest lists every input stage's manifest
    man = json.loads((out / "manifest.json").read_text())
    assert {m["stage"] for m in man["input_manifests"]} == {"augment", "infer"}
    assert man["inputs"] == {"infer0": inf.key} and man["stage"] == "report"


def test_report_cached_and_republished(cached, built):
    root, _, _, inf = cached
    out_dir, first = built
    (out_dir / "r" / "report.md").unlink()
    again = report.report([inf.path], out_dir=out_dir, root=root, **MAIN)
    assert again.cached and again.key == first.key and (out_dir / "r" / "report.md").is_file()
    assert not list(out_dir.glob(".r.*"))  # no temporary copies left behind


def test_train_aug_sweep_section(cached, tmp_path):
    root, tasks, aug, inf = cached
    aug2 = make_augment(root, tasks, train_aug=4)
    inf2 = make_infer(root, aug2, skill=0.1, seed=1)
    report.report([inf2, inf], name="s", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm", "count"], root=root)
    t = pl.read_csv(tmp_path / "s" / "by_train_aug.csv")
    assert t["train_aug"].to_list() == [4, 4, N_AUG, N_AUG]  # counts sorted ascending, one row per rule
    assert (tmp_path / "s" / "by_train_aug.png").is_file()
    md = (tmp_path / "s" / "report.md").read_text()
    assert "## pass@2 by training augmentation count" in md
    assert f"main run (infer {inf.key[:8]}, train_aug={N_AUG}" in md  # the largest train_aug is the main run


def test_variant_pools_section(cached, built, tmp_path):
    """A plan that votes untrained variants gets the pools table; its numbers are vote's, pool by pool."""
    from arcpipe import vote

    root, tasks, _, _ = cached
    assert not (built[0] / "r" / "variant_pools.csv").exists()  # every variant trained: no section
    aug = make_augment(root, tasks, train_aug=3)
    inf = make_infer(root, aug, seed=2)
    report.report([inf], name="p", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=4, rules=["hrm", "q-max"], root=root)
    t = pl.read_parquet(tmp_path / "p" / "variant_pools.parquet")
    assert t.select("variants", "n_aug").unique(maintain_order=True).rows() == [
        ("all", N_AUG), ("trained", 3), ("untrained", N_AUG - 3), ("untrained", 3)]
    p = vote.prepare(inf)
    for r in t.iter_rows(named=True):
        seeds = range(4) if (r["variants"], r["n_aug"]) == ("untrained", 3) else range(1)
        want = np.mean([vote.scores(vote.rank(p, rule=r["rule"], n_aug=r["n_aug"], variants=r["variants"], seed=s), p)["pass@2"]
                        for s in seeds])
        assert r["pass@2"] == pytest.approx(want, abs=1e-12) and r["subsamples"] == len(seeds)
        assert r["ci_low"] <= r["pass@2"] <= r["ci_high"]
    md = (tmp_path / "p" / "report.md").read_text()
    assert "## Trained vs untrained variants" in md and "| untrained identifier | 3 |" in md


def test_refinement_section_repeats_with_only_trained_variants_voting(cached, tmp_path):
    """A plan that votes variants it never trained (the demo's): the refinement rows come twice,
    every variant voting, then only the trained ones; the trained rows' numbers are vote's with
    variants='trained', and the markdown gains a variants column. So do the segments-or-variants
    rows, the trained pool's counts stopping at its size."""
    from arcpipe import vote

    root, tasks, _, _ = cached
    aug = make_augment(root, tasks, train_aug=4)
    runs = [make_infer(root, aug, skill=0.4, seed=140 + s, train=make_train(root, aug, "tiny", seed=s, halt_max_steps=2))
            for s in (0, 1)]
    report.report(runs, name="split", out_dir=tmp_path, n_aug_points=[2, 4], seeds=2, rules=["hrm"], step=2, root=root)
    out = tmp_path / "split"
    t = pl.read_parquet(out / "refinement.parquet")
    assert t["variants"].to_list() == ["all"] * 5 + ["trained"] * 5
    assert t["step"].to_list() == [1, 2, 3, None, None] * 2
    assert t["pooled"].to_list() == [None, None, None, "1-2", "1-3"] * 2

    def p2(st, step, variants):
        prepared = vote.prepare(st)
        ranked = vote.rank(prepared, rule="hrm", top=2, step=step, variants=variants)
        return vote.scores(ranked, prepared, ks=(2,))["per_task"]["pass@2"]

    for pool in ("all", "trained"):
        for step, pooled in ((3, None), ([1, 2], "1-2")):
            d = np.mean([p2(r, step, pool) - p2(r, 2, pool) for r in runs], axis=0)
            row = t.filter((pl.col("variants") == pool) & (pl.col("step") == step if pooled is None else pl.col("pooled") == pooled))
            assert row["delta"][0] == pytest.approx(d.mean())
            assert row["pass@2"][0] == pytest.approx(np.mean([p2(r, step, pool) for r in runs]))
    trained_only = t.filter(pl.col("variants") == "trained")["pass@2"].to_numpy()
    assert not np.allclose(trained_only, t.filter(pl.col("variants") == "all")["pass@2"].to_numpy())
    md = (out / "report.md").read_text()
    assert "| arm | variants | runs | ACT step |" in md and "| all runs | trained | 2 | 1–2 voted together |" in md
    # segments or variants as votes, in each pool: steps 1-2 of 2 variants against step 2 alone of 4
    votes = pl.read_parquet(out / "refinement_votes.parquet")
    assert votes.select("variants", "steps", "n_aug").rows() == [
        ("all", "2", 2), ("all", "2", 4), ("all", "2", N_AUG), ("all", "1-2", 2), ("all", "1-2", 4), ("all", "1-2", N_AUG),
        ("trained", "2", 2), ("trained", "2", 4), ("trained", "1-2", 2), ("trained", "1-2", 4)]
    assert votes["vs_alone_n_aug"].to_list() == [None] * 3 + [4, None, None] + [None] * 2 + [4, None]

    def p2n(st, step, n, seed):
        prepared = vote.prepare(st)
        ranked = vote.rank(prepared, rule="hrm", top=2, step=step, n_aug=n, seed=seed, variants="trained")
        return vote.scores(ranked, prepared, ks=(2,))["per_task"]["pass@2"]

    d = np.mean([np.mean([p2n(r, [1, 2], 2, s) for s in (0, 1)], axis=0) - p2n(r, 2, 4, 0) for r in runs], axis=0)
    row = votes.filter((pl.col("variants") == "trained") & (pl.col("steps") == "1-2") & (pl.col("n_aug") == 2)).row(0, named=True)
    assert row["delta"] == pytest.approx(d.mean()) and row["subsamples"] == 2
    assert "| arm | variants | answers voted |" in md and "| all runs | trained | 4 | " in md
    assert "all runs (trained variants): " in md and "all runs (all variants): " in md


def test_one_factor_ablation_sections(cached, tmp_path):
    """A core sweep and a puzzle-id sweep sharing a baseline: one section each, each a one-factor
    slice through the baseline, numbers equal to scoring that run alone."""
    from arcpipe import vote

    root, tasks, aug, _ = cached
    t_hrm, t_trm, t_tf = (make_train(root, aug, p) for p in ("tiny", "trm-tiny", "transformer-tiny"))
    base = make_infer(root, aug, skill=0.6, seed=10, train=t_hrm)
    trm = make_infer(root, aug, skill=0.3, seed=11, train=t_trm)
    tf = make_infer(root, aug, skill=0.2, seed=12, train=t_tf)
    blank = make_infer(root, aug, skill=0.05, seed=13, train=t_hrm, puzzle_id="blank")
    runs = [trm, base, blank, tf]  # baseline not first: it must be found as the shared one
    resolved = report.resolve_runs(runs, root)
    assert report.varying_factors(resolved) == ["core", "puzzle_id"]  # preset restates core
    assert resolved[report.main_run(resolved)].infer.key == base.key
    report.report(runs, name="abl", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, root=root)
    out = tmp_path / "abl"
    cores = pl.read_parquet(out / "by_core.parquet")
    assert cores["core"].unique(maintain_order=True).to_list() == ["hrm", "trm", "transformer"]  # main's value first
    assert set(cores["runs"]) == {1}  # the blank-id run is not in the core slice
    ids = pl.read_parquet(out / "by_puzzle_id.parquet")
    assert ids["puzzle_id"].unique(maintain_order=True).to_list() == ["true", "blank"]
    # each number is the run's own vote score (all variants, last step)
    for run, table, col, val in ((trm, cores, "core", "trm"), (blank, ids, "puzzle_id", "blank")):
        prepared = vote.prepare(run)
        sc = vote.scores(vote.rank(prepared, n_aug=N_AUG, rule="count", top=2), prepared, ks=(2,))
        row = table.filter((pl.col(col) == val) & (pl.col("rule") == "count"))
        assert row["pass@2"][0] == pytest.approx(sc["per_task"]["pass@2"].mean())
    # paired differences from the main run's value (hrm rule, the primary): 0 for itself
    hrm_rows = cores.filter(pl.col("rule") == "hrm")
    assert hrm_rows["delta"].to_list()[0] == 0 and hrm_rows["delta_ci_low"][0] == hrm_rows["delta_ci_high"][0] == 0
    assert hrm_rows["delta"][1] == pytest.approx(hrm_rows["pass@2"][1] - hrm_rows["pass@2"][0])
    assert (hrm_rows["better"] + hrm_rows["worse"] <= len(set(pl.read_parquet(out / "per_task.parquet")["task_id"]))).all()
    # dense parameters are counted from each run's model config: the cores are size-matched
    assert cores["params"].n_unique() == 1 and cores["params"][0] > 0
    steps = pl.read_parquet(out / "by_core_steps.parquet")
    assert sorted(set(steps["step"])) == list(STEPS)
    md = (out / "report.md").read_text()
    assert "## pass@2 by model core" in md and "## pass@2 by puzzle identifier at inference" in md
    assert "by task source" not in md and not list(out.glob("*_sources.*"))  # one source: no split
    assert "source" not in pl.read_parquet(out / "per_task.parquet").columns
    assert (out / "by_core.png").is_file() and (out / "by_puzzle_id.png").is_file()
    # which hardware trained each run: from the train manifests (all this machine here)
    host = report.resolve_runs([base], root)[0].train_host()
    assert host is not None and f"{os.cpu_count()} CPUs" in host and f"Trained on {host}." in md
    assert set(pl.read_parquet(out / "runs.parquet")["train_host"]) == {host}


def test_train_host_names_gpus_and_reads_old_manifests(cached):
    """GPUs win over the CPU in the description; a manifest from before ``host`` was recorded gives None."""
    _, _, aug, _ = cached

    def run(manifest):
        return report.Run(infer=aug, votes=[], augment=aug, train=cache.Stage("train", "k", Path("."), manifest))

    gpus = {"host": {"cpu": "Xeon", "cpus": 16, "torch_threads": 16, "gpus": ["NVIDIA H200", "NVIDIA H200"]}}
    assert run(gpus).train_host() == "NVIDIA H200 ×2"
    assert run({"host": {"cpu": "EPYC", "cpus": 2, "torch_threads": 1}}).train_host() == "EPYC (2 CPUs, 1 thread)"
    xeon = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_id": "family 6 model 207", "cpu_capability": "AVX512",
            "cpus": 2, "torch_threads": 2}  # a generic VM name: the CPUID and kernel level tell generations apart
    assert (run({"host": xeon}).train_host()
            == "Intel(R) Xeon(R) Processor (family 6 model 207, AVX512 kernels, 2 CPUs, 2 threads)")
    assert run({"versions": {}}).train_host() is None


def test_header_counts_runs_whose_machine_is_unrecorded(cached, tmp_path):
    """A report mixing runs trained before manifests recorded the machine says how many it cannot place."""
    root, _, aug, _ = cached
    old, new = make_train(root, aug, "tiny", seed=70), make_train(root, aug, "tiny", seed=71)
    manifest = json.loads((old.path / "manifest.json").read_text())
    del manifest["host"]
    (old.path / "manifest.json").write_text(json.dumps(manifest))
    runs = [make_infer(root, aug, seed=s, train=t) for s, t in ((70, old), (71, new))]
    report.report(runs, name="mixed", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, root=root)
    md = (tmp_path / "mixed" / "report.md").read_text()
    host = report.resolve_runs([runs[1]], root)[0].train_host()
    assert f"Trained on {host}; 1 of 2 runs unrecorded" in md and "different draws" in md
    assert pl.read_parquet(tmp_path / "mixed" / "runs.parquet")["train_host"].to_list() == [None, host]


def test_default_points():
    assert report.default_points(1000) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert report.default_points(8) == [1, 2, 4, 8]
    assert report.default_points(1) == [1]


def test_report_errors(cached, tmp_path):
    root, _, _, inf = cached
    with pytest.raises(ArcpipeError, match=r"n_aug_points \[64\]: the inference cached 32 variants"):
        report.report([inf], name="e", out_dir=tmp_path, n_aug_points=[1, 64], root=root)
    with pytest.raises(ArcpipeError, match=r"unknown bogus \(known: count, hrm"):
        report.report([inf], name="e", out_dir=tmp_path, rules=["bogus"], root=root)
    with pytest.raises(ArcpipeError, match="no 'vote' or 'infer' output"):
        report.report(name="e", out_dir=tmp_path, root=tmp_path / "empty")
    with pytest.raises(ArcpipeError, match="a report reads 'infer' or 'vote' stages"):
        report.report([cached[2]], name="e", out_dir=tmp_path, root=root)
    assert not (tmp_path / "e").exists()


def test_cli_report_defaults_to_newest_vote(cached, tmp_path, monkeypatch):
    from arcpipe import vote
    from arcpipe.cli import app

    root, _, _, inf = cached
    vote.vote(inf, n_aug=N_AUG, rule="count", root=root)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["--cache", str(root), "report", "--name", "cli", "--n-aug-points", "1,8",
                                   "--seeds", "3", "--rules", "count,hrm"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "reports" / "cli" / "report.md").is_file()
    assert "reports/cli/report.md" in res.output
    assert inf.key in (tmp_path / "reports" / "cli" / "report.md").read_text()
    curves = pl.read_csv(tmp_path / "reports" / "cli" / "n_aug_curves.csv")
    assert sorted(set(curves["rule"])) == ["count", "hrm"] and sorted(set(curves["n_aug"])) == [1, 8, N_AUG]


@given(st.lists(st.integers(1, 5000), min_size=1, max_size=40, unique=True))
@settings(max_examples=80, deadline=None)
def test_log_axis_labels_keep_ends_and_never_crowd(values):
    """n_aug axes are log-scaled: labels keep the largest value, stay at most ~9, and two
    kept neighbours are never closer than 1/8 of the span (768 and 1000 once overlapped)."""
    values = sorted(values)
    kept = figures.log_spread(values)
    assert kept == sorted(kept) and set(kept) <= set(values) and kept[-1] == values[-1]
    if len(values) > 2:
        assert len(kept) <= 9
        gap = np.log2(values[-1] / values[0]) / 8
        assert (np.diff(np.log2(kept)) >= gap * (1 - 1e-6)).all()
        assert np.log2(kept[0] / values[0]) < gap  # the smallest label sits near the start


def test_any_setting_swept_within_a_preset_is_a_factor(cached, tmp_path):
    """A model setting that differs between runs of one preset (an outer-loop sweep) gets its own
    section; settings that only follow the preset (each core's layer counts) and seeds do not."""
    root, tasks, aug, _ = cached
    runs = []
    for i, steps in enumerate((4, 1, 8)):
        for seed in (0, 1):
            t = make_train(root, aug, "tiny", seed=seed, halt_max_steps=steps)
            runs.append(make_infer(root, aug, skill=0.2 * (i + 1), seed=10 * i + seed, train=t))
    t_trm = make_train(root, aug, "trm-tiny")
    runs.append(make_infer(root, aug, skill=0.3, seed=99, train=t_trm))
    resolved = report.resolve_runs(runs, root)
    assert report.varying_factors(resolved) == ["core", "halt_max_steps"]
    assert resolved[report.main_run(resolved)].factor("halt_max_steps") == 4  # the shared baseline
    report.report(runs, name="outer", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    t = pl.read_parquet(tmp_path / "outer" / "by_halt_max_steps.parquet")
    assert t["halt_max_steps"].to_list() == [1, 4, 8] and set(t["runs"]) == {2}  # sorted; seeds averaged
    md = (tmp_path / "outer" / "report.md").read_text()
    assert "## pass@2 by ACT steps (halt_max_steps)" in md and "](by_halt_max_steps.png)" in md
    assert md.count("halt_max_steps=8, seed=") == 2  # the inputs table tells the runs apart
    assert (tmp_path / "outer" / "by_halt_max_steps.png").is_file() and (tmp_path / "outer" / "by_core.png").is_file()


def test_core_slice_keeps_a_preset_whose_own_setting_is_swept(cached, tmp_path):
    """An L_cycles sweep of the tiny HRM beside the plain transformer, whose preset fixes
    L_cycles=1 itself: the core section compares the transformer with the baseline HRM (its
    L_cycles is what the preset is, not an ablation), and the L_cycles section holds only HRM."""
    root, tasks, aug, _ = cached
    import hrm

    assert hrm.HRMConfig.preset("transformer-tiny").L_cycles == 1 != hrm.HRMConfig.preset("tiny").L_cycles
    base = make_infer(root, aug, skill=0.5, seed=40, train=make_train(root, aug, "tiny"))
    l1 = make_infer(root, aug, skill=0.3, seed=41, train=make_train(root, aug, "tiny", L_cycles=1))
    tf = make_infer(root, aug, skill=0.4, seed=42, train=make_train(root, aug, "transformer-tiny"))
    resolved = report.resolve_runs([base, l1, tf], root)
    assert report.varying_factors(resolved) == ["core", "L_cycles"]
    assert resolved[0].follows_preset("L_cycles") and resolved[2].follows_preset("L_cycles")
    assert not resolved[1].follows_preset("L_cycles")
    report.report([base, l1, tf], name="pre", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    cores = pl.read_parquet(tmp_path / "pre" / "by_core.parquet")
    assert cores["core"].to_list() == ["hrm", "transformer"]
    assert cores["delta"][1] == pytest.approx(cores["pass@2"][1] - cores["pass@2"][0])
    cycles = pl.read_parquet(tmp_path / "pre" / "by_L_cycles.parquet")
    assert cycles["L_cycles"].to_list() == [1, 2] and set(cycles["runs"]) == {1}  # the transformer is not an L_cycles=1 run
    md = (tmp_path / "pre" / "report.md").read_text()
    assert "its runs keep their preset's value" in md


def test_joined_source_split_by_task_source(tmp_path):
    """Tasks joined from two sources (``a+b``, as ARC's evaluation + training): every factor
    section splits its arms by source, each number the per-task score averaged over that source's
    tasks (seeds averaged), the difference paired on them; per_task and runs carry the source.
    A part that can no longer be loaded drops the split instead of guessing it."""
    from arcpipe import vote

    a = write_tasks(tmp_path / "a", n_tasks=3, seed=1)
    b = write_tasks(tmp_path / "b", n_tasks=5, seed=2)
    for f in b.iterdir():
        f.rename(b / f"b-{f.name}")
    root = tmp_path / "cache"
    aug = make_augment(root, f"{a}+{b}")
    runs, by_arm = [], {}
    for i, steps in enumerate((4, 1)):
        for seed in (0, 1):
            inf = make_infer(root, aug, skill=0.15 + 0.15 * i, seed=20 + 10 * i + seed,
                             train=make_train(root, aug, "tiny", seed=seed, halt_max_steps=steps))
            runs.append(inf)
            by_arm.setdefault(steps, []).append(inf)
    report.report(runs, name="src", out_dir=tmp_path / "out", n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    out = tmp_path / "out" / "src"
    split = pl.read_parquet(out / "by_halt_max_steps_sources.parquet")
    assert split.select("halt_max_steps", "source", "tasks").rows() == [(1, str(a), 3), (1, str(b), 5),
                                                                        (4, str(a), 3), (4, str(b), 5)]
    per_arm = {}
    for steps, infs in by_arm.items():
        pts = []
        for inf in infs:
            prepared = vote.prepare(inf)
            pts.append(vote.scores(vote.rank(prepared, rule="hrm", top=2), prepared, ks=(2,))["per_task"])
        per_arm[steps] = pl.concat(pts).group_by("task_id").agg(pl.col("pass@2").mean()).sort("task_id")
    for r in split.iter_rows(named=True):
        pt = per_arm[r["halt_max_steps"]]
        mine = pt.filter(pl.col("task_id").str.starts_with("b-") == (r["source"] == str(b)))
        assert r["pass@2"] == pytest.approx(mine["pass@2"].mean())
        base = per_arm[4].filter(pl.col("task_id").is_in(mine["task_id"].implode()))
        assert r["delta"] == pytest.approx(mine["pass@2"].mean() - base["pass@2"].mean())
        assert r["ci_low"] <= r["pass@2"] <= r["ci_high"]
    assert split.filter(pl.col("halt_max_steps") == 4)["delta"].to_list() == [0, 0]
    per_task = pl.read_parquet(out / "per_task.parquet")
    expect = [str(b) if t.startswith("b-") else str(a) for t in per_task["task_id"]]
    assert per_task["source"].to_list() == expect
    run_rows = pl.read_parquet(out / "runs.parquet")
    assert {f"pass@2 {a}", f"pass@2 {b}"} <= set(run_rows.columns)
    md = (out / "report.md").read_text()
    assert "By task source (rule hrm" in md and "pass@2 by task source" in md and "`by_halt_max_steps_sources`" in md
    # one source, or a part moved away: no split
    main = report.resolve_runs(runs, root)[0]
    ids = sorted(per_task["task_id"].unique())
    assert set(report.task_sources(main, ids)) == {str(a), str(b)}
    a.rename(tmp_path / "moved")
    assert report.task_sources(main, ids) == {}


def test_augmentation_kinds_are_factors(cached, tmp_path):
    """Plans built with colour permutations (or both kinds) off differ from the full recipe in
    settings their manifests only record when off; the report reads the full recipe's as on,
    gives the kind its own section, and is not misled by the model's puzzle-id count (which
    follows each plan's variant count) into dropping it. Runs off every slice are in `runs`."""
    from arcpipe import vote
    from arcpipe.augment import Plan

    root, tasks, aug, _ = cached
    mono, none = make_augment(root, tasks, colour=False), make_augment(root, tasks, colour=False, dihedral=False)
    plans = (aug, mono, none)
    # as train does: the model's puzzle-id table is sized by the plan
    trains = [make_train(root, a, "tiny", num_puzzle_identifiers=Plan.load(a).num_puzzle_identifiers) for a in plans]
    assert len({t.config["model"]["num_puzzle_identifiers"] for t in trains}) == 3
    runs = [make_infer(root, a, skill=0.5 - 0.2 * i, seed=20 + i, train=t) for i, (a, t) in enumerate(zip(plans, trains))]
    resolved = report.resolve_runs(runs, root)
    assert sorted(report.varying_factors(resolved)) == ["colour", "dihedral"]
    assert [r.factor("colour") for r in resolved] == [True, False, False]
    assert [r.factor("dihedral") for r in resolved] == [True, True, False]
    report.report(runs, name="kinds", out_dir=tmp_path, n_aug_points=[1, 8], seeds=1, rules=["hrm"], root=root)
    # main run: colour off, dihedral on (the most common value of each); a slice through it per kind
    assert resolved[report.main_run(resolved)].infer.key == runs[1].key
    assert pl.read_parquet(tmp_path / "kinds" / "by_colour.parquet")["colour"].to_list() == [False, True]
    assert pl.read_parquet(tmp_path / "kinds" / "by_dihedral.parquet")["dihedral"].to_list() == [True, False]
    md = (tmp_path / "kinds" / "report.md").read_text()
    assert "## pass@2 by colour permutations" in md and "## pass@2 by dihedral transforms" in md
    # every run has its own row, with its factor values and its own score
    table = pl.read_parquet(tmp_path / "kinds" / "runs.parquet")
    assert table["infer"].to_list() == [r.key for r in runs] and table["colour"].to_list() == [True, False, False]
    for run, row in zip(runs, table.iter_rows(named=True)):
        prepared = vote.prepare(run)
        sc = vote.scores(vote.rank(prepared, rule="hrm", top=2), prepared, ks=(2,))
        assert row["pass@2"] == pytest.approx(sc["per_task"]["pass@2"].mean()) and row["train_exact"] == 0.5


def test_full_grid_of_two_settings(cached, tmp_path):
    """Two settings run in every combination (variants x budget, here halt_max_steps x L_cycles)
    get a grid beside their one-factor sections, corner included; each cell is its runs' own
    vote score, seeds averaged. Without the far corner there is no grid, only the slices."""
    from arcpipe import vote

    root, tasks, aug, _ = cached
    runs = {}
    for i, (h, l, seed) in enumerate(((4, 2, 0), (4, 2, 1), (8, 2, 0), (4, 1, 0), (8, 1, 0))):
        t = make_train(root, aug, "tiny", seed=seed, halt_max_steps=h, L_cycles=l)
        runs[(h, l, seed)] = make_infer(root, aug, skill=0.15 * (i + 1), seed=40 + i, train=t)
    report.report(list(runs.values()), name="grid", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    out = tmp_path / "grid"
    grid = pl.read_parquet(out / "grid_L_cycles_halt_max_steps.parquet")  # factors in the model config's order
    assert list(zip(grid["L_cycles"], grid["halt_max_steps"], grid["runs"])) == [(1, 4, 1), (1, 8, 1), (2, 4, 2), (2, 8, 1)]

    def own(st):
        prepared = vote.prepare(st)
        return vote.scores(vote.rank(prepared, rule="hrm", top=2), prepared, ks=(2,))["per_task"]["pass@2"]

    assert grid["pass@2"][1] == pytest.approx(own(runs[(8, 1, 0)]).mean())  # the corner no slice holds
    assert grid["pass@2"][2] == pytest.approx(((own(runs[(4, 2, 0)]) + own(runs[(4, 2, 1)])) / 2).mean())
    assert (grid["ci_low"] <= grid["pass@2"]).all() and (grid["pass@2"] <= grid["ci_high"]).all()
    # samples trained: the halted sequences summed over each run's metrics (fewer at more segments)
    assert grid["train_samples"].to_list() == [80, 40, 80, 40]
    assert pl.read_parquet(out / "runs.parquet")["train_samples"].to_list() == [80, 80, 40, 80, 40]
    # effects: each setting moved from its first value with the other held, paired over the same tasks
    eff = pl.read_parquet(out / "grid_L_cycles_halt_max_steps_effects.parquet")
    assert list(zip(eff["factor"], eff["from"], eff["to"], eff["at"])) == [
        ("halt_max_steps", "4", "8", "L_cycles=1"), ("halt_max_steps", "4", "8", "L_cycles=2"),
        ("L_cycles", "1", "2", "halt_max_steps=4"), ("L_cycles", "1", "2", "halt_max_steps=8"),
        ("L_cycles + halt_max_steps", "1, 4", "2, 8", "both moved"),
        ("L_cycles ↔ halt_max_steps", "1, 8", "2, 4", "one moved instead of the other"),
        ("L_cycles × halt_max_steps", "1, 4", "2, 8", "interaction")]
    assert eff["kind"].to_list() == ["effect"] * 4 + ["joint", "trade", "interaction"]
    assert eff["delta"][0] == pytest.approx(grid["pass@2"][1] - grid["pass@2"][0])
    assert eff["delta"][3] == pytest.approx(grid["pass@2"][3] - grid["pass@2"][1])
    # the interaction is the same difference of effects whichever factor is read as moved first
    assert eff["delta"][6] == pytest.approx(eff["delta"][1] - eff["delta"][0]) == pytest.approx(eff["delta"][3] - eff["delta"][2])
    # the joint row compares the far corner with the first directly: one effect plus the other's
    assert eff["delta"][4] == pytest.approx(grid["pass@2"][3] - grid["pass@2"][0]) == pytest.approx(eff["delta"][0] + eff["delta"][3])
    joint = own(runs[(8, 2, 0)]) - own(runs[(4, 1, 0)])
    assert (eff["better"][4], eff["worse"][4]) == (int((joint > stats.MOVED).sum()), int((joint < -stats.MOVED).sum()))
    # the trade row: L_cycles moved alone against halt_max_steps moved alone
    assert eff["delta"][5] == pytest.approx(grid["pass@2"][2] - grid["pass@2"][1]) == pytest.approx(eff["delta"][2] - eff["delta"][0])
    inter = own(runs[(8, 2, 0)]) - own(runs[(4, 2, 0)]) / 2 - own(runs[(4, 2, 1)]) / 2 - own(runs[(8, 1, 0)]) + own(runs[(4, 1, 0)])
    assert (eff["better"][6], eff["worse"][6]) == (int((inter > stats.MOVED).sum()), int((inter < -stats.MOVED).sum()))
    assert ((eff["delta_ci_low"] <= eff["delta"] + 1e-12) & (eff["delta"] <= eff["delta_ci_high"] + 1e-12)).all()
    d = own(runs[(8, 1, 0)]) - own(runs[(4, 1, 0)])
    assert (eff["better"][0], eff["worse"][0]) == (int((d > 0).sum()), int((d < 0).sum()))
    # the seed-resampled interval: every row here touches a cell of one run, which has no seed spread
    assert eff["delta_seeds_low"].is_nan().all() and eff["delta_seeds_high"].is_nan().all()
    md = (out / "report.md").read_text()
    assert "| interaction | " in md and "(one run) |" in md and "seeds resampled" in md
    assert "## pass@2 by L cycles per H cycle × ACT steps (halt_max_steps)" in md and "`grid_L_cycles_halt_max_steps`" in md
    assert "| `halt_max_steps` 4 → 8 | L_cycles=1 |" in md and "| `L_cycles × halt_max_steps` 1, 4 → 2, 8 | interaction |" in md
    assert "| `L_cycles + halt_max_steps` 1, 4 → 2, 8 | both moved |" in md and " · 50.0% · 40 |" in md
    assert (out / "by_halt_max_steps.parquet").is_file() and (out / "by_L_cycles.parquet").is_file()
    del runs[(8, 1, 0)]
    report.report(list(runs.values()), name="slices", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    assert not list((tmp_path / "slices").glob("grid_*")) and "## pass@2 by L cycles per H cycle ×" not in (tmp_path / "slices" / "report.md").read_text()


def test_runs_table_carries_each_trainings_fit_on_every_row(cached, tmp_path):
    """LAYOUT 21: ``train_exact_all``, the final fit on every training row that trainings now read
    after their last step, beside ``train_exact`` on the rows sampled during training; null for a
    training from before (its manifest has no such count)."""
    root, tasks, aug, _ = cached
    # steps no other test uses: the cached root is shared, and a train stage of the same key would be a hit
    runs = [make_infer(root, aug, skill=0.3, seed=70 + i, train=make_train(root, aug, "tiny", seed=i, steps=13, exact=e, fit_all=f))
            for i, (e, f) in enumerate(((0.50, 0.55), (0.60, None)))]
    report.report(runs, name="fitall", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    table = pl.read_parquet(tmp_path / "fitall" / "runs.parquet").sort("seed")
    assert table["train_exact"].to_list() == [0.50, 0.60] and table["train_exact_all"].to_list() == [0.55, None]


def test_compute_section_meets_arms_at_equal_compute(cached, tmp_path):
    """Arms that differ in two settings (the plain transformer, half HRM's FLOPs a step, trained for
    twice the steps) meet in the compute section: training FLOPs counted from each config times its
    steps, the frontier, and the pair at about equal compute paired directly, its numbers the runs'
    own vote scores. Runs that differ only at inference cost the same: no section."""
    import hrm
    from hrm.flops import step_flops

    from arcpipe import vote

    root, tasks, aug, _ = cached
    runs = {}
    for i, (preset, steps, seed) in enumerate((("tiny", 10, 0), ("tiny", 10, 1), ("transformer-tiny", 10, 0),
                                                ("transformer-tiny", 20, 0), ("transformer-tiny", 20, 1))):
        t = make_train(root, aug, preset, seed=seed, steps=steps)
        runs[(preset, steps, seed)] = make_infer(root, aug, skill=0.15 + 0.1 * i, seed=90 + i, train=t)
    report.report(list(runs.values()), name="compute", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    out = tmp_path / "compute"
    table = pl.read_parquet(out / "compute.parquet")
    per_step = {p: step_flops(hrm.HRMConfig.preset(p), 32).train for p in ("tiny", "transformer-tiny")}
    assert per_step["transformer-tiny"] < per_step["tiny"] < 2 * per_step["transformer-tiny"]  # heads cost both the same
    # cheapest first; the main run (most common values: the transformer, 10 steps) is the reference
    assert list(zip(table["core"], table["max_steps"], table["runs"], table["main"])) == [
        ("transformer", 10, 1, True), ("hrm", 10, 2, False), ("transformer", 20, 2, False)]
    assert table["train_flops"].to_list() == [10 * per_step["transformer-tiny"], 10 * per_step["tiny"], 20 * per_step["transformer-tiny"]]
    assert table["flops_ratio"][2] == pytest.approx(2.0) and table["arm"].to_list() == [
        "main: core=transformer, max_steps=10", "core=hrm", "max_steps=20"]

    def own(st):
        prepared = vote.prepare(st)
        return vote.scores(vote.rank(prepared, rule="hrm", top=2), prepared, ks=(2,))["per_task"]["pass@2"]

    scores = {k: own(v) for k, v in runs.items()}
    hrm10 = (scores[("tiny", 10, 0)] + scores[("tiny", 10, 1)]) / 2
    tf20 = (scores[("transformer-tiny", 20, 0)] + scores[("transformer-tiny", 20, 1)]) / 2
    assert table["pass@2"].to_list() == pytest.approx([scores[("transformer-tiny", 10, 0)].mean(), hrm10.mean(), tf20.mean()])
    assert table["delta"][1] == pytest.approx(hrm10.mean() - scores[("transformer-tiny", 10, 0)].mean())
    # the frontier: no arm of at most an arm's compute scored more
    p2, fl = table["pass@2"].to_list(), table["train_flops"].to_list()
    assert table["frontier"].to_list() == [not any(fl[b] <= fl[a] and p2[b] > p2[a] + stats.MOVED for b in range(3)) for a in range(3)]
    assert table["frontier"][0]  # the cheapest arm always is
    # the one pair within EQUAL_COMPUTE: the transformer at 20 steps against HRM at 10
    pairs = pl.read_parquet(out / "compute_pairs.parquet")
    assert pairs.height == 1 and (pairs["from"][0], pairs["to"][0]) == ("core=hrm", "max_steps=20")
    assert 1 < pairs["flops_ratio"][0] <= report_compute.EQUAL_COMPUTE
    d = tf20 - hrm10
    assert pairs["delta"][0] == pytest.approx(d.mean())
    assert (pairs["better"][0], pairs["worse"][0]) == (int((d > stats.MOVED).sum()), int((d < -stats.MOVED).sum()))
    assert pairs["delta_ci_low"][0] <= pairs["delta"][0] <= pairs["delta_ci_high"][0]
    assert pairs["delta_seeds_low"][0] <= pairs["delta"][0] <= pairs["delta_seeds_high"][0]
    md = (out / "report.md").read_text()
    assert "## pass@2 against training compute" in md and "![pass@2 against training compute](compute.png)" in md
    assert "| max_steps=20 | core=hrm | " in md and "`compute_pairs`" in md and (out / "compute.png").is_file()
    got = pl.read_parquet(out / "runs.parquet")
    assert sorted(got["train_flops"].to_list()) == sorted(
        [10 * per_step["tiny"]] * 2 + [10 * per_step["transformer-tiny"]] + [20 * per_step["transformer-tiny"]] * 2)
    # the baseline named: HRM, though the transformer holds the most common values
    report.report(list(runs.values()), name="hrm-main", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"],
                  main="preset=tiny", root=root)
    named = pl.read_parquet(tmp_path / "hrm-main" / "compute.parquet")
    assert named.filter(pl.col("main"))["core"].to_list() == ["hrm"] and named["flops_ratio"][0] == pytest.approx(
        per_step["transformer-tiny"] / per_step["tiny"])
    assert named.filter(pl.col("core") == "transformer")["delta"].to_list() == pytest.approx(
        [scores[("transformer-tiny", 10, 0)].mean() - hrm10.mean(), tf20.mean() - hrm10.mean()])
    assert 'the baseline the report was asked for (`main = "preset=tiny"`)' in (tmp_path / "hrm-main" / "report.md").read_text()
    with pytest.raises(ArcpipeError, match="report main 'preset=trm-tiny': no run holds"):
        report.report(list(runs.values()), name="x", out_dir=tmp_path, main="preset=trm-tiny", root=root)
    # the same training read with a blank identifier: one cost, no compute section
    t = make_train(root, aug, "tiny", seed=5)
    same = [make_infer(root, aug, skill=0.4, seed=96, train=t), make_infer(root, aug, skill=0.1, seed=97, train=t, puzzle_id="blank")]
    report.report(same, name="same", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    assert not (tmp_path / "same" / "compute.parquet").exists()
    assert "training compute" not in (tmp_path / "same" / "report.md").read_text()
    # three arms: a line through the other two would fit them exactly, so no arm is read against one
    assert table["fit_line"].is_null().all() and table["off_fit_line"].is_null().all() and not (out / "fit.png").exists()
    assert "training fit" not in md


def test_compute_section_reads_each_arm_against_the_fit_line(cached, tmp_path):
    """Every arm's pass@2 against the least-squares line through the other arms' (train exact,
    pass@2): the line's value is the weights ``_leave_one_out_weights`` gives times the arms'
    scores, and the distance from it is paired over tasks like any contrast -- its counts the
    tasks whose own score is above / below the line's per-task value."""
    from arcpipe import vote

    root, tasks, aug, _ = cached
    arms = [("tiny", 10, (0.30, 0.40)), ("transformer-tiny", 10, (0.55,)), ("transformer-tiny", 20, (0.70,)),
            ("tiny", 20, (0.62,)), ("transformer-tiny", 40, (0.90,)), ("tiny", 40, (0.95,))]
    runs: dict[tuple, list] = {}
    for i, (preset, steps, fits) in enumerate(arms):
        for j, fit in enumerate(fits):
            # the last arm runs one ACT segment: its fit is on another scale than the main arm's
            over = {"halt_max_steps": 1} if steps == 40 and preset == "tiny" else {}
            t = make_train(root, aug, preset, seed=30 + j, steps=steps, exact=fit, **over)  # seeds no other test trains
            runs.setdefault((preset, steps), []).append(make_infer(root, aug, skill=0.1 + 0.1 * i, seed=200 + 10 * i + j, train=t))
    report.report([r for rs in runs.values() for r in rs], name="fit", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1,
                  rules=["hrm"], main="preset=tiny,max_steps=10", root=root)
    out = tmp_path / "fit"
    table = pl.read_parquet(out / "compute.parquet")

    def own(st):
        prepared = vote.prepare(st)
        return vote.scores(vote.rank(prepared, rule="hrm", top=2), prepared, ks=(2,))["per_task"]["pass@2"]

    core = {"hrm": "tiny", "transformer": "transformer-tiny"}
    order = [(core[c], m) for c, m in zip(table["core"], table["max_steps"])]
    per_task = np.stack([np.mean([own(r) for r in runs[k]], axis=0) for k in order])
    fit = np.array([np.mean(dict((a[:2], a[2]) for a in arms)[k]) for k in order])
    assert table["train_exact"].to_numpy() == pytest.approx(fit)
    y = per_task.mean(axis=1)
    ref = [k != ("tiny", 40) for k in order]
    assert table["fit_ref"].to_list() == ref
    for a in range(len(order)):
        # the line through the other arms on the main arm's scale: the one-segment arm is read, never drawn through
        others = [b for b in range(len(order)) if b != a and ref[b]]
        line = np.polyval(np.polyfit(fit[others], y[others], 1), fit[a])
        assert table["fit_line"][a] == pytest.approx(line) and table["off_fit_line"][a] == pytest.approx(y[a] - line)
        assert table["fit_beyond"][a] == (not fit[others].min() <= fit[a] <= fit[others].max())
        w = report_compute._leave_one_out_weights(list(fit), ref)[a]
        d = per_task[a] - w @ per_task
        assert (table["off_fit_better"][a], table["off_fit_worse"][a]) == (int((d > stats.MOVED).sum()), int((d < -stats.MOVED).sum()))
        assert table["off_fit_low"][a] <= table["off_fit_line"][a] <= table["off_fit_high"][a]
    # the fit's own interval: Student's t over the arm's two runs; one run has none
    two = order.index(("tiny", 10))
    half = stats.t_quantile(0.975, 1) * np.std([0.30, 0.40], ddof=1) / np.sqrt(2)
    assert (table["train_exact_low"][two], table["train_exact_high"][two]) == pytest.approx((max(0, 0.35 - half), min(1, 0.35 + half)))
    assert table["train_exact_low"].null_count() == len(order) - 1
    md = (out / "report.md").read_text()
    assert "![pass@2 against training fit](fit.png)" in md and (out / "fit.png").is_file()
    assert "| line through the others | off the line | seeds resampled |" in md
    assert "| halt_max_steps=1, max_steps=40 † |" in md and "(beyond)" in md
    assert table["fit_beyond"].to_list().count(True) == 3  # the lowest and highest fits of the main scale, and the one segment's


@given(st.lists(st.floats(0, 1), min_size=4, max_size=8, unique=True), st.randoms())
@settings(max_examples=50, deadline=None)
def test_leave_one_out_weights_give_the_line_through_the_others(x, rnd):
    """The weights are the least-squares line's value as a linear function of the y's: for any y,
    weights @ y equals polyfit through the other points, read at the point's own x; the point's own
    weight is zero; an arm without a fit gets no line and weighs nothing in the others'."""
    if np.ptp(x) < 1e-3:
        return
    y = np.array([rnd.uniform(0, 1) for _ in x])
    got = report_compute._leave_one_out_weights(x + [None])
    assert got[-1] is None
    for a, w in enumerate(got[:-1]):
        others = [b for b in range(len(x)) if b != a]
        if np.ptp(np.asarray(x)[others]) < 1e-3:
            continue
        assert w[a] == 0 and w[-1] == 0 and w.sum() == pytest.approx(1.0)
        assert w[:-1] @ y == pytest.approx(np.polyval(np.polyfit(np.asarray(x)[others], y[others], 1), x[a]), abs=1e-6)
    # a point off the reference scale weighs nothing in any line, and is read against all the others
    ref = [False] + [True] * (len(x) - 1)
    for a, w in enumerate(report_compute._leave_one_out_weights(x, ref)):
        others = [b for b in range(1, len(x)) if b != a]
        if w is None:
            assert len(others) < report_compute.FIT_LINE_ARMS or np.ptp(np.asarray(x)[others]) < 1e-6
            continue
        assert w[0] == 0
        if np.ptp(np.asarray(x)[others]) >= 1e-3:
            assert w @ y == pytest.approx(np.polyval(np.polyfit(np.asarray(x)[others], y[others], 1), x[a]), abs=1e-6)
    assert report_compute._leave_one_out_weights([0.1, 0.2, 0.3]) == [None] * 3  # two others: no line


def test_factor_sections_vote_count_curves(cached, tmp_path):
    """Each one-factor section also gives pass@2 against the number of variants voted, per arm:
    below the arm's count the mean over seeded subsamples, at it every variant once, and the
    training seeds averaged; each point equals the runs' own vote queries."""
    from arcpipe import vote

    root, tasks, aug, _ = cached
    runs = {}
    for i, (h, seed) in enumerate(((4, 0), (4, 1), (8, 0))):
        t = make_train(root, aug, "tiny", seed=seed, halt_max_steps=h)
        runs[(h, seed)] = make_infer(root, aug, skill=0.2 * (i + 1), seed=60 + i, train=t)
    report.report(list(runs.values()), name="votes", out_dir=tmp_path, n_aug_points=[1, 4, N_AUG], seeds=3, rules=["hrm"],
                  root=root)
    out = tmp_path / "votes"
    t = pl.read_parquet(out / "by_halt_max_steps_n_aug.parquet")
    assert list(zip(t["halt_max_steps"], t["n_aug"], t["runs"], t["subsamples"])) == [
        (4, 1, 2, 3), (4, 4, 2, 3), (4, N_AUG, 2, 1), (8, 1, 1, 3), (8, 4, 1, 3), (8, N_AUG, 1, 1)]

    def own(st, n, seeds):
        prepared = vote.prepare(st)
        return np.mean([vote.scores(vote.rank(prepared, rule="hrm", n_aug=n, seed=s, top=2), prepared, ks=(2,))
                        ["per_task"]["pass@2"].mean() for s in seeds])

    want = (own(runs[(4, 0)], 4, range(3)) + own(runs[(4, 1)], 4, range(3))) / 2
    assert t["pass@2"][1] == pytest.approx(want)
    assert t["pass@2"][5] == pytest.approx(own(runs[(8, 0)], N_AUG, [0]))
    # all variants voted: the same number as the section's main table
    main = pl.read_parquet(out / "by_halt_max_steps.parquet").filter(pl.col("rule") == "hrm")
    assert t.filter(pl.col("n_aug") == N_AUG)["pass@2"].to_list() == pytest.approx(main["pass@2"].to_list())
    assert t["pass@2"][0] != t["pass@2"][2]  # one variant and thirty-two do not vote alike here
    assert ((t["ci_low"] <= t["pass@2"] + 1e-12) & (t["pass@2"] <= t["ci_high"] + 1e-12)).all()
    md = (out / "report.md").read_text()
    assert "pass@2 · oracle by inference variants voted (rule hrm; below an arm's variant count, the mean over 3" in md
    assert "| n_aug | 4 | 8 |" in md


def test_voting_rules_compared_on_the_main_arm(cached, tmp_path):
    """The rules section: each rule's pass@2 on the main arm (training seeds averaged), and its
    paired difference from the primary rule equal to the per-task difference of the runs' own votes."""
    from arcpipe import vote

    root, tasks, aug, _ = cached
    arm = [make_infer(root, aug, skill=0.5, seed=70 + s, train=make_train(root, aug, "tiny", seed=s, H_cycles=3)) for s in (0, 1)]
    other = [make_infer(root, aug, skill=0.3, seed=72 + s, train=make_train(root, aug, "tiny", seed=s, H_cycles=1)) for s in (0, 1)]
    report.report([*arm, *other], name="rules", out_dir=tmp_path, n_aug_points=[N_AUG], seeds=1, rules=["hrm", "q-max", "count"],
                  root=root)
    t = pl.read_parquet(tmp_path / "rules" / "rules.parquet")
    assert t["rule"].to_list() == ["hrm", "q-max", "count"] and set(t["runs"]) == {2}

    def own(st, rule):
        prepared = vote.prepare(st)
        return vote.scores(vote.rank(prepared, rule=rule, top=2), prepared, ks=(2,))["per_task"]["pass@2"]

    main = {r: (own(arm[0], r) + own(arm[1], r)) / 2 for r in ("hrm", "q-max")}
    d = main["q-max"] - main["hrm"]
    row = t.row(1, named=True)
    assert row["pass@2"] == pytest.approx(main["q-max"].mean()) and row["delta"] == pytest.approx(d.mean())
    assert (row["better"], row["worse"]) == (int((d > 0).sum()), int((d < 0).sum()))
    assert row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"]
    assert t.row(0, named=True)["delta"] == 0
    md = (tmp_path / "rules" / "report.md").read_text()
    assert "## Voting rules compared" in md and "(2 runs, training seeds averaged per task)" in md
    assert "| rule | pass@2 | oracle | Δ vs hrm | seeds resampled |" in md
    # resampling the arm's two runs: each drawn run brings both rules' votes, so the interval is
    # that of the runs' own per-task differences
    lo, hi = stats.seed_bootstrap_ci([np.stack([own(x, "q-max") - own(x, "hrm") for x in arm])], np.ones((1, 1)))
    assert (row["delta_seeds_low"], row["delta_seeds_high"]) == pytest.approx((lo[0], hi[0]))
    assert f"[{100 * lo[0]:+.1f}, {100 * hi[0]:+.1f}] |" in md
    # the factor section's difference, with each arm's two runs resampled independently
    f = pl.read_parquet(tmp_path / "rules" / "by_H_cycles.parquet").filter(pl.col("rule") == "hrm").sort("H_cycles")
    lo, hi = stats.seed_bootstrap_ci([np.stack([own(x, "hrm") for x in other]), np.stack([own(x, "hrm") for x in arm])],
                                      np.array([[1.0, -1.0]]))
    assert (f["delta_seeds_low"][0], f["delta_seeds_high"][0]) == pytest.approx((lo[0], hi[0]))
    assert f["delta_seeds_low"][1] == f["delta_seeds_high"][1] == 0  # the main value against itself
    # arcpipe compare, from the report's runs and run_tasks tables alone, gives the section's numbers
    from arcpipe import compare

    out = compare.compare([f"{tmp_path / 'rules'}:H_cycles=1"], [f"{tmp_path / 'rules'}:H_cycles=3"])
    t = out["over_tasks"]
    assert t["tasks"] == len(own(arm[0], "hrm")) and t["delta"] == pytest.approx(100 * f["delta"][0])
    assert (t["low"], t["high"]) == pytest.approx((100 * f["delta_ci_low"][0], 100 * f["delta_ci_high"][0]))
    assert (t["seeds_low"], t["seeds_high"]) == pytest.approx((100 * lo[0], 100 * hi[0]))
    assert out["over_runs"]["delta"] == pytest.approx(100 * f["delta"][0])


def test_signals_section(cached, built):
    """The signals table: per step, both AUROCs of each signal equal a brute-force count over the
    step's (right, wrong) prediction pairs -- within one test input, and pooled --, the intervals
    hold them, calibration bins partition the predictions; the fixture gives right predictions
    higher q_halt, so the pooled head reads as informative."""
    from arcpipe import vote

    _, _, _, inf = cached
    out = built[0] / "r"
    sig = pl.read_parquet(out / "signals.parquet")
    cal = pl.read_parquet(out / "calibration.parquet")
    p = vote.prepare(inf)

    def share(d: np.ndarray) -> float:
        return float(((d > 0) + 0.5 * (d == 0)).sum() / d.size)

    for s in STEPS:
        rows = np.flatnonzero(p.valid & (p.step == s) & p.g_known[p.group])
        right = p.g_correct[p.group[rows]]
        tex = p.tex[rows]
        # agreement: the share of the input's predictions (this step) with the same answer
        answers = list(zip(tex.tolist(), p.answer[rows].tolist()))
        same_answer, per_input = Counter(answers), Counter(tex.tolist())
        agreement = np.array([same_answer[a] / per_input[a[0]] for a in answers])
        for name, x in (("q_halt", p.q[rows]), ("logprob", p.logprob[rows]), ("agreement", agreement)):
            d = x[right][:, None] - x[~right][None, :]
            same = tex[right][:, None] == tex[~right][None, :]
            r = sig.filter((pl.col("step") == s) & (pl.col("signal") == name)).row(0, named=True)
            assert r["pooled_auroc"] == pytest.approx(share(d), abs=1e-12) and r["predictions"] == len(rows)
            assert r["auroc"] == pytest.approx(share(d[same]), abs=1e-12) and r["pairs"] == same.sum()
            assert r["ci_low"] <= r["auroc"] <= r["ci_high"] and r["pooled_ci_low"] <= r["pooled_auroc"] <= r["pooled_ci_high"]
            assert r["right"] == pytest.approx(right.mean())
        assert sig.filter((pl.col("step") == s) & (pl.col("signal") == "q_halt"))["pooled_auroc"][0] > 0.6
    last = np.flatnonzero(p.valid & (p.step == STEPS[-1]) & p.g_known[p.group])
    assert cal["predictions"].sum() == len(last) and cal.height == 5 and (cal["step"] == STEPS[-1]).all()
    assert (cal["q_low"].to_numpy()[1:] >= cal["q_high"].to_numpy()[:-1]).all()
    assert (cal["predictions"] * cal["right"]).sum() == pytest.approx(p.g_correct[p.group[last]].sum())
    runs = pl.read_parquet(out / "runs.parquet")
    want = sig.filter((pl.col("step") == STEPS[-1]) & (pl.col("signal") == "q_halt")).row(0, named=True)
    assert (runs["q_auroc"][0], runs["q_pooled_auroc"][0]) == pytest.approx((want["auroc"], want["pooled_auroc"]))
    assert set(sig["signal"]) == {"q_halt", "logprob", "agreement"} and runs["agreement_auroc"][0] > 0.5
    md = (out / "report.md").read_text()
    assert "## Do the signals know when a prediction is right?" in md and "Calibration of sigmoid(q_halt) at step 3" in md


def test_signals_pooled_interval_left_out_above_its_budget(cached, monkeypatch):
    """At ARC scale the pooled interval's pair matrix is too costly: above POOLED_CI_CELLS it is NaN,
    while both point estimates and the within-input interval stay as they were."""
    from arcpipe import signals, vote

    p = vote.prepare(cached[3])
    full = signals.signal_quality(p, n_boot=200)
    monkeypatch.setattr(signals, "POOLED_CI_CELLS", 0)
    cut = signals.signal_quality(p, n_boot=200)
    assert cut["pooled_ci_low"].is_nan().all() and not full["pooled_ci_low"].is_nan().any()
    for col in ("auroc", "ci_low", "ci_high", "pooled_auroc"):
        assert cut[col].to_list() == pytest.approx(full[col].to_list())
    md = "\n".join(report_markdown._signals_markdown(cut, signals.calibration(p, STEPS[-1])))
    assert "Pooled AUROCs without an interval" in md
    assert "without an interval" not in "\n".join(report_markdown._signals_markdown(full, signals.calibration(p, STEPS[-1])))


def test_signals_threads_give_the_same_table(cached):
    """The report shares the (step, signal) rows between threads: same rows, same order, same numbers."""
    from arcpipe import signals, vote

    p = vote.prepare(cached[3])
    one = signals.signal_quality(p, n_boot=200)
    assert one.height == len(STEPS) * len(signals.SIGNALS)
    assert signals.signal_quality(p, n_boot=200, jobs=3).equals(one)


def test_answer_agreement_is_the_share_of_equal_answer_pairs(cached):
    """Brute force over the predictions: pairs of one variant's steps with the same answer, per
    variant, averaged per test input then over inputs; and pairs of variants at one step."""
    import itertools

    from arcpipe import vote

    p = vote.prepare(cached[3])
    by_variant, by_input = {}, {}
    for i in np.flatnonzero(p.valid):
        by_variant.setdefault((p.tex[i], p.tv[i]), []).append(p.answer[i])
        if p.step[i] == 3:
            by_input.setdefault(p.tex[i], []).append(p.answer[i])

    def share(answers):
        pairs = list(itertools.combinations(answers, 2))
        return sum(a == b for a, b in pairs) / len(pairs)

    per_input = {}
    for (tex, _), answers in by_variant.items():
        if len(answers) > 1:
            per_input.setdefault(tex, []).append(share(answers))
    within, across = signals.answer_agreement(p, (1, 2, 3), 3)
    assert within == pytest.approx(np.mean([np.mean(v) for v in per_input.values()]))
    assert across == pytest.approx(np.mean([share(a) for a in by_input.values() if len(a) > 1]))
    assert 0 < within < 1 and 0 < across < 1
    one = signals.answer_agreement(p, (2,), 2)  # one step: no pair of steps within a variant
    assert np.isnan(one[0]) and one[1] == pytest.approx(np.mean([share([p.answer[i] for i in np.flatnonzero(
        p.valid & (p.step == 2) & (p.tex == t))]) for t in np.unique(p.tex[p.valid & (p.step == 2)])]))


def test_refinement_section_pairs_steps_past_training_within_each_run(cached, tmp_path):
    """Runs trained to 2 ACT segments whose inference recorded 3: pass@2 at every step and its
    difference from step 2, run by run, the numbers vote's own; each other arm's gain against the
    main arm's. Runs that recorded no step past their training get no section."""
    from arcpipe import vote

    root, _, aug, _ = cached
    runs = {}
    for i, (preset, seed) in enumerate((("tiny", 0), ("tiny", 1), ("transformer-tiny", 0), ("transformer-tiny", 1))):
        t = make_train(root, aug, preset, seed=seed, halt_max_steps=2)
        runs[(preset, seed)] = make_infer(root, aug, skill=0.2 + 0.1 * i, seed=120 + i, train=t)
    report.report(list(runs.values()), name="refine", out_dir=tmp_path, n_aug_points=[8, 16], seeds=1, rules=["hrm"],
                  main="preset=tiny", step=2, root=root)
    out = tmp_path / "refine"
    everything = pl.read_parquet(out / "refinement.parquet")
    table = everything.filter(pl.col("step").is_not_null())
    assert table["arm"].to_list() == ["core=hrm"] * 3 + ["core=transformer"] * 3
    assert table["step"].to_list() == [1, 2, 3] * 2 and set(table["trained_steps"]) == {2} and set(table["runs"]) == {2}
    # the trained steps' answers voted together (1-2), then every step's (1-3)
    pooled = everything.filter(pl.col("step").is_null())
    assert pooled["pooled"].to_list() == ["1-2", "1-3"] * 2

    def p2(st, step):
        prepared = vote.prepare(st)
        return vote.scores(vote.rank(prepared, rule="hrm", top=2, step=step), prepared, ks=(2,))["per_task"]["pass@2"]

    def gain(preset, step):
        return np.mean([p2(runs[(preset, s)], step) - p2(runs[(preset, s)], 2) for s in (0, 1)], axis=0)

    hrm3, tf3 = gain("tiny", 3), gain("transformer-tiny", 3)
    row = table.filter((pl.col("arm") == "core=hrm") & (pl.col("step") == 3)).row(0, named=True)
    assert row["delta"] == pytest.approx(hrm3.mean()) and row["better"] == int((hrm3 > stats.MOVED).sum())
    assert row["pass@2"] == pytest.approx(np.mean([p2(runs[("tiny", s)], 3) for s in (0, 1)]))
    assert row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"]
    assert row["delta_seeds_low"] <= row["delta"] <= row["delta_seeds_high"]
    both = np.mean([p2(runs[("tiny", s)], [1, 2, 3]) - p2(runs[("tiny", s)], 2) for s in (0, 1)], axis=0)
    assert pooled.filter((pl.col("arm") == "core=hrm") & (pl.col("pooled") == "1-3"))["delta"][0] == pytest.approx(both.mean())
    assert "| core=hrm | 2 | 1–3 voted together |" in (out / "report.md").read_text()
    trained = table.filter(pl.col("step") == 2)
    assert trained["delta"].to_list() == [0.0, 0.0]
    vs = pl.read_parquet(out / "refinement_vs_main.parquet")
    assert vs["arm"].to_list() == ["core=transformer"] and vs["step"].to_list() == [3] and vs["main"][0] == "core=hrm"
    assert vs["delta"][0] == pytest.approx(tf3.mean() - hrm3.mean())
    md = (out / "report.md").read_text()
    assert "## Test-time refinement: ACT steps past training" in md and "| core=hrm | 2 | 2 (trained) |" in md
    assert "`refinement`, `refinement_vs_main`" in md and (out / "refinement.png").is_file()
    assert set(everything["variants"]) == {"all"}  # every variant trained: one pool
    # how alike the voting answers are, on the voted-together rows only, as answer_agreement says run by run
    assert table["agree_steps"].null_count() == table.height
    hrm_12 = pooled.filter((pl.col("arm") == "core=hrm") & (pl.col("pooled") == "1-2")).row(0, named=True)
    want = np.mean([signals.answer_agreement(vote.prepare(runs[("tiny", s)]), (1, 2), 2) for s in (0, 1)], axis=0)
    assert (hrm_12["agree_steps"], hrm_12["agree_variants"]) == pytest.approx(tuple(want))
    # segments or variants as votes: steps 1-2 of n variants against step 2 alone of 2n, paired per run
    votes = pl.read_parquet(out / "refinement_votes.parquet")
    hrm_votes = votes.filter(pl.col("arm") == "core=hrm")
    assert hrm_votes.select("steps", "n_aug", "votes").rows() == [
        ("2", 8, 8), ("2", 16, 16), ("2", N_AUG, N_AUG), ("1-2", 8, 16), ("1-2", 16, 32), ("1-2", N_AUG, 2 * N_AUG)]
    assert hrm_votes["vs_alone_n_aug"].to_list() == [None, None, None, 16, N_AUG, None]

    def p2n(st, step, n):
        prepared = vote.prepare(st)
        return vote.scores(vote.rank(prepared, rule="hrm", top=2, step=step, n_aug=n, seed=0), prepared, ks=(2,))["per_task"]["pass@2"]

    runs_hrm = [runs[("tiny", s)] for s in (0, 1)]
    d = np.mean([p2n(r, [1, 2], 8) - p2n(r, 2, 16) for r in runs_hrm], axis=0)
    row = hrm_votes.filter((pl.col("steps") == "1-2") & (pl.col("n_aug") == 8)).row(0, named=True)
    assert row["delta"] == pytest.approx(d.mean()) and row["worse"] == int((d < -stats.MOVED).sum())
    assert row["pass@2"] == pytest.approx(np.mean([p2n(r, [1, 2], 8) for r in runs_hrm]))
    assert row["delta_seeds_low"] <= row["delta"] <= row["delta_seeds_high"]
    md = (out / "report.md").read_text()
    # the row against all 32 variants alone (not against steps 1-2 of all 32, which no alone row matches)
    alone32 = hrm_votes.filter((pl.col("steps") == "2") & (pl.col("n_aug") == N_AUG))["pass@2"][0]
    both16 = hrm_votes.filter((pl.col("steps") == "1-2") & (pl.col("n_aug") == 16))["pass@2"][0]
    assert f"| core=hrm | 32 | {100 * alone32:.1f}% (32 variants) | {100 * both16:.1f}% (16) |" in md
    assert "Segments or variants as votes" in md and (out / "refinement_votes.png").is_file()
    assert f"core=hrm: {100 * hrm_12['agree_steps']:.1f}% against {100 * hrm_12['agree_variants']:.1f}%" in md
    # trained to tiny's 4 segments, recorded 1..3: the trained step is missing, nothing to pair with it
    t = make_train(root, aug, "tiny", seed=7)
    report.report([make_infer(root, aug, skill=0.3, seed=130, train=t)], name="none", out_dir=tmp_path,
                  n_aug_points=[N_AUG], seeds=1, rules=["hrm"], root=root)
    assert not (tmp_path / "none" / "refinement.parquet").exists()
    assert "Test-time refinement" not in (tmp_path / "none" / "report.md").read_text()


def test_segments_section_without_steps_past_training(cached, tmp_path):
    """The default inference records every trained step and none past them: the section still pairs
    each step and the steps voted together against the trained one (under its own title, no
    steps-past-training rows), since which segments should vote is a question for every report."""
    root, _, aug, _ = cached
    runs = [make_infer(root, aug, skill=0.3, seed=150 + s, train=make_train(root, aug, "tiny", seed=s, halt_max_steps=3))
            for s in (0, 1)]
    report.report(runs, name="seg", out_dir=tmp_path, n_aug_points=[4, 12], seeds=1, rules=["hrm"], root=root)
    out = tmp_path / "seg"
    t = pl.read_parquet(out / "refinement.parquet")
    assert t["step"].to_list() == [1, 2, 3, None] and t["pooled"].to_list() == [None, None, None, "1-3"]
    assert set(t["trained_steps"]) == {3} and not (out / "refinement_vs_main.parquet").exists()
    md = (out / "report.md").read_text()
    assert "## ACT segments at inference: each alone and voted together" in md and "Test-time refinement" not in md
    assert "| all runs | 2 | 1–3 voted together |" in md and "![pass@2 against the ACT step](refinement.png)" in md
    votes = pl.read_parquet(out / "refinement_votes.parquet")
    # steps 1-3 of 4 variants against step 3 of 12; none of 12 or 32 variants has a partner of 36 or 96
    assert votes.filter(pl.col("vs_alone_n_aug").is_not_null()).select("n_aug", "votes", "vs_alone_n_aug").rows() == [(4, 12, 12)]
    assert "| all runs | 12 | " in md
    # trained to 2 steps, voted at 5 and 32 variants: steps 1-2 give 10 and 64 answers, which step 2 alone never
    # reaches, so the table has no contrast and the markdown no votes section
    two = make_train(root, aug, "tiny", seed=0, halt_max_steps=2)
    report.report([make_infer(root, aug, skill=0.3, seed=160, train=two)], name="nopair", out_dir=tmp_path,
                  n_aug_points=[5], seeds=1, rules=["hrm"], root=root)
    lone = pl.read_parquet(tmp_path / "nopair" / "refinement_votes.parquet")
    assert lone["vs_alone_n_aug"].null_count() == lone.height and "Segments or variants" not in (tmp_path / "nopair" / "report.md").read_text()
