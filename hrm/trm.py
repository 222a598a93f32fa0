"""The Tiny Recursive Model core (Jolicoeur-Martineau, "Less is More: Recursive Reasoning with
Tiny Networks", arXiv 2510.04871), plus an EMA of weights.

TRM drops HRM's two-level hierarchy and fixed-point justification: *one* small network
(``L_level``, L_layers blocks) does both jobs, with the answer ``y`` (carried as ``z_H``) and a
latent ``z`` (carried as ``z_L``):

    repeat T = H_cycles times (all but the last without autograd):
        repeat n = L_cycles times:  z <- net(z, y + x)      # "reason": latent from (x, y, z)
        y <- net(y, z)                                      # "answer": no x, so the net can
                                                            # tell the two roles apart

Back-propagation runs through the whole last cycle (n + 1 network applications), not just
the final step as in HRM's one-step approximation -- the paper's point that the fixed-point
assumption is unnecessary. Earlier cycles only improve the starting point. Module names
(``inner.L_level.layers.N...``, ``H_init``, ``L_init``) match the official release so its
checkpoints load through :func:`hrm.load_checkpoint` like HRM's.

Halting ("no_ACT_continue" in the release): the Q head's halt logit is trained by BCE on
"the current answer is exactly right" only; there is no continue target, so
:func:`hrm.act_loss` adds a zero continue term, and training halts when ``q_halt > 0``
(returned ``q_continue_logits`` are 0, so the shared ``q_halt > q_continue`` rule says that).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .config import HRMConfig
from .layers import ReasoningModule
from .model import Batch, CoreBase


class TRMInner(CoreBase):
    """One ACT step (one "deep recursion" / supervision step) of TRM."""

    act_continue = False

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self._build_io(config)
        c = config
        self.L_level = ReasoningModule(c.L_layers, c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps)
        self._build_init_states()

    def _cycle(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cs) -> tuple[torch.Tensor, torch.Tensor]:
        """One outer cycle: n latent updates from (x, y, z), then one answer update from (y, z)."""
        for _ in range(self.config.L_cycles):
            z_L = self.L_level(z_L, z_H + x, cs)
        z_H = self.L_level(z_H, z_L, cs)
        return z_H, z_L

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(y, z, logits, q_halt_logits, q_continue_logits)``; states detached.

        ``q_continue_logits`` is identically 0: TRM has no continue head, and 0 makes every
        downstream "halt when q_halt > q_continue" rule read "sigmoid(q_halt) > 0.5", which is
        TRM's own. (The Q head keeps the release's 2 outputs so its checkpoints load; the second
        is unused.)
        """
        cs = self.cos_sin()
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
        z_H, z_L = z_H.to(x.dtype), z_L.to(x.dtype)
        with torch.no_grad():
            for _ in range(self.config.H_cycles - 1):
                z_H, z_L = self._cycle(z_H, z_L, x, cs)
        z_H, z_L = self._cycle(z_H, z_L, x, cs)
        logits, q_halt, _ = self.heads(z_H)
        return z_H.detach(), z_L.detach(), logits, q_halt, torch.zeros_like(q_halt)


class EMA:
    """Exponential moving average of a model's trainable parameters (TRM trains with decay
    0.999 and evaluates the averaged weights; the paper credits it with stabilising training
    on small data).

    Only ``parameters()`` are averaged: the sparse puzzle table is a buffer updated row-wise by
    SignSGD, most rows of which change rarely, so it is used as trained.
    Shadows are fp32 and live on the parameters' device. Typical use::

        ema = EMA(model, decay=config.ema_decay)
        ...; opt.step(); ema.update(model)
        save_checkpoint(ema.averaged_state_dict(model), path)
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().to(torch.float32).clone() for name, p in model.named_parameters()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``shadow <- decay * shadow + (1 - decay) * param`` for every parameter (one fused
        multi-tensor op, not a Python loop of kernels per element)."""
        names = list(self.shadow)
        params = dict(model.named_parameters())
        if set(params) != set(names):
            raise ValueError("EMA.update: model parameters differ from the ones the EMA was built on")
        shadows = [self.shadow[n] for n in names]
        torch._foreach_lerp_(shadows, [params[n].detach().to(torch.float32) for n in names], 1.0 - self.decay)
        self.num_updates += 1

    def averaged_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model.state_dict()`` with every parameter replaced by its average (buffers as they
        are), in the parameters' dtypes -- ready for :func:`hrm.save_checkpoint` or
        ``load_state_dict`` into an evaluation copy."""
        sd = model.state_dict()
        for name, avg in self.shadow.items():
            sd[name] = avg.to(sd[name].dtype)
        return sd

    def state_dict(self) -> dict[str, object]:
        """For resuming training: decay, update count and shadows."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        shadow = state["shadow"]
        assert isinstance(shadow, dict)
        if set(shadow) != set(self.shadow):
            raise ValueError("EMA.load_state_dict: parameter names differ from this model's")
        self.decay = float(state["decay"])  # type: ignore[arg-type]
        self.num_updates = int(state["num_updates"])  # type: ignore[arg-type]
        self.shadow = {k: v.to(self.shadow[k].device, torch.float32).clone() for k, v in shadow.items()}

    def parameters(self) -> Iterable[torch.Tensor]:
        return self.shadow.values()
