"""Attention in Keras 3 for the ViT, BERT and GPT families (repro.kernel.models.attention says
more)."""

from __future__ import annotations

from keras import ops

from repro.kernel.models.attention import check


def attend(q, k, v, *, causal: bool, scale: float, kind: str):
    """softmax(q k^T * scale [+ -inf above the diagonal]) v; q, k, v and the result are
    (N, T, heads, head_dim), keras.ops.dot_product_attention's layout."""
    if check(kind) == "fused":
        return ops.dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    scores = ops.einsum("nqhd,nkhd->nhqk", q, k) * scale  # (N, heads, T, T)
    if causal:  # query i attends to keys j <= i; T may be known only at run time
        pos = ops.arange(ops.shape(q)[1])
        scores = ops.where(pos[:, None] >= pos[None, :], scores, float("-inf"))
    return ops.einsum("nhqk,nkhd->nqhd", ops.softmax(scores, axis=-1), v)


def attend_cached(q, k, v, *, positions, scale: float, kind: str):
    """Causal attention of new queries over a fixed-size KV cache: q (N, T, heads, head_dim) at
    absolute `positions` (T,), k and v the whole cache (N, L, heads, head_dim). Query i attends
    to keys j <= positions[i]; the slots beyond, not yet written, are masked like the future."""
    allowed = ops.arange(ops.shape(k)[1])[None, :] <= positions[:, None]  # (T, L)
    if check(kind) == "fused":
        return ops.dot_product_attention(q, k, v, mask=allowed[None, None], scale=scale)
    scores = ops.einsum("nqhd,nkhd->nhqk", q, k) * scale  # (N, heads, T, L)
    scores = ops.where(allowed, scores, float("-inf"))
    return ops.einsum("nhqk,nkhd->nqhd", ops.softmax(scores, axis=-1), v)
