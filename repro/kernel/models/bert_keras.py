"""BERT for sequence classification in Keras 3 (TensorFlow backend), matching bert_torch.

Shapes: ids (N, T) int -> embeddings (N, T, hidden) -> encoder layers (N, T, hidden)
        -> pooler (N, hidden) on the first token -> classifier -> logits (N, num_classes)

A functional model over T = cfg.sequence_length tokens. Layer names are the torch module names
with "." -> "_" (e.g. "bert_encoder_layer_0_attention_self_query"), which is all
repro.kernel.models.bert_transfer relies on. Matching torch exactly means: attention through
`attention_keras.attend` (keras.ops.dot_product_attention, or written out; not
keras.layers.MultiHeadAttention, whose kernels are (hidden, heads, head_size)),
exact erf GELU (approximate=False), LayerNormalization(epsilon=cfg.layer_norm_eps) (the Keras
default is 1e-3), no dropout, and BERT's N(0, 0.02) initialisers.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from repro.kernel.models.attention_keras import attend
from repro.kernel.models.bert import BertConfig


# A new initializer for every variable: one Keras 3 initializer object draws its seed once and
# returns the same values on every call, so layers of one shape started identical (BERT: 4
# distinct matrices of 17, q = k = v in every layer)
def init():  # BERT's init for weights and embeddings
    return keras.initializers.RandomNormal(stddev=0.02)


def _dense(units: int, name: str, activation=None) -> layers.Dense:
    return layers.Dense(units, activation=activation, kernel_initializer=init(), name=name)


def _layer_norm(cfg: BertConfig, name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=name)


def _embeddings(ids, cfg: BertConfig, name: str):
    """word + learned position + token type (always type 0) embeddings -> LayerNorm."""

    def embedding(rows: int, part: str) -> layers.Embedding:
        return layers.Embedding(
            rows, cfg.hidden, embeddings_initializer=init(), name=f"{name}_{part}"
        )

    # (N, T): 0 .. T-1 in each row, from ids so the batch stays dynamic; zeros + arange became an
    # int32 BiasAdd, which the TFLite converter has no builtin op for
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1
    x = embedding(cfg.vocab_size, "word_embeddings")(ids)  # (N, T, hidden)
    x = x + embedding(cfg.max_position, "position_embeddings")(positions)
    x = x + embedding(cfg.type_vocab, "token_type_embeddings")(ops.zeros_like(ids))
    return _layer_norm(cfg, f"{name}_LayerNorm")(x)


def _self_attention(x, cfg: BertConfig, attention: str, name: str):
    """Multi-head scaled dot-product self-attention (HF's BertSelfAttention)."""
    t, d = cfg.sequence_length, cfg.head_size

    def split(y):  # (N, T, hidden) -> (N, T, heads, d)
        return ops.reshape(y, (-1, t, cfg.heads, d))

    q = split(_dense(cfg.hidden, f"{name}_query")(x))
    k = split(_dense(cfg.hidden, f"{name}_key")(x))
    v = split(_dense(cfg.hidden, f"{name}_value")(x))
    context = attend(q, k, v, causal=False, scale=1 / math.sqrt(d), kind=attention)
    return ops.reshape(context, (-1, t, cfg.hidden))  # (N, T, hidden)


def _add_norm(x, residual, cfg: BertConfig, name: str):
    """dense -> add the residual -> LayerNorm (HF's BertSelfOutput and BertOutput)."""
    return _layer_norm(cfg, f"{name}_LayerNorm")(_dense(cfg.hidden, f"{name}_dense")(x) + residual)


def _layer(x, cfg: BertConfig, attention: str, name: str):
    """One post-norm encoder layer: LayerNorm(x + attention), then LayerNorm(x + feed-forward)."""
    h = _self_attention(x, cfg, attention, f"{name}_attention_self")
    x = _add_norm(h, x, cfg, f"{name}_attention_output")  # (N, T, hidden)
    h = _dense(cfg.intermediate, f"{name}_intermediate_dense")(x)  # (N, T, intermediate)
    h = keras.activations.gelu(h, approximate=False)  # exact erf GELU, as torch's F.gelu
    return _add_norm(h, x, cfg, f"{name}_output")  # (N, T, hidden)


def build(cfg: BertConfig, attention: str = "fused") -> keras.Model:
    """A freshly initialised BERT classifier; seed with keras.utils.set_random_seed beforehand.
    `attention` is `fused` or `explicit` (repro.kernel.models.attention)."""
    ids = keras.Input((cfg.sequence_length,), dtype="int32", name="input_ids")  # (N, T)
    x = _embeddings(ids, cfg, "bert_embeddings")  # (N, T, hidden)
    for i in range(cfg.layers):
        x = _layer(x, cfg, attention, f"bert_encoder_layer_{i}")
    pooled = _dense(cfg.hidden, "bert_pooler_dense", activation="tanh")(x[:, 0])  # (N, hidden)
    logits = _dense(cfg.num_classes, "classifier")(pooled)  # (N, num_classes)
    return keras.Model(ids, logits, name="bert")
