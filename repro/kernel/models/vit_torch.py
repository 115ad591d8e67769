"""Vision Transformer in PyTorch (NCHW input). Module names follow timm's VisionTransformer,
except that attention has separate query/key/value linears where timm fuses them into one qkv.

Shapes: x (N, C, H, W) -> patch_embed (N, P, D) -> [cls] + tokens, + pos_embed (N, T, D)
-> blocks -> norm -> class token (N, D) -> head -> logits (N, classes); P = (H/p)**2, T = P + 1.

No dropout anywhere (timm's rates for these models are 0 too): train and eval are the same
function. Attention is `attention_torch.attend`: scaled_dot_product_attention (`fused`, the
default) or written out (`explicit`), the same function either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repro.kernel.models.attention_torch import attend
from repro.kernel.models.vit import ViTConfig


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size x patch_size patches -> width-dimensional tokens."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        p = cfg.patch_size
        self.proj = nn.Conv2d(cfg.in_channels, cfg.width, kernel_size=p, stride=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        x = self.proj(x)  # (N, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (N, P, D), patches in row-major order


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(head_dim)) v, projected."""

    def __init__(self, cfg: ViTConfig, attention: str):
        super().__init__()
        self.heads, self.head_dim, self.attention = cfg.heads, cfg.head_dim, attention
        self.query = nn.Linear(cfg.width, cfg.width)
        self.key = nn.Linear(cfg.width, cfg.width)
        self.value = nn.Linear(cfg.width, cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D)
        n, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:  # (N, T, D) -> (N, heads, T, head_dim)
            return y.view(n, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        y = attend(q, k, v, causal=False, scale=self.head_dim**-0.5, kind=self.attention)
        y = y.transpose(1, 2).reshape(n, t, d)  # (N, T, D), heads concatenated
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.width, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D)
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, F.gelu's default


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, cfg: ViTConfig, attention: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg, attention)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig, attention: str = "fused"):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, cfg.width))
        self.blocks = nn.Sequential(*[Block(cfg, attention) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(cfg.width, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's default ViT init: position embeddings and every Linear trunc-normal(0.02) with
        # zero bias, class token normal(1e-6), LayerNorm 1/0, the patch conv nn.Conv2d's default.
        # Truncation at +-2 std, as Keras' TruncatedNormal does (timm cuts at +-2 absolute).
        def trunc_normal_(t: torch.Tensor, std: float = 0.02) -> None:
            nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)

        trunc_normal_(self.pos_embed)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) float32
        x = self.patch_embed(x)  # (N, P, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (N, 1, D)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (N, T, D)
        x = self.norm(self.blocks(x))  # (N, T, D)
        return self.head(x[:, 0])  # class token -> (N, num_classes)


def build(cfg: ViTConfig, attention: str = "fused") -> nn.Module:
    """A freshly initialised ViT for cfg (in training mode, like any new nn.Module); `attention`
    is `fused` or `explicit` (repro.kernel.models.attention)."""
    return VisionTransformer(cfg, attention)
