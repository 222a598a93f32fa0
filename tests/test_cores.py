"""Alternative cores (issue 10): TRM and a plain transformer behind HRM's interface.

What is proven here:
  * presets carry the published sizes (TRM ~7M, transformer == HRM exactly) and invalid
    core/field combinations are refused;
  * every core trains through the *same* ACT wrapper, loss and rollout with identical output
    keys and shapes, so train/infer/vote need no core-specific code;
  * TRM back-propagates through its last outer cycle only (gradients equal a manual "run T-1
    cycles without grad, then one with grad" computation, and the graph does not grow with T);
  * the transformer core applies its block stack exactly once per ACT step (hooks);
  * checkpoints round-trip per core; the EMA follows its formula;
  * each core's loss falls on a real ARC task (fast), and each memorises it exactly (slow).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

import hrm
from conftest import autograd_graph_size
from hrm.layers import swiglu_width

CORES = {"hrm": "tiny", "trm": "trm-tiny", "transformer": "transformer-tiny"}


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads, and spinning OpenMP workers on the 2 shared cores
    # made torch tests ~10x slower in a busy suite.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def real_task_batch() -> dict[str, torch.Tensor]:
    """ARC-AGI-1 training task 74dd1130 (transpose a 3x3 grid): all 5 train+test pairs on a
    4x4 canvas (grid + EOS row/column), one puzzle id. Small enough for a CPU test, real data."""
    from arcpipe.data import load_tasks
    from arcpipe.transforms import encode_grid

    task = load_tasks("arc1:training", task_ids="74dd1130", require_test_outputs=True)[0]
    pairs = [*task.train, *task.test]
    inputs = np.stack([encode_grid(p.input, 4) for p in pairs]).astype(np.int64)
    labels = np.stack([encode_grid(p.output, 4) for p in pairs]).astype(np.int64)
    return {
        "inputs": torch.from_numpy(inputs),
        "labels": torch.from_numpy(labels),
        "puzzle_identifiers": torch.ones(len(pairs), dtype=torch.long),
    }


def config_for(core: str, **kw) -> hrm.HRMConfig:
    return hrm.HRMConfig.preset(CORES[core], **{"seq_len": 16, "num_puzzle_identifiers": 3, **kw})


# --------------------------------------------------------------------------- presets / sizes


def test_trm_preset_matches_the_release_arc_setting_and_is_7M():
    cfg = hrm.HRMConfig.preset("trm", num_puzzle_identifiers=10)
    assert cfg.core == "trm"
    assert (cfg.hidden_size, cfg.num_heads, cfg.expansion, cfg.H_layers, cfg.L_layers) == (512, 8, 4.0, 0, 2)
    assert (cfg.H_cycles, cfg.L_cycles, cfg.halt_max_steps, cfg.halt_exploration_prob) == (3, 4, 16, 0.1)
    assert (cfg.puzzle_emb_ndim, cfg.puzzle_emb_len, cfg.ema_decay) == (512, 16, 0.999)
    counts = hrm.count_parameters(cfg)
    h, inter = 512, swiglu_width(512, 4.0)
    per_block = h * 3 * h + h * h + h * 2 * inter + inter * h
    assert counts["trainable"] == 2 * per_block + 12 * h + h * 12 + (2 * h + 2)
    assert round(counts["trainable"] / 1e6) == 7  # the paper's "7M"
    assert counts["puzzle_emb"] == 10 * 512 and counts["total"] == counts["trainable"] + 10 * 512


@pytest.mark.parametrize("hrm_preset, other", [("arc", "transformer"), ("tiny", "transformer-tiny"), ("tiny", "trm-tiny")])
def test_ablation_presets_are_size_matched(hrm_preset, other):
    a = hrm.count_parameters(hrm.HRMConfig.preset(hrm_preset))
    b = hrm.count_parameters(hrm.HRMConfig.preset(other))
    assert a["trainable"] == b["trainable"] and a["blocks"] == b["blocks"], (a, b)


def test_core_field_validation_and_reference_key_mapping():
    with pytest.raises(ValueError, match="core must be one of"):
        hrm.HRMConfig.preset("tiny", core="rnn")
    with pytest.raises(ValueError, match="H_layers must be 0"):
        hrm.HRMConfig.preset("trm-tiny", H_layers=1)
    with pytest.raises(ValueError, match="no inner recurrence"):
        hrm.HRMConfig.preset("transformer-tiny", L_cycles=2)
    with pytest.raises(ValueError, match="H_layers must be >= 1"):
        hrm.HRMConfig.preset("tiny", H_layers=0)
    with pytest.raises(ValueError, match="cannot hold"):
        hrm.HRMConfig.preset("trm-tiny", puzzle_emb_ndim=640, puzzle_emb_tokens=2)
    cfg = hrm.HRMConfig.preset("trm-tiny")
    assert hrm.HRMConfig.from_dict(cfg.to_dict()) == cfg
    # The TRM release names the prefix length puzzle_emb_len and has extra flags we do not model.
    ref = {**cfg.to_dict(), "puzzle_emb_len": 7, "no_ACT_continue": True}
    del ref["puzzle_emb_tokens"]
    back = hrm.HRMConfig.from_dict(ref)
    assert back.puzzle_emb_len == 7 and back.extra == {"no_ACT_continue": True}


# --------------------------------------------------------------------------- shared interface


@pytest.mark.parametrize("core", list(CORES))
def test_every_core_speaks_the_same_interface(core):
    torch.manual_seed(0)
    cfg = config_for(core)
    model = hrm.HRM(cfg).train()
    assert model.config.core == core and type(model.inner).__name__ == {"hrm": "HRMInner", "trm": "TRMInner", "transformer": "TransformerInner"}[core]
    batch = real_task_batch()
    B, L = batch["inputs"].shape
    carry = model.initial_carry(batch)
    carry, out = model(carry, batch)
    assert out["logits"].shape == (B, L, cfg.vocab_size)
    assert out["q_halt_logits"].shape == out["q_continue_logits"].shape == (B,)
    loss, metrics = hrm.act_loss(carry, out)
    assert torch.isfinite(loss) and set(metrics) >= {"lm_loss", "q_halt_loss", "q_continue_loss", "count"}
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if core == "trm":
        # Halting head trained on exact correctness only: no continue target, zero continue loss,
        # and q_continue == 0 so "q_halt > q_continue" means sigmoid(q_halt) > 0.5 everywhere.
        assert "target_q_continue" not in out and metrics["q_continue_loss"] == 0
        assert (out["q_continue_logits"] == 0).all()
    else:
        assert "target_q_continue" in out and metrics["q_continue_loss"] > 0
    r = model.rollout(batch)
    S = cfg.halt_max_steps
    assert {k: tuple(v.shape) for k, v in r.items()} == {
        "preds": (S, B, L), "token_logprob": (S, B, L), "q_halt": (S, B), "q_continue": (S, B), "steps": (S,),
    }
    assert r["preds"].dtype == torch.long and r["q_halt"].dtype == torch.float32
    # Sub-selection of steps and running past halt_max_steps work for every core.
    sub = model.rollout(batch, steps=[1, S + 2])
    assert sub["preds"].shape == (2, B, L) and torch.equal(sub["preds"][0], r["preds"][0])


@pytest.mark.parametrize("core", list(CORES))
def test_checkpoint_round_trip_per_core(core, tmp_path):
    torch.manual_seed(1)
    cfg = config_for(core)
    model = hrm.HRM(cfg).eval()
    with torch.no_grad():  # make the puzzle rows non-zero so they matter
        model.puzzle_emb.weights.normal_()
    batch = real_task_batch()
    path = hrm.save_checkpoint(model.state_dict(), tmp_path / f"{core}.pt")
    torch.manual_seed(2)
    fresh = hrm.HRM(cfg).eval()
    assert not torch.equal(fresh.rollout(batch)["token_logprob"], model.rollout(batch)["token_logprob"])
    fresh.load_state_dict(hrm.load_checkpoint(path, cfg))
    a, b = model.rollout(batch), fresh.rollout(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = next(c for c in CORES if c != core)
    with pytest.raises(ValueError, match="keys do not match|has shape"):
        hrm.load_checkpoint(path, config_for(other))


# --------------------------------------------------------------------------- TRM gradient


def _grads(model: hrm.HRM) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_trm_gradient_flows_only_through_the_last_outer_cycle():
    torch.manual_seed(3)
    T = 3
    cfg = config_for("trm", H_cycles=T, L_cycles=2)
    model = hrm.HRM(cfg).eval()  # eval: deterministic, grads still enabled
    batch = real_task_batch()
    z_H, z_L = model.inner.initial_states(batch["inputs"].shape[0], torch.device("cpu"))
    _, _, logits, q_halt, _ = model.inner(z_H, z_L, batch)
    (logits.square().mean() + q_halt.sum()).backward()
    got = _grads(model)

    # Manual: T-1 cycles under no_grad with the same weights, then one differentiated cycle.
    one = hrm.HRM(dataclasses.replace(cfg, H_cycles=1)).eval()
    one.load_state_dict(model.state_dict())
    inner = one.inner
    x = inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    with torch.no_grad():
        h, l = z_H.clone(), z_L.clone()
        for _ in range(T - 1):
            for _ in range(cfg.L_cycles):
                l = inner.L_level(l, h + x, inner.cos_sin())
            h = inner.L_level(h, l, inner.cos_sin())
    _, _, logits1, q_halt1, _ = inner(h, l, batch)
    torch.testing.assert_close(logits1, logits)
    (logits1.square().mean() + q_halt1.sum()).backward()
    want = _grads(one)
    assert set(got) == set(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-7, msg=n)

    # The check can fail: full back-propagation through all T cycles gives other gradients.
    full = hrm.HRM(cfg).eval()
    full.load_state_dict(model.state_dict())
    fi = full.inner
    x = fi.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    h, l = z_H.clone(), z_L.clone()
    for _ in range(T):
        for _ in range(cfg.L_cycles):
            l = fi.L_level(l, h + x, fi.cos_sin())
        h = fi.L_level(h, l, fi.cos_sin())
    logits_f, q_f, _ = fi.heads(h)
    (logits_f.square().mean() + q_f.sum()).backward()
    other = _grads(full)
    assert any(not torch.allclose(other[n], want[n], rtol=1e-3, atol=1e-6) for n in want)


_graph_size = autograd_graph_size


def test_trm_autograd_graph_does_not_grow_with_outer_cycles():
    batch = real_task_batch()
    sizes = {}
    for T in (1, 2, 5):
        torch.manual_seed(4)
        model = hrm.HRM(config_for("trm", H_cycles=T)).eval()
        z_H, z_L = model.inner.initial_states(batch["inputs"].shape[0], torch.device("cpu"))
        _, _, logits, _, _ = model.inner(z_H, z_L, batch)
        sizes[T] = _graph_size(logits)
    assert sizes[1] == sizes[2] == sizes[5] > 0, sizes
    # ...whereas it does grow with n (the last cycle's latent updates are all differentiated).
    model = hrm.HRM(config_for("trm", L_cycles=4)).eval()
    z_H, z_L = model.inner.initial_states(batch["inputs"].shape[0], torch.device("cpu"))
    assert _graph_size(model.inner(z_H, z_L, batch)[2]) > sizes[1]


# --------------------------------------------------------------------------- transformer


def _count_block_calls(module: torch.nn.Module) -> tuple[list[int], list]:
    from hrm.layers import Block

    blocks = [m for m in module.modules() if isinstance(m, Block)]
    counts = [0] * len(blocks)

    def hook(i):
        def fn(*_):
            counts[i] += 1
        return fn

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    return counts, handles


def test_transformer_applies_its_stack_once_per_act_step():
    torch.manual_seed(5)
    cfg = config_for("transformer")
    model = hrm.HRM(cfg)
    batch = real_task_batch()
    counts, handles = _count_block_calls(model)
    assert len(counts) == cfg.H_layers + cfg.L_layers
    model.rollout(batch, steps=3)
    assert counts == [3] * len(counts)  # eval: one stack pass per ACT step
    counts[:] = [0] * len(counts)
    model.train()
    carry = model.initial_carry(batch)
    carry, _ = model(carry, batch)
    # Training: the step itself plus the no-grad bootstrap pass for the Q target -- 2, not 2 x cycles.
    assert counts == [2] * len(counts)
    for h in handles:
        h.remove()
    # Contrast (so the hook counting is meaningful): HRM's L blocks run H_cycles x L_cycles times.
    hcfg = config_for("hrm")
    hmodel = hrm.HRM(hcfg)
    hcounts, _ = _count_block_calls(hmodel.inner.L_level)
    hmodel.rollout(batch, steps=1)
    assert hcounts == [hcfg.H_cycles * hcfg.L_cycles] * len(hcounts)


def test_transformer_state_carries_across_act_steps_only():
    """The only recurrence is the outer loop: step t's output depends on step t-1's state."""
    torch.manual_seed(6)
    model = hrm.HRM(config_for("transformer")).eval()
    batch = real_task_batch()
    B = batch["inputs"].shape[0]
    z_H, z_L = model.inner.initial_states(B, torch.device("cpu"))
    assert z_L.shape == (B, 16 + model.inner.puzzle_emb_len, 0)
    s1, _, l1, _, _ = model.inner(z_H, z_L, batch)
    _, _, l2, _, _ = model.inner(s1, z_L, batch)
    _, _, l1_again, _, _ = model.inner(z_H, z_L, batch)
    assert torch.equal(l1, l1_again) and not torch.allclose(l1, l2)


# --------------------------------------------------------------------------- EMA


def test_ema_follows_its_formula_and_round_trips():
    torch.manual_seed(7)
    model = hrm.HRM(config_for("trm"))
    ema = hrm.EMA(model, decay=0.9)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = dict(start)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        expected = {n: 0.9 * expected[n] + 0.1 * p.detach() for n, p in model.named_parameters()}
    for n, v in expected.items():
        torch.testing.assert_close(ema.shadow[n], v)
    sd = ema.averaged_state_dict(model)
    assert torch.equal(sd["inner.H_init"], model.state_dict()["inner.H_init"])  # buffers untouched
    evaluated = hrm.HRM(model.config)
    evaluated.load_state_dict(sd)
    torch.testing.assert_close(dict(evaluated.named_parameters())["inner.lm_head.weight"], expected["inner.lm_head.weight"])
    again = hrm.EMA(hrm.HRM(model.config), decay=0.5)
    again.load_state_dict(ema.state_dict())
    assert again.decay == 0.9 and again.num_updates == 3 and torch.equal(again.shadow["inner.lm_head.weight"], ema.shadow["inner.lm_head.weight"])
    with pytest.raises(ValueError, match="decay"):
        hrm.EMA(model, decay=1.0)


# --------------------------------------------------------------------------- learning


def halted_preds(r: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's prediction at its halting step -- the first with q_halt > q_continue, else
    the last -- which is what the pipeline scores. (TRM, trained to stop as soon as its halt
    head is confident, is not trained on later steps once it halts at step 1, so its
    last-step answer may drift; scoring the last step would misjudge it.)"""
    halts = r["q_halt"] > r["q_continue"]  # (S, B)
    S = halts.shape[0]
    first = torch.where(halts.any(0), halts.to(torch.int8).argmax(0), S - 1)
    return r["preds"].gather(0, first.view(1, -1, 1).expand(1, *r["preds"].shape[1:]))[0]


def test_halted_preds_picks_the_first_confident_step():
    preds = torch.arange(3).view(3, 1, 1).expand(3, 2, 4)  # step s predicts s everywhere
    r = {"preds": preds, "q_halt": torch.tensor([[-1.0, -1.0], [2.0, -1.0], [3.0, -1.0]]), "q_continue": torch.zeros(3, 2)}
    assert halted_preds(r)[:, 0].tolist() == [1, 2]


def _train(core: str, steps: int, check_every: int = 0, lr: float = 3e-3) -> tuple[list[float], float, int]:
    torch.manual_seed(0)
    batch = real_task_batch()
    n = batch["inputs"].shape[0]
    cfg = config_for(core)
    model = hrm.HRM(cfg).train()
    opt = hrm.AdamAtan2(model.parameters(), lr=0.0, betas=(0.9, 0.95), weight_decay=0.0)
    sparse = hrm.SparseSignSGD(model.puzzle_emb, lr=1e-2, weight_decay=0.0)
    carry = model.initial_carry(batch)
    losses, exact, step = [], 0.0, 0
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = hrm.lr_at(step, lr, 10, max(steps, 10), 1.0)
        carry, out = model(carry, batch)
        loss, metrics = hrm.act_loss(carry, out)
        (loss / n).backward()
        opt.step(), sparse.step()
        opt.zero_grad(), sparse.zero_grad()
        losses.append(metrics["lm_loss"].item() / n)
        if check_every and step % check_every == 0:
            preds = halted_preds(model.rollout(batch))
            exact = (preds == batch["labels"]).all(-1).float().mean().item()
            if exact == 1.0:
                break
    return losses, exact, step


@pytest.mark.parametrize("core", list(CORES))
def test_loss_falls_on_a_real_arc_task(core):
    losses, _, _ = _train(core, steps=40)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.6 * first, f"{core}: lm loss {first:.3f} -> {last:.3f}"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("core", list(CORES))
def test_each_core_memorises_a_real_arc_task_exactly(core):
    """At each preset's own learning rate (TRM's is 1e-3): at tiny's 3e-3 TRM memorised this task on
    one CPU (an AMD EPYC) and stayed at 0% after 1500 steps on another (an Intel Xeon)."""
    from arcpipe.train import train_defaults

    t0 = time.time()
    _, exact, step = _train(core, steps=1500, check_every=25, lr=train_defaults(CORES[core])["lr"])
    assert exact == 1.0, f"{core}: exact accuracy {exact} after {step} steps ({time.time() - t0:.0f}s)"
