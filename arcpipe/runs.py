"""The runs a report compares: the cached stages behind one inference, and which settings differ.

A report is handed vote or infer stages; each becomes a ``Run`` that also knows the training
and augmentation it came from (found through the manifests' input keys). The settings a run
can differ from another by -- its *factors* -- are read off those configs, so a report needs
no sweep description: whatever varies between the given runs gets a section, and runs that
differ only in the training seed are averaged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arcpipe import cache
from arcpipe.errors import ArcpipeError


#: Settings a report compares runs by: each that differs between the given runs gets its own
#: section (runs differing only in the training seed are averaged instead).
FACTORS = ("core", "preset", "train_aug", "puzzle_id")
FACTOR_TITLES = {"core": "model core", "preset": "preset", "train_aug": "training augmentation count",
                 "puzzle_id": "puzzle identifier at inference", "halt_max_steps": "ACT steps (halt_max_steps)",
                 "H_cycles": "H cycles per ACT step", "L_cycles": "L cycles per H cycle",
                 "dihedral": "dihedral transforms", "colour": "colour permutations",
                 "translate": "translation of training pairs"}
#: Any other setting of the augment, train (model and training) or infer config becomes a factor
#: too when it differs between runs sharing a preset (a swept ``halt_max_steps``, ``H_cycles``,
#: ``lr``, ``canvas``...), except these: seeds are averaged over, ``seq_len`` and
#: ``num_puzzle_identifiers`` follow the dataset (its canvas, its variant count), the rest change
#: how a run executes, not what it computes.
NOT_FACTORS = frozenset({"seed", "device", "deterministic", "compile", "eval_every", "eval_size",
                         "checkpoint_every", "retries", "materialize", "extra", "seq_len", "num_puzzle_identifiers"})
#: Two arms count as trained at about equal compute when their training FLOPs (``Run.train_summary``)
#: differ by at most this factor: a report's compute section pairs them directly (HRM at 12000 steps
#: against a model half as dear per step at 24000).
EQUAL_COMPUTE = 1.25


@dataclass
class Run:
    """One inference output the report reads, with what it was trained on."""

    infer: cache.Stage
    votes: list[cache.Stage]
    train: cache.Stage | None
    augment: cache.Stage | None
    #: ``train_summary``'s figures, read once: every factor table, the grid, the compute section and
    #: the runs table ask for them, and each read builds the model on the meta device and scans metrics
    _summary: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def train_aug(self) -> int | None:
        if self.augment is None:
            return None
        cfg = self.augment.config
        return cfg.get("train_aug") or cfg.get("n_aug")

    @property
    def train_seed(self) -> int | None:
        return None if self.train is None else _dig(self.train.config, "seed")

    @functools.cached_property
    def settings(self) -> dict[str, Any]:
        """Every other setting a factor can be, by key: augment, then model, training and infer
        config (first occurrence of a key wins; lists joined into strings, so values hash and plot)."""
        from arcpipe.augment import CONFIG_DEFAULTS

        out: dict[str, Any] = {}
        train = self.train.config if self.train is not None else {}
        augment = {**CONFIG_DEFAULTS, **self.augment.config} if self.augment is not None else {}
        for cfg in (augment, train.get("model") or {},
                    train.get("train") or {}, self.infer.config):
            for k, v in cfg.items():
                if k in NOT_FACTORS or k in FACTORS or k in out or isinstance(v, dict):
                    continue
                out[k] = ",".join(map(str, v)) if isinstance(v, list) else v
        return out

    def factor(self, name: str) -> Any:
        """This run's value of a factor: one of ``FACTORS``, else a key of ``settings`` (None when
        the stage that holds it is gone from the cache)."""
        if name not in FACTORS:
            return self.settings.get(name)
        if name == "train_aug":
            return self.train_aug
        if name == "puzzle_id":
            v = self.infer.config.get("puzzle_id", "true")
            return {True: "true", False: "blank"}.get(v, v) if isinstance(v, bool) else str(v)
        if self.train is None:
            return None
        if name == "core":
            return _dig(self.train.config, "core") or "hrm"
        if name == "preset":
            return self.train.config.get("preset")

    def follows_preset(self, name: str) -> bool:
        """Whether this run's value of setting ``name`` is its model preset's own (model field or
        training hyper-parameter) rather than one a sweep set: a plain transformer's L_cycles=1 is
        part of what that preset is, not an L_cycles ablation."""
        preset = self.train.config.get("preset") if self.train is not None else None
        if not isinstance(preset, str):
            return False
        try:
            from arcpipe.train import preset_settings

            own = preset_settings(preset)
        except (KeyError, TypeError, ValueError, ArcpipeError):
            return False  # a preset this version does not know
        return name in own and own[name] == self.factor(name)

    @property
    def label(self) -> str:
        return self.describe()

    def describe(self, extra: Sequence[str] = ()) -> str:
        """Its infer key and factor values: ``FACTORS`` always, ``extra`` ones (the other
        settings that vary in a report) when given."""
        parts = [f"infer {self.infer.key[:8]}"]
        for name in dict.fromkeys([*FACTORS, *extra]):
            v = self.factor(name)
            if v is not None and (name != "puzzle_id" or v != "true"):
                parts.append(f"{name}={v}")
        if self.train_seed is not None:
            parts.append(f"seed={self.train_seed}")
        return ", ".join(parts)

    def train_summary(self) -> dict[str, Any]:
        """Dense parameters, final train exact accuracy (on the eval_size rows sampled during training,
        and ``train_exact_all`` on every training row, for trainings that read it), training wall
        time, samples trained on and training FLOPs (for factor tables and the compute section).

        ``train_samples`` is the number of training sequences run to their halt, summed over the
        run's steps: under ACT a sequence stays in the batch for up to ``halt_max_steps`` steps, so
        a step budget buys one-segment models several times the samples of four-segment ones, and
        this is the figure that says how many. ``train_flops`` is the arithmetic the training took,
        counted from its model config (``hrm.flops.step_flops(...).train`` times the steps it ran):
        unlike the wall time, the same on every machine and at any concurrency, so arms that trade
        one setting for more steps can be compared at equal compute."""
        if self._summary is None:
            self._summary = self._read_train_summary()
        return dict(self._summary)

    def _read_train_summary(self) -> dict[str, Any]:
        """``train_summary`` computed from the train stage's config, manifest and metrics."""
        out: dict[str, Any] = {"params": None, "train_exact": None, "train_exact_all": None, "train_s": None,
                               "train_samples": None, "train_flops": None}
        if self.train is None:
            return out
        counts = self.train.manifest.get("counts", {})
        model = self.train.config.get("model")
        if isinstance(model, dict):
            try:
                import hrm
                from hrm.flops import step_flops

                cfg = hrm.HRMConfig(**model)
                out["params"] = int(hrm.count_parameters(cfg)["trainable"])
                batch, steps = (self.train.config.get("train") or {}).get("global_batch_size"), counts.get("steps")
                if batch and steps:
                    out["train_flops"] = int(steps) * step_flops(cfg, int(batch)).train
            except (TypeError, ValueError):
                pass  # a config from another version: the table shows "-"
        out["train_exact"] = counts.get("eval_train_exact_accuracy")
        out["train_exact_all"] = counts.get("fit_exact")  # trainings since the final fit on every row
        out["train_s"] = self.train.manifest.get("wall_time_s")
        metrics = Path(self.train.path) / "metrics.parquet"
        if metrics.is_file():
            import polars as pl

            halted = pl.scan_parquet(metrics).select(pl.col("halted").sum()).collect().item()
            out["train_samples"] = None if halted is None else int(round(halted))
        return out

    def fit_scale(self) -> tuple[str | None, Any]:
        """What the run's train exact accuracy is measured on: its training rows (the augment stage)
        and the ACT segments its model runs (``halt_max_steps``). Only runs that agree on both
        measure fit on one scale: 90% of 8 variants is not 90% of 32, nor 90% after one segment
        90% after four."""
        return (self.augment.key if self.augment else None,
                _dig(self.train.config, "halt_max_steps") if self.train is not None else None)

    def train_host(self) -> str | None:
        """The hardware the training ran on, from its manifest's ``host`` (None before manifests
        recorded it): the same settings give other numbers on another machine."""
        h = self.train.manifest.get("host") if self.train is not None else None
        return cache.describe_host(h) if h else None


def _dig(cfg: dict, key: str) -> Any:
    """A key at the top of a config or one level down (train configs nest ``train``/``model``)."""
    if key in cfg:
        return cfg[key]
    for v in cfg.values():
        if isinstance(v, dict) and key in v:
            return v[key]
    return None


def _as_stage(obj: Any, root: Path) -> cache.Stage:
    """A Stage, a stage directory, or a key (prefix) of an infer/vote stage."""
    if isinstance(obj, cache.Stage):
        return obj if obj.manifest else cache.load_stage(obj.path)
    p = Path(str(obj))
    if p.is_dir():
        return cache.load_stage(p)
    for stage in ("vote", "infer"):
        base = root / stage
        if base.is_dir():
            hits = [d for d in base.iterdir() if d.name.startswith(str(obj)) and (d / cache.MANIFEST).is_file()]
            if len(hits) == 1:
                return cache.load_stage(hits[0], stage)
            if len(hits) > 1:
                raise ArcpipeError(f"{obj}: ambiguous stage key prefix ({len(hits)} {stage} stages match)")
    raise ArcpipeError(f"{obj}: not a stage directory or a vote/infer key in cache {root}")


def _upstream(stage: cache.Stage, name: str, root: Path) -> cache.Stage | None:
    """The ``name`` stage this one read, found by the keys in its manifest inputs."""
    for key in stage.inputs.values():
        if isinstance(key, str):
            found = cache.find(name, key, root)
            if found is not None:
                return found
    return None


def resolve_runs(runs: Sequence[Any] | None, root: Path) -> list[Run]:
    """Group the given vote/infer stages by inference; default: the newest vote's (else infer's) inference."""
    if not runs:
        newest = cache.newest("vote", root) or cache.newest("infer", root)
        if newest is None:
            raise ArcpipeError(f"no 'vote' or 'infer' output in cache {root}; run `arcpipe infer` (or `arcpipe run`) first")
        runs = [newest]
    by_infer: dict[str, Run] = {}
    for obj in runs:
        st = _as_stage(obj, root)
        if st.name == "vote":
            inf = _upstream(st, "infer", root)
            if inf is None:
                raise ArcpipeError(f"{st.path}: the inference this vote read is no longer in cache {root}")
            votes = [st]
        elif st.name == "infer":
            inf, votes = st, []
        else:
            raise ArcpipeError(f"{st.path}: is a '{st.name}' stage; a report reads 'infer' or 'vote' stages")
        run = by_infer.get(inf.key)
        if run is None:
            train = _upstream(inf, "train", root)
            aug = cache.find("augment", inf.inputs.get("augment", ""), root) or (
                _upstream(train, "augment", root) if train is not None else None)
            run = by_infer[inf.key] = Run(inf, [], train, aug)
        run.votes.extend(v for v in votes if v.key not in {x.key for x in run.votes})
    return list(by_infer.values())


def parse_settings(text: str, where: str, noun: str = "setting") -> list[tuple[str, str]]:
    """``"col=value,..."`` as (col, value) pairs, empty items skipped: how ``arcpipe compare`` picks
    a report's runs and ``report.main`` names a baseline. ``where`` prefixes the one-line error."""
    out = []
    for kv in filter(None, text.split(",")):
        col, eq, value = kv.partition("=")
        if not eq:
            raise ArcpipeError(f"{where}: {kv!r}: expected {noun}=value")
        out.append((col, value))
    return out


def main_run(runs: Sequence[Run], main: str | None = None) -> int:
    """Index of the run the single-run sections describe: the one holding the most common value of
    every factor -- the shared baseline of one-factor ablations. Ties: more training augmentation,
    then the first given (so a plain train_aug x seeds sweep reports its largest train_aug).

    ``main`` (``"col=value,..."``, as ``arcpipe compare`` selects runs) names the baseline instead,
    for a sweep whose most common values are not it (several lighter arms around one HRM): the same
    rule then picks among the runs that hold those values."""
    from collections import Counter

    factors = varying_factors(runs)
    counts = {f: Counter(r.factor(f) for r in runs) for f in factors}
    pool = range(len(runs))
    if main:
        want = parse_settings(main, f"report main {main!r}")
        pool = [i for i in pool if all(str(runs[i].factor(c)).lower() == v.lower() for c, v in want)]
        if not pool:
            raise ArcpipeError(f"report main {main!r}: no run holds these settings (varying: {', '.join(factors) or 'none'})")
    return max(pool, key=lambda i: (sum(counts[f][runs[i].factor(f)] for f in factors), runs[i].train_aug or 0, -i))


def same_partition(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def varying_factors(runs: Sequence[Run]) -> list[str]:
    """Factors whose value differs between runs: ``FACTORS`` first, then any other setting that
    differs between runs of one preset. Left out: a setting that only follows the preset (each
    preset's own lr or layer count) and one that only restates an earlier factor (preset <-> core,
    a swept halt_max_steps <-> the ACT steps inference recorded)."""
    presets = [r.factor("preset") for r in runs]
    others = dict.fromkeys(k for r in runs for k in r.settings)
    out: list[str] = []
    for f in (*FACTORS, *others):
        vals = [r.factor(f) for r in runs]
        if len(set(vals)) < 2 or any(same_partition(vals, [r.factor(g) for r in runs]) for g in out):
            continue
        if f not in FACTORS and all(len({v for v, p in zip(vals, presets) if p == q}) == 1 for q in set(presets)):
            continue
        out.append(f)
    return out


def matches_setting(r: Run, main: Run, g: str) -> bool:
    """Whether run ``r`` holds ``main``'s setting ``g`` for a one-factor slice: the same value, or,
    for a setting other than ``FACTORS``, each run of a different preset at its own preset's
    value (a transformer preset's cycles are not a cycles sweep, so the core slice keeps it)."""
    if r.factor(g) == main.factor(g):
        return True
    return (g not in FACTORS and r.factor("preset") != main.factor("preset")
            and r.follows_preset(g) and main.follows_preset(g))


def task_sources(run: Run, task_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Which of ``task_ids`` came from each part of the run's joined data source (``a+b``), as
    boolean masks. ARC's training set is easier than its evaluation set, so a score over both
    can hide that an arm gains on one and not the other. Empty when the data came from one
    source, or when a part can no longer be loaded (a moved folder): the split is then left out
    rather than guessed."""
    from arcpipe import data

    source = run.augment.config.get("source") if run.augment is not None else None
    if source is None:
        return {}
    try:
        parts = data.split_source(source)
        if len(parts) < 2:
            return {}
        ids = np.asarray(list(task_ids))
        masks = {part: np.isin(ids, [t.id for t in data.load_tasks(part)]) for part in parts}
    except (ArcpipeError, OSError):
        return {}
    masks = {k: m for k, m in masks.items() if m.any()}
    return masks if len(masks) > 1 else {}
