"""Checkpoint I/O, compatible with the reference release's checkpoint files.

Key mapping (reference training checkpoint -> ours). The reference saves
``torch.compile(ACTLossHead(HierarchicalReasoningModel_ACTV1(...))).state_dict()``, so keys read
``_orig_mod.model.inner.<name>``. Ours are ``inner.<name>`` with identical ``<name>``s:

    _orig_mod.model.inner.H_init                         -> inner.H_init
    _orig_mod.model.inner.L_init                         -> inner.L_init
    _orig_mod.model.inner.embed_tokens.embedding_weight  -> inner.embed_tokens.embedding_weight
    _orig_mod.model.inner.embed_pos.embedding_weight     -> inner.embed_pos.embedding_weight  (learned pos only)
    _orig_mod.model.inner.lm_head.weight                 -> inner.lm_head.weight
    _orig_mod.model.inner.q_head.{weight,bias}           -> inner.q_head.{weight,bias}
    _orig_mod.model.inner.puzzle_emb.weights             -> inner.puzzle_emb.weights
    _orig_mod.model.inner.{H,L}_level.layers.N.self_attn.{qkv_proj,o_proj}.weight   -> same under inner.
    _orig_mod.model.inner.{H,L}_level.layers.N.mlp.{gate_up_proj,down_proj}.weight  -> same under inner.

i.e. strip any leading ``_orig_mod.`` (torch.compile) and then a leading ``model.`` (loss head).
Non-persistent buffers (RoPE tables, the sparse embedding's per-batch slice) are in neither.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch

if TYPE_CHECKING:
    from .config import HRMConfig


def normalise_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map reference/compiled/DDP key names onto ours (see module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        k = key
        while k.startswith("_orig_mod.") or k.startswith("module."):
            k = k.split(".", 1)[1]
        if k.startswith("model.inner."):
            k = k[len("model."):]
        out[k] = value
    return out


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write atomically: a temp file in the same directory, fsync, then ``os.replace``, so a
    crash leaves either the old checkpoint or the new one, never a torn file. The file gets
    the permissions a plain ``open()`` would (``mkstemp`` alone makes it 0600, unreadable to
    the other users of a shared cache)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, config: "HRMConfig | None" = None) -> dict[str, torch.Tensor]:
    """Load a state dict (``weights_only=True``: no pickled code runs) with keys normalised.

    With ``config``, checks keys and shapes against an HRM built from it (on the meta device,
    so nothing is allocated) and raises ``ValueError`` naming the first mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        text = str(e).strip()
        if type(e).__name__ == "UnpicklingError" and "Weights only" in text:
            detail = "refused: it pickles objects other than tensors and plain containers"
        else:  # torch's messages run over several lines; the first says what went wrong
            detail = f"{type(e).__name__}: {text.splitlines()[0][:160] if text else 'empty or truncated file'}"
        raise ValueError(f"{path}: not a loadable weights-only checkpoint ({detail})") from None
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"{path}: checkpoint is not a dict of tensors")
    sd = normalise_keys(raw)
    if config is not None:
        from .model import HRM

        with torch.device("meta"):
            expected = HRM(config).state_dict()
        missing = sorted(set(expected) - set(sd))
        unexpected = sorted(set(sd) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{path}: keys do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        for k, v in expected.items():
            if tuple(v.shape) != tuple(sd[k].shape):
                raise ValueError(f"{path}: {k} has shape {tuple(sd[k].shape)}, config expects {tuple(v.shape)}")
    return sd
