"""Stablemax CE and the ACT loss/metrics against direct formulas."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import hrm
from hrm.loss import log_probs, token_cross_entropy
from hrm.model import Carry


def _s_direct(x: float) -> float:
    return x + 1.0 if x >= 0 else 1.0 / (1.0 - x)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=2, max_size=8))
def test_log_stablemax_matches_direct_formula(xs):
    got = hrm.log_stablemax(torch.tensor(xs, dtype=torch.float64))
    s = [_s_direct(x) for x in xs]
    want = [math.log(v / sum(s)) for v in s]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_stablemax_ce_ignores_pad_and_matches_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7) * 3
    labels = torch.randint(0, 7, (2, 5))
    labels[0, 1] = -100
    ce = token_cross_entropy(logits, labels, "stablemax")
    assert ce[0, 1] == 0
    b, t = 1, 3
    s = [_s_direct(v) for v in logits[b, t].tolist()]
    assert abs(ce[b, t].item() + math.log(s[labels[b, t]] / sum(s))) < 1e-9
    soft = token_cross_entropy(logits, labels, "softmax")
    ref = F.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1), ignore_index=-100, reduction="none").view(2, 5)
    torch.testing.assert_close(soft, ref)
    assert torch.allclose(log_probs(logits, "softmax").exp().sum(-1), torch.ones(2, 5))
    assert torch.allclose(log_probs(logits, "stablemax").exp().sum(-1), torch.ones(2, 5, dtype=torch.float64))


def test_act_loss_terms_and_metrics_by_hand():
    B, L, V = 3, 4, 5
    labels = torch.tensor([[1, 2, 3, -100], [0, 0, 0, 0], [-100, -100, -100, -100]])
    logits = torch.full((B, L, V), -1.0)
    # Row 0: all 3 valid tokens right; row 1: 2 of 4 right; row 2: no labels.
    for t, c in enumerate([1, 2, 3, 0]):
        logits[0, t, c] = 2.0
    for t, c in enumerate([0, 0, 1, 1]):
        logits[1, t, c] = 2.0
    q_halt = torch.tensor([0.5, 0.3, -1.0])
    q_cont = torch.tensor([0.1, -0.2, 0.0])
    target = torch.tensor([0.7, 0.2, 0.5])
    carry = Carry(z_H=torch.zeros(1), z_L=torch.zeros(1), steps=torch.tensor([2, 3, 1], dtype=torch.int32),
                  halted=torch.tensor([True, True, False]), current_data={"labels": labels})
    out = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_cont, "target_q_continue": target}
    loss, m = hrm.act_loss(carry, out)
    ce = token_cross_entropy(logits, labels)
    lm = ce[0].sum() / 3 + ce[1].sum() / 4 + 0
    qh = F.binary_cross_entropy_with_logits(q_halt, torch.tensor([1.0, 0.0, 1.0]), reduction="sum")  # row 2: vacuously exact
    qc = F.binary_cross_entropy_with_logits(q_cont, target, reduction="sum")
    assert abs(loss.item() - (lm + 0.5 * (qh + qc)).item()) < 1e-9
    assert m["count"].item() == 2  # halted and labelled
    assert abs(m["accuracy"].item() - (1.0 + 0.5)) < 1e-6
    assert m["exact_accuracy"].item() == 1
    assert m["q_halt_accuracy"].item() == 1  # row 0: q>=0 & exact; row 1: q>=0 but wrong
    assert m["steps"].item() == 5
    del out["target_q_continue"]
    loss2, m2 = hrm.act_loss(carry, out)
    assert abs(loss2.item() - (lm + 0.5 * qh).item()) < 1e-9 and m2["q_continue_loss"].item() == 0
