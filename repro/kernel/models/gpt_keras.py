"""GPT-2 in Keras 3 (TensorFlow backend), numerically matching gpt_torch.

Shapes: ids (N, T) int -> wte + wpe -> h_0..h_{layers-1} -> ln_f -> logits (N, T, vocab_size)

Layer names are the torch module names with "transformer." dropped and "h.3" -> "h_3", so the
variable paths are e.g. "gpt/h_3/attn/c_attn/kernel", which is what gpt_transfer relies on.
Matching torch exactly means: attention through `attention_keras.attend`
(keras.ops.dot_product_attention, or written out; no MultiHeadAttention, whose per-head kernels
have another layout), LayerNormalization(epsilon=cfg.layer_norm_eps)
(Keras defaults to 1e-3), the GELU cfg.activation names, no dropout (rate 0), and the tied LM
head computed as x @ wte.embeddings^T. Initialisers are nanoGPT's, as in gpt_torch.

Generation (repro.kernel.generation) calls the same model with a KV cache: `new_cache` makes a
fixed-size one (a (k, v) pair per layer, each (N, L, heads, head_dim)), and
`model(idx, cache=cache, pos=pos)` returns (logits, the cache with the new tokens' keys and values
written at positions pos.. by ops.slice_update). Every shape is fixed and `pos` is a tensor, so a
tf.function traces the prefill once and the decode step once (`attention_keras.attend_cached`
masks the slots beyond each query).
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from repro.kernel.models.attention_keras import attend, attend_cached
from repro.kernel.models.gpt import GPTConfig


def _normal(std: float) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=std)  # untruncated, like torch


def _layer_norm(cfg: GPTConfig, name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=name)


class CausalSelfAttention(layers.Layer):
    def __init__(self, cfg: GPTConfig, attention: str, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.width, self.attention = cfg.heads, cfg.width, attention
        proj_std = 0.02 / math.sqrt(2 * cfg.layers)
        self.c_attn = layers.Dense(  # q, k, v
            3 * cfg.width, use_bias=cfg.qkv_bias, kernel_initializer=_normal(0.02), name="c_attn"
        )
        self.c_proj = layers.Dense(cfg.width, kernel_initializer=_normal(proj_std), name="c_proj")

    def call(self, x, cache=None, positions=None):  # (N, T, C)
        n, t = ops.shape(x)[0], ops.shape(x)[1]
        c, h = self.width, self.heads
        q, k, v = ops.split(self.c_attn(x), 3, axis=-1)  # 3 x (N, T, C)
        q, k, v = (ops.reshape(y, (n, t, h, c // h)) for y in (q, k, v))  # 3 x (N, T, H, D)
        scale = 1.0 / math.sqrt(c // h)
        if cache is None:
            y = attend(q, k, v, causal=True, scale=scale, kind=self.attention)  # (N, T, H, D)
        else:  # written at positions[0].. of the (N, L, H, D) cache; attend over all of it
            start = [0, positions[0], 0, 0]
            k_cache = ops.slice_update(cache[0], start, ops.cast(k, cache[0].dtype))
            v_cache = ops.slice_update(cache[1], start, ops.cast(v, cache[1].dtype))
            cache = (k_cache, v_cache)
            kind = self.attention
            y = attend_cached(q, k_cache, v_cache, positions=positions, scale=scale, kind=kind)
        y = self.c_proj(ops.reshape(y, (n, t, c)))  # heads side by side: (N, T, C)
        return y if cache is None else (y, cache)


class MLP(layers.Layer):
    def __init__(self, cfg: GPTConfig, **kwargs):
        super().__init__(**kwargs)
        proj_std = 0.02 / math.sqrt(2 * cfg.layers)
        self.c_fc = layers.Dense(cfg.hidden, kernel_initializer=_normal(0.02), name="c_fc")
        self.c_proj = layers.Dense(cfg.width, kernel_initializer=_normal(proj_std), name="c_proj")
        self.tanh_gelu = cfg.tanh_gelu

    def call(self, x):  # (N, T, C)
        return self.c_proj(keras.activations.gelu(self.c_fc(x), approximate=self.tanh_gelu))


class Block(layers.Layer):
    def __init__(self, cfg: GPTConfig, attention: str, **kwargs):
        super().__init__(**kwargs)
        self.ln_1 = _layer_norm(cfg, "ln_1")
        self.attn = CausalSelfAttention(cfg, attention, name="attn")
        self.ln_2 = _layer_norm(cfg, "ln_2")
        self.mlp = MLP(cfg, name="mlp")

    def call(self, x, cache=None, positions=None):  # (N, T, C)
        y = self.attn(self.ln_1(x), cache, positions)
        y, cache = (y, None) if cache is None else y
        x = x + y
        x = x + self.mlp(self.ln_2(x))
        return x if cache is None else (x, cache)


class GPT(keras.Model):
    def __init__(self, cfg: GPTConfig, attention: str = "fused", **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.wte = layers.Embedding(
            cfg.vocab_size, cfg.width, embeddings_initializer=_normal(0.02), name="wte"
        )
        self.wpe = layers.Embedding(
            cfg.context, cfg.width, embeddings_initializer=_normal(0.02), name="wpe"
        )
        self.h = [Block(cfg, attention, name=f"h_{i}") for i in range(cfg.layers)]
        self.ln_f = _layer_norm(cfg, "ln_f")
        self.lm_head = None
        if not cfg.tie_embeddings:
            self.lm_head = layers.Dense(
                cfg.vocab_size, use_bias=False, kernel_initializer=_normal(0.02), name="lm_head"
            )

    def call(self, idx, training: bool = False, cache=None, pos=None):  # (N, T) int token ids
        """Logits (N, T, vocab_size); with a KV cache (`new_cache`) and `pos` (the first token's
        position, an int32 scalar tensor), (logits, the updated cache). No dropout to switch."""
        t = ops.shape(idx)[1]
        if isinstance(t, int) and t > self.cfg.context:
            raise ValueError(f"sequence of {t} tokens, context is {self.cfg.context}")
        positions = ops.arange(t) if cache is None else pos + ops.arange(t, dtype="int32")
        x = self.wte(idx) + self.wpe(positions)  # (N, T, C) + (T, C)
        updated = []
        for i, block in enumerate(self.h):
            if cache is None:
                x = block(x)  # (N, T, C)
            else:
                x, layer_cache = block(x, cache[i], positions)
                updated.append(layer_cache)
        x = self.ln_f(x)
        if self.lm_head is None:  # tied: the token embedding matrix is the output projection
            logits = ops.matmul(x, ops.transpose(self.wte.embeddings))  # (N, T, vocab_size)
        else:
            logits = self.lm_head(x)  # (N, T, vocab_size)
        return logits if cache is None else (logits, updated)


def build(cfg: GPTConfig, attention: str = "fused") -> keras.Model:
    """A freshly initialised GPT, its variables created by one call on a two-token sequence (one
    token would make Keras warn about a softmax over one element); seed with
    keras.utils.set_random_seed beforehand. `attention` is `fused` or `explicit`
    (repro.kernel.models.attention)."""
    model = GPT(cfg, attention, name="gpt")
    model(ops.zeros((1, min(2, cfg.context)), dtype="int32"), training=False)
    return model


def new_cache(cfg: GPTConfig, batch: int, length: int, dtype: str = "float32") -> list:
    """A fixed-size KV cache of `length` positions: per layer (k, v), each (N, L, heads,
    head_dim)."""
    shape = (batch, length, cfg.heads, cfg.head_dim)
    return [(ops.zeros(shape, dtype), ops.zeros(shape, dtype)) for _ in range(cfg.layers)]
