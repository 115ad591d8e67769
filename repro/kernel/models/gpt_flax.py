"""GPT-2 in Flax Linen, numerically matching gpt_torch.

Shapes: ids (N, T) int -> wte + wpe -> h_0..h_{layers-1} -> ln_f -> logits (N, T, vocab_size)

Submodule names are the torch module names with "transformer." dropped and "h.3" -> "h_3"
(params "h_3/attn/c_attn/kernel", ...), which is what gpt_transfer relies on. Matching torch
exactly means: attention through `attention_flax.attend` (jax.nn.dot_product_attention, or
written out; no flax attention module, whose per-head kernels have another layout),
LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False) (Flax defaults to 1e-6 and to the
one-pass variance E[x^2] - E[x]^2; torch computes two-pass), the GELU cfg.activation names
(nn.gelu defaults to the tanh approximation!), no dropout (rate 0: `train` changes nothing), and
the tied LM head as wte.attend (x @ embedding^T). Initialisers are nanoGPT's.

Generation (repro.kernel.generation) applies the same module with a KV cache: `new_cache` makes a
fixed-size one (a (k, v) pair per layer, each (N, L, heads, head_dim)), and
`apply(variables, idx, cache=cache, pos=pos)` returns (logits, the cache with the new tokens'
keys and values written at positions pos.. by lax.dynamic_update_slice). Every shape is fixed
and `pos` is traced, so one jit compiles the prefill and one the decode step, whatever the
position (`attention_flax.attend_cached` masks the slots beyond each query).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from repro.kernel.models.attention_flax import attend, attend_cached
from repro.kernel.models.gpt import GPTConfig


def _normal(std: float) -> nn.initializers.Initializer:
    return nn.initializers.normal(stddev=std)  # untruncated, like torch


def _layer_norm(cfg: GPTConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False, name=name)


class CausalSelfAttention(nn.Module):
    cfg: GPTConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array, cache=None, positions=None):  # (N, T, C)
        cfg = self.cfg
        n, t, c = x.shape
        h = cfg.heads
        proj_std = 0.02 / math.sqrt(2 * cfg.layers)
        qkv = nn.Dense(3 * c, use_bias=cfg.qkv_bias, kernel_init=_normal(0.02), name="c_attn")(x)
        q, k, v = jnp.split(qkv, 3, axis=-1)  # 3 x (N, T, C)
        q, k, v = (y.reshape(n, t, h, c // h) for y in (q, k, v))  # 3 x (N, T, H, D)
        scale = 1.0 / math.sqrt(c // h)
        if cache is None:
            y = attend(q, k, v, causal=True, scale=scale, kind=self.attention)  # (N, T, H, D)
        else:  # written at positions[0].. of the (N, L, H, D) cache; attend over all of it
            start = (0, positions[0], 0, 0)
            k_cache, v_cache = cache
            k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
            v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
            cache = (k_cache, v_cache)
            kind = self.attention
            y = attend_cached(q, k_cache, v_cache, positions=positions, scale=scale, kind=kind)
        y = y.reshape(n, t, c)  # heads side by side: (N, T, C)
        y = nn.Dense(c, kernel_init=_normal(proj_std), name="c_proj")(y)
        return y if cache is None else (y, cache)


class MLP(nn.Module):
    cfg: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, C)
        cfg = self.cfg
        proj_std = 0.02 / math.sqrt(2 * cfg.layers)
        x = nn.Dense(cfg.hidden, kernel_init=_normal(0.02), name="c_fc")(x)  # (N, T, 4C)
        x = nn.gelu(x, approximate=cfg.tanh_gelu)  # cfg.activation (Flax defaults to tanh)
        return nn.Dense(cfg.width, kernel_init=_normal(proj_std), name="c_proj")(x)


class Block(nn.Module):
    cfg: GPTConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array, cache=None, positions=None):  # (N, T, C)
        attn = CausalSelfAttention(self.cfg, self.attention, name="attn")
        y = attn(_layer_norm(self.cfg, "ln_1")(x), cache, positions)
        y, cache = (y, None) if cache is None else y
        x = x + y
        x = x + MLP(self.cfg, name="mlp")(_layer_norm(self.cfg, "ln_2")(x))
        return x if cache is None else (x, cache)


class GPT(nn.Module):
    cfg: GPTConfig
    attention: str = "fused"  # repro.kernel.models.attention: fused | explicit

    @nn.compact
    def __call__(self, idx: jax.Array, train: bool = False, cache=None, pos=None):  # (N, T) ids
        """Logits (N, T, vocab_size); with a KV cache (`new_cache`) and `pos` (the first token's
        position, an int32 scalar), (logits, the updated cache)."""
        del train  # no dropout: train and eval are the same function
        cfg = self.cfg
        t = idx.shape[1]
        if t > cfg.context:
            raise ValueError(f"sequence of {t} tokens, context is {cfg.context}")
        wte = nn.Embed(cfg.vocab_size, cfg.width, embedding_init=_normal(0.02), name="wte")
        wpe = nn.Embed(cfg.context, cfg.width, embedding_init=_normal(0.02), name="wpe")
        positions = jnp.arange(t) if cache is None else pos + jnp.arange(t)  # (T,)
        x = wte(idx) + wpe(positions)  # (N, T, C) + (T, C)
        updated = []
        for i in range(cfg.layers):
            block = Block(cfg, self.attention, name=f"h_{i}")
            if cache is None:
                x = block(x)  # (N, T, C)
            else:
                x, layer_cache = block(x, cache[i], positions)
                updated.append(layer_cache)
        x = _layer_norm(cfg, "ln_f")(x)
        if cfg.tie_embeddings:  # the token embedding matrix is the output projection
            logits = wte.attend(x)  # (N, T, vocab_size)
        else:
            lm_head = nn.Dense(
                cfg.vocab_size, use_bias=False, kernel_init=_normal(0.02), name="lm_head"
            )
            logits = lm_head(x)  # (N, T, vocab_size)
        return logits if cache is None else (logits, tuple(updated))


def build(cfg: GPTConfig, seed: int = 0, attention: str = "fused") -> tuple[GPT, dict[str, Any]]:
    """The module and freshly initialised variables {"params": ...}. Initialised (jitted) on a
    single token: the parameters do not depend on the sequence length."""
    model = GPT(cfg, attention)
    idx = jnp.zeros((1, 1), jnp.int32)
    variables = jax.jit(model.init, static_argnames="train")(
        jax.random.PRNGKey(seed), idx, train=False
    )
    return model, {"params": variables["params"]}


def new_cache(cfg: GPTConfig, batch: int, length: int, dtype=jnp.float32) -> tuple:
    """A fixed-size KV cache of `length` positions: per layer (k, v), each (N, L, heads,
    head_dim)."""
    shape = (batch, length, cfg.heads, cfg.head_dim)
    return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.layers))
