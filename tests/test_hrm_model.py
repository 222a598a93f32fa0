"""HRM architecture and ACT semantics: shapes, size, one-step gradient, halting."""
from __future__ import annotations

import pytest
import torch

import hrm
from conftest import autograd_graph_size
from hrm.layers import swiglu_width, trunc_normal_


def tiny_config(**kw) -> hrm.HRMConfig:
    base = dict(hidden_size=32, num_heads=2, seq_len=9, num_puzzle_identifiers=5, puzzle_emb_ndim=32, halt_max_steps=4)
    return hrm.HRMConfig.preset("tiny", **{**base, **kw})


def make_batch(cfg: hrm.HRMConfig, B: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, cfg.vocab_size, (B, cfg.seq_len), generator=g)
    labels = torch.randint(0, cfg.vocab_size, (B, cfg.seq_len), generator=g)
    labels[:, -2:] = -100
    pid = torch.randint(0, cfg.num_puzzle_identifiers, (B,), generator=g)
    return {"inputs": inputs, "labels": labels, "puzzle_identifiers": pid}


def test_config_presets_and_round_trip():
    arc = hrm.HRMConfig.preset("arc", seq_len=900, vocab_size=12, num_puzzle_identifiers=10)
    assert (arc.hidden_size, arc.num_heads, arc.expansion, arc.H_layers, arc.L_layers) == (512, 8, 4.0, 4, 4)
    assert (arc.H_cycles, arc.L_cycles, arc.halt_max_steps, arc.halt_exploration_prob) == (2, 2, 16, 0.1)
    assert (arc.rope_theta, arc.rms_norm_eps, arc.puzzle_emb_ndim, arc.forward_dtype) == (10000.0, 1e-5, 512, "bfloat16")
    assert hrm.HRMConfig.from_dict(arc.to_dict()) == arc
    with pytest.raises(ValueError, match="unknown preset"):
        hrm.HRMConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown fields"):
        hrm.HRMConfig.preset("tiny", hiden_size=3)


def test_arc_parameter_count_is_27M():
    cfg = hrm.HRMConfig.preset("arc", seq_len=900, vocab_size=12, num_puzzle_identifiers=1000)
    with torch.device("meta"):  # shapes only, no 100 MB allocation
        model = hrm.HRM(cfg)
    n = model.num_parameters()
    # The paper reports "27M"; the reference release's ARC architecture (which we match
    # exactly, see the closed form below) has 27,276,290, i.e. 27.3M -- 1.02% above 27.0M, so
    # the check is "rounds to 27M" (within 1% of 27.3M) rather than 1% of the rounded figure.
    assert round(n / 1e6) == 27 and abs(n - 27.3e6) / 27.3e6 < 0.01, n
    # Independent closed form: 8 blocks of (qkv + o + gate_up + down) + embed + lm_head + q_head.
    h, inter = 512, swiglu_width(512, 4.0)
    assert inter == 1536
    per_block = h * 3 * h + h * h + h * 2 * inter + inter * h
    assert n == 8 * per_block + 12 * h + h * 12 + (2 * h + 2)
    assert model.num_parameters(include_puzzle_emb=True) == n + 1000 * 512


def test_truncated_normal_has_requested_std():
    x = trunc_normal_(torch.empty(200_000), std=0.5)
    assert abs(x.std().item() - 0.5) < 0.01 and x.abs().max() <= 1.0 * 1.14 + 1e-6


def test_output_shapes_train_and_eval():
    cfg = tiny_config()
    model = hrm.HRM(cfg)
    batch = make_batch(cfg, B=3)
    P = cfg.puzzle_emb_len
    for training in (True, False):
        model.train(training)
        carry = model.initial_carry(batch)
        assert carry.z_H.shape == carry.z_L.shape == (3, cfg.seq_len + P, cfg.hidden_size)
        carry, out = model(carry, batch)
        assert out["logits"].shape == (3, cfg.seq_len, cfg.vocab_size)
        assert out["q_halt_logits"].shape == out["q_continue_logits"].shape == (3,)
        assert ("target_q_continue" in out) == training
        assert not carry.z_H.requires_grad and not carry.z_L.requires_grad
        loss, metrics = hrm.act_loss(carry, out)
        assert loss.ndim == 0 and loss.requires_grad
        assert set(metrics) >= {"count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss", "q_continue_loss"}
    model.eval()
    r = model.rollout(batch)
    S = cfg.halt_max_steps
    assert r["preds"].shape == r["token_logprob"].shape == (S, 3, cfg.seq_len)
    assert r["q_halt"].shape == r["q_continue"].shape == (S, 3)
    assert (r["token_logprob"] <= 0).all()
    r2 = model.rollout(batch, steps=[2, 6])
    assert r2["preds"].shape[0] == 2 and r2["steps"].tolist() == [2, 6]
    assert torch.equal(r2["preds"][0], r["preds"][1])


def test_puzzle_prefix_is_ceil_of_width_over_hidden():
    cfg = tiny_config(puzzle_emb_ndim=40)  # hidden 32 -> 2 prefix positions, 24 zero-padded
    assert cfg.puzzle_emb_len == 2
    model = hrm.HRM(cfg).eval()
    batch = make_batch(cfg)
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()
        x = model.inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    assert x.shape == (3, cfg.seq_len + 2, 32)
    assert torch.all(x[:, 1, 8:] == 0)
    pe = model.puzzle_emb.weights[batch["puzzle_identifiers"]] * 32 ** 0.5
    torch.testing.assert_close(x[:, 0], pe[:, :32])
    cfg0 = tiny_config(puzzle_emb_ndim=0)
    _, out = hrm.HRM(cfg0)(hrm.HRM(cfg0).initial_carry(batch), batch)
    assert out["logits"].shape == (3, cfg.seq_len, cfg.vocab_size)


_graph_size = autograd_graph_size


def test_autograd_graph_does_not_grow_with_cycles():
    """One-step gradient: only the final L and H updates are recorded, whatever the cycles."""
    sizes = []
    for hc, lc in [(1, 1), (2, 2), (3, 4)]:
        torch.manual_seed(0)
        cfg = tiny_config(H_cycles=hc, L_cycles=lc)
        model = hrm.HRM(cfg).eval()
        batch = make_batch(cfg)
        _, out = model(model.initial_carry(batch), batch)
        sizes.append(_graph_size(out["logits"].sum() + out["q_halt_logits"].sum()))
    assert sizes[0] == sizes[1] == sizes[2], sizes


def test_gradient_equals_manual_one_step_computation():
    torch.manual_seed(0)
    cfg = tiny_config(H_cycles=2, L_cycles=3)
    model = hrm.HRM(cfg).eval()
    batch = make_batch(cfg)
    with torch.no_grad():
        model.inner.q_head.weight.normal_()

    def objective(logits, q_halt):
        return (logits ** 2).mean() + q_halt.sum()

    _, out = model(model.initial_carry(batch), batch)
    objective(out["logits"], out["q_halt_logits"]).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    # Manual: run the recurrence by hand; only the last L and last H update see autograd.
    inner = model.inner
    cs = inner.cos_sin()
    x = inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    z_H, z_L = inner.initial_states(3, torch.device("cpu"))
    with torch.no_grad():
        schedule = ["L", "L", "L", "H", "L", "L"]  # H_cycles=2 x L_cycles=3 minus the final L, H
        for lvl in schedule:
            if lvl == "L":
                z_L = inner.L_level(z_L, z_H + x, cs)
            else:
                z_H = inner.H_level(z_H, z_L, cs)
    z_L = inner.L_level(z_L, z_H + x, cs)
    z_H = inner.H_level(z_H, z_L, cs)
    logits = inner.lm_head(z_H)[:, cfg.puzzle_emb_len:]
    q_halt = inner.q_head(z_H[:, 0])[:, 0]
    objective(logits, q_halt).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
    # And the no-grad prefix matters for the *values*: a wrong schedule changes the gradient.
    model.zero_grad()
    z_H2, z_L2 = inner.initial_states(3, torch.device("cpu"))
    z_L2 = inner.L_level(z_L2, z_H2 + x.detach(), cs)
    z_H2 = inner.H_level(z_H2, z_L2, cs)
    objective(inner.lm_head(z_H2)[:, cfg.puzzle_emb_len:], inner.q_head(z_H2[:, 0])[:, 0]).backward()
    assert not torch.allclose(got["inner.lm_head.weight"], model.inner.lm_head.weight.grad)


def test_eval_always_runs_max_steps():
    cfg = tiny_config(halt_max_steps=5)
    model = hrm.HRM(cfg).eval()
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([10.0, -10.0]))  # Q says "halt now"
    batch = make_batch(cfg, B=4)
    carry = model.initial_carry(batch)
    for step in range(1, 6):
        carry, _ = model(carry, batch)
        assert torch.all(carry.steps == step)
        assert bool(carry.halted.all()) == (step == 5)


def _halt_steps(model, batch, n_calls):
    """Run the train-mode ACT loop; return the step count at which each episode halted."""
    carry = model.initial_carry(batch)
    out_steps = []
    with torch.no_grad():
        for _ in range(n_calls):
            carry, _ = model(carry, batch)
            out_steps.append(carry.steps[carry.halted])
    return torch.cat(out_steps)


def test_train_halting_follows_q_and_exploration_bounds():
    cfg = tiny_config(halt_max_steps=5, halt_exploration_prob=0.0)
    model = hrm.HRM(cfg).train()
    batch = make_batch(cfg, B=64)
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([10.0, -10.0]))  # q_halt > q_continue
    assert torch.all(_halt_steps(model, batch, 6) == 1)
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([-10.0, 10.0]))  # never halt by Q
    assert torch.all(_halt_steps(model, batch, 10) == 5)
    # Exploration always on: a random minimum in U{2..max} overrides an eager halt.
    model.config.halt_exploration_prob = 1.0
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([10.0, -10.0]))
    torch.manual_seed(0)
    steps = _halt_steps(model, batch, 12)
    assert steps.min() >= 2 and steps.max() <= 5
    assert set(steps.tolist()) == {2, 3, 4, 5}


def test_halted_rows_take_new_data_and_target_q():
    cfg = tiny_config(halt_max_steps=3, halt_exploration_prob=0.0)
    model = hrm.HRM(cfg).train()
    b1, b2 = make_batch(cfg, B=4, seed=1), make_batch(cfg, B=4, seed=2)
    carry = model.initial_carry(b1)
    carry, out = model(carry, b1)
    assert torch.equal(carry.current_data["inputs"], b1["inputs"])
    carry.halted = torch.tensor([True, False, True, False])
    carry, out = model(carry, b2)
    for k in b1:
        expect = torch.where(torch.tensor([True, False, True, False]).view((-1,) + (1,) * (b1[k].ndim - 1)), b2[k], b1[k])
        assert torch.equal(carry.current_data[k], expect)
    assert carry.steps.tolist() == [1, 2, 1, 2]
    t = out["target_q_continue"]
    assert t.shape == (4,) and torch.all((t > 0) & (t < 1)) and not t.requires_grad
    # Bootstrap target = sigmoid(Q of the *next* step): max(halt, continue), or halt at the cap.
    with torch.no_grad():
        model.inner.q_head.weight.normal_()
        carry.halted = torch.zeros(4, dtype=torch.bool)
        carry, out = model(carry, b2)  # rows now at steps [2, 3, 2, 3]; 3 = halt_max_steps
        _, _, _, nqh, nqc = model.inner(carry.z_H, carry.z_L, carry.current_data)
    last = carry.steps >= 3
    assert last.tolist() == [False, True, False, True]
    torch.testing.assert_close(out["target_q_continue"], torch.sigmoid(torch.where(last, nqh, torch.maximum(nqh, nqc))))


def test_compile_switch_keeps_state_dict_names():
    cfg = tiny_config()
    assert list(hrm.HRM(cfg, compile=True).state_dict()) == list(hrm.HRM(cfg).state_dict())


def _train_two_steps(model, batch):
    torch.manual_seed(1)
    carry = model.initial_carry(batch)
    opt = hrm.SparseSignSGD(model.puzzle_emb, lr=0.1, weight_decay=0.0)
    for _ in range(2):
        carry, out = model(carry, batch)
        loss, _ = hrm.act_loss(carry, out)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return loss.detach(), model.puzzle_emb.weights.clone(), model.inner.lm_head.weight.grad.clone()


@pytest.mark.slow
def test_compiled_training_step_matches_eager():
    """torch.compile (inductor; ~2 min of compiling on CPU) changes nothing numerically,
    including the sparse embedding's per-forward leaf slice."""
    cfg = tiny_config()
    torch.manual_seed(0)
    eager = hrm.HRM(cfg).train()
    compiled = hrm.HRM(cfg, compile=True).train()
    compiled.load_state_dict(eager.state_dict())
    batch = make_batch(cfg)
    for a, b in zip(_train_two_steps(eager, batch), _train_two_steps(compiled, batch)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_is_bf16_and_close_to_fp32():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = hrm.HRM(cfg).eval()
    batch = make_batch(cfg)
    _, ref = model(model.initial_carry(batch), batch)
    model = model.cuda()
    gbatch = {k: v.cuda() for k, v in batch.items()}
    carry, out = model(model.initial_carry(gbatch), gbatch)
    assert carry.z_H.dtype == torch.bfloat16 and out["logits"].dtype == torch.bfloat16
    assert out["q_halt_logits"].dtype == torch.float32
    torch.testing.assert_close(out["logits"].float().cpu(), ref["logits"], rtol=0.05, atol=0.1)


def test_hrm_package_never_imports_arcpipe():
    """``hrm`` is usable on its own: no module in it imports the pipeline."""
    import ast
    from pathlib import Path

    for path in Path(hrm.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "arcpipe" for a in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "arcpipe", path
