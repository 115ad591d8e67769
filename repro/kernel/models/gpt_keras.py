"""GPT-2 in Keras 3 (TensorFlow backend), numerically matching gpt_torch.

Shapes: ids (N, T) int -> wte + wpe -> h_0..h_{layers-1} -> ln_f -> logits (N, T, vocab_size)

Layer names are the torch module names with "transformer." dropped and "h.3" -> "h_3", so the
variable paths are e.g. "gpt/h_3/attn/c_attn/kernel", which is what gpt_transfer relies on.
Matching torch exactly means: attention through `attention_keras.attend`
(keras.ops.dot_product_attention, or written out; no MultiHeadAttention, whose per-head kernels
have another layout), LayerNormalization(epsilon=cfg.layer_norm_eps)
(Keras defaults to 1e-3), exact erf GELU, no dropout (rate 0), and the tied LM head computed
as x @ wte.embeddings^T. Initialisers are nanoGPT's, as in gpt_torch.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from repro.kernel.models.attention_keras import attend
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

    def call(self, x):  # (N, T, C)
        n, t = ops.shape(x)[0], ops.shape(x)[1]
        c, h = self.width, self.heads
        q, k, v = ops.split(self.c_attn(x), 3, axis=-1)  # 3 x (N, T, C)
        q, k, v = (ops.reshape(y, (n, t, h, c // h)) for y in (q, k, v))  # 3 x (N, T, H, D)
        scale = 1.0 / math.sqrt(c // h)
        y = attend(q, k, v, causal=True, scale=scale, kind=self.attention)  # (N, T, H, D)
        y = ops.reshape(y, (n, t, c))  # heads side by side
        return self.c_proj(y)  # (N, T, C)


class MLP(layers.Layer):
    def __init__(self, cfg: GPTConfig, **kwargs):
        super().__init__(**kwargs)
        proj_std = 0.02 / math.sqrt(2 * cfg.layers)
        self.c_fc = layers.Dense(cfg.hidden, kernel_initializer=_normal(0.02), name="c_fc")
        self.c_proj = layers.Dense(cfg.width, kernel_initializer=_normal(proj_std), name="c_proj")

    def call(self, x):  # (N, T, C)
        return self.c_proj(keras.activations.gelu(self.c_fc(x), approximate=False))


class Block(layers.Layer):
    def __init__(self, cfg: GPTConfig, attention: str, **kwargs):
        super().__init__(**kwargs)
        self.ln_1 = _layer_norm(cfg, "ln_1")
        self.attn = CausalSelfAttention(cfg, attention, name="attn")
        self.ln_2 = _layer_norm(cfg, "ln_2")
        self.mlp = MLP(cfg, name="mlp")

    def call(self, x):  # (N, T, C)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


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

    def call(self, idx, training: bool = False):  # (N, T) int token ids; no dropout to switch
        t = ops.shape(idx)[1]
        if isinstance(t, int) and t > self.cfg.context:
            raise ValueError(f"sequence of {t} tokens, context is {self.cfg.context}")
        x = self.wte(idx) + self.wpe(ops.arange(t))  # (N, T, C) + (T, C)
        for block in self.h:
            x = block(x)  # (N, T, C)
        x = self.ln_f(x)
        if self.lm_head is None:  # tied: the token embedding matrix is the output projection
            return ops.matmul(x, ops.transpose(self.wte.embeddings))  # (N, T, vocab_size)
        return self.lm_head(x)  # (N, T, vocab_size)


def build(cfg: GPTConfig, attention: str = "fused") -> keras.Model:
    """A freshly initialised GPT, its variables created by one call on a two-token sequence (one
    token would make Keras warn about a softmax over one element); seed with
    keras.utils.set_random_seed beforehand. `attention` is `fused` or `explicit`
    (repro.kernel.models.attention)."""
    model = GPT(cfg, attention, name="gpt")
    model(ops.zeros((1, min(2, cfg.context)), dtype="int32"), training=False)
    return model
