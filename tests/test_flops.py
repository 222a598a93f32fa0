"""hrm.flops counts exactly the matrix FLOPs torch executes (FlopCounterMode), for every core,
in a training step (forward, target-Q forward, one-step/last-cycle backward) and a rollout.

SDPA runs on its math backend here so its two batched matmuls are visible to the counter
(the fused CPU/CUDA kernels are opaque to it but do the same products)."""
from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import hrm
from hrm.flops import rollout_flops, step_flops

CASES = [
    ("tiny", {}),
    ("tiny", {"H_cycles": 3, "L_cycles": 1, "H_layers": 2}),
    ("tiny", {"halt_max_steps": 1}),  # no target-Q forward
    ("tiny", {"puzzle_emb_ndim": 0, "expansion": 4.0}),
    ("trm-tiny", {}),
    ("trm-tiny", {"H_cycles": 3, "L_cycles": 3}),
    ("transformer-tiny", {}),
]


def _batch(B: int, L: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "inputs": torch.randint(2, 12, (B, L), generator=g),
        "labels": torch.randint(2, 12, (B, L), generator=g),
        "puzzle_identifiers": torch.randint(1, 8, (B,), generator=g),
    }


def _counted(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("preset,over", CASES)
def test_training_step_flops_match_torch(preset: str, over: dict) -> None:
    cfg = hrm.HRMConfig.preset(preset, seq_len=20, num_puzzle_identifiers=8, **over)
    torch.manual_seed(0)
    model = hrm.HRM(cfg).train()
    batch = _batch(3, 20)
    carry = model.initial_carry(batch)

    def step() -> None:
        new_carry, out = model(carry, batch)
        loss, _ = hrm.act_loss(new_carry, out)
        loss.backward()

    expected = step_flops(cfg, 3)
    assert _counted(step) == expected.train
    assert (expected.target_q_forward > 0) == (cfg.core != "trm" and cfg.halt_max_steps > 1)


@pytest.mark.parametrize("preset,over", CASES)
def test_rollout_flops_match_torch(preset: str, over: dict) -> None:
    cfg = hrm.HRMConfig.preset(preset, seq_len=20, num_puzzle_identifiers=8, **over)
    model = hrm.HRM(cfg)
    batch = _batch(2, 20)
    assert _counted(lambda: model.rollout(batch)) == rollout_flops(cfg, 2)
    assert _counted(lambda: model.rollout(batch, steps=2)) == rollout_flops(cfg, 2, steps=2)


def test_arc_preset_step_flops_by_hand() -> None:
    """The paper-scale numbers the README's cost estimate uses, written out by hand."""
    cfg = hrm.HRMConfig.preset("arc", num_puzzle_identifiers=2)
    f = step_flops(cfg, 1)
    S, h, inter = 901, 512, 1536  # 900 cells + 1 puzzle position; SwiGLU 2/3 * 4 * 512 -> 1536
    assert f.block == S * (2 * (4 * h * h + 3 * inter * h) + 4 * S * h)
    assert (f.blocks_per_step, f.grad_blocks) == (24, 8)
    assert f.train == 2 * (24 * f.block + f.heads) + 2 * (8 * f.block + f.heads)
    assert 4.9e11 < f.train < 5.1e11  # ~0.50 TFLOP per sequence per training step
