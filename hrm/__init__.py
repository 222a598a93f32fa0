"""HRM -- the Hierarchical Reasoning Model (arXiv 2506.21734), standalone.

Faithful to the reference release (sapientinc/HRM) and loadable from its checkpoints; knows
nothing about ARC files, augmentation or voting.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .config import HRMConfig
from .loss import act_loss, log_stablemax, token_cross_entropy
from .model import HRM, Carry, HRMInner
from .optim import AdamAtan2, lr_at
from .sparse_embedding import SparsePuzzleEmbedding, SparseSignSGD

__all__ = [
    "HRM", "HRMConfig", "HRMInner", "Carry", "act_loss", "log_stablemax", "token_cross_entropy",
    "SparsePuzzleEmbedding", "SparseSignSGD", "AdamAtan2", "lr_at", "save_checkpoint", "load_checkpoint",
]
