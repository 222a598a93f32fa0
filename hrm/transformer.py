"""Plain (non-recurrent) transformer core inside HRM's ACT loop.

The baseline of the ARC Prize HRM analysis: keep everything HRM's ARC recipe has -- puzzle
embeddings, the ACT outer refinement loop with its carried state, Q-learned halting, the
losses -- but replace the H/L recurrence by a single pass of an ordinary block stack. Each ACT
step computes ``state <- stack(state + input_embedding)``: the only recurrence left is across
ACT steps (the "outer loop"), none inside a step.

Size matching: the stack has ``H_layers + L_layers`` blocks of the same width as HRM's, i.e.
HRM's two levels laid end to end, so ``transformer`` has exactly ``arc``'s parameter count and
``transformer-tiny`` exactly ``tiny``'s (same embeddings and heads). Per ACT step it does 8
block applications at ARC scale versus HRM's 2 x 2 x 4 (L) + 2 x 4 (H) = 24, which is part of
what the ablation measures.

The carry keeps HRM's two-state shape for a shared :class:`hrm.Carry`: ``z_H`` is the state,
``z_L`` is a zero-width ``(B, S, 0)`` tensor (costs nothing, and says plainly "no second
state" where a copy of ``z_H`` would suggest otherwise).
"""
from __future__ import annotations

import torch

from .config import HRMConfig
from .layers import ReasoningModule
from .model import Batch, CoreBase


class TransformerInner(CoreBase):
    """One ACT step = one application of a ``H_layers + L_layers``-block stack."""

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self._build_io(config)
        c = config
        self.stack = ReasoningModule(c.H_layers + c.L_layers, c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps)
        self._build_init_states(("H_init",))

    def initial_states(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        shape = (batch_size, c.seq_len + self.puzzle_emb_len, c.hidden_size)
        dtype = self.compute_dtype(device)
        return self.H_init.to(device, dtype).expand(shape).clone(), torch.zeros(shape[:2] + (0,), dtype=dtype, device=device)

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(state, z_L (unused, zero-width), logits, q_halt, q_continue)``; the whole
        step is differentiated (there is nothing to truncate); the state is detached between
        ACT steps, as for every core."""
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
        z = self.stack(z_H.to(x.dtype), x, self.cos_sin())
        logits, q_halt, q_cont = self.heads(z)
        return z.detach(), z_L, logits, q_halt, q_cont
