"""Attention in JAX for the Flax ViT, BERT and GPT families (repro.models.attention says more)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from repro.models.attention import check


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool, scale: float, kind: str
) -> jax.Array:
    """softmax(q k^T * scale [+ -inf above the diagonal]) v; q, k, v and the result are
    (N, T, heads, head_dim), jax.nn.dot_product_attention's layout."""
    # JAX's default implementation; in jax 0.11 that is XLA's own (on an H100 it called no cuDNN
    # kernel, and GPT-2 ran slower than the explicit path); implementation="cudnn" is untried.
    if check(kind) == "fused":
        return jax.nn.dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) * scale  # (N, heads, T, T)
    if causal:  # query i attends to keys j <= i
        pos = jnp.arange(q.shape[1])
        scores = jnp.where(pos[:, None] >= pos[None, :], scores, -jnp.inf)
    return jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(scores, axis=-1), v)
