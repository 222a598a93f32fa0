"""Dense optimizer and learning-rate schedule for HRM's main parameters."""
from __future__ import annotations

import math
from typing import Iterable

import torch


class AdamAtan2(torch.optim.Optimizer):
    """Adam with ``atan2`` in place of the division by ``sqrt(v) + eps`` (Everett et al. 2024,
    arXiv 2407.05872), as used by the HRM reference (the ``adam-atan2`` package, a = b = 1).

    Step (decoupled weight decay, bias-corrected moments m_hat, v_hat):
        p <- p * (1 - lr*wd);  p <- p - lr * atan2(m_hat, sqrt(v_hat))
    ``atan2`` is bounded by pi/2 and scale-invariant, so there is no epsilon to tune and a
    zero second moment cannot blow the step up. ``lr=0`` is allowed (the schedule starts there).
    """

    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.1) -> None:
        if lr < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamAtan2: invalid lr={lr}, betas={betas}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update of every parameter with a gradient, as multi-tensor (``_foreach``) ops: a
        handful of kernels per group instead of ~8 per parameter, which is what a GPU step of the
        ~100-tensor ``arc`` model pays in launches. Only ``atan2`` has no foreach form and runs per
        tensor. Element for element the same arithmetic as the per-parameter formula above, so
        results are bit-identical to it (tested)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1  # per parameter: one without a gradient on some step lags behind
            grads = [p.grad for p in params]
            m = [s["exp_avg"] for s in states]
            v = [s["exp_avg_sq"] for s in states]
            torch._foreach_mul_(params, 1.0 - lr * wd)
            torch._foreach_lerp_(m, grads, 1.0 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
            m_hat = torch._foreach_div(m, [1.0 - beta1 ** s["step"] for s in states])
            v_hat_sqrt = torch._foreach_sqrt(v)
            torch._foreach_div_(v_hat_sqrt, [math.sqrt(1.0 - beta2 ** s["step"]) for s in states])
            for num, den in zip(m_hat, v_hat_sqrt):
                torch.atan2(num, den, out=num)
            torch._foreach_add_(params, m_hat, alpha=-lr)
        return loss


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warmup from 0 to ``base_lr`` over ``warmup_steps``, then half-cosine decay to
    ``min_ratio * base_lr`` at ``total_steps`` (the reference's schedule; flat after the end)."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
