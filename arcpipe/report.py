"""Ablation reports over cached predictions: markdown + PNG + CSV/parquet tables.

A report is a pure function of inference outputs (and the vote stages that
name them), so it is itself a cached stage (``<root>/report/<key>/``),
published as a copy under ``<out_dir>/<name>/``. Everything in it is a query
over cached predictions: ``vote.prepare`` runs once per inference (inverse
transforms, answer hashing, truth lookup), then each point of every curve is
``vote.rank`` + ``vote.scores`` on a seeded subsample of the variants. No
model is run, which is what makes a 12 n_aug x 5 rules x 20 seeds sweep a
matter of seconds.

Statistics: a point of an n_aug curve is the mean over ``seeds`` seeded
subsamples of the per-task score (a task's score is the fraction of its test
inputs solved, the ARC convention); its 95 % interval is a percentile
bootstrap over tasks of those seed-averaged per-task scores, so it reflects
how much the number would move on another draw of tasks of the same kind,
not only the subsampling noise.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arcpipe import cache, signals
from arcpipe.errors import ArcpipeError
from arcpipe.figures import draw_grid, plot_curves, plot_factor, plot_steps

METRICS = ("pass@1", "pass@2", "oracle")
BOOTSTRAP = 2000
#: Bumped when report.md's sections or the tables change, so a cached report of an older layout is
#: rebuilt rather than republished (a report's key is otherwise its settings and its inputs).
LAYOUT = 13
GALLERY = 4  # solved and failed test inputs shown each
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


# --------------------------------------------------------------------------- inputs


@dataclass
class Run:
    """One inference output the report reads, with what it was trained on."""

    infer: cache.Stage
    votes: list[cache.Stage]
    train: cache.Stage | None
    augment: cache.Stage | None

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
        """Dense parameters, final train exact accuracy and training wall time (for factor tables)."""
        out: dict[str, Any] = {"params": None, "train_exact": None, "train_s": None}
        if self.train is None:
            return out
        model = self.train.config.get("model")
        if isinstance(model, dict):
            try:
                import hrm

                out["params"] = int(hrm.count_parameters(hrm.HRMConfig(**model))["trainable"])
            except (TypeError, ValueError):
                pass  # a config from another version: the table shows "-"
        out["train_exact"] = self.train.manifest.get("counts", {}).get("eval_train_exact_accuracy")
        out["train_s"] = self.train.manifest.get("wall_time_s")
        return out

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


# --------------------------------------------------------------------------- statistics


def bootstrap_ci(values: np.ndarray, *, n_boot: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over the last axis (tasks) of ``values`` (C, T) for every row at once.

    Resampling T tasks with replacement is a multinomial weight vector per
    replicate, so all C rows' replicate means are one (C, T) @ (T, B) product.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    t = values.shape[-1]
    if t == 0:
        nan = np.full(values.shape[0], np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(t, np.full(t, 1.0 / t), size=n_boot).T / t  # (T, B)
    reps = values @ weights  # (C, B)
    lo, hi = np.quantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2], axis=1)
    return lo, hi


def paired_effects(diffs: np.ndarray) -> dict[str, np.ndarray]:
    """Mean per-task difference between two settings scored on the same tasks, for each row of
    ``diffs`` (C, T), with a paired percentile bootstrap interval and how many tasks moved each way.

    The per-setting intervals are wide mostly because tasks differ in difficulty; resampling the
    tasks *together* cancels that, so a difference whose unpaired intervals overlap can still be
    resolved (and one that is not, is shown as such)."""
    diffs = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    lo, hi = bootstrap_ci(diffs)
    return {"delta": diffs.mean(axis=1), "delta_ci_low": lo, "delta_ci_high": hi,
            "better": (diffs > 0).sum(axis=1), "worse": (diffs < 0).sum(axis=1)}


def default_points(max_n: int) -> list[int]:
    """1, 2, 4, ... up to and including ``max_n``."""
    pts = [1 << i for i in range(max(1, int(max_n).bit_length())) if (1 << i) < max_n]
    return pts + [int(max_n)]


# --------------------------------------------------------------------------- vote queries


class _Queries:
    """Per-task scores of vote queries on one prepared inference, memoised by (rule, n_aug, step, seed, top, variants)."""

    def __init__(self, vote: Any, prepared: Any):
        self.vote, self.prepared = vote, prepared
        self.memo: dict[tuple, tuple[Any, dict]] = {}
        self.n_queries = 0
        self.lock = threading.Lock()

    def query(self, rule: str, n_aug: int | None, step: int | None, seed: int, top: int = 2, variants: str = "all") -> tuple[Any, dict]:
        k = (rule, n_aug, step, seed, top, variants)
        if k not in self.memo:
            ranked = self.vote.rank(self.prepared, n_aug=n_aug, rule=rule, step=step, seed=seed, top=top, variants=variants)
            sc = self.vote.scores(ranked, self.prepared, ks=(1, 2))
            with self.lock:
                self.memo[k] = (ranked, sc)
                self.n_queries += 1
        return self.memo[k]

    @functools.cached_property
    def info(self) -> dict:
        return prepared_info(self.prepared)

    def all_variants(self, rule: str, step: int | None, top: int, task_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Per-task scores voting every cached variant at ACT ``step`` (its last when it did not
        record that step), over ``task_ids`` (default: its own scored tasks)."""
        info = self.info
        return per_task(self.query(rule, info["n_aug"], self.own_step(step), 0, top)[1],
                        info["task_ids"] if task_ids is None else task_ids)

    def own_step(self, step: int | None) -> int | None:
        """``step`` when this inference recorded it, else None (its last)."""
        return step if step in self.info["steps"] else None


def _jobs() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def _subsample_scores(q: _Queries, rules: Sequence[str], points: Sequence[int], max_n: int, seeds: int, step: int | None,
                      top: int, task_ids: Sequence[str]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per-task scores (an array per metric, and the number of ``subsamples``) at each
    (rule, n_aug), averaged over ``seeds`` seeded subsamples of the variants; at n_aug = ``max_n``
    every seed draws the same subsample (all variants), so that point is queried once.

    Queries run on a small thread pool: ``vote.rank``'s numpy reductions and polars sorts release
    the GIL, so on 2 cores this is close to 2x.
    """
    from concurrent.futures import ThreadPoolExecutor

    specs = [(rule, n, s) for rule in rules for n in points for s in (range(seeds) if n < max_n else range(1))]
    for s in range(seeds):  # warm the per-seed variant order once, outside the pool
        q.prepared.variant_rank(s) if hasattr(q.prepared, "variant_rank") else None
    with ThreadPoolExecutor(_jobs()) as pool:
        results = list(pool.map(lambda sp: per_task(q.query(sp[0], sp[1], step, sp[2], top)[1], task_ids), specs))
    acc: dict[tuple[str, int], list[dict[str, np.ndarray]]] = {}
    for (rule, n, _), pt in zip(specs, results):
        acc.setdefault((rule, n), []).append(pt)
    return {k: {m: np.mean([pt[m] for pt in pts], axis=0) for m in METRICS} | {"subsamples": len(pts)}
            for k, pts in acc.items()}


def n_aug_curves(q: _Queries, rules: Sequence[str], points: Sequence[int], max_n: int, seeds: int, step: int | None,
                 top: int, task_ids: Sequence[str]) -> Any:
    """The n_aug sweep: one row per (rule, n_aug, metric) with the seed-mean score and its bootstrap CI."""
    import polars as pl

    rows, mats = [], []
    for (rule, n), sc in _subsample_scores(q, rules, points, max_n, seeds, step, top, task_ids).items():
        for m in METRICS:
            rows.append({"rule": rule, "n_aug": n, "metric": m, "mean": float(sc[m].mean()), "subsamples": sc["subsamples"]})
            mats.append(sc[m])
    lo, hi = bootstrap_ci(np.stack(mats))
    return pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))


def variant_pools(q: _Queries, rules: Sequence[str], step: int | None, top: int, task_ids: Sequence[str], seeds: int) -> Any:
    """Voting only the variants whose puzzle identifier was trained, only the others, or all;
    plus the untrained pool subsampled to the trained pool's size (mean over ``seeds`` subsamples),
    so the two kinds are compared at an equal count. One row per (pool, rule): pass@2 with its
    bootstrap CI, and the oracle. None when every cached variant was trained (or none was):
    the reference recipe, where the question does not arise."""
    import polars as pl

    p = q.prepared
    if getattr(p, "train_aug", None) is None:
        return None
    n_tr, n_un = int(p.pool_sizes("trained").max(initial=0)), int(p.pool_sizes("untrained").max(initial=0))
    if n_tr == 0 or n_un == 0:
        return None
    specs = [("all", q.info["n_aug"], range(1)), ("trained", n_tr, range(1)), ("untrained", n_un, range(1))]
    if n_un > n_tr:
        specs.append(("untrained", n_tr, range(seeds)))
    rows, mats = [], []
    for pool, n, subsamples in specs:
        for rule in rules:
            pts = [per_task(q.query(rule, n, step, s, top, variants=pool)[1], task_ids) for s in subsamples]
            p2 = np.mean([pt["pass@2"] for pt in pts], axis=0)
            rows.append({"variants": pool, "n_aug": n, "rule": rule, "pass@2": float(p2.mean()),
                         "oracle": float(np.mean([pt["oracle"] for pt in pts], axis=0).mean()), "subsamples": len(pts)})
            mats.append(p2)
    lo, hi = bootstrap_ci(np.stack(mats))
    return pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))


def per_task(sc: dict, task_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """pass@1 / pass@2 / oracle per task, in ``task_ids`` order, from a ``vote.scores`` result.

    ``vote.scores`` lists tasks with known outputs sorted by id, the order
    ``prepared_info`` gives, so this is a column read (checked by length).
    """
    table = sc["per_task"]
    if table.height != len(task_ids):
        raise ArcpipeError(f"vote.scores returned {table.height} tasks, expected {len(task_ids)}")
    return {m: table[m].to_numpy().astype(np.float64) for m in METRICS}


# --------------------------------------------------------------------------- the report


def report(
    runs: Sequence[Any] | None = None,
    *,
    name: str = "latest",
    out_dir: str | os.PathLike = "reports",
    n_aug_points: Sequence[int] | None = None,
    seeds: int = 20,
    rules: Sequence[str] | None = None,
    step: int | None = None,
    top: int = 2,
    root: str | os.PathLike | None = None,
    force: bool = False,
) -> cache.Stage:
    """Write ``<out_dir>/<name>/`` (report.md, PNGs, CSV+parquet tables, manifest.json); return it as a Stage.

    ``runs``: infer or vote stages (objects, directories or key prefixes);
    default the newest vote's inference. The returned Stage's ``path`` is the
    published directory, its ``key``/``cached`` those of the report stage.
    """
    from arcpipe import vote

    croot = cache.cache_root(root)
    if not name or "/" in name or name.startswith("."):
        raise ArcpipeError(f"report name {name!r}: must be a plain directory name")
    if seeds < 1:
        raise ArcpipeError(f"report seeds={seeds}: must be >= 1 (the report's curves use >= 20)")
    known_rules = list(vote.RULES)
    rules = list(rules) if rules else known_rules
    bad = [r for r in rules if r not in vote.RULES]
    if bad:
        raise ArcpipeError(f"report rules: unknown {', '.join(bad)} (known: {', '.join(known_rules)})")
    resolved = resolve_runs(runs, croot)
    config = {
        "name": name, "n_aug_points": list(n_aug_points) if n_aug_points else None, "seeds": int(seeds),
        "rules": rules, "step": step, "top": int(top), "bootstrap": BOOTSTRAP, "layout": LAYOUT,
    }
    inputs: dict[str, str] = {}
    for i, r in enumerate(resolved):
        inputs[f"infer{i}"] = r.infer.key
        for j, v in enumerate(r.votes):
            inputs[f"vote{i}.{j}"] = v.key

    def build(work: Path) -> dict:
        return _build(work, resolved, vote, config)

    st = cache.run_stage("report", config, inputs, build, root=croot, force=force)
    out = Path(out_dir) / name
    _publish(st, out, resolved)
    return cache.Stage("report", st.key, out, st.manifest, st.cached)


def _publish(st: cache.Stage, out: Path, runs: list[Run]) -> None:
    """Copy the cached report to ``out`` (whole or not at all), adding every input stage's manifest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(st.path, tmp)
    inputs = []
    for r in runs:
        for s in [r.augment, r.train, r.infer, *r.votes]:
            if s is not None and s.key not in {x["key"] for x in inputs}:
                inputs.append(s.manifest)
    manifest = {**st.manifest, "cache_path": str(st.path), "input_manifests": inputs}
    cache.atomic_write_json(tmp / cache.MANIFEST, manifest)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _write_table(frame: Any, work: Path, stem: str) -> None:
    frame.write_parquet(work / f"{stem}.parquet")
    frame.write_csv(work / f"{stem}.csv")


def _build(work: Path, runs: list[Run], vote: Any, config: dict) -> dict:
    import polars as pl

    t0 = time.perf_counter()
    rules, seeds, top = config["rules"], config["seeds"], config["top"]
    queries = [_Queries(vote, vote.prepare(r.infer)) for r in runs]
    main_i = main_run(runs)
    main, q = runs[main_i], queries[main_i]
    info = q.info
    task_ids, max_n, steps = info["task_ids"], info["n_aug"], info["steps"]
    step = config["step"]
    if step is not None and step not in steps:
        raise ArcpipeError(f"report step={step}: not recorded by {main.infer.path} (recorded: {steps})")
    points = sorted({int(p) for p in (config["n_aug_points"] or default_points(max_n))})
    bad = [p for p in points if p < 1 or p > max_n]
    points = sorted(set(points) | {max_n})  # "all variants" is every report's reference point
    if bad:
        raise ArcpipeError(f"report n_aug_points {bad}: the inference cached {max_n} variants per test input (use 1..{max_n})")

    # 1. pass@1 / pass@2 / oracle vs inference n_aug, every rule, mean over seeded subsamples
    curves = n_aug_curves(q, rules, points, max_n, seeds, step, top, task_ids)
    _write_table(curves, work, "n_aug_curves")

    # 1b. trained vs untrained variants (only when the plan voted variants it never trained)
    pools = variant_pools(q, rules, step, top, task_ids, seeds)
    if pools is not None:
        _write_table(pools, work, "variant_pools")

    # 2. pass@2 vs the ACT step used at inference (all variants)
    rows, mats = [], []
    for rule in rules:
        for s in steps:
            pt = per_task(q.query(rule, max_n, s, 0, top)[1], task_ids)
            rows.append({"rule": rule, "step": s, "pass@2": float(pt["pass@2"].mean()), "oracle": float(pt["oracle"].mean())})
            mats.append(pt["pass@2"])
    lo, hi = bootstrap_ci(np.stack(mats))
    by_step = pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))
    _write_table(by_step, work, "act_steps")

    # 2a. which signal tells right predictions from wrong: sigmoid(q_halt), log-probability, agreement
    sig = signals.signal_quality(q.prepared, n_boot=BOOTSTRAP, jobs=_jobs())
    cal = signals.calibration(q.prepared, step if step is not None else steps[-1])
    _write_table(sig, work, "signals")
    _write_table(cal, work, "calibration")

    # 2b. the rules against each other on the main arm, paired over tasks
    primary = "hrm" if "hrm" in rules else rules[0]
    by_rule = rule_effects(runs, queries, main_i, rules, step, top, task_ids, primary)
    _write_table(by_rule, work, "rules")

    # 3. one section per setting the runs differ in (core, train_aug, puzzle-id mode, ...), split by
    #    where the tasks came from when the data joined several sources (ARC training + evaluation)
    sources = task_sources(main, task_ids)
    factors, by_source = {}, {}
    varying = varying_factors(runs)
    for f in varying:
        tables = factor_tables(runs, queries, main_i, f, rules, step, top, task_ids, primary, config["n_aug_points"], seeds)
        if tables is not None:
            factors[f] = tables
            _write_table(tables[0], work, f"by_{f}")
            _write_table(tables[1], work, f"by_{f}_steps")
            _write_table(tables[2], work, f"by_{f}_n_aug")
            plot_factor(work / f"by_{f}.png", f, FACTOR_TITLES.get(f, f), *tables, rules, primary)
            split = source_tables(runs, queries, main_i, f, step, top, task_ids, primary, sources)
            if split is not None:
                by_source[f] = split
                _write_table(split, work, f"by_{f}_sources")

    # 3b. two settings crossed in a full grid (variants x budget): the interaction one-factor slices miss
    grids = factor_grids(runs, queries, main_i, varying, primary, step, top, task_ids)
    for f, g, grid, effects in grids:
        _write_table(grid, work, f"grid_{f}_{g}")
        _write_table(effects, work, f"grid_{f}_{g}_effects")

    # 4. every run on its own (runs off every one-factor slice too, e.g. two kinds switched off at once)
    source_ids = {name: np.asarray(task_ids)[mask].tolist() for name, mask in sources.items()}
    run_scores = run_table(runs, queries, varying, primary, step, top, source_ids)
    _write_table(run_scores, work, "runs")

    # 5. per test input: which rule solves it, and its vote margin (all variants)
    per_input = None
    frames = []
    for rule in rules:
        ranked, _ = q.query(rule, max_n, step, 0, top)
        frames.append(input_outcomes(ranked, q.prepared, rule, top))
    per_input = frames[0]
    for f in frames[1:]:
        per_input = per_input.join(f, on=["task_id", "example"], how="full", coalesce=True)
    per_input = per_input.sort(["task_id", "example"])
    if sources:
        of = {t: name for name, ids in source_ids.items() for t in ids}
        per_input = per_input.with_columns(source=pl.col("task_id").replace_strict(of, default=None, return_dtype=pl.String))
    _write_table(per_input, work, "per_task")

    # 6. plots and gallery
    ranked, _ = q.query(primary, max_n, step, 0, top)
    gallery = _gallery(work, ranked, q.prepared, main, per_input, primary)
    plot_curves(work / "n_aug_curves.png", curves, rules)
    plot_steps(work / "act_steps.png", by_step, rules)

    md = _markdown(config, runs, main, info, curves, by_step, factors, per_input, rules, primary, gallery, max_n, points, seeds,
                   run_scores, pools, grids, by_rule, (sig, cal), sources, by_source)
    (work / "report.md").write_text(md)
    return {"runs": len(runs), "tasks": len(task_ids), "queries": sum(x.n_queries for x in queries),
            "n_aug_points": len(points), "rules": len(rules), "seconds": round(time.perf_counter() - t0, 3)}


# --------------------------------------------------------------------------- comparing runs


def main_run(runs: Sequence[Run]) -> int:
    """Index of the run the single-run sections describe: the one holding the most common value of
    every factor -- the shared baseline of one-factor ablations. Ties: more training augmentation,
    then the first given (so a plain train_aug x seeds sweep reports its largest train_aug)."""
    from collections import Counter

    factors = varying_factors(runs)
    counts = {f: Counter(r.factor(f) for r in runs) for f in factors}
    return max(range(len(runs)), key=lambda i: (sum(counts[f][runs[i].factor(f)] for f in factors),
                                                runs[i].train_aug or 0, -i))


def _same_partition(a: Sequence[Any], b: Sequence[Any]) -> bool:
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
        if len(set(vals)) < 2 or any(_same_partition(vals, [r.factor(g) for r in runs]) for g in out):
            continue
        if f not in FACTORS and all(len({v for v, p in zip(vals, presets) if p == q}) == 1 for q in set(presets)):
            continue
        out.append(f)
    return out


def _matches(r: Run, main: Run, g: str) -> bool:
    """Whether run ``r`` holds ``main``'s setting ``g`` for a one-factor slice: the same value, or,
    for a setting other than ``FACTORS``, each run of a different preset at its own preset's
    value (a transformer preset's cycles are not a cycles sweep, so the core slice keeps it)."""
    if r.factor(g) == main.factor(g):
        return True
    return (g not in FACTORS and r.factor("preset") != main.factor("preset")
            and r.follows_preset(g) and main.follows_preset(g))


def _slice(runs: Sequence[Run], queries: Sequence[_Queries], main: Run, others: Sequence[str], task_ids: Sequence[str]) -> list[int]:
    """Indices of the runs that hold ``main``'s value of every factor of ``others`` (``_matches``)
    and are scored on ``task_ids``."""
    return [i for i, r in enumerate(runs) if all(_matches(r, main, g) for g in others)
            and queries[i].info["task_ids"] == list(task_ids)]


def _seed_mean(queries: Sequence[_Queries], group: Sequence[int], rule: str, step: int | None, top: int,
               task_ids: Sequence[str]) -> tuple[np.ndarray, float]:
    """Per-task pass@2 of the ``group`` runs (one setting, several training seeds) averaged over the
    seeds, and their mean oracle; every cached variant voted."""
    pts = [queries[i].all_variants(rule, step, top, task_ids) for i in group]
    return np.mean([pt["pass@2"] for pt in pts], axis=0), float(np.mean([pt["oracle"] for pt in pts], axis=0).mean())


def _train_means(runs: Sequence[Run], group: Sequence[int]) -> dict[str, float | None]:
    """``Run.train_summary`` averaged over the ``group`` runs (None when a run lacks a figure)."""
    summ = [runs[i].train_summary() for i in group]
    return {k: (float(np.mean([x[k] for x in summ])) if all(x[k] is not None for x in summ) else None)
            for k in ("params", "train_exact", "train_s")}


def _one_factor_arms(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, f: str,
                     task_ids: Sequence[str]) -> list[tuple[Any, list[int]]]:
    """The one-factor slice through the main run for factor ``f``: (value, indices of its runs) in
    table order, over the runs that match the main run in every other varying factor and are
    scored on ``task_ids``."""
    main = runs[main_i]
    idx = _slice(runs, queries, main, [g for g in varying_factors(runs) if g != f], task_ids)
    values = _ordered(main.factor(f), [runs[i].factor(f) for i in idx])
    return [(v, [i for i in idx if runs[i].factor(f) == v]) for v in values]


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


def source_tables(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, f: str, step: int | None, top: int,
                  task_ids: Sequence[str], primary: str, sources: dict[str, np.ndarray]) -> Any:
    """pass@2 (``primary`` rule, every cached variant, training seeds averaged per task) of each
    value of factor ``f`` on each source's tasks, with its bootstrap interval over those tasks and
    the paired difference from the main run's value on the same tasks. None without sources or
    without a one-factor slice."""
    import polars as pl

    arms = _one_factor_arms(runs, queries, main_i, f, task_ids)
    if not sources or len(arms) < 2:
        return None
    p2 = np.stack([_seed_mean(queries, group, primary, step, top, task_ids)[0] for _, group in arms])  # (arms, tasks)
    base = p2[[v for v, _ in arms].index(runs[main_i].factor(f))]
    stats = {}  # per source, every arm at once (one bootstrap per source, as factor_tables does per factor)
    for name, mask in sources.items():
        lo, hi = bootstrap_ci(p2[:, mask])
        stats[name] = (p2[:, mask].mean(axis=1), lo, hi, paired_effects(p2[:, mask] - base[mask]))
    rows = []
    for a, (v, group) in enumerate(arms):
        for name, mask in sources.items():
            mean, lo, hi, effects = stats[name]
            rows.append({f: v, "source": name, "tasks": int(mask.sum()), "runs": len(group), "rule": primary,
                         "pass@2": float(mean[a]), "ci_low": float(lo[a]), "ci_high": float(hi[a]),
                         **{k: x[a].item() for k, x in effects.items()}})
    return pl.DataFrame(rows)


def factor_tables(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, f: str, rules: Sequence[str],
                  step: int | None, top: int, task_ids: Sequence[str], primary: str,
                  points: Sequence[int] | None = None, seeds: int = 1) -> tuple[Any, Any, Any] | None:
    """pass@2 by the values of factor ``f`` over the runs that match the main run in every other
    varying factor (a one-factor slice; training seeds averaged per task), every rule at all variants;
    pass@2 by ACT step, and by the number of variants voted, for the primary rule. Runs scored on
    other tasks are left out. Each row of the first table also holds its paired difference from the
    main run's value (``paired_effects``).

    The vote-count curve asks whether an arm needs its variants at inference as well as in
    training: each point is the mean over ``seeds`` seeded subsamples (the identity kept) and the
    training seeds, at ``points`` (default 1, 2, 4, ... up to the arm's variant count, which is
    always a point; points above it are skipped)."""
    import polars as pl

    main = runs[main_i]
    arms = _one_factor_arms(runs, queries, main_i, f, task_ids)
    if len(arms) < 2:
        return None
    rows, mats, step_rows, step_mats, vote_rows, vote_mats = [], [], [], [], [], []
    for v, group in arms:
        meta = _train_means(runs, group)
        for rule in rules:
            p2, oracle = _seed_mean(queries, group, rule, step, top, task_ids)
            rows.append({f: v, "rule": rule, "runs": len(group), "pass@2": float(p2.mean()), "oracle": oracle, **meta})
            mats.append(p2)
        for s in sorted({s for i in group for s in queries[i].info["steps"]}):
            pts = [queries[i].all_variants(primary, s, top, task_ids) for i in group if s in queries[i].info["steps"]]
            p2 = np.mean([pt["pass@2"] for pt in pts], axis=0)
            step_rows.append({f: v, "step": s, "runs": len(pts), "pass@2": float(p2.mean())})
            step_mats.append(p2)
        n_max = min(queries[i].info["n_aug"] for i in group)
        ns = sorted({p for p in (points or default_points(n_max)) if p < n_max} | {n_max})
        per_run = [_subsample_scores(queries[i], [primary], ns, queries[i].info["n_aug"], seeds, queries[i].own_step(step), top,
                                     task_ids) for i in group]
        for n in ns:
            p2 = np.mean([sc[(primary, n)]["pass@2"] for sc in per_run], axis=0)
            oracle = np.mean([sc[(primary, n)]["oracle"] for sc in per_run], axis=0)
            vote_rows.append({f: v, "n_aug": n, "runs": len(group), "pass@2": float(p2.mean()), "oracle": float(oracle.mean()),
                              "subsamples": per_run[0][(primary, n)]["subsamples"]})
            vote_mats.append(p2)
    lo, hi = bootstrap_ci(np.stack(mats))
    base = {r["rule"]: m for r, m in zip(rows, mats) if r[f] == main.factor(f)}
    effects = paired_effects(np.stack([m - base[r["rule"]] for r, m in zip(rows, mats)]))
    table = pl.DataFrame(rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi),
                                            **{k: pl.Series(v) for k, v in effects.items()})
    lo, hi = bootstrap_ci(np.stack(step_mats))
    steps = pl.DataFrame(step_rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi), rule=pl.lit(primary))
    lo, hi = bootstrap_ci(np.stack(vote_mats))
    voted = pl.DataFrame(vote_rows).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi), rule=pl.lit(primary))
    return table, steps, voted


def rule_effects(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, rules: Sequence[str], step: int | None,
                 top: int, task_ids: Sequence[str], primary: str) -> Any:
    """pass@2 of every voting rule on the main run's arm (the runs equal to it in every varying
    factor: its training seeds, averaged per task), every cached variant voted, with the paired
    difference from the ``primary`` rule over the same tasks: whether a rule's lead survives the
    task-to-task spread that the per-rule intervals mostly measure."""
    import polars as pl

    group = _slice(runs, queries, runs[main_i], varying_factors(runs), task_ids)
    mats = {rule: _seed_mean(queries, group, rule, step, top, task_ids) for rule in rules}
    p2 = np.stack([mats[r][0] for r in rules])
    lo, hi = bootstrap_ci(p2)
    effects = paired_effects(p2 - mats[primary][0])
    return pl.DataFrame({"rule": list(rules), "runs": len(group), "pass@2": p2.mean(axis=1), "oracle": [mats[r][1] for r in rules],
                         "ci_low": lo, "ci_high": hi, **effects})


def _ordered(first: Any, values: Sequence[Any]) -> list[Any]:
    """A factor's distinct values in table order: ascending when all are numbers, else the main
    run's value (``first``, kept only when present) followed by the others as they come."""
    out = list(dict.fromkeys([first, *values] if first in values else values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in out):
        out.sort()
    return out


def factor_grids(runs: Sequence[Run], queries: Sequence[_Queries], main_i: int, varying: Sequence[str], rule: str,
                 step: int | None, top: int, task_ids: Sequence[str]) -> list[tuple[str, str, Any, Any]]:
    """pass@2 over each pair of varying factors that the runs cross completely (every combination
    of their values present among the runs matching the main run in all other factors).

    One-factor sections read such a grid only along the two lines through the main run; a grid
    also holds the far corner, which is what tells an interaction (more variants *and* more steps)
    from two separate effects. Training seeds averaged per task; every cached variant voted; one
    rule. Rows: (f value, g value) with runs, pass@2 and its 95% CI, oracle and train exact; and
    the effects: each factor's later values against its first, at every value of the other, as
    paired differences (``paired_effects``)."""
    import itertools

    import polars as pl

    main = runs[main_i]
    out = []
    for f, g in itertools.combinations(varying, 2):
        cells: dict[tuple, list[int]] = {}
        for i in _slice(runs, queries, main, [h for h in varying if h not in (f, g)], task_ids):
            cells.setdefault((runs[i].factor(f), runs[i].factor(g)), []).append(i)
        fv = _ordered(main.factor(f), [a for a, _ in cells])
        gv = _ordered(main.factor(g), [b for _, b in cells])
        if len(fv) < 2 or len(gv) < 2 or len(cells) != len(fv) * len(gv):
            continue
        rows, p2s = [], {}
        for a, b in itertools.product(fv, gv):
            group = cells[(a, b)]
            p2s[(a, b)], oracle = _seed_mean(queries, group, rule, step, top, task_ids)
            rows.append({f: a, g: b, "rule": rule, "runs": len(group), "pass@2": float(p2s[(a, b)].mean()),
                         "oracle": oracle, "train_exact": _train_means(runs, group)["train_exact"]})
        lo, hi = bootstrap_ci(np.stack(list(p2s.values())))
        grid = pl.DataFrame(rows, strict=False).with_columns(ci_low=pl.Series(lo), ci_high=pl.Series(hi))
        # one factor moved from its first value, the other held at each of its values
        moves, diffs = [], []
        for a in fv:
            for b in gv[1:]:
                moves.append((g, gv[0], b, f"{f}={a}"))
                diffs.append(p2s[(a, b)] - p2s[(a, gv[0])])
        for b in gv:
            for a in fv[1:]:
                moves.append((f, fv[0], a, f"{g}={b}"))
                diffs.append(p2s[(a, b)] - p2s[(fv[0], b)])
        effects = pl.DataFrame({"factor": [m[0] for m in moves], "from": [str(m[1]) for m in moves],
                                "to": [str(m[2]) for m in moves], "at": [m[3] for m in moves], "rule": rule,
                                **paired_effects(np.stack(diffs))})
        out.append((f, g, grid, effects))
    return out


def run_table(runs: Sequence[Run], queries: Sequence[_Queries], varying: Sequence[str], rule: str, step: int | None,
              top: int, sources: dict[str, Sequence[str]] | None = None) -> Any:
    """One row per run: its stage keys, the value of every factor (``FACTORS`` and the ``varying``
    ones), and its own pass@2 / oracle (``rule``, all its variants, ``step`` or its last) over its
    own scored tasks, and over those of them from each source (``pass@2 <source>``; ``sources``
    names the task ids of each) -- the table to load in polars for any comparison the sections do
    not make."""
    import polars as pl

    names = list(dict.fromkeys([*FACTORS, *varying]))
    rows = []
    for r, q in zip(runs, queries):
        info = q.info
        pt = q.all_variants(rule, step, top)
        rows.append({"infer": r.infer.key, "train": r.train.key if r.train else None,
                     "augment": r.augment.key if r.augment else None,
                     **{f: r.factor(f) for f in names}, "seed": r.train_seed, "tasks": len(info["task_ids"]),
                     "variants": info["n_aug"], "rule": rule, "pass@2": float(pt["pass@2"].mean()),
                     "oracle": float(pt["oracle"].mean()), "train_exact": r.train_summary()["train_exact"],
                     "train_host": r.train_host(),
                     **{f"pass@2 {name}": _masked_mean(pt["pass@2"], np.isin(info["task_ids"], list(ids)))
                        for name, ids in (sources or {}).items()},
                     **_run_signals(q, step)})
    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def _run_signals(q: _Queries, step: int | None) -> dict[str, float]:
    """A run's AUROC of each signal for right vs wrong predictions at ``step`` (its last when it did
    not record that one), all variants, no interval (the runs table is one number per run)."""
    s = q.own_step(step)
    sig = signals.signal_quality(q.prepared, [q.info["steps"][-1] if s is None else s], n_boot=0)
    out = {}
    for r in sig.iter_rows(named=True):
        name = "q" if r["signal"] == "q_halt" else r["signal"]
        out[f"{name}_auroc"], out[f"{name}_pooled_auroc"] = r["auroc"], r["pooled_auroc"]
    return out


# --------------------------------------------------------------------------- vote adapters


def prepared_info(prepared: Any) -> dict:
    """Scored task ids (known outputs, sorted), cached variants per task and recorded ACT steps of a ``vote.Prepared``."""
    tests = prepared.tests
    known = tests["known"].to_numpy()
    task_ids = sorted(set(tests["task_id"].to_numpy()[known].tolist()))
    if not task_ids:
        raise ArcpipeError(f"{getattr(prepared.stage, 'path', 'predictions')}: no test input has a known output; nothing to report")
    return {"task_ids": task_ids, "n_aug": int(prepared.variants_per_task.max(initial=0)),
            "steps": [int(s) for s in prepared.steps]}


def input_outcomes(ranked: Any, prepared: Any, rule: str, top: int = 2) -> Any:
    """One row per test input: ``<rule>_solved`` (right within the top attempts; null when the
    truth is unknown) and ``<rule>_margin`` (votes for the top answer minus the runner-up's)."""
    import polars as pl

    tests = prepared.tests
    ntex = len(tests)
    tex = ranked["tex"].to_numpy()
    rk = ranked["rank"].to_numpy()
    cnt = ranked["count"].to_numpy().astype(np.int64)
    correct = ranked["correct"].fill_null(False).to_numpy()
    solved = np.bincount(tex, weights=correct & (rk <= top), minlength=ntex) > 0
    first = np.bincount(tex, weights=np.where(rk == 1, cnt, 0), minlength=ntex).astype(np.int64)
    second = np.bincount(tex, weights=np.where(rk == 2, cnt, 0), minlength=ntex).astype(np.int64)
    return pl.DataFrame({
        "task_id": tests["task_id"].to_numpy(), "example": tests["example"].to_numpy().astype(np.int64),
        "_solved": solved, "_known": tests["known"].to_numpy(), f"{rule}_margin": first - second,
    }).select(
        "task_id", "example",
        pl.when(pl.col("_known")).then(pl.col("_solved")).otherwise(None).alias(f"{rule}_solved"),
        f"{rule}_margin",
    )


def attempts(ranked: Any, prepared: Any, task_id: str, example: int, top: int = 2) -> list[np.ndarray]:
    """The top attempts' grids (original frame) for one test input."""
    import polars as pl

    from arcpipe import vote

    rows = ranked.filter((pl.col("task_id") == task_id) & (pl.col("example") == example) & (pl.col("rank") <= top)).sort("rank")
    return vote.answer_grids(prepared, rows) if rows.height else []


# --------------------------------------------------------------------------- rendering


def _gallery(work: Path, ranked: Any, prepared: Any, run: Run, per_input: Any, rule: str) -> list[tuple[str, str, list]]:
    """gallery_solved.png / gallery_failed.png: input, truth, attempt 1, attempt 2 for a few test inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _tasks_json(run)
    out = []
    col = f"{rule}_solved"
    for kind, solved in (("solved", True), ("failed", False)):
        rows = per_input.filter(per_input[col] == solved).head(GALLERY)
        picked = list(zip(rows["task_id"].to_list(), rows["example"].to_list()))
        if not picked:
            continue
        fig, axes = plt.subplots(len(picked), 4, figsize=(8, 2.2 * len(picked)), squeeze=False)
        for r, (tid, ex) in enumerate(picked):
            test = tasks.get(tid, {}).get("test", [])
            item = test[ex] if ex < len(test) else {}
            inp = np.asarray(item.get("input"), dtype=np.uint8) if item.get("input") is not None else None
            truth = np.asarray(item.get("output"), dtype=np.uint8) if item.get("output") is not None else None
            atts = attempts(ranked, prepared, tid, ex)
            atts = (atts + [None, None])[:2]
            for c, (g, t) in enumerate([(inp, f"{tid}#{ex} input"), (truth, "truth"),
                                         (atts[0], "attempt 1"), (atts[1], "attempt 2")]):
                ok = g is not None and truth is not None and c >= 2 and g.shape == truth.shape and bool((g == truth).all())
                draw_grid(axes[r, c], g, t + (" ✓" if ok else ""))
        fig.suptitle(f"{kind.capitalize()} test inputs (rule {rule}, all variants): input, truth, attempt 1, attempt 2",
                     fontsize=10)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.75 / (2.2 * len(picked)), wspace=0.15, hspace=0.35)
        fig.savefig(work / f"gallery_{kind}.png", dpi=90)
        plt.close(fig)
        out.append((kind, f"gallery_{kind}.png", picked))
    return out


def _tasks_json(run: Run) -> dict:
    if run.augment is not None and (run.augment.path / "tasks.json").is_file():
        return json.loads((run.augment.path / "tasks.json").read_text())
    return {}


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
            "train_exact": _pct, "train_s": lambda x: f"{x / 60:.1f} min"}[kind](v)


def _held(runs: Sequence[Run], main: Run, moved: Sequence[str]) -> str:
    """The main run's other settings, as a section states them: every factor but the ``moved``
    ones and those that only restate one of them (preset for core)."""
    vals = {h: [r.factor(h) for r in runs] for h in dict.fromkeys([*FACTORS, *varying_factors(runs)])}
    names = [h for h in vals if h not in moved and main.factor(h) is not None
             and not any(_same_partition(vals[m], vals[h]) for m in moved)]
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
             f"Train exact = exact accuracy on the training pairs at the end of training. Last column: the "
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
                     _fmt(first["train_s"], "train_s")] + cells + [_pct(first["oracle"]),
                                                                  "—" if v == main.factor(f) else _delta(prim)])
    parts += [_md_table([f, "runs", "dense params", "train exact", "train time"] + rules + ["oracle", f"Δ vs {main.factor(f)}"],
                        rows), ""]
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
            "oracle (any variant right) · train exact (end of training):", "",
            matrix(lambda r: f"{_pct(r['oracle'])} · {_fmt(r['train_exact'], 'train_exact')}"), "",
            "Effects, paired over tasks: pass@2 points [95% paired bootstrap CI] (tasks that gained ↑ / lost ↓). "
            f"Table `grid_{f}_{g}_effects`.", "",
            _md_table(["setting moved", "held at", f"Δ pass@2 ({rule})"],
                      [[f"`{r['factor']}` {r['from']} → {r['to']}", r["at"], _delta(r)] for r in effects.iter_rows(named=True)]), ""]


def _markdown(config, runs, main, info, curves, by_step, factors, per_input, rules, primary, gallery,
              max_n, points, seeds, run_scores, pools=None, grids=(), by_rule=None, signal_tables=None,
              sources=None, by_source=None) -> str:
    import polars as pl

    name = config["name"]
    n_tasks = len(info["task_ids"])
    parts = [f"# arcpipe report: {name}", ""]
    parts.append(
        f"{n_tasks} tasks, {per_input.height} test inputs, {max_n} cached inference variants per test input, "
        f"ACT steps recorded: {info['steps'][0]}..{info['steps'][-1]}. Scores are ARC-style: a test input is solved "
        f"when one of the top-2 attempts is exactly right; a task's score is the fraction of its test inputs solved. "
        f"Each n_aug point is the mean over {seeds} seeded subsamples of the cached variants (identity always kept); "
        f"intervals are 95% bootstrap over tasks."
    )
    extra = [f for f in varying_factors(runs) if f not in FACTORS] if len(runs) > 1 else []
    if len(runs) > 1:
        parts += ["", f"{len(runs)} runs. The sections up to the per-input table describe the main run "
                      f"({main.describe(extra)}): the one sharing the most settings with the others."]
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
        rows.append([rule] + [f"{_pct(get[m]['mean'])} [{_pct(get[m]['ci_low'])}, {_pct(get[m]['ci_high'])}]" for m in METRICS])
    parts.append(_md_table(["rule", "pass@1", "pass@2", "oracle"], rows))
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
                 "—" if r["rule"] == primary else _delta(r)] for r in by_rule.iter_rows(named=True)]
        parts.append(_md_table(["rule", "pass@2", "oracle", f"Δ vs {primary}"], rows))
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
              + " (.csv and .parquet). Every input stage's manifest is in `manifest.json`.", ""]
    return "\n".join(parts)
