"""ResNet v1.5 in MXNet Gluon (a HybridBlock), numerically matching resnet_torch.

Shapes: x (N, 3, H, W) -> stem -> layer1..layer4 -> global avg pool -> fc -> logits (N, classes)

NCHW, as torch on a CPU: MXNet's CPU convolutions (oneDNN) take NCHW only, so the adapter
permutes the channels-last batch (repro.kernel.frameworks.mxnet.to_native) and torch's weights
go in without a layout change. Child blocks carry torch's module names as attributes
("layer1" -> "0" -> "downsample" -> "0"), so the structural parameter names Gluon gives them
(`_collect_params_with_prefix`, what save_parameters writes) are torch's state_dict keys with
BatchNorm's gamma/beta for weight/bias; repro.kernel.models.resnet_transfer relies on that.
Matching torch means: symmetric padding of kernel // 2; BatchNorm(epsilon=1e-5, momentum=0.9,
the weight of the old running value == torch's 0.1); torchvision's initialisers (He-normal
fan_out convs, BN 1/0, nn.Linear's U(+-1/sqrt(fan_in)) for the fc weight and bias).

BatchNorm in training: MXNet updates the running statistics in the backward pass, not the
forward (a forward under autograd.record alone leaves them as they were), and running_var with
the biased batch variance, as Keras and Flax do (torch: the unbiased one; see resnet.py).
"""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from repro.kernel.models.resnet import EXPANSION, ResNetConfig

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # == torch momentum 0.1
HE_FAN_OUT = mx.init.MSRAPrelu(factor_type="out", slope=0.0)  # N(0, 2 / fan_out)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(
        c_out,
        kernel,
        strides=stride,
        padding=kernel // 2,
        use_bias=False,
        in_channels=c_in,
        weight_initializer=HE_FAN_OUT,
    )


def _bn(channels: int) -> nn.BatchNorm:
    return nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS, in_channels=channels)


class Bottleneck(nn.HybridBlock):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand, plus the shortcut."""

    def __init__(self, c_in: int, mid: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        c_out = mid * EXPANSION
        self.conv1, self.bn1 = _conv(c_in, mid, 1), _bn(mid)
        self.conv2, self.bn2 = _conv(mid, mid, 3, stride), _bn(mid)
        self.conv3, self.bn3 = _conv(mid, c_out, 1), _bn(c_out)
        self.downsample = None  # projection shortcut where the shape changes
        if stride != 1 or c_in != c_out:
            self.downsample = nn.HybridSequential()
            self.downsample.add(_conv(c_in, c_out, 1, stride), _bn(c_out))

    def hybrid_forward(self, F, x):  # (N, c_in, H, W)
        identity = x if self.downsample is None else self.downsample(x)  # (N, c_out, H/s, W/s)
        out = F.relu(self.bn1(self.conv1(x)))  # (N, mid, H, W)
        out = F.relu(self.bn2(self.conv2(out)))  # (N, mid, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (N, c_out, H/s, W/s)
        return F.relu(out + identity)


class ResNet(nn.HybridBlock):
    def __init__(self, cfg: ResNetConfig, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        # stem: 7x7/2 conv + 3x3/2 max-pool, H -> H/4 (MXNet's max-pool skips its padding)
        self.conv1, self.bn1 = _conv(cfg.in_channels, cfg.width, 7, 2), _bn(cfg.width)
        self.maxpool = nn.MaxPool2D(pool_size=3, strides=2, padding=1)
        stages = [nn.HybridSequential() for _ in cfg.depths]
        for stage, _, c_in, mid, stride in cfg.blocks():
            stages[stage].add(Bottleneck(c_in, mid, stride))
        for i, blocks in enumerate(stages):
            setattr(self, f"layer{i + 1}", blocks)  # registered as a child by its torch name
        self.avgpool = nn.GlobalAvgPool2D()
        bound = 1.0 / cfg.out_channels**0.5  # nn.Linear's default: U(-1/sqrt(fan_in), +...)
        self.fc = nn.Dense(
            cfg.num_classes,
            in_units=cfg.out_channels,
            weight_initializer=mx.init.Uniform(bound),
            bias_initializer=mx.init.Uniform(bound),
        )

    def hybrid_forward(self, F, x):  # (N, C, H, W) float32
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))  # (N, width, H/4, W/4)
        for i in range(len(self.cfg.depths)):
            x = getattr(self, f"layer{i + 1}")(x)  # (N, 4*width*2**i, H/2**(i+2), ...)
        return self.fc(F.flatten(self.avgpool(x)))  # (N, num_classes)


def build(cfg: ResNetConfig, ctx=None) -> ResNet:
    """A freshly initialised ResNet on `ctx` (the CPU by default); seed with mx.random.seed
    beforehand. Every layer is given its input channels, so nothing is initialised late."""
    net = ResNet(cfg)
    net.initialize(ctx=ctx or mx.cpu())
    return net


def parameters(net) -> dict:
    """{torch-style structural name: Gluon Parameter} (BatchNorm's running statistics too)."""
    return dict(net._collect_params_with_prefix())
