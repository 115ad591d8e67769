"""Vision Transformer in Flax Linen, NHWC, numerically matching vit_torch.

Shapes: x (N, H, W, C) -> patch_embed (N, P, D) -> [cls] + tokens, + pos_embed (N, T, D)
-> blocks -> norm -> class token (N, D) -> head -> logits (N, classes); P = (H/p)**2, T = P + 1.

Parameter paths follow the torch module names: "patch_embed/proj", "cls_token", "pos_embed",
"blocks_{i}" (a Block with "norm1", "attn/{query,key,value,proj}", "norm2", "mlp/{fc1,fc2}"),
"norm" and "head". Matching torch exactly means:
- LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False): the two-pass variance, as
  torch computes it;
- exact erf GELU: nn.gelu(approximate=False) (Flax defaults to the tanh approximation);
- separate query/key/value/proj Dense layers around `attention_flax.attend`
  (jax.nn.dot_product_attention, or written out; no flax attention module, whose kernels are
  (D, heads, head_dim));
- no dropout anywhere, so train=True and train=False are the same function.
The only collection is "params".
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from repro.kernel.models.attention_flax import attend
from repro.kernel.models.vit import ViTConfig


def _trunc_normal(std: float = 0.02):
    """torch.nn.init.trunc_normal_(std=std, a=-2 std, b=2 std), as vit_torch (jax's own
    truncated_normal rescales to keep the std after truncation; torch and Keras do not)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)

    return init


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(
        features, kernel_init=_trunc_normal(), bias_init=nn.initializers.zeros, name=name
    )


def _layer_norm(cfg: ViTConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False, name=name)


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size x patch_size patches -> width-dimensional tokens."""

    cfg: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, H, W, C)
        p, fan_in = self.cfg.patch_size, self.cfg.patch_size**2 * self.cfg.in_channels
        bound = 1.0 / fan_in**0.5  # nn.Conv2d's default: U(-1/sqrt(fan_in), +1/sqrt(fan_in))
        x = nn.Conv(
            self.cfg.width, (p, p), strides=(p, p), padding="VALID",
            kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                key, shape, dtype, -bound, bound
            ),
            name="proj",
        )(x)  # fmt: skip  # (N, H/p, W/p, D)
        return x.reshape(x.shape[0], -1, x.shape[-1])  # (N, P, D), patches in row-major order


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(head_dim)) v, projected."""

    cfg: ViTConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, D)
        n, t, d = x.shape
        heads, head_dim = self.cfg.heads, self.cfg.head_dim

        def split(y: jax.Array) -> jax.Array:  # (N, T, D) -> (N, T, heads, head_dim)
            return y.reshape(n, t, heads, head_dim)

        q = split(_dense(d, "query")(x))
        k = split(_dense(d, "key")(x))
        v = split(_dense(d, "value")(x))
        y = attend(q, k, v, causal=False, scale=head_dim**-0.5, kind=self.attention)
        y = y.reshape(n, t, d)  # (N, T, D), heads concatenated
        return _dense(d, "proj")(y)


class Mlp(nn.Module):
    cfg: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, D)
        x = nn.gelu(_dense(self.cfg.mlp_dim, "fc1")(x), approximate=False)  # (N, T, mlp_dim)
        return _dense(self.cfg.width, "fc2")(x)  # (N, T, D)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    cfg: ViTConfig
    attention: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, T, D)
        attn = Attention(self.cfg, self.attention, name="attn")
        x = x + attn(_layer_norm(self.cfg, "norm1")(x))
        return x + Mlp(self.cfg, name="mlp")(_layer_norm(self.cfg, "norm2")(x))


class VisionTransformer(nn.Module):
    cfg: ViTConfig
    attention: str = "fused"  # repro.kernel.models.attention: fused | explicit

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:  # (N, H, W, C) float32
        # train is accepted for the shared interface; without dropout it changes nothing
        cfg = self.cfg
        x = PatchEmbed(cfg, name="patch_embed")(x)  # (N, P, D)
        cls_token = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, cfg.width))
        pos_embed = self.param("pos_embed", _trunc_normal(), (1, cfg.num_tokens, cfg.width))
        cls = jnp.broadcast_to(cls_token, (x.shape[0], 1, cfg.width))  # (N, 1, D)
        x = jnp.concatenate([cls, x], axis=1) + pos_embed  # (N, T, D)
        for i in range(cfg.depth):
            x = Block(cfg, self.attention, name=f"blocks_{i}")(x)
        x = _layer_norm(cfg, "norm")(x)  # (N, T, D)
        return _dense(cfg.num_classes, "head")(x[:, 0])  # class token -> (N, num_classes)


def build(
    cfg: ViTConfig, seed: int = 0, attention: str = "fused"
) -> tuple[VisionTransformer, dict[str, Any]]:
    """The module and freshly initialised variables {"params": ...}."""
    model = VisionTransformer(cfg, attention)
    x = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.in_channels), jnp.float32)
    variables = jax.jit(model.init, static_argnames="train")(
        jax.random.PRNGKey(seed), x, train=False
    )
    return model, {"params": variables["params"]}
