"""The Hierarchical Reasoning Model (arXiv 2506.21734) with its ACT wrapper.

Module/parameter names follow the reference release (``inner.H_level.layers.0.self_attn...``)
so its checkpoints load after stripping wrapper prefixes (see :mod:`hrm.checkpoint`).

Read top to bottom:
  * :class:`CoreBase` -- what every core shares (embeddings, heads, initial states); the
    ablation cores in :mod:`hrm.trm` and :mod:`hrm.transformer` subclass it and
    :func:`build_inner` picks one by ``config.core``.
  * :class:`HRMInner` -- one ACT step: embed, ``H_cycles x L_cycles`` recurrent updates of the
    low-level state z_L (input = z_H + input embedding) and the high-level state z_H
    (input = z_L); everything except the last L and last H update runs without autograd (the
    paper's one-step gradient approximation), then the LM head on z_H and the Q head on z_H[0].
  * :class:`HRM` -- the ACT loop over a persistent :class:`Carry`: sequences that halted last
    step are swapped for fresh ones from the incoming batch, so training batches stay full.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .config import HRMConfig
from .layers import CastedEmbedding, CastedLinear, ReasoningModule, RotaryEmbedding, trunc_normal_
from .loss import log_probs
from .sparse_embedding import SparsePuzzleEmbedding

Batch = dict[str, torch.Tensor]


@dataclass
class Carry:
    """Everything the ACT loop keeps between calls. ``current_data`` is the batch each row is
    currently working on (rows are replaced only when they halt); ``loss_type`` rides along so
    :func:`hrm.act_loss` needs no config."""

    z_H: torch.Tensor
    z_L: torch.Tensor
    steps: torch.Tensor
    halted: torch.Tensor
    current_data: Batch
    loss_type: str = "stablemax"


class CoreBase(nn.Module):
    """What every core shares: token + puzzle embeddings, positions, LM and Q heads, and the
    learned initial states. A core subclasses this, builds its blocks in ``__init__`` between
    :meth:`_build_io` and :meth:`_build_init_states` (that order keeps HRM's RNG draws, and so
    its parity with the reference, unchanged), and implements ``forward(z_H, z_L, batch)``.

    ``act_continue``: whether ``q_continue`` is a trained head with a bootstrapped target (HRM),
    or absent (TRM), in which case the core must return ``q_continue_logits = 0`` so every
    "halt when q_halt > q_continue" rule (training, infer, vote) means ``sigmoid(q_halt) > 0.5``.
    """

    act_continue: bool = True

    def _build_io(self, config: HRMConfig) -> None:
        c = self.config = config
        self.embed_scale = math.sqrt(c.hidden_size)
        # Embedding init std 1/sqrt(hidden) times the sqrt(hidden) scale => unit-variance input.
        self.embed_tokens = CastedEmbedding(c.vocab_size, c.hidden_size, init_std=1.0 / self.embed_scale)
        self.lm_head = CastedLinear(c.hidden_size, c.vocab_size, bias=False)
        self.q_head = CastedLinear(c.hidden_size, 2, bias=True)
        self.puzzle_emb_len = c.puzzle_emb_len
        if c.puzzle_emb_ndim > 0:
            self.puzzle_emb = SparsePuzzleEmbedding(c.num_puzzle_identifiers, c.puzzle_emb_ndim, init_std=0.0)
        total_len = c.seq_len + self.puzzle_emb_len
        if c.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(c.hidden_size // c.num_heads, total_len, c.rope_theta)
        else:
            self.embed_pos = CastedEmbedding(total_len, c.hidden_size, init_std=1.0 / self.embed_scale)

    def _build_init_states(self, names: Sequence[str] = ("H_init", "L_init")) -> None:
        # Learned-at-init (not trained: buffers) starting states, shared by every position.
        for name in names:
            self.register_buffer(name, trunc_normal_(torch.empty(self.config.hidden_size), std=1.0), persistent=True)
        # Q head starts near "never halt confidently" (sigmoid(-5) ~ 0.007) so bootstrapping is stable.
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def heads(self, z_H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits over the grid positions, q_halt, q_continue)`` read off the answer state."""
        logits = self.lm_head(z_H)[:, self.puzzle_emb_len:]
        q = self.q_head(z_H[:, 0]).to(torch.float32)
        return logits, q[..., 0], q[..., 1]

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """bf16 (or fp16) only on CUDA; CPU always runs fp32."""
        if device.type == "cuda":
            return getattr(torch, self.config.forward_dtype)
        return torch.float32

    def cos_sin(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.rotary_emb() if hasattr(self, "rotary_emb") else None

    def input_embeddings(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        """Token embedding with the puzzle embedding prepended as ``puzzle_emb_len`` positions
        (zero-padded to a multiple of hidden), scaled by sqrt(hidden)."""
        c = self.config
        dtype = self.compute_dtype(inputs.device)
        emb = self.embed_tokens(inputs.to(torch.long), dtype)
        if c.puzzle_emb_ndim > 0:
            pe = self.puzzle_emb(puzzle_identifiers.to(torch.long), dtype)
            pad = self.puzzle_emb_len * c.hidden_size - pe.shape[-1]
            if pad > 0:
                pe = nn.functional.pad(pe, (0, pad))
            emb = torch.cat((pe.view(-1, self.puzzle_emb_len, c.hidden_size), emb), dim=1)
        if c.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos.embedding_weight.to(dtype))  # keep variance ~1
        return self.embed_scale * emb

    def initial_states(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch_size, self.config.seq_len + self.puzzle_emb_len, self.config.hidden_size)
        dtype = self.compute_dtype(device)
        return (self.H_init.to(device, dtype).expand(shape).clone(), self.L_init.to(device, dtype).expand(shape).clone())


class HRMInner(CoreBase):
    """One ACT step of HRM (the reference's ``HierarchicalReasoningModel_ACTV1_Inner``)."""

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self._build_io(config)
        c = config
        args = (c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps)
        self.H_level = ReasoningModule(c.H_layers, *args)
        self.L_level = ReasoningModule(c.L_layers, *args)
        self._build_init_states()

    def forward(self, z_H: torch.Tensor, z_L: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(z_H, z_L, logits, q_halt_logits, q_continue_logits)``; states detached."""
        c = self.config
        cs = self.cos_sin()
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
        z_H, z_L = z_H.to(x.dtype), z_L.to(x.dtype)
        # One-step gradient: all updates but the last L and last H carry no graph. This keeps
        # memory O(1) in the number of cycles (paper sec. 2, "approximate gradient").
        with torch.no_grad():
            for h in range(c.H_cycles):
                for l in range(c.L_cycles):
                    if h == c.H_cycles - 1 and l == c.L_cycles - 1:
                        break
                    z_L = self.L_level(z_L, z_H + x, cs)
                if h < c.H_cycles - 1:
                    z_H = self.H_level(z_H, z_L, cs)
        z_L = self.L_level(z_L, z_H + x, cs)
        z_H = self.H_level(z_H, z_L, cs)
        logits, q_halt, q_cont = self.heads(z_H)
        return z_H.detach(), z_L.detach(), logits, q_halt, q_cont


def build_inner(config: HRMConfig) -> CoreBase:
    """The per-ACT-step network named by ``config.core`` (imports are local: the alternative
    cores subclass :class:`CoreBase` from this module)."""
    if config.core == "hrm":
        return HRMInner(config)
    if config.core == "trm":
        from .trm import TRMInner

        return TRMInner(config)
    if config.core == "transformer":
        from .transformer import TransformerInner

        return TransformerInner(config)
    raise ValueError(f"hrm: unknown core {config.core!r}")


class HRM(nn.Module):
    """HRM with adaptive computation time (the reference's ``HierarchicalReasoningModel_ACTV1``).

    ``compile=True`` wraps the inner step in ``torch.compile`` without changing parameter names.
    """

    def __init__(self, config: HRMConfig, compile: bool = False) -> None:
        super().__init__()
        self.config = config
        self.inner = build_inner(config)
        # Kept outside the module tree so the state-dict keys stay ``inner.*``.
        self.__dict__["_step_fn"] = torch.compile(self.inner, dynamic=False) if compile else self.inner

    @property
    def puzzle_emb(self) -> SparsePuzzleEmbedding:
        return self.inner.puzzle_emb

    def initial_carry(self, batch: Batch) -> Carry:
        """A carry whose every row is marked halted, so the first forward loads the batch."""
        inputs = batch["inputs"]
        B, device = inputs.shape[0], inputs.device
        z_H, z_L = self.inner.initial_states(B, device)
        return Carry(
            z_H=z_H, z_L=z_L,
            steps=torch.zeros(B, dtype=torch.int32, device=device),
            halted=torch.ones(B, dtype=torch.bool, device=device),
            current_data={k: torch.zeros_like(v) for k, v in batch.items()},
            loss_type=self.config.loss_type,
        )

    def forward(self, carry: Carry, batch: Batch) -> tuple[Carry, dict[str, torch.Tensor]]:
        """One ACT step for every row. Halted rows restart from the learned initial states on
        the matching row of ``batch``; others continue on their current data."""
        c = self.config
        reset = carry.halted
        z_H0, z_L0 = self.inner.initial_states(1, reset.device)
        z_H = torch.where(reset.view(-1, 1, 1), z_H0.to(carry.z_H.dtype), carry.z_H)
        z_L = torch.where(reset.view(-1, 1, 1), z_L0.to(carry.z_L.dtype), carry.z_L)
        steps = torch.where(reset, 0, carry.steps)
        data = {k: torch.where(reset.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v) for k, v in carry.current_data.items()}

        z_H_new, z_L_new, logits, q_halt, q_cont = self._step_fn(z_H, z_L, data)
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_cont}

        with torch.no_grad():
            steps = steps + 1
            last = steps >= c.halt_max_steps
            halted = last
            # Eval always runs halt_max_steps so every row of a batch finishes together.
            if self.training and c.halt_max_steps > 1:
                # Cores without a continue head (TRM) return q_cont = 0, so this reads
                # "sigmoid(q_halt) > 0.5" for them -- the same rule infer/vote apply offline.
                halted = halted | (q_halt > q_cont)
                # Exploration: with prob p, force at least U{2..max} steps before halting.
                explore = torch.rand_like(q_halt) < c.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, low=2, high=c.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                # Bootstrapped Q target from the next step's Q values (no replay buffer or
                # target network; the large batch plays the role of parallel envs, as in PQN).
                # Cores without a continue head skip it, so act_loss's q_continue term is 0.
                if self.inner.act_continue:
                    _, _, _, nq_halt, nq_cont = self._step_fn(z_H_new, z_L_new, data)
                    outputs["target_q_continue"] = torch.sigmoid(torch.where(last, nq_halt, torch.maximum(nq_halt, nq_cont)))

        new_carry = Carry(z_H_new, z_L_new, steps, halted, data, loss_type=c.loss_type)
        return new_carry, outputs

    @torch.no_grad()
    def rollout(self, batch: Batch, steps: int | Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Evaluation rollout from the initial states, recording per-step predictions.

        ``steps``: ``None`` -> every step ``1..halt_max_steps``; an int ``n`` -> steps ``1..n``
        (may exceed ``halt_max_steps``: the recurrence simply continues); a sequence -> exactly
        those (1-based) steps. Returns ``preds (S,B,L)``, ``token_logprob (S,B,L)`` (log-prob of
        the argmax token under the loss's normalisation), ``q_halt (S,B)``, ``q_continue (S,B)``,
        and ``steps (S,)``.
        """
        if steps is None:
            record = list(range(1, self.config.halt_max_steps + 1))
        elif isinstance(steps, int):
            record = list(range(1, steps + 1))
        else:
            record = sorted(set(int(s) for s in steps))
        if not record or record[0] < 1:
            raise ValueError(f"HRM.rollout: steps must be >= 1, got {steps!r}")
        was_training = self.training
        self.eval()
        try:
            B = batch["inputs"].shape[0]
            z_H, z_L = self.inner.initial_states(B, batch["inputs"].device)
            out: dict[str, list[torch.Tensor]] = {"preds": [], "token_logprob": [], "q_halt": [], "q_continue": []}
            wanted = set(record)
            for t in range(1, record[-1] + 1):
                z_H, z_L, logits, qh, qc = self._step_fn(z_H, z_L, batch)
                if t in wanted:
                    lp = log_probs(logits, self.config.loss_type)
                    best, pred = lp.max(dim=-1)
                    out["preds"].append(pred)
                    out["token_logprob"].append(best.to(torch.float32))
                    out["q_halt"].append(qh)
                    out["q_continue"].append(qc)
        finally:
            self.train(was_training)
        result = {k: torch.stack(v) for k, v in out.items()}
        result["steps"] = torch.tensor(record, dtype=torch.long)
        return result

    def num_parameters(self, include_puzzle_emb: bool = False) -> int:
        """Trainable parameter count; the sparse puzzle table (a buffer) only on request."""
        n = sum(p.numel() for p in self.parameters())
        if include_puzzle_emb and self.config.puzzle_emb_ndim > 0:
            n += self.puzzle_emb.weights.numel()
        return n


def count_parameters(config: HRMConfig) -> dict[str, int | str]:
    """Parameter counts of the model ``config`` describes, built on the meta device (shapes
    only, nothing allocated), for ``arcpipe train --dry-run`` and size-matched ablations.

    ``trainable``: dense parameters (what AdamAtan2 trains); ``puzzle_emb``: the sparse
    puzzle-identifier table (a buffer trained by SparseSignSGD, grows with the dataset);
    ``total``: their sum; ``blocks``: the transformer blocks alone (the part that differs
    between cores at a fixed width).
    """
    with torch.device("meta"):
        model = HRM(config)
    trainable = model.num_parameters()
    table = model.num_parameters(include_puzzle_emb=True) - trainable
    blocks = sum(p.numel() for name, p in model.inner.named_parameters() if ".layers." in name)
    return {"core": config.core, "trainable": trainable, "blocks": blocks, "puzzle_emb": table, "total": trainable + table}
