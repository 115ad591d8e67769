"""BERT for sequence classification in Flax Linen, matching bert_torch.

Shapes: ids (N, T) int -> embeddings (N, T, hidden) -> encoder layers (N, T, hidden)
        -> pooler (N, hidden) on the first token -> classifier -> logits (N, num_classes)

Submodules nest as the torch modules do, a list index joining its name ("bert" / "encoder" /
"layer_0" / "attention" / "self" / "query"), which is all repro.kernel.models.bert_transfer relies
on. Matching torch exactly means: attention through `attention_flax.attend`
(jax.nn.dot_product_attention, or written out; not flax's attention modules, whose kernels are
(hidden, heads, head_size)), exact erf GELU (nn.gelu defaults to the tanh
approximation), LayerNorm(epsilon=cfg.layer_norm_eps) (the Flax default is 1e-6) with the
two-pass variance (Flax's default E[x^2] - E[x]^2 is less accurate), no dropout (so `train`
changes nothing), and BERT's N(0, 0.02) initialisers. Only the "params" collection exists.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from repro.kernel.models.attention_flax import attend
from repro.kernel.models.bert import BertConfig

INIT = nn.initializers.normal(stddev=0.02)  # BERT's init for weights and embeddings


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=INIT, name=name)


def _layer_norm(cfg: BertConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False, name=name)


class Embeddings(nn.Module):
    """word + learned position + token type (always type 0) embeddings -> LayerNorm."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:  # (N, T) int
        cfg = self.cfg

        def embedding(rows: int, name: str) -> nn.Embed:
            return nn.Embed(rows, cfg.hidden, embedding_init=INIT, name=name)

        positions = jnp.arange(ids.shape[1])  # (T,)
        x = embedding(cfg.vocab_size, "word_embeddings")(ids)  # (N, T, hidden)
        x = x + embedding(cfg.max_position, "position_embeddings")(positions)  # + (T, hidden)
        x = x + embedding(cfg.type_vocab, "token_type_embeddings")(jnp.zeros_like(ids))
        return _layer_norm(cfg, "LayerNorm")(x)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (HF's BertSelfAttention)."""

    cfg: BertConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, hidden)
        n, t, hidden = x.shape
        heads, d = self.cfg.heads, self.cfg.head_size

        def split(y: jax.Array) -> jax.Array:  # (N, T, hidden) -> (N, T, heads, d)
            return y.reshape(n, t, heads, d)

        q = split(_dense(hidden, "query")(x))
        k = split(_dense(hidden, "key")(x))
        v = split(_dense(hidden, "value")(x))
        context = attend(q, k, v, causal=False, scale=1 / math.sqrt(d), kind=self.attention)
        return context.reshape(n, t, hidden)  # (N, T, hidden)


class AddNorm(nn.Module):
    """dense -> add the residual -> LayerNorm (HF's BertSelfOutput and BertOutput)."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, residual: jax.Array) -> jax.Array:
        x = _dense(self.cfg.hidden, "dense")(x)
        return _layer_norm(self.cfg, "LayerNorm")(x + residual)  # (N, T, hidden)


class Attention(nn.Module):
    cfg: BertConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, hidden)
        y = SelfAttention(self.cfg, self.attention, name="self")(x)
        return AddNorm(self.cfg, name="output")(y, x)


class Intermediate(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, hidden)
        h = _dense(self.cfg.intermediate, "dense")(x)  # (N, T, intermediate)
        return nn.gelu(h, approximate=False)  # exact erf GELU, as torch's F.gelu


class Layer(nn.Module):
    """One post-norm encoder layer: LayerNorm(x + attention), then LayerNorm(x + feed-forward)."""

    cfg: BertConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, hidden)
        x = Attention(self.cfg, self.attention, name="attention")(x)
        h = Intermediate(self.cfg, name="intermediate")(x)  # (N, T, intermediate)
        return AddNorm(self.cfg, name="output")(h, x)  # (N, T, hidden)


class Encoder(nn.Module):
    cfg: BertConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, hidden)
        for i in range(self.cfg.layers):
            x = Layer(self.cfg, self.attention, name=f"layer_{i}")(x)  # torch "layer.{i}"
        return x


class Pooler(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, hidden)
        return jnp.tanh(_dense(self.cfg.hidden, "dense")(x[:, 0]))  # (N, hidden), first token


class BertModel(nn.Module):
    cfg: BertConfig
    attention: str

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:  # (N, T) int
        x = Embeddings(self.cfg, name="embeddings")(ids)  # (N, T, hidden)
        x = Encoder(self.cfg, self.attention, name="encoder")(x)
        return Pooler(self.cfg, name="pooler")(x)  # (N, hidden)


class BertForSequenceClassification(nn.Module):
    cfg: BertConfig
    attention: str = "fused"  # repro.kernel.models.attention: fused | explicit

    @nn.compact
    def __call__(self, ids: jax.Array, train: bool) -> jax.Array:  # (N, T) int token ids
        del train  # no dropout, no batch statistics: training and eval compute the same
        pooled = BertModel(self.cfg, self.attention, name="bert")(ids)  # (N, hidden)
        return _dense(self.cfg.num_classes, "classifier")(pooled)  # (N, num_classes)


def build(
    cfg: BertConfig, seed: int = 0, attention: str = "fused"
) -> tuple[BertForSequenceClassification, dict[str, Any]]:
    """The module and freshly initialised variables {"params": ...}."""
    model = BertForSequenceClassification(cfg, attention)
    ids = jnp.zeros((1, cfg.sequence_length), jnp.int32)
    variables = jax.jit(model.init, static_argnames="train")(
        jax.random.PRNGKey(seed), ids, train=False
    )
    return model, dict(variables)
