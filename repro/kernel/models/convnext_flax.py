"""ConvNeXt in Flax Linen, NHWC, numerically matching convnext_torch.

Shapes: x (N, H, W, 3) -> stem (N, H/4, W/4, C0) -> stages -> (N, H/32, W/32, C3)
        -> global avg pool -> LayerNorm -> fc -> logits (N, classes)

Submodule names follow torch with "." -> "_": top level "stem_0", "stem_1",
"stages_{s}_downsample_0" / "_1", "stages_{s}_blocks_{b}" (a Block holding "conv_dw", "norm",
"mlp" {"fc1", "fc2"} and the param "gamma"), "head_norm" and "head_fc". Matching torch exactly
means:
- LayerNorm(epsilon=layer_norm_eps, use_fast_variance=False): Flax's default eps is 1e-6 (the
  ConvNeXt value, set explicitly anyway) and its default "fast" variance E[x^2] - E[x]^2 loses
  precision where torch computes E[(x - mean)^2];
- exact (erf) GELU: nn.gelu(x, approximate=False) (Flax defaults to the tanh approximation);
- explicit symmetric padding 3 for the depthwise 7x7 conv (feature_group_count = channels).
The model has only "params" (no BatchNorm, no dropout), so train=True and train=False compute
the same function.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from repro.kernel.models.convnext import DOWN_PATCH, KERNEL, MLP_RATIO, STEM_PATCH, ConvNeXtConfig

# timm's trunc_normal_(std=.02) truncates at +-2 absolute (100 std): in effect N(0, 0.02)
WEIGHT_INIT = nn.initializers.normal(0.02)


def _norm(cfg: ConvNeXtConfig, name: str | None = None) -> nn.LayerNorm:
    """LayerNorm over the channels (last axis), computed like torch's."""
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False, name=name)


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=WEIGHT_INIT, name=name)  # zero bias


def _patch_conv(features: int, patch: int, name: str) -> nn.Conv:
    """Non-overlapping patch conv: kernel == stride, no padding."""
    return nn.Conv(
        features,
        (patch, patch),
        strides=(patch, patch),
        padding="VALID",
        kernel_init=WEIGHT_INIT,
        name=name,
    )  # zero bias


class Mlp(nn.Module):
    """Dense C -> 4C, exact (erf) GELU, Dense 4C -> C."""

    dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, H, W, C)
        x = _dense(MLP_RATIO * self.dim, "fc1")(x)  # (N, H, W, 4C)
        x = nn.gelu(x, approximate=False)
        return _dense(self.dim, "fc2")(x)  # (N, H, W, C)


class Block(nn.Module):
    """dwconv 7x7 -> LayerNorm -> MLP -> layer scale, plus the identity shortcut."""

    dim: int
    cfg: ConvNeXtConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, H, W, C)
        p = KERNEL // 2
        out = nn.Conv(
            self.dim,
            (KERNEL, KERNEL),
            padding=((p, p), (p, p)),
            feature_group_count=self.dim,  # depthwise: kernel (7, 7, 1, C)
            kernel_init=WEIGHT_INIT,
            name="conv_dw",
        )(x)  # (N, H, W, C)
        out = Mlp(self.dim, name="mlp")(_norm(self.cfg, "norm")(out))  # (N, H, W, C)
        gamma = self.param(
            "gamma", nn.initializers.constant(self.cfg.layer_scale_init), (self.dim,)
        )
        return x + gamma * out  # no drop path


class ConvNeXt(nn.Module):
    cfg: ConvNeXtConfig

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:  # (N, H, W, C) float32
        # `train` changes nothing: no dropout, no drop path, no BatchNorm
        cfg = self.cfg
        # stem: 4x4 stride-4 "patchify" conv + LayerNorm, H -> H/4
        x = _patch_conv(cfg.dims[0], STEM_PATCH, "stem_0")(x)  # (N, H/4, W/4, dims[0])
        x = _norm(cfg, "stem_1")(x)
        for stage, depth, _, dim, _ in cfg.stages():
            if stage > 0:  # downsample: LayerNorm, then 2x2 stride-2 conv, H -> H/2
                x = _norm(cfg, f"stages_{stage}_downsample_0")(x)
                x = _patch_conv(dim, DOWN_PATCH, f"stages_{stage}_downsample_1")(x)
            for index in range(depth):
                x = Block(dim, cfg, name=f"stages_{stage}_blocks_{index}")(x)  # (N, h, w, dim)
        x = jnp.mean(x, axis=(1, 2))  # global average pool: (N, dims[-1])
        x = _norm(cfg, "head_norm")(x)
        return _dense(cfg.num_classes, "head_fc")(x)  # (N, num_classes)


def build(cfg: ConvNeXtConfig, seed: int = 0) -> tuple[ConvNeXt, dict[str, Any]]:
    """The module and freshly initialised variables {"params": ...}."""
    model = ConvNeXt(cfg)
    x = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.in_channels), jnp.float32)
    variables = jax.jit(model.init, static_argnames="train")(
        jax.random.PRNGKey(seed), x, train=False
    )
    return model, dict(variables)
