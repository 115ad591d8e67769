"""ResNet v1.5 in PyTorch (NCHW). Module names follow torchvision, so state_dicts match.

Shapes: x (N, 3, H, W) -> stem -> layer1..layer4 -> global avg pool -> fc -> logits (N, classes)
"""

from __future__ import annotations

import torch
from torch import nn

from repro.kernel.models.resnet import EXPANSION, ResNetConfig


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand, plus the shortcut."""

    def __init__(self, c_in: int, mid: int, stride: int):
        super().__init__()
        c_out = mid * EXPANSION
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        # projection shortcut where the shape changes (first block of every stage)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, c_in, H, W)
        identity = x if self.downsample is None else self.downsample(x)  # (N, c_out, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))  # (N, mid, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (N, mid, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (N, c_out, H/s, W/s)
        # in place, as torchvision: relu(out + identity) allocated a block-sized buffer per
        # block (ResNet-50 b8: 1.01-1.07x torchvision's time). Autograd allows it: BatchNorm's
        # backward does not need its output, ReLU's needs only its own.
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        # stem: 7x7/2 conv + 3x3/2 max-pool, H -> H/4
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # stages layer1..layer4 (torchvision names); each after the first halves H and W
        stages: list[list[nn.Module]] = [[] for _ in cfg.depths]
        for stage, _, c_in, mid, stride in cfg.blocks():
            stages[stage].append(Bottleneck(c_in, mid, stride))
        for i, blocks in enumerate(stages):
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cfg.out_channels, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's init: He-normal (fan_out) convs, BN gamma=1 beta=0, default nn.Linear
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) float32
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, width, H/4, W/4)
        for i in range(len(self.cfg.depths)):
            x = getattr(self, f"layer{i + 1}")(x)  # (N, 4*width*2**i, H/2**(i+2), ...)
        x = torch.flatten(self.avgpool(x), 1)  # (N, out_channels)
        return self.fc(x)  # (N, num_classes)


def build(cfg: ResNetConfig) -> nn.Module:
    """A freshly initialised ResNet for cfg (in training mode, like any new nn.Module)."""
    return ResNet(cfg)
