"""Parity with the reference HRM release (fixture computed by the reference code itself)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hrm

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/hrm_reference_small.pt"
pytestmark = pytest.mark.skipif(not FIXTURE.is_file(), reason=f"reference fixture not found at {FIXTURE}")
#: fp32 agreement with the fixture. Not bit-exact across machines: the reference ran elsewhere, and
#: matmul reduction order follows the CPU's SIMD width, so rounding differences (~1e-6 per ACT step)
#: compound through the recurrence: 2.7e-6 / 6.5e-6 / 1.6e-5 on logits of magnitude ~3 at steps
#: 0 / 1 / 2 on an AMD EPYC. A real defect (a wrong norm, RoPE or cycle order) moves logits by 1e-2
#: and more. Argmax predictions must match exactly.
TOL = dict(rtol=1e-5, atol=5e-5)


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture
def model(ref, tmp_path):
    """HRM built from the fixture's config, with the fixture's weights saved as a stand-alone
    file under reference key names and read back through ``load_checkpoint`` -- the path a
    user's reference checkpoint takes."""
    path = tmp_path / "reference_step.pt"
    torch.save(ref["state_dict"], path)
    cfg = hrm.HRMConfig.from_dict(ref["config"])
    m = hrm.HRM(cfg)
    m.load_state_dict(hrm.load_checkpoint(path, cfg), strict=True)
    return m.eval()


def test_reference_keys_are_reference_style(ref):
    assert all(k.startswith("_orig_mod.model.inner.") for k in ref["state_dict"])


def test_every_act_step_matches_reference(ref, model):
    batch = {k: v.long() for k, v in ref["batch"].items()}
    carry = model.initial_carry(batch)
    for i, step in enumerate(ref["steps"]):
        carry, out = model(carry, batch)
        torch.testing.assert_close(out["logits"], step["logits"], **TOL, msg=f"logits step {i}")
        assert torch.equal(out["logits"].argmax(-1), step["logits"].argmax(-1))
        torch.testing.assert_close(out["q_halt_logits"], step["q_halt_logits"], **TOL)
        torch.testing.assert_close(out["q_continue_logits"], step["q_continue_logits"], **TOL)
        loss, metrics = hrm.act_loss(carry, out)
        assert "target_q_continue" not in out  # eval mode: no q_continue term
        assert abs(loss.item() - step["loss"].item()) < 1e-5 * max(1.0, abs(step["loss"].item()))
        assert torch.all(carry.steps == i + 1)
    assert bool(carry.halted.all())  # eval always runs exactly halt_max_steps


def test_rollout_matches_reference(ref, model):
    batch = {k: v.long() for k, v in ref["batch"].items()}
    r = model.rollout(batch)
    S = len(ref["steps"])
    assert r["preds"].shape == (S, *batch["inputs"].shape)
    for i, step in enumerate(ref["steps"]):
        assert torch.equal(r["preds"][i], step["logits"].argmax(-1))
        torch.testing.assert_close(r["q_halt"][i], step["q_halt_logits"], **TOL)
        lp = hrm.log_stablemax(step["logits"].double()).max(-1).values.float()
        torch.testing.assert_close(r["token_logprob"][i], lp, **TOL)


def test_perturbed_weights_break_parity(ref, model):
    """Guards against a parity test that cannot fail: one changed weight must show up."""
    with torch.no_grad():
        model.inner.L_level.layers[0].mlp.down_proj.weight[0, 0] += 0.1
    batch = {k: v.long() for k, v in ref["batch"].items()}
    _, out = model(model.initial_carry(batch), batch)
    assert (out["logits"] - ref["steps"][0]["logits"]).abs().max() > 1e-4
