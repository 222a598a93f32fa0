"""ACT losses and metrics (the reference's ``ACTLossHead`` as a plain function).

Stablemax (Prieto et al. 2025, "Grokking at the edge of numerical stability") replaces exp
with ``s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0)``: it grows linearly, so logits cannot
run away to make softmax saturate, which the HRM authors found to help on ARC/Sudoku.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # avoid an import cycle: model imports log_probs from here
    from .model import Carry

IGNORE_LABEL_ID = -100


def _stablemax_s(x: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    return torch.where(x < 0, 1.0 / (1.0 - x + eps), x + 1.0)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log of stablemax probabilities ``s(x_i) / sum_j s(x_j)``."""
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def _work_dtype(logits: torch.Tensor) -> torch.dtype:
    # float64 as the reference (stablemax's 1/(1-x) tail loses precision in fp32); MPS lacks it.
    return torch.float32 if logits.device.type == "mps" else torch.float64


def log_probs(logits: torch.Tensor, loss_type: str = "stablemax") -> torch.Tensor:
    """Per-class log-probabilities under the loss's normalisation (for confidences)."""
    if loss_type == "stablemax":
        return log_stablemax(logits.to(_work_dtype(logits)), dim=-1)
    if loss_type == "softmax":
        return F.log_softmax(logits.to(torch.float32), dim=-1)
    raise ValueError(f"hrm.loss: unknown loss_type {loss_type!r}")


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, loss_type: str = "stablemax") -> torch.Tensor:
    """Per-token CE, 0 where ``labels == -100``; shape of ``labels``."""
    valid = labels != IGNORE_LABEL_ID
    lp = log_probs(logits, loss_type)
    picked = lp.gather(-1, torch.where(valid, labels, 0).to(torch.long).unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, torch.zeros((), dtype=picked.dtype, device=picked.device))


def act_loss(carry: "Carry", outputs: dict[str, torch.Tensor], loss_type: str | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one ACT step, summed over the batch's sequences (divide by the global batch).

    ``lm`` = per-sequence mean CE over non-ignored tokens; ``q_halt`` = BCE(q_halt_logit, the
    sequence's argmax is exactly right); ``q_continue`` = BCE against the bootstrapped target
    (training only). Total = lm + 0.5 (q_halt + q_continue).

    Metrics are sums/counts over sequences that halted this step (and have labels), so they
    can be all-reduced and divided by ``count``; losses are summed over all rows.
    """
    loss_type = loss_type or carry.loss_type
    labels = carry.current_data["labels"]
    logits = outputs["logits"]
    with torch.no_grad():
        mask = labels != IGNORE_LABEL_ID
        n_valid = mask.sum(-1)
        divisor = n_valid.clamp_min(1).unsqueeze(-1)
        correct = mask & (logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == n_valid
        counted = carry.halted & (n_valid > 0)
        metrics = {
            "count": counted.sum(),
            "accuracy": torch.where(counted, (correct.to(torch.float32) / divisor).sum(-1), 0.0).sum(),
            "exact_accuracy": (counted & seq_correct).sum(),
            "q_halt_accuracy": (counted & ((outputs["q_halt_logits"] >= 0) == seq_correct)).sum(),
            "steps": torch.where(counted, carry.steps, 0).sum(),
        }
    lm_loss = (token_cross_entropy(logits, labels, loss_type) / divisor).sum()
    q_halt_loss = F.binary_cross_entropy_with_logits(outputs["q_halt_logits"], seq_correct.to(outputs["q_halt_logits"].dtype), reduction="sum")
    if "target_q_continue" in outputs:
        q_continue_loss = F.binary_cross_entropy_with_logits(outputs["q_continue_logits"], outputs["target_q_continue"], reduction="sum")
    else:
        q_continue_loss = torch.zeros((), dtype=q_halt_loss.dtype, device=q_halt_loss.device)
    metrics.update(lm_loss=lm_loss.detach(), q_halt_loss=q_halt_loss.detach(), q_continue_loss=q_continue_loss.detach())
    return lm_loss + 0.5 * (q_halt_loss + q_continue_loss), metrics
