"""Attention in JAX for the Flax ViT, BERT and GPT families (repro.kernel.models.attention says
more)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from repro.kernel.models.attention import check

# jax.nn.dot_product_attention's default implementation is XLA's own lowering (in jax 0.11 on an
# H100 it called no cuDNN kernel, and GPT-2 ran slower with it than with the explicit path).
# cuDNN's fused kernel needs asking for, takes only fp16/bf16, and exists only on a GPU: the JAX
# adapter says whether the computation runs on one (`on_gpu`), the dtype decides the rest.
CUDNN_DTYPES = (jnp.float16, jnp.bfloat16)
_gpu = False


def on_gpu(flag: bool) -> None:
    """Whether fused attention may call cuDNN: set by the JAX adapter from the device it picked."""
    global _gpu
    _gpu = flag


def fused(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool, scale: float) -> jax.Array:
    """cuDNN's fused attention where it applies, else JAX's default (XLA). A shape cuDNN does not
    take (it raises NotImplementedError when traced) falls back to XLA; the report reads the
    compiled program to say which ran (repro.kernel.frameworks.jax.Adapter.attention_kernel)."""
    if _gpu and q.dtype in CUDNN_DTYPES:
        try:
            return jax.nn.dot_product_attention(
                q, k, v, is_causal=causal, scale=scale, implementation="cudnn"
            )
        except NotImplementedError:
            pass
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, scale=scale)


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool, scale: float, kind: str
) -> jax.Array:
    """softmax(q k^T * scale [+ -inf above the diagonal]) v; q, k, v and the result are
    (N, T, heads, head_dim), jax.nn.dot_product_attention's layout."""
    if check(kind) == "fused":
        return fused(q, k, v, causal=causal, scale=scale)
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) * scale  # (N, heads, T, T)
    if causal:  # query i attends to keys j <= i
        pos = jnp.arange(q.shape[1])
        scores = jnp.where(pos[:, None] >= pos[None, :], scores, -jnp.inf)
    return jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(scores, axis=-1), v)


def attend_cached(
    q: jax.Array, k: jax.Array, v: jax.Array, *, positions: jax.Array, scale: float, kind: str
) -> jax.Array:
    """Causal attention of new queries over a fixed-size KV cache: q (N, T, heads, head_dim) at
    absolute `positions` (T,), k and v the whole cache (N, L, heads, head_dim). Query i attends
    to keys j <= positions[i]; the slots beyond, not yet written, are masked like the future."""
    allowed = jnp.arange(k.shape[1])[None, :] <= positions[:, None]  # (T, L)
    if check(kind) == "fused":
        return jax.nn.dot_product_attention(q, k, v, mask=allowed[None, None], scale=scale)
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) * scale  # (N, heads, T, L)
    scores = jnp.where(allowed, scores, -jnp.inf)
    return jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(scores, axis=-1), v)
