"""HRM -- the Hierarchical Reasoning Model (arXiv 2506.21734), standalone.

Also hosts the ablation cores behind the same ACT/carry/loss/checkpoint interface, chosen by
``HRMConfig.core`` (presets ``trm``/``trm-tiny``: the Tiny Recursive Model, arXiv 2510.04871;
``transformer``/``transformer-tiny``: a plain stack in the same outer loop).

Faithful to the reference release (sapientinc/HRM) and loadable from its checkpoints; knows
nothing about ARC files, augmentation or voting.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .config import HRMConfig
from .loss import act_loss, log_stablemax, token_cross_entropy
from .model import HRM, Carry, CoreBase, HRMInner, build_inner, count_parameters
from .optim import AdamAtan2, lr_at
from .sparse_embedding import SparsePuzzleEmbedding, SparseSignSGD
from .transformer import TransformerInner
from .trm import EMA, TRMInner

__all__ = [
    "HRM", "HRMConfig", "HRMInner", "TRMInner", "TransformerInner", "CoreBase", "build_inner",
    "count_parameters", "EMA", "Carry", "act_loss", "log_stablemax", "token_cross_entropy",
    "SparsePuzzleEmbedding", "SparseSignSGD", "AdamAtan2", "lr_at", "save_checkpoint", "load_checkpoint",
]
