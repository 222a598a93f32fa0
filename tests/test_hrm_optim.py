"""Sparse puzzle-embedding SignSGD (incl. 2-process gloo), Adam-atan2, LR schedule."""
from __future__ import annotations

import math
import socket

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
import torch.distributed as dist
import torch.multiprocessing as mp

import hrm

NUM_IDS, DIM = 10, 6


def _table() -> hrm.SparsePuzzleEmbedding:
    torch.manual_seed(0)
    emb = hrm.SparsePuzzleEmbedding(NUM_IDS, DIM)
    with torch.no_grad():
        emb.weights.normal_()
    return emb.train()


def _sparse_step(emb, ids, targets, lr=0.1, wd=0.5):
    """One training step whose loss gives every occurrence of a row its own gradient."""
    opt = hrm.SparseSignSGD(emb, lr=lr, weight_decay=wd)
    out = emb(ids, torch.float32)
    ((out - targets) ** 2).sum().backward()
    opt.step()
    opt.zero_grad()
    return emb.weights.clone()


def test_signsgd_touches_only_batch_rows_and_matches_formula():
    emb = _table()
    before = emb.weights.clone()
    ids = torch.tensor([3, 7, 3, 1])
    targets = torch.randn(4, DIM, generator=torch.Generator().manual_seed(5))
    after = _sparse_step(emb, ids, targets)
    untouched = [i for i in range(NUM_IDS) if i not in (1, 3, 7)]
    assert torch.equal(after[untouched], before[untouched])
    for r in (1, 3, 7):
        g = sum(2 * (before[r] - targets[j]) for j in range(4) if ids[j] == r)  # duplicates summed
        want = before[r] * (1 - 0.1 * 0.5) - 0.1 * torch.sign(g)
        torch.testing.assert_close(after[r], want)
    assert emb.local_weights.grad is None  # zero_grad clears the slice


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, NUM_IDS - 1), min_size=1, max_size=24), st.integers(0, 2**16))
def test_signsgd_any_batch_with_repeats_matches_formula(id_list, seed):
    """Any batch (rows repeated in any order): each touched row moves by the sign of its summed gradient."""
    emb = _table()
    before = emb.weights.clone()
    ids = torch.tensor(id_list)
    targets = torch.randn(len(id_list), DIM, generator=torch.Generator().manual_seed(seed))
    after = _sparse_step(emb, ids, targets)
    want = before.clone()
    for r in set(id_list):
        g = sum(2 * (before[r] - targets[j]) for j in range(len(id_list)) if id_list[j] == r)
        want[r] = before[r] * (1 - 0.1 * 0.5) - 0.1 * torch.sign(g)
    torch.testing.assert_close(after, want)


def test_no_grad_forward_does_not_steal_the_gradient_slice():
    """The ACT target-Q pass re-runs the embedding under no_grad; the update must still apply."""
    emb = _table()
    before = emb.weights.clone()
    opt = hrm.SparseSignSGD(emb, lr=0.1, weight_decay=0.0)
    out = emb(torch.tensor([2]), torch.float32)
    with torch.no_grad():
        emb(torch.tensor([5]), torch.float32)
    out.sum().backward()
    opt.step()
    assert not torch.equal(emb.weights[2], before[2]) and torch.equal(emb.weights[5], before[5])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, ids: torch.Tensor, targets: torch.Tensor, out_path: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        half = ids.shape[0] // world
        sl = slice(rank * half, (rank + 1) * half)
        after = _sparse_step(_table(), ids[sl], targets[sl])
        torch.save(after, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)  # a wedged collective must fail the test, not hang the suite
def test_two_process_gloo_update_equals_union_batch(tmp_path):
    # Row 4 appears on both ranks with opposite-signed pulls: only a cross-rank *sum* before
    # the sign gets it right (per-rank signs would cancel or double).
    ids = torch.tensor([4, 2, 9, 4, 4, 8])
    g = torch.Generator().manual_seed(3)
    targets = torch.randn(6, DIM, generator=g)
    targets[0] += 3.0  # rank 0 pulls row 4 up hard ...
    targets[4] -= 1.0  # ... rank 1 pulls it down twice, more weakly
    # fork: children inherit the imported torch, so the test costs ~1 s instead of ~20 s of
    # re-importing torch per process under spawn. Tiny single-threaded ops only in children.
    mp.start_processes(_worker, args=(2, _free_port(), ids, targets, str(tmp_path / "w")), nprocs=2, join=True, start_method="fork")
    single = _sparse_step(_table(), ids, targets)
    r0, r1 = torch.load(tmp_path / "w.0"), torch.load(tmp_path / "w.1")
    assert torch.equal(r0, r1)
    torch.testing.assert_close(r0, single, rtol=0, atol=1e-7)
    # The check has teeth: rank 0 alone would have moved row 4 differently.
    alone = _sparse_step(_table(), ids[:3], targets[:3])
    assert not torch.allclose(alone, single)


def test_adam_atan2_matches_reference_formula():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3))
    ref = p.detach().clone()
    m = torch.zeros_like(ref)
    v = torch.zeros_like(ref)
    lr, (b1, b2), wd = 1e-2, (0.9, 0.95), 0.1
    opt = hrm.AdamAtan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    for t in range(1, 6):
        g = torch.randn(5, 3)
        p.grad = g.clone()
        opt.step()
        ref = ref * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        ref = ref - lr * torch.atan2(m / (1 - b1 ** t), torch.sqrt(v / (1 - b2 ** t)))
        torch.testing.assert_close(p.detach(), ref, rtol=1e-6, atol=1e-7)
    # Scale invariance (no epsilon): a zero gradient on fresh state gives a zero step, not NaN.
    q = torch.nn.Parameter(torch.ones(3))
    q.grad = torch.zeros(3)
    hrm.AdamAtan2([q], lr=1.0, weight_decay=0.0).step()
    assert torch.equal(q.detach(), torch.ones(3))


def test_lr_schedule_warmup_then_cosine():
    assert hrm.lr_at(0, 1.0, 10, 110) == 0.0
    assert hrm.lr_at(5, 1.0, 10, 110) == pytest.approx(0.5)
    assert hrm.lr_at(10, 1.0, 10, 110) == pytest.approx(1.0)
    assert hrm.lr_at(60, 1.0, 10, 110, min_ratio=0.2) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert hrm.lr_at(110, 1.0, 10, 110, min_ratio=0.2) == pytest.approx(0.2)
    assert hrm.lr_at(500, 1.0, 10, 110, min_ratio=0.2) == pytest.approx(0.2)


def test_adam_atan2_multi_tensor_step_equals_one_optimizer_per_parameter():
    """The foreach step over a group is bit-identical to stepping each parameter alone, including
    a parameter that gets no gradient on some steps (its own step count, so its own bias
    correction) and mixed shapes and dtypes."""
    torch.manual_seed(1)
    shapes = [(4, 3), (7,), (2, 2, 5), (1,)]
    dtypes = [torch.float32, torch.float32, torch.float64, torch.float32]
    together = [torch.nn.Parameter(torch.randn(s, dtype=d)) for s, d in zip(shapes, dtypes)]
    alone = [torch.nn.Parameter(p.detach().clone()) for p in together]
    kw = dict(lr=3e-2, betas=(0.9, 0.95), weight_decay=0.1)
    opt = hrm.AdamAtan2(together, **kw)
    opts = [hrm.AdamAtan2([p], **kw) for p in alone]
    for t in range(6):
        for i, (a, b) in enumerate(zip(together, alone)):
            g = None if (i == 1 and t in (0, 3)) else torch.randn_like(a)
            a.grad, b.grad = g, (None if g is None else g.clone())
        opt.step()
        for o in opts:
            o.step()
        for a, b in zip(together, alone):
            assert torch.equal(a.detach(), b.detach())
    assert opt.state[together[1]]["step"] == 4 and opt.state[together[0]]["step"] == 6
