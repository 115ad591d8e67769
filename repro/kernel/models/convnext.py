"""ConvNeXt configuration, shared by the PyTorch, Keras and Flax implementations.

Framework-free (stdlib only) so the driver can read configs, count parameters and FLOPs
without importing a framework. The architecture is ConvNeXt as in timm / torchvision
(`convnext_base` by default; Liu et al. 2022, "A ConvNet for the 2020s"):

    stem:       4x4 stride-4 conv (with bias) -> LayerNorm                  H -> H/4
    stage i:    [downsample: LayerNorm -> 2x2 stride-2 conv, for i > 0]     H -> H/2
                depths[i] x block(dims[i])
    block(C):   x + gamma * Linear(4C -> C)(GELU(Linear(C -> 4C)(LayerNorm(dwconv7x7(x)))))
    head:       global average pool -> LayerNorm -> Linear(dims[-1] -> num_classes)

Every LayerNorm normalises over channels only (channels-last), with eps = layer_norm_eps in all
three frameworks; GELU is the exact (erf) one; there is no dropout and no stochastic depth
(drop path 0), so training mode computes the same function as inference mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from repro.kernel.models.config_base import Config

MLP_RATIO = 4  # block MLP hidden width = 4 x channels
KERNEL = 7  # depthwise conv kernel (padding 3: "same" at stride 1)
STEM_PATCH = 4  # stem conv: kernel = stride = 4
DOWN_PATCH = 2  # downsampling conv: kernel = stride = 2


@dataclass(frozen=True)
class ConvNeXtConfig(Config):
    task: ClassVar[str] = "image-classification"

    depths: tuple[int, ...] = (3, 3, 27, 3)  # blocks per stage (ConvNeXt-B)
    dims: tuple[int, ...] = (128, 256, 512, 1024)  # channels per stage (ConvNeXt-B)
    num_classes: int = 1000  # ImageNet-1k
    image_size: int = 224  # square input side; a multiple of 4 * 2**(stages - 1)
    in_channels: int = 3  # RGB
    layer_scale_init: float = 1e-6  # initial value of every block's per-channel gamma
    layer_norm_eps: float = 1e-6  # every LayerNorm (timm/torchvision ConvNeXt)

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.dims):
            raise ValueError(f"depths {self.depths} and dims {self.dims} differ in length")
        if self.image_size % self.reduction:
            raise ValueError(f"image_size {self.image_size} is not a multiple of {self.reduction}")

    @property
    def reduction(self) -> int:
        """Total downsampling factor of the trunk: 32 for four stages."""
        return STEM_PATCH * DOWN_PATCH ** (len(self.depths) - 1)

    def stages(self) -> Iterator[tuple[int, int, int, int, int]]:
        """Yield (stage, depth, in_channels, channels, side) for every stage, `side` being the
        feature map side inside the stage (after its downsampling)."""
        c_in, side = self.dims[0], self.image_size // STEM_PATCH
        for stage, (depth, dim) in enumerate(zip(self.depths, self.dims, strict=True)):
            if stage > 0:
                side //= DOWN_PATCH
            yield stage, depth, c_in, dim, side
            c_in = dim

    def num_params(self) -> int:
        """Trainable parameters: conv and linear weights + biases, LayerNorm weight + bias, and
        the per-channel layer-scale gamma of every block. ConvNeXt has no buffers.
        88,591,464 for the default (timm / torchvision `convnext_base`).
        """

        def conv(c_in: int, c_out: int, k: int) -> int:
            return k * k * c_in * c_out + c_out  # weight + bias

        def norm(c: int) -> int:
            return 2 * c

        def linear(c_in: int, c_out: int) -> int:
            return c_in * c_out + c_out

        n = conv(self.in_channels, self.dims[0], STEM_PATCH) + norm(self.dims[0])  # stem
        for stage, depth, c_in, c, _ in self.stages():
            if stage > 0:  # downsample: LayerNorm, then 2x2/2 conv
                n += norm(c_in) + conv(c_in, c, DOWN_PATCH)
            block = (
                KERNEL * KERNEL * c
                + c  # depthwise 7x7 conv, weight + bias
                + norm(c)
                + linear(c, MLP_RATIO * c)  # fc1
                + linear(MLP_RATIO * c, c)  # fc2
                + c  # layer scale gamma
            )
            n += depth * block
        return n + norm(self.dims[-1]) + linear(self.dims[-1], self.num_classes)  # head

    def flops_per_sample(self) -> int:
        """Forward FLOPs for one image_size x image_size image, counted as 2 x MACs.

        Counted: every convolution (stem, downsampling, and the depthwise 7x7 convs at 49 MACs
        per output element) and every linear layer (block MLPs, classifier). Ignored: LayerNorm,
        GELU, layer scale, residual additions, bias additions and the global average pool
        (together well under 1% of the total). ConvNeXt-B at 224: ~30.7 GFLOPs (~15.4 GMACs,
        the figure timm publishes).
        """
        side = self.image_size // STEM_PATCH
        macs = side * side * STEM_PATCH * STEM_PATCH * self.in_channels * self.dims[0]  # stem
        for stage, depth, c_in, c, side in self.stages():
            if stage > 0:  # 2x2/2 downsampling conv, at the output resolution
                macs += side * side * DOWN_PATCH * DOWN_PATCH * c_in * c
            per_pixel = KERNEL * KERNEL * c + 2 * MLP_RATIO * c * c  # dwconv + fc1 + fc2
            macs += depth * side * side * per_pixel
        macs += self.dims[-1] * self.num_classes  # classifier
        return 2 * macs
