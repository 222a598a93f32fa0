"""Model FLOPs of HRM and the ablation cores, counted analytically.

MFU needs a FLOP count that does not depend on the kernels that ran, so this counts the
*model's* arithmetic (the PaLM convention): matrix products only, two FLOPs per multiply-add,
no recomputation (flash attention's backward recomputes the scores; that is not counted),
nothing for norms, RoPE, activations, embeddings lookups or the optimizer (all are O(params)
or O(tokens), under 1% here). :mod:`tests.test_flops` checks every term against
``torch.utils.flop_counter.FlopCounterMode`` on real forward/backward passes.

Per sequence, with S = seq_len + puzzle prefix positions, h = hidden, I = SwiGLU width,
V = vocabulary:

* one transformer block: ``S * 2 * (4 h^2 + 3 I h)`` for the projections (qkv 3h^2, out h^2,
  gate+up 2Ih, down Ih) plus ``4 S^2 h`` for attention scores and mixing;
* the heads: ``2 S h V`` (the LM head runs over every position, prefix included, and the
  prefix logits are dropped) plus ``4 h`` (Q head on position 0);
* one ACT step's forward applies ``blocks_per_step`` blocks (below); in training the part
  after the last no-grad update (``grad_blocks``) and the heads are differentiated, which
  costs twice their forward (gradients w.r.t. inputs and weights), and HRM-style cores with
  a continue head run a second, no-grad forward for the bootstrapped Q target.

``blocks_per_step`` / ``grad_blocks`` by core:
  hrm          H_cycles (L_cycles L_layers + H_layers)   /  L_layers + H_layers
  trm          H_cycles (L_cycles + 1) L_layers          /  (L_cycles + 1) L_layers
  transformer  H_layers + L_layers                       /  all of them
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import HRMConfig
from .layers import swiglu_width


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one ACT step for a batch; ``train`` = forward + target-Q forward + backward."""

    block: int
    heads: int
    blocks_per_step: int
    grad_blocks: int
    forward: int
    target_q_forward: int
    backward: int

    @property
    def train(self) -> int:
        return self.forward + self.target_q_forward + self.backward

    @property
    def inference(self) -> int:
        """One inference ACT step (eval never computes the Q target)."""
        return self.forward



#: Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' datasheets: the MFU
#: denominator. Matched as substrings of ``torch.cuda.get_device_name`` in this order, so the
#: more specific names ("H100 PCIe") come before the ones they contain ("H100").
DATASHEET_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("H200", 989e12),
                  ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12), ("4090", 165e12))


def datasheet_peak(device_name: str) -> float | None:
    """The datasheet bf16 peak of a GPU by its name (None if unknown: no MFU is claimed then)."""
    return next((v for k, v in DATASHEET_BF16 if k in device_name), None)


def block_counts(config: HRMConfig) -> tuple[int, int]:
    """``(blocks applied per ACT-step forward, blocks on the gradient path)``."""
    c = config
    if c.core == "hrm":
        return c.H_cycles * (c.L_cycles * c.L_layers + c.H_layers), c.L_layers + c.H_layers
    if c.core == "trm":
        return c.H_cycles * (c.L_cycles + 1) * c.L_layers, (c.L_cycles + 1) * c.L_layers
    if c.core == "transformer":
        n = c.H_layers + c.L_layers
        return n, n
    raise ValueError(f"hrm.flops: unknown core {c.core!r}")


def step_flops(config: HRMConfig, batch: int) -> StepFlops:
    """FLOPs of one ACT step on ``batch`` sequences (see the module docstring)."""
    c = config
    S, h, V = c.seq_len + c.puzzle_emb_len, c.hidden_size, c.vocab_size
    inter = swiglu_width(h, c.expansion)
    block = batch * S * (2 * (4 * h * h + 3 * inter * h) + 4 * S * h)
    heads = batch * (2 * S * h * V + 2 * h * 2)
    per_step, grad = block_counts(c)
    forward = per_step * block + heads
    continue_head = c.core != "trm" and c.halt_max_steps > 1
    return StepFlops(
        block=block, heads=heads, blocks_per_step=per_step, grad_blocks=grad, forward=forward,
        target_q_forward=forward if continue_head else 0, backward=2 * (grad * block + heads),
    )


def rollout_flops(config: HRMConfig, batch: int, steps: int | None = None) -> int:
    """FLOPs of an inference rollout of ``steps`` ACT steps (default: ``halt_max_steps``)."""
    return (steps or config.halt_max_steps) * step_flops(config, batch).inference
