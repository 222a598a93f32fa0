"""Checkpoint I/O: bit-exact round trip, reference key names, atomic writes, validation."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

import hrm
from hrm.checkpoint import normalise_keys


def _model():
    torch.manual_seed(0)
    cfg = hrm.HRMConfig.preset("tiny", hidden_size=32, num_heads=2, seq_len=9, num_puzzle_identifiers=6, puzzle_emb_ndim=32)
    m = hrm.HRM(cfg)
    with torch.no_grad():
        m.puzzle_emb.weights.normal_()
    return cfg, m


def test_round_trip_is_bit_exact(tmp_path):
    cfg, m = _model()
    path = hrm.save_checkpoint(m.state_dict(), tmp_path / "sub" / "model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # what open() gives, not mkstemp's 0600
    sd = hrm.load_checkpoint(path, cfg)
    assert sd.keys() == m.state_dict().keys()
    for k, v in m.state_dict().items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k
    m2 = hrm.HRM(cfg)
    m2.load_state_dict(sd)
    batch = {"inputs": torch.randint(0, 12, (2, 9)), "labels": torch.randint(0, 12, (2, 9)), "puzzle_identifiers": torch.tensor([1, 5])}
    m.eval(), m2.eval()
    assert torch.equal(m.rollout(batch)["token_logprob"], m2.rollout(batch)["token_logprob"])


def test_reference_prefixes_are_stripped(tmp_path):
    cfg, m = _model()
    ref_style = {f"_orig_mod.model.{k}": v for k, v in m.state_dict().items()}
    torch.save(ref_style, tmp_path / "step_100")
    sd = hrm.load_checkpoint(tmp_path / "step_100", cfg)
    assert set(sd) == set(m.state_dict())
    assert normalise_keys({"module._orig_mod.inner.H_init": torch.zeros(1)}) == {"inner.H_init": torch.zeros(1)}


def test_refuses_pickled_code_and_bad_shapes(tmp_path):
    cfg, m = _model()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(ValueError, match="weights-only"):
        hrm.load_checkpoint(bad)
    sd = m.state_dict()
    hrm.save_checkpoint(sd, tmp_path / "ok.pt")
    other = hrm.HRMConfig.from_dict({**cfg.to_dict(), "num_puzzle_identifiers": 99})
    with pytest.raises(ValueError, match="puzzle_emb.weights"):
        hrm.load_checkpoint(tmp_path / "ok.pt", other)
    with pytest.raises(FileNotFoundError):
        hrm.load_checkpoint(tmp_path / "missing.pt")


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    _, m = _model()
    path = hrm.save_checkpoint(m.state_dict(), tmp_path / "model.pt")
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        hrm.save_checkpoint(m.state_dict(), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
