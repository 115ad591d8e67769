"""ResNet configuration, shared by the PyTorch, Keras and Flax implementations.

Framework-free (stdlib only) so the driver can read configs, count parameters and FLOPs
without importing a framework. The architecture is ResNet v1.5 as in torchvision: bottleneck
blocks (1x1 -> 3x3 -> 1x1, expansion 4) with the stride on the 3x3 conv, a 1x1 conv + BN
projection shortcut where the shape changes, and symmetric ("torch") padding everywhere.

The three implementations compute the same function in eval and train mode (BN eps 1e-5,
momentum torch 0.1 == Keras/Flax 0.9). One BN difference no option removes: in training torch
updates running_var with the unbiased batch variance (x n/(n-1), n = N*H*W), Keras and Flax
with the biased one, so running variances drift apart by that factor per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from repro.kernel.models.config_base import Config

EXPANSION = 4  # bottleneck: out channels = 4 x bottleneck (mid) channels


@dataclass(frozen=True)
class ResNetConfig(Config):
    task: ClassVar[str] = "image-classification"
    depths: tuple[int, ...] = (3, 4, 6, 3)  # bottleneck blocks per stage (ResNet-50)
    width: int = 64  # stem channels; stage i has width*2**i mid and 4x that out channels
    num_classes: int = 1000  # ImageNet-1k
    image_size: int = 224  # square input side, used for FLOPs and example inputs
    in_channels: int = 3  # RGB

    def blocks(self) -> Iterator[tuple[int, int, int, int, int]]:
        """Yield (stage, index, in_channels, mid_channels, stride) for every bottleneck block.

        Stage 0 keeps the resolution (the stem's max-pool already halved it); the first
        block of every later stage has stride 2.
        """
        c_in = self.width
        for stage, depth in enumerate(self.depths):
            mid = self.width * 2**stage
            for index in range(depth):
                stride = 2 if (stage > 0 and index == 0) else 1
                yield stage, index, c_in, mid, stride
                c_in = mid * EXPANSION

    @property
    def out_channels(self) -> int:
        """Channels after the last stage (2048 for ResNet-50), the fc input."""
        return self.width * 2 ** (len(self.depths) - 1) * EXPANSION

    def num_params(self) -> int:
        """Trainable parameters: conv weights (no bias), BN gamma+beta, fc weight+bias.

        BN running statistics are buffers, not parameters, and are not counted.
        25,557,032 for the default (ResNet-50).
        """

        def conv(c_in: int, c_out: int, k: int) -> int:
            return k * k * c_in * c_out

        def bn(c: int) -> int:
            return 2 * c

        n = conv(self.in_channels, self.width, 7) + bn(self.width)  # stem
        for _, _, c_in, mid, stride in self.blocks():
            c_out = mid * EXPANSION
            n += conv(c_in, mid, 1) + bn(mid)
            n += conv(mid, mid, 3) + bn(mid)
            n += conv(mid, c_out, 1) + bn(c_out)
            if stride != 1 or c_in != c_out:  # projection shortcut
                n += conv(c_in, c_out, 1) + bn(c_out)
        return n + self.out_channels * self.num_classes + self.num_classes  # fc

    def flops_per_sample(self) -> int:
        """Forward FLOPs for one image_size x image_size image, counted as 2 x MACs.

        Only convolutions and the fc layer are counted; BN, ReLU, pooling and the residual
        additions are ignored (they are < 1% of the total). ResNet-50 at 224: ~8.2 GFLOPs
        (~4.1 GMACs).
        """

        def out_size(size: int, k: int, stride: int, pad: int) -> int:
            return (size + 2 * pad - k) // stride + 1

        def conv_macs(size_out: int, c_in: int, c_out: int, k: int) -> int:
            return size_out * size_out * k * k * c_in * c_out

        s = out_size(self.image_size, 7, 2, 3)  # stem conv 7x7/2
        macs = conv_macs(s, self.in_channels, self.width, 7)
        s = out_size(s, 3, 2, 1)  # max-pool 3x3/2
        for _, _, c_in, mid, stride in self.blocks():
            c_out = mid * EXPANSION
            s_out = out_size(s, 3, stride, 1)
            macs += conv_macs(s, c_in, mid, 1)  # 1x1 reduce, at the input resolution
            macs += conv_macs(s_out, mid, mid, 3)  # 3x3, carries the stride (v1.5)
            macs += conv_macs(s_out, mid, c_out, 1)  # 1x1 expand
            if stride != 1 or c_in != c_out:
                macs += conv_macs(s_out, c_in, c_out, 1)  # projection shortcut
            s = s_out
        macs += self.out_channels * self.num_classes  # fc
        return 2 * macs
