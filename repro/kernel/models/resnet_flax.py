"""ResNet v1.5 in Flax Linen, NHWC, numerically matching resnet_torch.

Shapes: x (N, H, W, 3) -> stem -> layer1..layer4 -> global avg pool -> fc -> logits (N, classes)

Submodule names follow torch: top level "conv1", "bn1", "layer{s}_{i}" (a Bottleneck with
"conv1".."bn3", "downsample_0", "downsample_1") and "fc". Matching torch exactly means explicit
symmetric padding (Flax "SAME" is asymmetric for stride 2), BatchNorm(epsilon=1e-5,
momentum=0.9) (Flax momentum weighs the old running value, torch's 0.1 the new batch
statistic) and torchvision's initialisers.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from repro.kernel.models.resnet import EXPANSION, ResNetConfig

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # == torch momentum 0.1
# torch's kaiming_normal_(mode="fan_out"); JAX's "normal" is untruncated, like torch's
HE_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    """Bias-free conv with torch's symmetric padding of kernel // 2 on every side."""
    p = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((p, p), (p, p)),
        use_bias=False,
        kernel_init=HE_FAN_OUT,
        name=name,
    )


def _bn(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS, name=name
    )


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand, plus the shortcut."""

    mid: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:  # (N, H, W, c_in)
        c_in, c_out = x.shape[-1], self.mid * EXPANSION
        identity = x
        if self.stride != 1 or c_in != c_out:  # projection shortcut (torch "downsample.0/.1")
            identity = _conv(c_out, 1, self.stride, "downsample_0")(x)
            identity = _bn(train, "downsample_1")(identity)  # (N, H/s, W/s, c_out)
        out = nn.relu(_bn(train, "bn1")(_conv(self.mid, 1, 1, "conv1")(x)))  # (N, H, W, mid)
        out = nn.relu(_bn(train, "bn2")(_conv(self.mid, 3, self.stride, "conv2")(out)))
        out = _bn(train, "bn3")(_conv(c_out, 1, 1, "conv3")(out))  # (N, H/s, W/s, c_out)
        return nn.relu(out + identity)


class ResNet(nn.Module):
    cfg: ResNetConfig

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:  # (N, H, W, C) float32
        cfg = self.cfg
        # stem: 7x7/2 conv + 3x3/2 max-pool (pads with -inf, like torch), H -> H/4
        x = nn.relu(_bn(train, "bn1")(_conv(cfg.width, 7, 2, "conv1")(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # (N,H/4,W/4,w)
        for stage, index, _, mid, stride in cfg.blocks():
            x = Bottleneck(mid, stride, name=f"layer{stage + 1}_{index}")(x, train)
        x = jnp.mean(x, axis=(1, 2))  # global average pool: (N, out_channels)
        bound = 1.0 / cfg.out_channels**0.5  # nn.Linear default: U(-1/sqrt(fan_in), +...)
        return nn.Dense(
            cfg.num_classes,
            kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                key, shape, dtype, -bound, bound
            ),
            name="fc",
        )(x)  # (N, num_classes)


def build(cfg: ResNetConfig, seed: int = 0) -> tuple[ResNet, dict[str, Any]]:
    """The module and freshly initialised variables {"params": ..., "batch_stats": ...}."""
    model = ResNet(cfg)
    x = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.in_channels), jnp.float32)
    variables = jax.jit(model.init, static_argnames="train")(
        jax.random.PRNGKey(seed), x, train=False
    )
    return model, dict(variables)
