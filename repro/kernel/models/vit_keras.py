"""Vision Transformer in Keras 3 (TensorFlow backend), NHWC, numerically matching vit_torch.

Shapes: x (N, H, W, C) -> patch_embed (N, P, D) -> [cls] + tokens, + pos_embed (N, T, D)
-> blocks -> norm -> class token (N, D) -> head -> logits (N, classes); P = (H/p)**2, T = P + 1.

A flat functional model whose layer names are the torch module names with "." -> "_" (e.g.
"blocks_0_attn_query"), which is what vit_transfer relies on. Matching torch exactly means:
- LayerNormalization(epsilon=cfg.layer_norm_eps) (Keras' default is 1e-3);
- exact erf GELU (keras.activations.gelu(approximate=False));
- separate query/key/value/proj Dense layers around `attention_keras.attend`
  (keras.ops.dot_product_attention, or written out; no MultiHeadAttention, whose kernels are
  (D, heads, head_dim));
- no dropout anywhere, so training=True and training=False are the same function.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from repro.kernel.models.attention_keras import attend
from repro.kernel.models.vit import ViTConfig


# timm's init (see vit_torch): Linear weights trunc-normal(0.02) cut at +-2 std, zero biases
# a new initializer for every variable (why: repro.kernel.models.bert_keras.init)
def trunc_normal():
    return keras.initializers.TruncatedNormal(stddev=0.02)


class ClassToken(layers.Layer):
    """Prepends a learned class token: (N, P, D) -> (N, 1 + P, D)."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.token = self.add_weight(
            shape=(1, 1, width),
            initializer=keras.initializers.RandomNormal(stddev=1e-6),
            name="token",
        )

    def call(self, x):  # (N, P, D)
        cls = ops.broadcast_to(self.token, (ops.shape(x)[0], 1, self.token.shape[-1]))
        return ops.concatenate([cls, x], axis=1)  # (N, T, D)


class PositionEmbedding(layers.Layer):
    """Adds learned position embeddings: (N, T, D) -> (N, T, D)."""

    def __init__(self, num_tokens: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.embedding = self.add_weight(
            shape=(1, num_tokens, width), initializer=trunc_normal(), name="embedding"
        )

    def call(self, x):  # (N, T, D)
        return x + self.embedding


class DotProductAttention(layers.Layer):
    """The parameter-free core of multi-head attention: softmax(q k^T / sqrt(head_dim)) v."""

    def __init__(self, heads: int, attention: str, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.attention = heads, attention

    def call(self, q, k, v):  # each (N, T, D)
        t, d = q.shape[1], q.shape[2]
        head_dim = d // self.heads

        def split(y):  # (N, T, D) -> (N, T, heads, head_dim)
            return ops.reshape(y, (-1, t, self.heads, head_dim))

        q, k, v = split(q), split(k), split(v)
        y = attend(q, k, v, causal=False, scale=head_dim**-0.5, kind=self.attention)
        return ops.reshape(y, (-1, t, d))  # (N, T, D), heads concatenated


class GELU(layers.Layer):
    """Exact (erf) GELU, as torch's F.gelu default."""

    def call(self, x):
        return keras.activations.gelu(x, approximate=False)


def _dense(units: int, name: str) -> layers.Dense:
    return layers.Dense(
        units, kernel_initializer=trunc_normal(), bias_initializer="zeros", name=name
    )


def _layer_norm(cfg: ViTConfig, name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=name)


def _block(x, cfg: ViTConfig, attention: str, name: str):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); (N, T, D)."""
    h = _layer_norm(cfg, f"{name}_norm1")(x)
    q = _dense(cfg.width, f"{name}_attn_query")(h)  # (N, T, D)
    k = _dense(cfg.width, f"{name}_attn_key")(h)
    v = _dense(cfg.width, f"{name}_attn_value")(h)
    h = DotProductAttention(cfg.heads, attention, name=f"{name}_attn")(q, k, v)  # (N, T, D)
    x = layers.Add()([x, _dense(cfg.width, f"{name}_attn_proj")(h)])
    h = _layer_norm(cfg, f"{name}_norm2")(x)
    h = GELU(name=f"{name}_mlp_gelu")(_dense(cfg.mlp_dim, f"{name}_mlp_fc1")(h))  # (N,T,mlp)
    return layers.Add()([x, _dense(cfg.width, f"{name}_mlp_fc2")(h)])  # (N, T, D)


def build(cfg: ViTConfig, attention: str = "fused") -> keras.Model:
    """A freshly initialised ViT; seed with keras.utils.set_random_seed beforehand. `attention`
    is `fused` or `explicit` (repro.kernel.models.attention)."""
    x = inputs = keras.Input((cfg.image_size, cfg.image_size, cfg.in_channels), name="images")
    # patch embedding: a conv with kernel = stride = patch_size; nn.Conv2d's default init
    p = cfg.patch_size
    bound = 1.0 / (p * p * cfg.in_channels) ** 0.5  # U(-1/sqrt(fan_in), +1/sqrt(fan_in))
    x = layers.Conv2D(
        cfg.width, p, strides=p,
        kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        name="patch_embed_proj",
    )(x)  # fmt: skip  # (N, H/p, W/p, D)
    x = layers.Reshape((cfg.num_patches, cfg.width), name="patch_embed_flatten")(x)  # (N,P,D)
    x = ClassToken(cfg.width, name="cls_token")(x)  # (N, T, D)
    x = PositionEmbedding(cfg.num_tokens, cfg.width, name="pos_embed")(x)
    for i in range(cfg.depth):
        x = _block(x, cfg, attention, f"blocks_{i}")
    x = _layer_norm(cfg, "norm")(x)  # (N, T, D)
    logits = _dense(cfg.num_classes, "head")(x[:, 0])  # class token -> (N, num_classes)
    return keras.Model(inputs, logits, name="vit")
