"""ConvNeXt in PyTorch (NCHW). Module and parameter names follow timm's `convnext_base`
(stem.0, stages.1.downsample.0, stages.0.blocks.0.mlp.fc1, head.fc, ...), so state_dicts match.

Shapes: x (N, 3, H, W) -> stem (N, C0, H/4, W/4) -> stages -> (N, C3, H/32, W/32)
        -> global avg pool -> LayerNorm -> fc -> logits (N, classes)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.kernel.models.convnext import DOWN_PATCH, KERNEL, MLP_RATIO, STEM_PATCH, ConvNeXtConfig


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (timm's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)


class Mlp(nn.Module):
    """Linear C -> 4C, exact (erf) GELU, Linear 4C -> C, on channels-last input."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, MLP_RATIO * dim)
        self.fc2 = nn.Linear(MLP_RATIO * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, H, W, C)
        return self.fc2(F.gelu(self.fc1(x)))  # F.gelu default: approximate="none" (erf)


class Block(nn.Module):
    """dwconv 7x7 -> LayerNorm -> MLP -> layer scale, plus the identity shortcut."""

    def __init__(self, dim: int, cfg: ConvNeXtConfig):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, KERNEL, padding=KERNEL // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim)
        self.gamma = nn.Parameter(torch.full((dim,), cfg.layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        out = self.conv_dw(x).permute(0, 2, 3, 1)  # (N, H, W, C)
        out = self.gamma * self.mlp(self.norm(out))  # (N, H, W, C)
        return x + out.permute(0, 3, 1, 2)  # (N, C, H, W); no drop path


class Stage(nn.Module):
    """Optional downsampling (LayerNorm -> 2x2 stride-2 conv), then `depth` blocks."""

    def __init__(self, c_in: int, dim: int, depth: int, downsample: bool, cfg: ConvNeXtConfig):
        super().__init__()
        self.downsample = nn.Identity()
        if downsample:
            self.downsample = nn.Sequential(
                LayerNorm2d(c_in, eps=cfg.layer_norm_eps),
                nn.Conv2d(c_in, dim, DOWN_PATCH, stride=DOWN_PATCH),
            )
        self.blocks = nn.Sequential(*(Block(dim, cfg) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, c_in, H, W)
        return self.blocks(self.downsample(x))  # (N, dim, H/2, W/2) or (N, dim, H, W)


class Head(nn.Module):
    """Global average pool -> LayerNorm -> Linear (timm's NormMlpClassifierHead)."""

    def __init__(self, dim: int, cfg: ConvNeXtConfig):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.fc = nn.Linear(dim, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        x = x.mean(dim=(2, 3))  # (N, C)
        return self.fc(self.norm(x))  # (N, num_classes)


class ConvNeXt(nn.Module):
    def __init__(self, cfg: ConvNeXtConfig):
        super().__init__()
        self.cfg = cfg
        # stem: 4x4 stride-4 "patchify" conv + LayerNorm, H -> H/4
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.dims[0], STEM_PATCH, stride=STEM_PATCH),
            LayerNorm2d(cfg.dims[0], eps=cfg.layer_norm_eps),
        )
        self.stages = nn.Sequential(
            *(
                Stage(c_in, dim, depth, stage > 0, cfg)
                for stage, depth, c_in, dim, _ in cfg.stages()
            )
        )
        self.head = Head(cfg.dims[-1], cfg)
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's init: trunc_normal_(std=.02) weights (truncated at +-2 absolute, i.e. at 100
        # std: in effect N(0, 0.02)), zero biases; LayerNorm 1/0; gamma = layer_scale_init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) float32
        x = self.stem(x)  # (N, dims[0], H/4, W/4)
        x = self.stages(x)  # (N, dims[-1], H/32, W/32)
        return self.head(x)  # (N, num_classes)


def build(cfg: ConvNeXtConfig) -> nn.Module:
    """A freshly initialised ConvNeXt for cfg (in training mode, like any new nn.Module)."""
    return ConvNeXt(cfg)
