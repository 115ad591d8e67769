"""ConvNeXt in Keras 3 (TensorFlow backend), NHWC, numerically matching convnext_torch.

Shapes: x (N, H, W, 3) -> stem (N, H/4, W/4, C0) -> stages -> (N, H/32, W/32, C3)
        -> global avg pool -> LayerNorm -> fc -> logits (N, classes)

Layer names are the torch module names with "." -> "_" (e.g. "stages_0_blocks_0_mlp_fc1");
a block's layer scale is the layer "stages_{s}_blocks_{b}_gamma" (torch's parameter
"stages.{s}.blocks.{b}.gamma"). Matching torch exactly means:
- LayerNormalization(epsilon=layer_norm_eps) (the Keras default is 1e-3);
- exact (erf) GELU: keras.activations.gelu(x, approximate=False);
- the depthwise 7x7 conv at stride 1 with padding "same", which is symmetric (3 on every side)
  for an odd kernel at stride 1; the stem and downsampling convs have kernel == stride and
  padding "valid", so no padding question arises.
"""

from __future__ import annotations

import keras
from keras import layers

from repro.kernel.models.convnext import DOWN_PATCH, KERNEL, MLP_RATIO, STEM_PATCH, ConvNeXtConfig


# timm's trunc_normal_(std=.02) truncates at +-2 absolute (100 std): in effect N(0, 0.02)
# a new initializer for every variable (why: repro.kernel.models.bert_keras.init)
def weight_init():
    return keras.initializers.RandomNormal(stddev=0.02)


def gelu(x):
    return keras.activations.gelu(x, approximate=False)  # exact erf GELU, as torch's default


class LayerScale(layers.Layer):
    """Per-channel learnable scale `gamma` (C,), initialised to `init_value`."""

    def __init__(self, init_value: float, **kwargs):
        super().__init__(**kwargs)
        self.init_value = init_value

    def build(self, input_shape) -> None:
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
            name="gamma",
        )

    def call(self, x):  # (N, H, W, C)
        return x * self.gamma


def _norm(x, cfg: ConvNeXtConfig, name: str):
    """LayerNorm over the channels (last axis)."""
    return layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=name)(x)


def _dense(x, units: int, name: str):
    return layers.Dense(units, kernel_initializer=weight_init(), name=name)(x)  # zero bias


def _patch_conv(x, filters: int, patch: int, name: str):
    """Non-overlapping patch conv: kernel == stride, padding "valid"."""
    return layers.Conv2D(
        filters, patch, strides=patch, kernel_initializer=weight_init(), name=name
    )(x)  # zero bias


def _block(x, dim: int, cfg: ConvNeXtConfig, name: str):
    """dwconv 7x7 -> LayerNorm -> MLP -> layer scale, plus the identity shortcut."""
    out = layers.DepthwiseConv2D(
        KERNEL, padding="same", depthwise_initializer=weight_init(), name=f"{name}_conv_dw"
    )(x)  # (N, H, W, C)
    out = _norm(out, cfg, f"{name}_norm")
    out = _dense(out, MLP_RATIO * dim, f"{name}_mlp_fc1")  # (N, H, W, 4C)
    out = layers.Activation(gelu, name=f"{name}_mlp_act")(out)
    out = _dense(out, dim, f"{name}_mlp_fc2")  # (N, H, W, C)
    out = LayerScale(cfg.layer_scale_init, name=f"{name}_gamma")(out)
    return layers.Add(name=f"{name}_add")([x, out])  # no drop path


def build(cfg: ConvNeXtConfig) -> keras.Model:
    """A freshly initialised ConvNeXt; seed with keras.utils.set_random_seed beforehand."""
    x = inputs = keras.Input((cfg.image_size, cfg.image_size, cfg.in_channels), name="images")
    # stem: 4x4 stride-4 "patchify" conv + LayerNorm, H -> H/4
    x = _patch_conv(x, cfg.dims[0], STEM_PATCH, "stem_0")  # (N, H/4, W/4, dims[0])
    x = _norm(x, cfg, "stem_1")
    for stage, depth, _, dim, _ in cfg.stages():
        if stage > 0:  # downsample: LayerNorm, then 2x2 stride-2 conv, H -> H/2
            x = _norm(x, cfg, f"stages_{stage}_downsample_0")
            x = _patch_conv(x, dim, DOWN_PATCH, f"stages_{stage}_downsample_1")
        for index in range(depth):
            x = _block(x, dim, cfg, f"stages_{stage}_blocks_{index}")  # (N, h, w, dim)
    x = layers.GlobalAveragePooling2D(name="head_global_pool")(x)  # (N, dims[-1])
    x = _norm(x, cfg, "head_norm")
    logits = _dense(x, cfg.num_classes, "head_fc")  # (N, num_classes)
    return keras.Model(inputs, logits, name="convnext")
