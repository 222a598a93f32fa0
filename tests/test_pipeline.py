"""`arcpipe run`: TOML schema and errors, --set, sweep expansion and sharing, caching, dry runs.

Most tests drive the pipeline with small fake stage functions that go
through the real ``cache.run_stage`` (so keys chain exactly as the real
stages' do) and record their calls; the end-to-end tests at the bottom run
the real stages on a few real ARC tasks.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from arcpipe import launch, pipeline, scheduler
from arcpipe.errors import ArcpipeError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fake stages


# FakeStages and the `fake` fixture live in conftest.py (tests/test_cache_admin.py uses them too).


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = """
[data]
source = "arc1:evaluation"
max_side = 10
first = 4
[augment]
n_aug = 50
train_aug = 8
canvas = 12
[train]
preset = "tiny"
max_steps = 10
[infer]
batch_size = 64
[vote]
rule = "hrm"
n_aug = 50
[report]
name = "t"
out_dir = "{out}"
"""


def base(tmp_path: Path, extra: str = "") -> Path:
    return write(tmp_path, BASE.format(out=tmp_path / "reports") + extra)


def statuses(result) -> dict[str, str]:
    return {n.label: n.status for n in result}


# --------------------------------------------------------------------------- caching


def test_vote_rule_change_reruns_only_vote_and_report(fake, tmp_path):
    p = base(tmp_path)
    root = tmp_path / "cache"
    first = pipeline.run(p, root=root)
    assert [n.status for n in first] == ["ran"] * 5
    again = pipeline.run(p, root=root)
    assert all(n.cached for n in again)

    changed = pipeline.run(p, root=root, sets=["vote.rule=count"])
    assert {n.stage: n.cached for n in changed} == {
        "augment": True, "train": True, "infer": True, "vote": False, "report": False}
    # the new vote stage's manifest carries the new rule and the *same* inference key
    vote = changed.by_stage("vote")[0]
    assert vote.result.manifest["config"]["rule"] == "count"
    assert vote.result.manifest["inputs"]["infer"] == first.by_stage("infer")[0].key


def test_vote_n_aug_change_reruns_only_the_query(fake, tmp_path):
    p = base(tmp_path)
    root = tmp_path / "cache"
    pipeline.run(p, root=root)
    r = pipeline.run(p, root=root, sets=["vote.n_aug=10"])
    assert [n.stage for n in r if not n.cached] == ["vote", "report"]


def test_train_aug_change_reruns_augment_train_infer(fake, tmp_path):
    p = base(tmp_path)
    root = tmp_path / "cache"
    pipeline.run(p, root=root)
    r = pipeline.run(p, root=root, sets=["augment.train_aug=16"])
    assert [n.cached for n in r] == [False] * 5


def test_dry_run_reports_cached_and_would_run_without_running(fake, tmp_path):
    p = base(tmp_path)
    root = tmp_path / "cache"
    dry = pipeline.run(p, root=root, dry_run=True)
    assert [n.status for n in dry] == ["would run"] * 5 and fake.calls == []
    done = pipeline.run(p, root=root)
    dry = pipeline.run(p, root=root, dry_run=True)
    assert [n.status for n in dry] == ["cached"] * 5
    assert [n.key for n in dry] == [n.key for n in done]
    dry = pipeline.run(p, root=root, dry_run=True, sets=["vote.rule=q-max"])
    assert [n.status for n in dry] == ["cached", "cached", "cached", "would run", "would run"]
    dry = pipeline.run(p, root=root, dry_run=True, sets=["train.max_steps=11"])
    assert [n.status for n in dry] == ["cached"] + ["would run"] * 4
    # a stage directory deleted by hand is no longer reported as cached
    import shutil

    shutil.rmtree(done.by_stage("infer")[0].path)
    dry = pipeline.run(p, root=root, dry_run=True)
    assert [n.status for n in dry] == ["cached", "cached", "would run", "would run", "would run"]
    assert len(fake.calls) == 5  # only the one real run called stage functions


def test_dry_run_sees_changed_stage_defaults(fake, tmp_path, monkeypatch):
    """A setting the pipeline leaves out falls back to the stage's default; when that default
    changes (here train's presets) the dry run must not claim the old outputs are current."""
    p = base(tmp_path)
    root = tmp_path / "cache"
    train_mod = sys.modules["arcpipe.train"]
    monkeypatch.setattr(train_mod, "TRAIN_PRESETS", {"tiny": {"lr": 3e-3}}, raising=False)
    pipeline.run(p, root=root)
    assert [n.status for n in pipeline.run(p, root=root, dry_run=True)] == ["cached"] * 5
    monkeypatch.setattr(train_mod, "TRAIN_PRESETS", {"tiny": {"lr": 1e-3}})
    dry = pipeline.run(p, root=root, dry_run=True)
    assert [n.status for n in dry] == ["cached"] + ["would run"] * 4
    # An edit to a preset the pipeline does not use changes nothing it depends on.
    monkeypatch.setattr(train_mod, "TRAIN_PRESETS", {"tiny": {"lr": 1e-3}, "arc": {"lr": 1.0}})
    pipeline.run(p, root=root)
    monkeypatch.setattr(train_mod, "TRAIN_PRESETS", {"tiny": {"lr": 1e-3}, "arc": {"lr": 2.0}})
    from hrm import config as hrm_config

    monkeypatch.setitem(hrm_config._PRESETS, "arc", {**hrm_config._PRESETS["arc"], "hidden_size": 1024})
    assert [n.status for n in pipeline.run(p, root=root, dry_run=True)] == ["cached"] * 5
    monkeypatch.setitem(hrm_config._PRESETS, "tiny", {**hrm_config._PRESETS["tiny"], "hidden_size": 8})
    assert [n.status for n in pipeline.run(p, root=root, dry_run=True)] == ["cached"] + ["would run"] * 4


def test_dry_run_sees_a_new_report_layout(fake, tmp_path, monkeypatch):
    """A report of an older layout is rebuilt on the next run (its content key holds LAYOUT), so
    the dry run says so rather than calling the published report current."""
    p = base(tmp_path)
    root = tmp_path / "cache"
    pipeline.run(p, root=root)
    assert [n.status for n in pipeline.run(p, root=root, dry_run=True)] == ["cached"] * 5
    monkeypatch.setattr(sys.modules["arcpipe.report"], "LAYOUT", 2)
    assert [n.status for n in pipeline.run(p, root=root, dry_run=True)] == ["cached"] * 4 + ["would run"]


def test_force_recomputes(fake, tmp_path):
    p = base(tmp_path)
    root = tmp_path / "cache"
    pipeline.run(p, root=root)
    r = pipeline.run(p, root=root, force=["vote"])
    assert [n.cached for n in r] == [True, True, True, False, True]
    r = pipeline.run(p, root=root, force=True)
    assert not any(n.cached for n in r)
    with pytest.raises(ArcpipeError, match="unknown stage"):
        pipeline.run(p, root=root, force=["bogus"])


def test_jobs_under_torchrun_is_refused_before_anything_runs(fake, tmp_path, monkeypatch):
    """Under torchrun the ranks share each stage; worker processes on top would each start a
    process group of their own. (The run itself: tests/test_train_distributed.py.)"""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert (launch.world(), launch.rank()) == (2, 1)
    with pytest.raises(ArcpipeError, match="--jobs 2: under torchrun"):
        pipeline.run(base(tmp_path), root=tmp_path / "cache", jobs=2)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("manifest.json"))


# --------------------------------------------------------------------------- sweeps


def test_compile_reaches_train_and_infer_as_its_own_stage(fake, tmp_path):
    """[train] compile goes to train()'s overrides (TrainConfig.compile), [infer] compile to infer();
    a compiled run is a different stage from the eager one (its numbers differ in the last bits)."""
    pipeline.run(base(tmp_path), root=tmp_path / "c")
    fake.calls.clear()
    res = pipeline.run(base(tmp_path), sets=["train.compile=true", "infer.compile=true"], root=tmp_path / "c")
    train_cfg = [c for n, c in fake.calls if n == "train"]
    infer_cfg = [c for n, c in fake.calls if n == "infer"]
    assert train_cfg and train_cfg[0]["overrides"] == {"compile": True}
    assert infer_cfg and infer_cfg[0]["compile"] is True
    assert statuses(res)["augment"] == "cached" and statuses(res)["train"] == "ran"


def test_sweep_expansion_shares_stages(fake, tmp_path):
    p = base(tmp_path, '[sweep]\ntrain_aug = [1, 8, 64]\nseeds = [0, 1]\n"vote.rule" = ["hrm", "count"]\n')
    plan = pipeline.plan(p)
    assert len(plan.points) == 12
    counts = {s: sum(1 for n in plan.nodes if n.stage == s) for s in ("augment", "train", "infer", "vote", "report")}
    assert counts == {"augment": 3, "train": 6, "infer": 6, "vote": 12, "report": 1}
    r = pipeline.run(p, root=tmp_path / "cache")
    assert fake.count("augment") == 3 and fake.count("train") == 6 and fake.count("vote") == 12
    assert sorted(cfg["train_aug"] for s, cfg in fake.calls if s == "augment") == [1, 8, 64]
    assert sorted((cfg["seed"]) for s, cfg in fake.calls if s == "train") == [0, 0, 0, 1, 1, 1]
    # every train node reads the augment built for its own train_aug
    for node in r.by_stage("train"):
        assert node.result.manifest["inputs"]["augment"] == node.parents["augment"].key
        assert node.parents["augment"].settings["train_aug"] == node.point["augment.train_aug"]
    # the report sees all 12 votes
    assert len(r.by_stage("report")[0].parents) == 12
    labels = [n.label for n in r.by_stage("train")]
    assert "train[augment.train_aug=8, train.seed=1]" in labels


def test_sweep_nested_table_and_vote_rule_list(fake, tmp_path):
    p = write(tmp_path, '[vote]\nrule = ["hrm", "count", "q-max"]\n[sweep.augment]\nseed = [0, 1]\n'
                        '[report]\nenabled = false\n')
    plan = pipeline.plan(p)
    assert len(plan.points) == 6 and plan.report is None
    assert sum(1 for n in plan.nodes if n.stage == "augment") == 2
    assert sum(1 for n in plan.nodes if n.stage == "infer") == 2


def test_vote_variant_pool_sweep_shares_one_inference(fake, tmp_path):
    p = base(tmp_path, '[sweep]\nvariants = ["all", "trained", "untrained"]\n')
    plan = pipeline.plan(p)
    assert len(plan.points) == 3 and sum(n.stage == "infer" for n in plan.nodes) == 1
    pipeline.run(p, root=tmp_path / "cache")
    assert fake.count("train") == 1 and fake.count("vote") == 3
    assert sorted(cfg.get("variants", "all") for s, cfg in fake.calls if s == "vote") == ["all", "trained", "untrained"]


def test_set_overrides_sweep(fake, tmp_path):
    p = base(tmp_path, "[sweep]\ntrain_aug = [1, 8]\n")
    assert len(pipeline.plan(p).points) == 2
    assert len(pipeline.plan(p, ["sweep.train_aug=[1, 8, 64]"]).points) == 3
    assert len(pipeline.plan(p, ["sweep.augment.train_aug=4"]).points) == 1
    # fixing a swept key with a plain --set removes the sweep over it
    pl = pipeline.plan(p, ["augment.train_aug=4"])
    assert len(pl.points) == 1 and pl.sections["augment"]["train_aug"] == 4


ONE_AT_A_TIME = """
[[sweep]]
preset = ["tiny", "trm-tiny", "transformer-tiny"]
[[sweep]]
train_aug = [1, 8]
[[sweep]]
puzzle_id = ["true", "blank", "random"]
"""


def test_sweep_tables_are_one_factor_ablations_sharing_the_baseline(fake, tmp_path):
    # BASE: preset tiny, train_aug 8, puzzle_id unset (= "true")
    p = base(tmp_path, ONE_AT_A_TIME.replace('"true", ', ""))
    plan = pipeline.plan(p)
    # 3 presets + 2 train_aug + 2 puzzle-id modes; the baseline (tiny, train_aug 8) appears in the
    # first two tables and is one point
    assert len(plan.points) == 6
    counts = {s: sum(1 for n in plan.nodes if n.stage == s) for s in ("augment", "train", "infer", "vote")}
    # augment: train_aug 8 (baseline) and 1; train: baseline, trm, transformer, train_aug=1;
    # infer: one per train + the blank/random identity modes on the baseline checkpoint
    assert counts == {"augment": 2, "train": 4, "infer": 6, "vote": 6}
    r = pipeline.run(p, root=tmp_path / "cache")
    assert fake.count("augment") == 2 and fake.count("train") == 4 and fake.count("infer") == 6
    assert sorted(cfg["preset"] for s, cfg in fake.calls if s == "train") == ["tiny", "tiny", "transformer-tiny", "trm-tiny"]
    modes = sorted(cfg["puzzle_id"] for s, cfg in fake.calls if s == "infer")
    assert modes == ["blank", "random", "true", "true", "true", "true"]
    # the blank/random inferences read the baseline checkpoint, not a retrained one
    base_train = next(n for n in r.by_stage("train") if n.settings.get("preset") == "tiny" and n.parents["augment"].settings["train_aug"] == 8)
    for node in r.by_stage("infer"):
        if node.settings.get("puzzle_id") in ("blank", "random"):
            assert node.parents["train"] is base_train


def test_augmentation_kind_sweeps(fake, tmp_path):
    """The recipe's parts ablate by short name, one [[sweep]] each around the full recipe: one
    augment and one training per kind switched off, the baseline built once (the stage's defaults
    are the baseline's values: nothing needs writing in [augment])."""
    p = base(tmp_path, "[[sweep]]\ndihedral = [true, false]\n[[sweep]]\ncolour = [true, false]\n"
                       "[[sweep]]\ntranslate = [true, false]\n")
    plan = pipeline.plan(p)
    assert len(plan.points) == 4 and sum(n.stage == "augment" for n in plan.nodes) == 4
    pipeline.run(p, root=tmp_path / "cache")
    augments = [cfg for s, cfg in fake.calls if s == "augment"]
    kinds = sorted((c.get("dihedral", True), c.get("colour", True), c["translate"]) for c in augments)
    assert kinds == [(False, True, True), (True, False, True), (True, True, False), (True, True, True)]
    assert fake.count("train") == 4
    with pytest.raises(ArcpipeError, match=r"augment\.colour must be a boolean"):
        pipeline.plan(write(tmp_path, BASE.format(out=tmp_path).replace("[augment]\n", "[augment]\ncolour = 0\n")))


def test_set_sweep_crosses_every_sweep_table(fake, tmp_path):
    p = base(tmp_path, ONE_AT_A_TIME)
    assert len(pipeline.plan(p).points) == 6  # puzzle_id "true" is infer's default: the baseline again
    # an added axis is crossed with each table: every ablation run at two seeds
    crossed = pipeline.plan(p, ["sweep.seeds=[0, 1]"])
    assert len(crossed.points) == 12 and all(len(t) == 2 for t in crossed.sweeps)
    # an axis that is swept is replaced where it is swept
    assert len(pipeline.plan(p, ["sweep.train_aug=[1, 8, 64]"]).points) == 7
    # fixing a swept key drops that axis; a table left empty is the baseline run
    fixed = pipeline.plan(p, ["infer.puzzle_id=blank"])
    assert len(fixed.points) == 4 and fixed.sections["infer"]["puzzle_id"] == "blank"


def test_model_setting_sweeps(fake, tmp_path):
    """Model overrides sweep like any key (the outer-loop / H-L ablations): dotted or as a
    [sweep.train.model] table, merged into [train.model], the baseline's value shared, typos named."""
    p = base(tmp_path, '[train.model]\nhidden_size = 32\nhalt_max_steps = 4\n'
                       '[[sweep]]\n"train.model.halt_max_steps" = [1, 4, 8]\n[[sweep]]\n[sweep.train.model]\nH_cycles = [1, 2]\n')
    plan = pipeline.plan(p)
    # 3 + 1: neither table's baseline is a change -- H_cycles 2 is the tiny preset's own value,
    # so it is the baseline without being written in [train.model] (and is not trained twice)
    assert len(plan.points) == 4
    r = pipeline.run(p, root=tmp_path / "cache")
    overrides = sorted((c["overrides"]["halt_max_steps"], c["overrides"].get("H_cycles", 0)) for s, c in fake.calls if s == "train")
    assert overrides == [(1, 0), (4, 0), (4, 1), (8, 0)]
    assert all(c["overrides"]["hidden_size"] == 32 for s, c in fake.calls if s == "train")  # section values kept
    assert "train[train.model.halt_max_steps=8]" in [n.label for n in r.by_stage("train")]
    # --set fixes a swept model value (the sweep over it goes), or replaces the swept list
    fixed = pipeline.plan(p, ["train.model.halt_max_steps=2"])
    assert fixed.points == [{("train", "model.H_cycles"): 1}, {("train", "model.H_cycles"): 2}]
    assert fixed.sections["train"]["model"] == {"hidden_size": 32, "halt_max_steps": 2}
    assert len(pipeline.plan(p, ["sweep.train.model.halt_max_steps=[1, 2, 4, 8, 16]"]).points) == 6
    # short names for the outer-loop / hierarchy knobs, fixed by --set like any other
    short = base(tmp_path, "[[sweep]]\nhalt_max_steps = [1, 8]\n[[sweep]]\nL_cycles = [1, 4]\n")
    assert len(pipeline.plan(short).points) == 4
    assert len(pipeline.plan(short, ["train.model.halt_max_steps=2"]).points) == 2
    with pytest.raises(ArcpipeError, match=r"unknown model setting 'train.model.halt_steps'; \[train.model\] keys: .*halt_max_steps"):
        pipeline.plan(base(tmp_path, '[sweep]\n"train.model.halt_steps" = [1, 2]\n'))
    with pytest.raises(ArcpipeError, match=r"sweep.train.model.H_cycles\[0\] must be a number, string or boolean"):
        pipeline.plan(base(tmp_path, '[sweep.train.model]\nH_cycles = [[1], 2]\n'))


def test_sweep_table_errors(tmp_path):
    with pytest.raises(ArcpipeError, match=r"p\.toml: \[\[sweep\]\] #2: unknown sweep key 'bogus'"):
        pipeline.plan(write(tmp_path, "[[sweep]]\ntrain_aug = [1]\n[[sweep]]\nbogus = [2]\n"))
    with pytest.raises(ArcpipeError, match=r"sweep must be a table|#1 must be a table"):
        pipeline.validate({"sweep": [3]}, "p.toml")


def test_shipped_pipelines_parse():
    for name in ("demo", "arc1", "arc2", "vote-ablation", "ablations"):
        plan = pipeline.plan(REPO / "pipelines" / f"{name}.toml")
        assert [n.stage for n in plan.nodes][:3] == ["augment", "train", "infer"]
    demo = pipeline.plan(REPO / "pipelines" / "demo.toml")
    assert demo.sections["augment"]["n_aug"] == 1000 and demo.sections["report"]["name"] == "demo"
    arc1 = pipeline.plan(REPO / "pipelines" / "arc1.toml").sections["train"]
    assert (arc1["batch_size"], arc1["lr"], arc1["puzzle_emb_lr"], arc1["warmup_steps"]) == (768, 1e-4, 1e-2, 2000)
    ablation = pipeline.plan(REPO / "pipelines" / "vote-ablation.toml")
    assert sum(1 for n in ablation.nodes if n.stage == "train") == 1
    assert sum(1 for n in ablation.nodes if n.stage == "vote") == 20
    # the ablation reuses the demo's augment/train/infer exactly (same pipeline keys -> cache hits)
    assert [n.pkey for n in ablation.nodes[:3]] == [n.pkey for n in demo.nodes[:3]]
    # one-factor ablations: 3 cores + 2 more train_aug values share one baseline -> 5 trainings,
    # and the two extra puzzle-id modes reuse the baseline checkpoint -> 7 inferences
    abl = pipeline.plan(REPO / "pipelines" / "ablations.toml")
    counts = {s: sum(1 for n in abl.nodes if n.stage == s) for s in ("augment", "train", "infer", "vote", "report")}
    assert counts == {"augment": 3, "train": 5, "infer": 7, "vote": 7, "report": 1}
    assert {n.settings.get("preset") for n in abl.nodes if n.stage == "train"} == {"tiny", "trm-tiny", "transformer-tiny"}
    # outer loop vs hierarchy: 3 + 2 + 2 model settings around one baseline -> 8 trainings
    outer = pipeline.plan(REPO / "pipelines" / "outer-loop.toml")
    models = [n.settings["model"] for n in outer.nodes if n.stage == "train"]
    assert len(models) == 8 and {"halt_max_steps": 4, "H_cycles": 2, "L_cycles": 2} in models
    assert sorted(m["halt_max_steps"] for m in models) == [1, 2, 4, 4, 4, 4, 4, 8]
    # variant count: train_aug left out follows n_aug, so each arm trains and votes all its variants
    count = pipeline.plan(REPO / "pipelines" / "aug-count.toml")
    augs = [n.settings for n in count.nodes if n.stage == "augment"]
    assert sorted(a["n_aug"] for a in augs) == [8, 32, 128, 512] and not any("train_aug" in a for a in augs)
    trains = sorted((n.parents["augment"].settings["n_aug"], n.settings["max_steps"]) for n in count.nodes if n.stage == "train")
    assert trains == [(8, 3000), (32, 3000), (128, 3000), (512, 3000)]
    assert "n_aug" not in count.sections["vote"]
    # variants x budget: a 2 x 2 grid whose 3000-step arms are aug-count's runs (same keys -> cache hits)
    budget = pipeline.plan(REPO / "pipelines" / "aug-budget.toml")
    grid = {(n.parents["augment"].settings["n_aug"], n.settings["max_steps"]): n.pkey for n in budget.nodes if n.stage == "train"}
    assert sorted(grid) == [(32, 3000), (32, 12000), (128, 3000), (128, 12000)]
    shared = {(n.parents["augment"].settings["n_aug"], n.settings["max_steps"]): n.pkey for n in count.nodes if n.stage == "train"}
    assert grid[(32, 3000)] == shared[(32, 3000)] and grid[(128, 3000)] == shared[(128, 3000)]
    # cores at 12000 steps: the HRM arm is aug-budget's 32-variant 12000-step run
    cores = pipeline.plan(REPO / "pipelines" / "cores.toml")
    by_preset = {n.settings["preset"]: n.pkey for n in cores.nodes if n.stage == "train"}
    assert sorted(by_preset) == ["tiny", "transformer-tiny", "trm-tiny"] and by_preset["tiny"] == grid[(32, 12000)]
    # defaults written out are the same runs: outer-loop.toml spells out tiny's model values and
    # leaves puzzle_id out, ablations.toml the reverse -> one baseline training and inference
    def baseline(plan, train_ok):
        train = next(n for n in plan.nodes if n.stage == "train" and train_ok(n))
        infer = [n for n in plan.nodes if n.stage == "infer" and n.parents["train"] is train
                 and n.settings.get("puzzle_id", "true") == "true"]
        return train.pkey, [n.pkey for n in infer]

    def tiny_model(n) -> bool:
        tiny = {"halt_max_steps": 4, "H_cycles": 2, "L_cycles": 2}
        return all(tiny[k] == v for k, v in n.settings.get("model", {}).items())

    abl_base = baseline(abl, lambda n: n.settings["preset"] == "tiny" and n.parents["augment"].settings["train_aug"] == 32)
    assert baseline(outer, tiny_model) == abl_base
    outer12 = pipeline.plan(REPO / "pipelines" / "outer-loop-12k.toml")
    assert baseline(outer12, tiny_model) == baseline(cores, lambda n: n.settings["preset"] == "tiny")


def test_settings_equal_to_defaults_name_the_same_stage(fake, tmp_path):
    """Writing out a stage's default (keyword default, or the model preset's value) is no new
    run: same pipeline keys, so --dry-run of the one finds the other's stages cached."""
    text = BASE.format(out=tmp_path / "reports")
    spelled = text.replace("batch_size = 64", 'batch_size = 64\npuzzle_id = "true"') + "[train.model]\nhalt_max_steps = 4\n"
    changed = text + "[train.model]\nhalt_max_steps = 8\n"
    keys = {name: [n.pkey for n in pipeline.plan(write(tmp_path, t, f"{name}.toml")).nodes]
            for name, t in (("plain", text), ("spelled", spelled), ("changed", changed))}
    assert keys["spelled"][:4] == keys["plain"][:4]
    assert keys["changed"][0] == keys["plain"][0] and keys["changed"][1] != keys["plain"][1]
    # train_aug left out follows n_aug: writing it out equal to n_aug is the same augment node
    follows, equal = text.replace("train_aug = 8\n", ""), text.replace("train_aug = 8", "train_aug = 50")
    aug = {name: pipeline.plan(write(tmp_path, t, f"{name}.toml")).nodes[0] for name, t in (("follows", follows), ("equal", equal))}
    assert aug["follows"].stage == "augment" and aug["follows"].pkey == aug["equal"].pkey != keys["plain"][0]
    root = tmp_path / "cache"
    pipeline.run(tmp_path / "plain.toml", root=root)
    dry = pipeline.run(tmp_path / "spelled.toml", root=root, dry_run=True)
    assert [n.status for n in dry if n.stage != "report"] == ["cached"] * 4


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text, match",
    [
        ("[data\nsource = 1\n", r"p\.toml: invalid TOML: .*line 1"),
        ("[model]\nx = 1\n", r"unknown section \[model\]; known sections: pipeline, data, augment"),
        ("[augment]\nnaug = 3\n", r"unknown key 'naug' in \[augment\]; known keys: n_aug, train_aug"),
        ("[augment]\nn_aug = \"ten\"\n", r"augment\.n_aug must be an integer, got str"),
        ("[augment]\ntranslate = 1\n", r"augment\.translate must be a boolean"),
        ("[augment]\nn_aug = true\n", r"augment\.n_aug must be an integer, got bool"),
        ("[report]\nn_aug_points = [1, \"x\"]\n", r"report\.n_aug_points must be a list of integers"),
        ("[sweep]\nbogus = [1]\n", r"unknown sweep key 'bogus'"),
        ("[sweep]\n\"report.seeds\" = [1]\n", r"cannot sweep 'report\.seeds'"),
        ("[sweep]\ntrain_aug = 8\n", r"sweep\.train_aug must be a non-empty list"),
        ("[sweep]\ntrain_aug = [1, \"a\"]\n", r"sweep\.train_aug\[1\] must be an integer"),
        ("[vote]\nrule = [\"hrm\"]\n[sweep]\nrule = [\"count\"]\n", r"both a list in \[vote\] and swept"),
        ("data = 3\n", r"'data' must be a \[data\] table"),
        ("[train.model]\nhidden_size = [1]\n", r"train\.model\.hidden_size must be a scalar"),
    ],
)
def test_toml_errors(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(ArcpipeError, match=match):
        pipeline.plan(p)


@pytest.mark.parametrize(
    "item, match",
    [
        ("vote.rule", r"expected section\.key=value"),
        ("rule=count", r"key must be section\.key"),
        ("votes.rule=count", r"unknown section 'votes'"),
        ("vote.rules=count", r"unknown key 'rules' in \[vote\]"),
        ("vote.top=two", r"vote\.top must be an integer, got str"),
        ("vote.top=[1, 2", r"cannot parse value"),
        ("augment.n_aug=1.5", r"augment\.n_aug must be an integer, got float"),
    ],
)
def test_set_errors(tmp_path, item, match):
    p = base(tmp_path)
    with pytest.raises(ArcpipeError, match=match):
        pipeline.plan(p, [item])


def test_set_values_parse_as_toml_or_bare_words(tmp_path):
    p = base(tmp_path)
    pl = pipeline.plan(p, ["data.source=arc2:evaluation", "vote.top=3", "augment.translate=false",
                           "data.task_ids=[\"a\", \"b\"]", "train.lr=3e-4",
                           "train.model.hidden_size=64"])
    assert pl.sections["train"]["model"] == {"hidden_size": 64}
    assert pl.sections["data"]["source"] == "arc2:evaluation"
    assert pl.sections["vote"]["top"] == 3 and pl.sections["augment"]["translate"] is False
    assert pl.sections["data"]["task_ids"] == ["a", "b"] and pl.sections["train"]["lr"] == 3e-4


def test_missing_file_and_stage_argument_mismatch(fake, tmp_path):
    with pytest.raises(ArcpipeError, match="no such pipeline file"):
        pipeline.plan(tmp_path / "nope.toml")
    p = base(tmp_path, "")
    with pytest.raises(ArcpipeError, match=r"\[infer\] device not accepted by arcpipe\.infer\.infer"):
        pipeline.run(p, root=tmp_path / "c", sets=["infer.device=cpu"])


def test_cli_run_dry_run_and_errors(fake, tmp_path, monkeypatch):
    from arcpipe.cli import app

    p = base(tmp_path)
    runner = CliRunner()
    monkeypatch.setenv("ARCPIPE_CACHE", str(tmp_path / "cache"))
    out = runner.invoke(app, ["run", str(p), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "5 of 5 stages would run" in out.output
    out = runner.invoke(app, ["run", str(p)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["run", str(p), "--dry-run", "--set", "vote.rule=count"])
    assert out.exit_code == 0 and "2 of 5 stages would run" in out.output
    out = runner.invoke(app, ["run", str(p), "--set", "vote.top"])
    assert isinstance(out.exception, ArcpipeError) and "section.key=value" in str(out.exception)
    # sweep labels are printed literally (their brackets are not taken for rich markup)
    out = runner.invoke(app, ["run", str(p), "--dry-run", "--set", "sweep.seeds=[0,1]"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "train[train.seed=1]" in out.output, out.output


# --------------------------------------------------------------------------- end to end (real stages)

E2E_SETS = [
    "data.first=3", "augment.n_aug=12", "augment.train_aug=4", "augment.jobs=1", "train.max_steps=6",
    "train.batch_size=16", "infer.batch_size=64", "report.seeds=20", "report.n_aug_points=[1, 4]",
]


@pytest.mark.slow
def test_demo_pipeline_end_to_end_reduced(tmp_path, monkeypatch):
    """demo.toml at a tiny size with the real stages: report files exist, its numbers are vote's,
    and a vote-rule change re-runs only vote + report (from the stages' own ``cached`` flags)."""
    import polars as pl

    from arcpipe import vote

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = tmp_path / "cache"
    sets = E2E_SETS + [f"report.out_dir={json.dumps(str(tmp_path / 'reports'))}"]
    demo = REPO / "pipelines" / "demo.toml"
    assert [n.status for n in pipeline.run(demo, sets=sets, root=root, dry_run=True)] == ["would run"] * 5
    first = pipeline.run(demo, sets=sets, root=root)
    assert [n.status for n in first] == ["ran"] * 5
    out = tmp_path / "reports" / "demo"
    for f in ("report.md", "manifest.json", "n_aug_curves.png", "n_aug_curves.csv", "n_aug_curves.parquet",
              "act_steps.png", "per_task.csv", "per_task.parquet"):
        assert (out / f).is_file(), f
    assert first.report_dir == out

    infer = first.by_stage("infer")[0].result
    curves = pl.read_parquet(out / "n_aug_curves.parquet")
    for rule in ("hrm", "count"):
        sc = json.loads((vote.vote(infer, n_aug=12, top=2, rule=rule, root=root).path / "scores.json").read_text())
        for m in ("pass@1", "pass@2", "oracle"):
            got = curves.filter((pl.col("rule") == rule) & (pl.col("n_aug") == 12) & (pl.col("metric") == m))["mean"][0]
            assert got == pytest.approx(sc[m], abs=1e-12)
    # the pipeline's own vote stage is the same query
    pvote = json.loads((first.by_stage("vote")[0].path / "scores.json").read_text())
    hrm = curves.filter((pl.col("rule") == "hrm") & (pl.col("n_aug") == 12) & (pl.col("metric") == "pass@2"))["mean"][0]
    assert pvote["pass@2"] == pytest.approx(hrm, abs=1e-12)
    man = json.loads((out / "manifest.json").read_text())
    assert {m["stage"] for m in man["input_manifests"]} == {"augment", "train", "infer", "vote"}

    assert [n.status for n in pipeline.run(demo, sets=sets, root=root, dry_run=True)] == ["cached"] * 5
    second = pipeline.run(demo, sets=sets + ["vote.rule=count"], root=root)
    assert [n.cached for n in second] == [True, True, True, False, False]
    assert second.by_stage("vote")[0].result.manifest["inputs"]["infer"] == infer.key
    third = pipeline.run(demo, sets=sets + ["vote.rule=count", "vote.n_aug=4"], root=root)
    assert [n.cached for n in third] == [True, True, True, False, False]


def test_jobs_run_the_sweep_side_by_side_into_the_same_stages(tmp_path, monkeypatch):
    """--jobs 2 on two training seeds: both trainings run at once in worker processes, each with
    its output in a log, and the result is the serial run's -- the same stage keys and, with
    deterministic training, bit-identical predictions; a rerun finds everything cached."""
    import polars as pl

    demo = REPO / "pipelines" / "demo.toml"
    # augment on joblib's process pool (the default jobs), as a real pipeline runs it
    sets = [s for s in E2E_SETS if not s.startswith("augment.jobs")] + ["sweep.seeds=[0,1]", "train.deterministic=true",
                                                                        "report.enabled=false"]
    serial = pipeline.run(demo, sets=sets, root=tmp_path / "serial")
    started: list[str] = []
    par = pipeline.run(demo, sets=sets, root=tmp_path / "jobs", jobs=2,
                       on_stage=lambda n, e: started.append(n.label) if e == "start" else None)
    assert [n.status for n in par] == [n.status for n in serial] == ["ran"] * 7
    assert [(n.label, n.key) for n in par] == [(n.label, n.key) for n in serial]
    # both trainings were handed out before either inference: they ran side by side
    assert started.index("train[train.seed=1]") < started.index("infer[train.seed=0]")
    for a, b in zip(serial.by_stage("infer"), par.by_stage("infer")):
        assert pl.read_parquet(a.path / "predictions.parquet").equals(pl.read_parquet(b.path / "predictions.parquet"))
        assert np.array_equal(np.load(a.path / "preds.npy"), np.load(b.path / "preds.npy"))
    for node in par.by_stage("train"):
        assert "train" in pipeline.log_path(tmp_path / "jobs", node).read_text()
    # a rerun confirms the cache hits in this process, starting no worker
    monkeypatch.setattr(scheduler, "run_parallel", lambda *a, **k: pytest.fail("workers started for cached stages"))
    assert [n.status for n in pipeline.run(demo, sets=sets, root=tmp_path / "jobs", jobs=2)] == ["cached"] * 7


def test_jobs_start_the_dearest_training_first(tmp_path):
    """Three trainings of 2, 6 and 4 steps on two workers: the 6- and 4-step ones start first, the
    2-step one once a worker is free, whatever the sweep's order. A training ranks by
    ``train(dry_run=True)``'s FLOPs (3x for 3x the steps); one whose cost is unknown (a time
    budget) and every other stage rank above all trainings."""
    demo = REPO / "pipelines" / "demo.toml"
    sets = E2E_SETS + ["sweep.train.max_steps=[2,6,4]", "report.enabled=false"]
    root = tmp_path / "cache"
    started: list[str] = []
    result = pipeline.run(demo, sets=sets, root=root, jobs=2,
                          on_stage=lambda n, e: started.append(n.label) if e == "start" else None)
    trains = [label for label in started if label.startswith("train[")]
    assert trains == [f"train[train.max_steps={n}]" for n in (6, 4, 2)]
    rank = {n.label: pipeline._priority(n, root) for n in result}
    assert rank["train[train.max_steps=6]"] == pytest.approx(3 * rank["train[train.max_steps=2]"])
    assert all(v == float("inf") for k, v in rank.items() if not k.startswith("train["))
    node = result.by_stage("train")[0]
    timed = dict(node.settings, max_minutes=1.0)
    del timed["max_steps"]
    assert pipeline._priority(pipeline.Node("train", "x", timed, node.parents, {}), root) == float("inf")


def test_jobs_failure_names_the_stage_and_keeps_what_finished(tmp_path):
    """One arm cannot train (64 hidden units over 3 heads); the other, running beside it, still
    finishes and is cached, and the error names the failed stage and its log."""
    demo = REPO / "pipelines" / "demo.toml"
    sets = E2E_SETS + ["sweep.train.model.num_heads=[4,3]", "report.enabled=false"]
    root = tmp_path / "cache"
    with pytest.raises(ArcpipeError, match=r"divisible by num_heads .*stage train\[train\.model\.num_heads=3\]; its output: .*\.log"):
        pipeline.run(demo, sets=sets, root=root, jobs=2)
    dry = statuses(pipeline.run(demo, sets=sets, root=root, dry_run=True))
    assert dry["train[train.model.num_heads=4]"] == "cached" and dry["train[train.model.num_heads=3]"] == "would run"


def _proc_state(pid: int | str) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process from /proc (no psutil); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int | str) -> bool:
    state = _proc_state(pid)
    return state is not None and state[0] != "Z"


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    states = {int(d.name): _proc_state(d.name) for d in Path("/proc").glob("[0-9]*")}
    return [c for c, st in states.items() if st is not None and st[0] != "Z" and st[1] == pid]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_jobs_interrupt_stops_every_worker_and_says_how_to_resume(tmp_path):
    """SIGINT to the parent alone (``kill -INT``; a terminal's Ctrl-C also reaches the workers):
    within seconds, not when the trainings end, every worker is gone and the one-line message says
    how to resume. SIGKILL to the parent (no handler runs): the workers still go."""
    import signal
    import subprocess
    import time

    sets = [*E2E_SETS, "train.max_steps=100000", "sweep.seeds=[0,1]", "report.enabled=false"]
    cmd = [sys.executable, "-m", "arcpipe.cli", "--cache", str(tmp_path / "cache"), "run", str(REPO / "pipelines" / "demo.toml"),
           *[a for s in sets for a in ("--set", s)], "--jobs", "2"]

    for sig in (signal.SIGINT, signal.SIGKILL):  # SIGKILL: the kernel stops the orphans (PR_SET_PDEATHSIG)
        root = tmp_path / sig.name
        proc = subprocess.Popen([*cmd[:4], str(root), *cmd[5:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 120
            while len(list((root / "train").glob(".work-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()
            workers = _children(proc.pid)
            assert len(workers) >= 2  # the two trainings (and multiprocessing's resource tracker)
            t0 = time.monotonic()
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and err.strip() == "error: interrupted; rerun the same command to resume"
            assert time.monotonic() - t0 < 30
        deadline = time.monotonic() + 15  # the resource tracker leaves on its own once the parent has gone
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], sig.name


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].joinpath("pipelines").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_pipeline_validates_and_plans(path):
    """The pipelines the README points at (GPU ones included, which CI never runs) parse,
    validate against the stage signatures and expand into a plan."""
    plan = pipeline.plan(path)
    assert plan.nodes and {n.stage for n in plan.nodes} >= {"augment", "train", "infer", "vote"}


def _committed_sets(path: Path) -> list[str] | None:
    """The --set values of the `arcpipe run` line a pipeline file's header tags as making its
    committed report (None when no line says so)."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if "arcpipe run" in line and "# the committed report" in line:
            argv = shlex.split(line.lstrip("# ").split("#")[0])
            return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    return None


def _report_runs(plan: pipeline.Plan) -> Path | None:
    """The committed reports/<name>/runs.csv of a plan's report, if there is one."""
    runs = plan.report and REPO / "reports" / plan.report.settings["name"] / "runs.csv"
    return runs if runs and runs.exists() else None


REPORTED = [p for p in sorted((REPO / "pipelines").glob("*.toml")) if _report_runs(pipeline.plan(p))]


@pytest.mark.parametrize("path", REPORTED, ids=lambda p: p.name)
def test_committed_report_is_what_its_command_plans(path):
    """Every committed report can be rebuilt by the command its pipeline file names: that command
    plans one inference per run in the report's runs table, with the same training seeds and
    presets. Guards against a report made with overrides nobody wrote down, or a pipeline file
    edited after its report (a replay would then train other runs)."""
    sets = _committed_sets(path)
    assert sets is not None, f"{path.name}: no header line tagged '# the committed report'"
    plan = pipeline.plan(path, sets)
    runs = pl.read_csv(_report_runs(plan))
    trains = [n.parents["train"].settings for n in plan.nodes if n.stage == "infer"]
    assert len(trains) == runs["infer"].n_unique()
    assert sorted(s.get("seed", 0) for s in trains) == sorted(runs.unique("infer")["seed"].to_list())
    assert sorted(s.get("preset", "tiny") for s in trains) == sorted(runs.unique("infer")["preset"].to_list())


def test_train_aug_following_n_aug_is_no_new_sweep_point(fake, tmp_path):
    """train_aug left out follows n_aug, at the baseline and at a sweep point that changes n_aug:
    a point writing it out equal to that n_aug is the same arm, not a second one with the same runs."""
    text = BASE.format(out=tmp_path / "reports").replace("train_aug = 8\n", "")
    p = write(tmp_path, text + '[[sweep]]\ntrain_aug = [8, 50]\n[[sweep]]\n"vote.rule" = ["hrm", "count"]\n')
    plan = pipeline.plan(p)
    assert len(plan.points) == 3 and sum(n.stage == "augment" for n in plan.nodes) == 2
    assert sum(n.stage == "vote" for n in plan.nodes) == 3
    p = write(tmp_path, text + '[[sweep]]\n"augment.n_aug" = [32]\ntrain_aug = [32]\n[[sweep]]\n"augment.n_aug" = [32]\n[[sweep]]\n"augment.n_aug" = [32]\ntrain_aug = [8]\n')
    plan = pipeline.plan(p)
    assert len(plan.points) == 2 and sum(n.stage == "train" for n in plan.nodes) == 2
    # a pipeline that writes train_aug out keeps it where a sweep changes n_aug alone
    p = write(tmp_path, BASE.format(out=tmp_path / "reports") + '[[sweep]]\n"augment.n_aug" = [32]\n[[sweep]]\n"augment.n_aug" = [32]\ntrain_aug = [32]\n')
    plan = pipeline.plan(p)
    assert len(plan.points) == 2 and sum(n.stage == "augment" for n in plan.nodes) == 2


def test_training_settings_equal_to_the_preset_name_the_same_stage(tmp_path):
    """A training setting written equal to its preset's value (trm-tiny's lr 1e-3 and warmup 100,
    tiny's batch 32) is the run that leaves it out, as the train stage's own key already says; a
    budget is never dropped (writing one replaces all of the preset's budgets)."""
    text = BASE.format(out=tmp_path / "reports").replace('preset = "tiny"', 'preset = "trm-tiny"')

    def train_key(t: str, name: str) -> str:
        return next(n.pkey for n in pipeline.plan(write(tmp_path, t, name)).nodes if n.stage == "train")

    plain = train_key(text, "plain.toml")
    assert train_key(text.replace("max_steps = 10", "max_steps = 10\nlr = 0.001\nwarmup_steps = 100\nbatch_size = 32"),
                     "spelled.toml") == plain
    assert train_key(text.replace("max_steps = 10", "max_steps = 10\nlr = 0.003"), "lr.toml") != plain
    tiny = text.replace('preset = "trm-tiny"', 'preset = "tiny"')
    assert train_key(tiny.replace("max_steps = 10", "max_steps = 10\nlr = 0.001\nwarmup_steps = 100"), "tiny-lr.toml") \
        != train_key(tiny, "tiny.toml") == train_key(tiny.replace("max_steps = 10", "max_steps = 10\nlr = 0.003"), "tiny-3.toml")
    # a swept lr equal to the preset's is the shared baseline of one-factor sweeps, not a third point
    sweeps = '[[sweep]]\n"train.lr" = [0.001]\n[[sweep]]\n"train.lr" = [0.003]\n[[sweep]]\nseeds = [0]\n'
    assert len(pipeline.plan(write(tmp_path, tiny + sweeps, "sweep.toml")).points) == 2
    arc = text.replace('preset = "trm-tiny"', 'preset = "arc"').replace("max_steps = 10\n", "")
    assert train_key(arc + "", "arc.toml") != train_key(arc.replace('preset = "arc"', 'preset = "arc"\nepochs = 100.0'), "arc-epochs.toml")
