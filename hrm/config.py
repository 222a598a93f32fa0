"""HRM configuration and presets.

One flat dataclass mirrors the reference release's ``HierarchicalReasoningModel_ACTV1Config``
field names (so reference YAML/JSON configs map over one-to-one), minus ``batch_size``: our sparse
puzzle embedding sizes its per-batch slice lazily, so the model does not need to know it.
``seq_len``, ``vocab_size`` and ``num_puzzle_identifiers`` belong to the dataset; presets only
fix the architecture and callers override the rest.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's / reference release's ARC configuration (config/arch/hrm_v1.yaml): ~27.3M
    # parameters in the transformer blocks and heads, puzzle-embedding table on top.
    "arc": dict(
        hidden_size=512, num_heads=8, expansion=4.0, H_layers=4, L_layers=4,
        H_cycles=2, L_cycles=2, halt_max_steps=16, halt_exploration_prob=0.1,
        rope_theta=10000.0, rms_norm_eps=1e-5, puzzle_emb_ndim=512,
        forward_dtype="bfloat16", loss_type="stablemax", pos_encodings="rope",
        seq_len=900, vocab_size=12,
    ),
    # Small enough to train a few-grid task in well under a minute on 2 CPU cores, yet keeps
    # every structural feature (two levels, >1 cycle, ACT with several steps, puzzle prefix).
    "tiny": dict(
        hidden_size=64, num_heads=4, expansion=2.0, H_layers=1, L_layers=1,
        H_cycles=2, L_cycles=2, halt_max_steps=4, halt_exploration_prob=0.1,
        rope_theta=10000.0, rms_norm_eps=1e-5, puzzle_emb_ndim=64,
        forward_dtype="bfloat16", loss_type="stablemax", pos_encodings="rope",
        seq_len=100, vocab_size=12,
    ),
    # --- Alternative cores (issue 10: which of HRM's ingredients matter?) -------------------
    # Tiny Recursive Model (Jolicoeur-Martineau, arXiv 2510.04871), ARC-AGI setting. Values from
    # the official release (SamsungSAILMontreal/TinyRecursiveModels): config/arch/trm.yaml
    # (hidden 512, 8 heads, expansion 4, H_layers 0 / L_layers 2, halt_max_steps 16,
    # exploration 0.1, puzzle_emb_ndim = hidden, puzzle_emb_len 16, rope, bf16,
    # no_ACT_continue) and the README's ARC-AGI-1/-2 command, which overrides the yaml's
    # Sudoku-style recursion to T = H_cycles = 3, n = L_cycles = 4 and turns on ema=True
    # (pretrain.py: ema_rate 0.999). NB: n = 6 is the yaml's (Sudoku) default, *not* the ARC
    # setting. 6,829,058 trainable parameters (the paper's "7M"; checked in tests/test_cores.py).
    "trm": dict(
        core="trm", hidden_size=512, num_heads=8, expansion=4.0, H_layers=0, L_layers=2,
        H_cycles=3, L_cycles=4, halt_max_steps=16, halt_exploration_prob=0.1,
        rope_theta=10000.0, rms_norm_eps=1e-5, puzzle_emb_ndim=512, puzzle_emb_tokens=16,
        ema_decay=0.999, forward_dtype="bfloat16", loss_type="stablemax", pos_encodings="rope",
        seq_len=900, vocab_size=12,
    ),
    # CPU-demo TRM with exactly the ``tiny`` HRM's trainable-parameter count (two 64-wide blocks:
    # HRM's H and L block vs TRM's one shared 2-layer net), so the tiny ablation is size-matched.
    # EMA off: a demo run is a few hundred steps, and at 0.999 the average would still hold
    # ~0.999**500 = 61% of the *initial* weights after 500 (enable with ema_decay=0.99 or so).
    "trm-tiny": dict(
        core="trm", hidden_size=64, num_heads=4, expansion=2.0, H_layers=0, L_layers=2,
        H_cycles=2, L_cycles=2, halt_max_steps=4, halt_exploration_prob=0.1,
        rope_theta=10000.0, rms_norm_eps=1e-5, puzzle_emb_ndim=64, puzzle_emb_tokens=4,
        ema_decay=0.0, forward_dtype="bfloat16", loss_type="stablemax", pos_encodings="rope",
        seq_len=100, vocab_size=12,
    ),
    # Plain transformer with HRM's ACT outer loop (the ARC Prize HRM-analysis baseline): the
    # ``arc`` preset's 4 + 4 blocks laid end to end and run once per ACT step, so the parameter
    # count equals ``arc``'s exactly (27.3M) and only the inner recurrence is removed.
    "transformer": dict(
        core="transformer", hidden_size=512, num_heads=8, expansion=4.0, H_layers=4, L_layers=4,
        H_cycles=1, L_cycles=1, halt_max_steps=16, halt_exploration_prob=0.1,
        rope_theta=10000.0, rms_norm_eps=1e-5, puzzle_emb_ndim=512,
        forward_dtype="bfloat16", loss_type="stablemax", pos_encodings="rope",
        seq_len=900, vocab_size=12,
    ),
    # Size-matched to ``tiny`` (1 + 1 blocks of width 64 -> a 2-block stack).
    "transformer-tiny": dict(
        core="transformer", hidden_size=64, num_heads=4, expansion=2.0, H_layers=1, L_layers=1,
        H_cycles=1, L_cycles=1, halt_max_steps=4, halt_exploration_prob=0.1,
        rope_theta=10000.0, rms_norm_eps=1e-5, puzzle_emb_ndim=64,
        forward_dtype="bfloat16", loss_type="stablemax", pos_encodings="rope",
        seq_len=100, vocab_size=12,
    ),
}

CORES = ("hrm", "trm", "transformer")


@dataclass
class HRMConfig:
    """Architecture + ACT hyper-parameters of one HRM.

    ``forward_dtype`` is the *requested* compute dtype: ``bfloat16`` is honoured on CUDA only;
    on CPU the model always computes in float32 (bf16 matmuls on CPU are slow and lossy).
    ``loss_type`` is ``stablemax`` (the reference ARC setting) or ``softmax``.

    ``core`` picks the network inside the shared ACT wrapper (see :func:`hrm.model.build_inner`);
    the layer/cycle fields mean, per core:

    * ``hrm`` -- H_layers/L_layers blocks per level, H_cycles x L_cycles updates per ACT step.
    * ``trm`` -- one shared net of L_layers blocks (H_layers must be 0); T = H_cycles outer
      cycles of n = L_cycles latent updates plus one answer update per ACT step.
    * ``transformer`` -- one stack of H_layers + L_layers blocks applied once per ACT step
      (H_cycles = L_cycles = 1 required: a different value would be silently meaningless).

    ``puzzle_emb_tokens`` (0 = ceil(puzzle_emb_ndim / hidden)) is the number of prefix positions
    the puzzle embedding occupies; the table row is zero-padded up to it (TRM's
    ``puzzle_emb_len``). ``ema_decay`` (0 = off) is the decay the trainer should use for an
    EMA of the weights (:class:`hrm.EMA`); it does not change the network.
    """

    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    H_layers: int = 4
    L_layers: int = 4
    H_cycles: int = 2
    L_cycles: int = 2
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    puzzle_emb_ndim: int = 512
    seq_len: int = 900
    vocab_size: int = 12
    num_puzzle_identifiers: int = 1
    forward_dtype: str = "bfloat16"
    loss_type: str = "stablemax"
    pos_encodings: str = "rope"
    core: str = "hrm"
    puzzle_emb_tokens: int = 0
    ema_decay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"HRMConfig: hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.loss_type not in ("stablemax", "softmax"):
            raise ValueError(f"HRMConfig: loss_type must be 'stablemax' or 'softmax', got {self.loss_type!r}")
        if self.pos_encodings not in ("rope", "learned"):
            raise ValueError(f"HRMConfig: pos_encodings must be 'rope' or 'learned', got {self.pos_encodings!r}")
        if self.forward_dtype not in ("bfloat16", "float32", "float16"):
            raise ValueError(f"HRMConfig: unsupported forward_dtype {self.forward_dtype!r}")
        if self.core not in CORES:
            raise ValueError(f"HRMConfig: core must be one of {list(CORES)}, got {self.core!r}")
        if min(self.H_cycles, self.L_cycles, self.halt_max_steps, self.L_layers) < 1:
            raise ValueError("HRMConfig: cycles, L_layers and halt_max_steps must all be >= 1")
        if self.core == "hrm" and self.H_layers < 1:
            raise ValueError("HRMConfig: H_layers must be >= 1 for core 'hrm'")
        if self.core == "trm" and self.H_layers != 0:
            raise ValueError(f"HRMConfig: core 'trm' has one shared network (L_layers); H_layers must be 0, got {self.H_layers}")
        if self.core == "transformer" and (self.H_cycles, self.L_cycles) != (1, 1):
            raise ValueError(f"HRMConfig: core 'transformer' has no inner recurrence; H_cycles and L_cycles must be 1, got {self.H_cycles}, {self.L_cycles}")
        if self.H_layers < 0:
            raise ValueError("HRMConfig: H_layers must be >= 0")
        if self.puzzle_emb_tokens < 0 or (self.puzzle_emb_tokens and self.puzzle_emb_tokens * self.hidden_size < self.puzzle_emb_ndim):
            raise ValueError(f"HRMConfig: puzzle_emb_tokens {self.puzzle_emb_tokens} x hidden {self.hidden_size} cannot hold puzzle_emb_ndim {self.puzzle_emb_ndim}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"HRMConfig: ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def puzzle_emb_len(self) -> int:
        """Number of prefix positions the puzzle embedding occupies: ``puzzle_emb_tokens`` if set
        (TRM: 16, the table row zero-padded), else ceil(ndim / hidden) (HRM)."""
        if self.puzzle_emb_ndim <= 0:
            return 0
        if self.puzzle_emb_tokens:
            return self.puzzle_emb_tokens
        return -(self.puzzle_emb_ndim // -self.hidden_size)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "HRMConfig":
        """Named preset (``arc``, ``tiny``, ``trm``, ``trm-tiny``, ``transformer``,
        ``transformer-tiny``) with keyword overrides (dataset sizes, ablations)."""
        if name not in _PRESETS:
            raise ValueError(f"HRMConfig.preset: unknown preset {name!r} (choose from {sorted(_PRESETS)})")
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"HRMConfig.preset: unknown fields {bad}")
        return cls(**{**_PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HRMConfig":
        """Build from a dict; tolerates reference-config keys we do not model (``batch_size``,
        ``causal``, ...) by parking them in ``extra`` rather than failing."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        # TRM reference configs name the prefix length ``puzzle_emb_len``.
        if "puzzle_emb_tokens" not in d and isinstance(d.get("puzzle_emb_len"), int):
            d["puzzle_emb_tokens"] = d.pop("puzzle_emb_len")
        kw = {k: v for k, v in d.items() if k in known}
        extra = dict(kw.pop("extra", {}) or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        return cls(**kw, extra=extra)
