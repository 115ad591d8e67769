"""Attention in PyTorch for the ViT, BERT and GPT families (repro.kernel.models.attention says
more)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from repro.kernel.models.attention import check


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float, kind: str
) -> torch.Tensor:
    """softmax(q k^T * scale [+ -inf above the diagonal]) v; q, k, v and the result are
    (N, heads, T, head_dim)."""
    if check(kind) == "fused":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    # scaled and masked in place: one (N, heads, T, T) tensor instead of three (autograd needs
    # neither the product nor the scaled scores, only the softmax's output)
    scores = (q @ k.transpose(-2, -1)).mul_(scale)  # (N, heads, T, T)
    if causal:  # query i attends to keys j <= i
        pos = torch.arange(q.shape[-2], device=q.device)
        scores.masked_fill_(pos[:, None] < pos[None, :], float("-inf"))
    return scores.softmax(dim=-1) @ v  # (N, heads, T, head_dim)


def attend_cached(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, positions, scale: float, kind: str
) -> torch.Tensor:
    """Causal attention of new queries over a fixed-size KV cache: q (N, heads, T, head_dim) at
    absolute `positions` (T,), k and v the whole cache (N, heads, L, head_dim). Query i attends
    to keys j <= positions[i]; the slots beyond, not yet written, are masked like the future."""
    allowed = torch.arange(k.shape[-2], device=q.device)[None, :] <= positions[:, None]  # (T, L)
    if check(kind) == "fused":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    scores = (q @ k.transpose(-2, -1)).mul_(scale)  # (N, heads, T, L)
    scores.masked_fill_(~allowed, float("-inf"))
    return scores.softmax(dim=-1) @ v  # (N, heads, T, head_dim)
