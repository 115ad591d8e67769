"""ResNet v1.5 in Keras 3 (TensorFlow backend), NHWC, numerically matching resnet_torch.

Shapes: x (N, H, W, 3) -> stem -> layer1..layer4 -> global avg pool -> fc -> logits (N, classes)

Layer names are the torch module names with "." -> "_" (e.g. "layer1_0_downsample_0"), which
is all repro.kernel.models.transfer relies on. Matching torch exactly means:
- symmetric padding: ZeroPadding2D + "valid" (Keras "same" pads a stride-2 conv on the
  bottom/right only, which shifts the sampling grid by one pixel);
- BatchNormalization(epsilon=1e-5, momentum=0.9): Keras momentum is the weight of the old
  running value, torch's (0.1) the weight of the new batch statistic;
- torchvision's initialisers (He-normal fan_out convs, BN 1/0, nn.Linear's default fc).
"""

from __future__ import annotations

import keras
from keras import layers

from repro.kernel.models.resnet import EXPANSION, ResNetConfig

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # == torch momentum 0.1


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    """Bias-free conv with torch's symmetric padding of kernel // 2 on every side."""
    if kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    he_fan_out = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
    return layers.Conv2D(
        filters, kernel, strides=stride, use_bias=False, kernel_initializer=he_fan_out, name=name
    )(x)  # padding="valid" (the default)


def _bn(x, name: str):
    return layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name=name)(x)


def _bottleneck(x, c_in: int, mid: int, stride: int, name: str):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand, plus the shortcut."""
    c_out = mid * EXPANSION
    identity = x  # (N, H, W, c_in)
    if stride != 1 or c_in != c_out:  # projection shortcut (torch "downsample.0" / ".1")
        identity = _conv(x, c_out, 1, stride, f"{name}_downsample_0")
        identity = _bn(identity, f"{name}_downsample_1")  # (N, H/s, W/s, c_out)
    out = layers.ReLU()(_bn(_conv(x, mid, 1, 1, f"{name}_conv1"), f"{name}_bn1"))  # (N,H,W,mid)
    out = layers.ReLU()(_bn(_conv(out, mid, 3, stride, f"{name}_conv2"), f"{name}_bn2"))
    out = _bn(_conv(out, c_out, 1, 1, f"{name}_conv3"), f"{name}_bn3")  # (N, H/s, W/s, c_out)
    return layers.ReLU()(layers.Add()([out, identity]))


def build(cfg: ResNetConfig) -> keras.Model:
    """A freshly initialised ResNet; seed with keras.utils.set_random_seed beforehand."""
    x = inputs = keras.Input((cfg.image_size, cfg.image_size, cfg.in_channels), name="images")
    # stem: 7x7/2 conv + 3x3/2 max-pool, H -> H/4. Zero-padding the max-pool is exact here
    # (torch pads with -inf) because its input is post-ReLU, hence >= 0.
    x = layers.ReLU()(_bn(_conv(x, cfg.width, 7, 2, "conv1"), "bn1"))  # (N, H/2, W/2, width)
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)  # (N, H/4, W/4, width)
    for stage, index, c_in, mid, stride in cfg.blocks():
        x = _bottleneck(x, c_in, mid, stride, f"layer{stage + 1}_{index}")
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)  # (N, out_channels)
    bound = 1.0 / cfg.out_channels**0.5  # nn.Linear default: U(-1/sqrt(fan_in), +...)
    logits = layers.Dense(
        cfg.num_classes,
        kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        name="fc",
    )(x)  # (N, num_classes)
    return keras.Model(inputs, logits, name="resnet")
