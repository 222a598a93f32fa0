"""Puzzle-identifier embedding trained sparsely with SignSGD.

Why not a normal ``nn.Embedding`` + Adam: the ARC table has ~1M rows (one per augmented
puzzle) of width 512; dense Adam state would triple that memory and decay every row every
step. The reference instead keeps the table as a *buffer* and, in training, copies the batch's
rows into a fresh leaf tensor (``local_weights``) that autograd fills with a gradient. The
optimizer then updates only those rows. With sparse, rarely-repeated rows Adam's normalised
step is ~sign(grad), hence SignSGD with decoupled weight decay.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .layers import trunc_normal_


class SparsePuzzleEmbedding(nn.Module):
    """``(num_ids, dim)`` table; zero init by default (a fresh puzzle starts neutral).

    State-dict key is ``weights`` as in the reference's ``CastedSparseEmbedding``; the per-batch
    slice (``local_weights``, ``local_ids``) is transient and not saved.
    """

    def __init__(self, num_ids: int, dim: int, init_std: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weights", trunc_normal_(torch.empty(num_ids, dim), std=init_std), persistent=True)
        self.local_weights: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            # Eval, or a no-grad pass inside training (the ACT target-Q forward): plain lookup,
            # and crucially the grad-carrying slice from the main pass is left untouched.
            return self.weights[ids].to(dtype)
        # Fresh leaf per training forward; its .grad is what SparseSignSGD consumes.
        self.local_ids = ids.detach().clone()
        self.local_weights = self.weights[ids].detach().clone().requires_grad_(True)
        return self.local_weights.to(dtype)


def _gather_across_ranks(grad: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather every rank's (ids, grads) so each rank applies the identical update.

    Requires equal local batch sizes (true for the reference's and our fixed-size batches).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return grad, ids
    world = dist.get_world_size()
    grads = [torch.empty_like(grad) for _ in range(world)]
    all_ids = [torch.empty_like(ids) for _ in range(world)]
    dist.all_gather(grads, grad.contiguous())
    dist.all_gather(all_ids, ids.contiguous())
    return torch.cat(grads), torch.cat(all_ids)


class SparseSignSGD(torch.optim.Optimizer):
    """SignSGD with decoupled weight decay on only the rows seen in the (global) batch.

    Update for each touched row r:  ``w_r <- w_r * (1 - lr*wd) - lr * sign(sum of grads of r)``
    where the sum runs over every occurrence of r in the batch on every rank (rows repeated
    within or across ranks are combined *before* the sign, exactly as one big batch would be).
    """

    def __init__(self, embedding: SparsePuzzleEmbedding, lr: float = 1e-2, weight_decay: float = 0.1) -> None:
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"SparseSignSGD: lr and weight_decay must be >= 0 (got {lr}, {weight_decay})")
        self.embedding = embedding
        super().__init__([embedding.weights], dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        emb = self.embedding
        if emb.local_weights is None or emb.local_weights.grad is None:
            return loss  # no training forward since the last step: nothing to do
        grad, ids = _gather_across_ranks(emb.local_weights.grad, emb.local_ids.to(torch.long))
        # Combine repeated rows without ``unique`` (whose data-dependent size would make the host
        # wait for the GPU every step): a stable sort groups equal ids, a running count of group
        # starts numbers the groups, and every occurrence then writes the same, fully summed
        # update to its row (duplicate writes of one value are harmless).
        sorted_ids, order = torch.sort(ids, stable=True)
        starts = torch.ones_like(sorted_ids, dtype=torch.bool)
        starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
        group = torch.cumsum(starts, 0) - 1
        summed = torch.zeros(ids.shape[0], grad.shape[1], dtype=grad.dtype, device=grad.device)
        summed.index_add_(0, group, grad[order])
        w = emb.weights
        for g in self.param_groups:
            lr, wd = g["lr"], g["weight_decay"]
            w[sorted_ids] = w[sorted_ids] * (1.0 - lr * wd) - lr * torch.sign(summed[group]).to(w.dtype)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:  # type: ignore[override]
        lw = self.embedding.local_weights
        if lw is not None:
            lw.grad = None
