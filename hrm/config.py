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
}


@dataclass
class HRMConfig:
    """Architecture + ACT hyper-parameters of one HRM.

    ``forward_dtype`` is the *requested* compute dtype: ``bfloat16`` is honoured on CUDA only;
    on CPU the model always computes in float32 (bf16 matmuls on CPU are slow and lossy).
    ``loss_type`` is ``stablemax`` (the reference ARC setting) or ``softmax``.
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
        if min(self.H_cycles, self.L_cycles, self.halt_max_steps, self.H_layers, self.L_layers) < 1:
            raise ValueError("HRMConfig: cycles, layers and halt_max_steps must all be >= 1")

    @property
    def puzzle_emb_len(self) -> int:
        """Number of prefix positions the puzzle embedding occupies: ceil(ndim / hidden)."""
        return -(self.puzzle_emb_ndim // -self.hidden_size)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "HRMConfig":
        """Named preset (``arc`` or ``tiny``) with keyword overrides (dataset sizes, ablations)."""
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
        kw = {k: v for k, v in d.items() if k in known}
        extra = dict(kw.pop("extra", {}) or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        return cls(**kw, extra=extra)
