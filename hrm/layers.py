"""Transformer building blocks of HRM, numerically matching the reference release.

Weights live in float32 ("master" copies) and are cast to the activation dtype at use, so a
bf16 forward on CUDA keeps fp32 parameters for the optimizer -- the reference's ``Casted*``
layers do the same, which is what makes our fp32 outputs bit-comparable with its fixtures.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def trunc_normal_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0) -> torch.Tensor:
    """JAX-style truncated normal: cut at ``[lower, upper]`` standard deviations of the
    underlying normal, then rescaled so the *truncated* distribution has std ``std``.

    PyTorch's ``nn.init.trunc_normal_`` keeps the underlying std instead (the result is ~12%
    narrower); the reference chooses the JAX convention so LeCun init really has var 1/fan_in.
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        # Variance of a standard normal truncated to [lower, upper].
        phi = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
        cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
        z = cdf(upper) - cdf(lower)
        var = 1 + (lower * phi(lower) - upper * phi(upper)) / z - ((phi(lower) - phi(upper)) / z) ** 2
        scale = std / math.sqrt(var)
        # Inverse-CDF sampling of the truncated standard normal.
        tensor.uniform_(math.erf(lower / math.sqrt(2)), math.erf(upper / math.sqrt(2)))
        tensor.erfinv_().mul_(math.sqrt(2) * scale).clamp_(lower * scale, upper * scale)
    return tensor


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free RMSNorm computed in fp32 (as the reference): post-norm blocks apply it
    after every residual add, so a learned gain would be redundant with the next projection."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(dtype)


class CastedLinear(nn.Module):
    """Linear layer with truncated LeCun-normal init (std 1/sqrt(fan_in)), zero bias, and
    weights cast to the input's dtype at call time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), std=in_features ** -0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), b)


class CastedEmbedding(nn.Module):
    """Embedding table (truncated normal, given std) looked up in the compute dtype."""

    def __init__(self, num_embeddings: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.embedding_weight = nn.Parameter(trunc_normal_(torch.empty(num_embeddings, dim), std=init_std))

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(dtype))


class RotaryEmbedding(nn.Module):
    """RoPE tables for positions ``0..max_positions-1`` (half-split layout, as the reference;
    a permutation of the paper's interleaved layout that computes the same thing)."""

    def __init__(self, head_dim: int, max_positions: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        # Not persistent: derived from the config, and absent from reference checkpoints.
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos, self.sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q, k`` of shape (B, S, H, D) with tables (S, D); math in the tables' fp32."""
    dtype = q.dtype
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    q32, k32 = q.to(cos.dtype), k.to(cos.dtype)
    q_out = q32 * cos + _rotate_half(q32) * sin
    k_out = k32 * cos + _rotate_half(k32) * sin
    return q_out.to(dtype), k_out.to(dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention. Uses ``F.scaled_dot_product_attention`` so CUDA
    picks flash / memory-efficient kernels and CPU gets the math kernel -- no flash-attn
    package, same result as the reference's ``flash_attn_func(causal=False)``."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * num_heads * self.head_dim, bias=False)
        self.o_proj = CastedLinear(num_heads * self.head_dim, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, S, _ = x.shape
        qkv = self.qkv_proj(x).view(B, S, 3 * self.num_heads, self.head_dim)
        q, k, v = qkv.split(self.num_heads, dim=2)
        if cos_sin is not None:
            q, k = apply_rope(q, k, *cos_sin)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(B, S, self.num_heads * self.head_dim))


def swiglu_width(hidden_size: int, expansion: float) -> int:
    """Inner width of the SwiGLU MLP: 2/3 of ``expansion * hidden`` (keeps FLOPs equal to a
    plain MLP of that expansion) rounded up to a multiple of 256 for tensor-core shapes."""
    inter = round(expansion * hidden_size * 2 / 3)
    return -(inter // -256) * 256


class SwiGLU(nn.Module):
    """Gated MLP ``down(silu(gate) * up)`` with gate and up fused in one projection."""

    def __init__(self, hidden_size: int, expansion: float) -> None:
        super().__init__()
        inter = swiglu_width(hidden_size, expansion)
        self.gate_up_proj = CastedLinear(hidden_size, 2 * inter, bias=False)
        self.down_proj = CastedLinear(inter, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm transformer block: ``x = norm(x + attn(x)); x = norm(x + mlp(x))``."""

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float) -> None:
        super().__init__()
        self.self_attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, expansion)
        self.eps = eps

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = rms_norm(x + self.self_attn(x, cos_sin), self.eps)
        return rms_norm(x + self.mlp(x), self.eps)


class ReasoningModule(nn.Module):
    """One HRM level (H or L): add the injected input to the state, then run the block stack."""

    def __init__(self, n_layers: int, hidden_size: int, num_heads: int, expansion: float, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(hidden_size, num_heads, expansion, eps) for _ in range(n_layers))

    def forward(self, state: torch.Tensor, injection: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = state + injection
        for layer in self.layers:
            x = layer(x, cos_sin)
        return x
