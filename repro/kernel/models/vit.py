"""Vision Transformer (ViT) configuration, shared by the PyTorch, Keras and Flax implementations.

Framework-free (stdlib only) so the driver can read configs, count parameters and FLOPs without
importing a framework. The architecture is timm's `vit_base_patch16_224` layout (Dosovitskiy et
al., 2021): a patch_size x patch_size / stride patch_size conv embeds the image into
(image_size / patch_size)**2 tokens, a learned class token is prepended and learned position
embeddings added; then `depth` pre-norm blocks x + attn(norm1(x)), x + mlp(norm2(x)) (multi-head
self-attention with q, k, v and output projections; MLP width -> mlp_dim -> width with exact erf
GELU); a final LayerNorm; a linear head on the class token. No representation (pre-logits) layer.

The three implementations compute the same function: no dropout anywhere (timm's rates are 0 for
these models too), exact GELU, LayerNorm with layer_norm_eps in all three frameworks, and the
attention written out with separate query/key/value/proj linear layers (no framework attention
module, whose parameter layouts differ). Train and eval mode are therefore the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from repro.kernel.models.config_base import Config


@dataclass(frozen=True)
class ViTConfig(Config):
    task: ClassVar[str] = "image-classification"

    # defaults: ViT-B/16 at 224x224 (timm vit_base_patch16_224), 86,567,656 parameters
    image_size: int = 224  # square input side
    patch_size: int = 16  # square patches, embedded by a conv with kernel = stride = patch_size
    in_channels: int = 3  # RGB
    num_classes: int = 1000  # ImageNet-1k
    width: int = 768  # token (embedding) dimension
    depth: int = 12  # transformer blocks
    heads: int = 12  # attention heads; head dimension = width / heads
    mlp_dim: int = 3072  # hidden width of each block's MLP (4 x width)
    layer_norm_eps: float = 1e-6  # every LayerNorm, as in timm's ViTs

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")

    @property
    def num_patches(self) -> int:
        """Patch tokens: (image_size / patch_size)**2 (196 for B/16 at 224)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Sequence length inside the encoder: the patches plus the class token."""
        return self.num_patches + 1

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def num_params(self) -> int:
        """Trainable parameters: every weight and bias, the class token and position embeddings.

        86,567,656 for the default (ViT-B/16), 304,326,632 for L/16, 632,045,800 for H/14.
        """
        w, m = self.width, self.mlp_dim

        def linear(n_in: int, n_out: int) -> int:
            return n_in * n_out + n_out  # weight + bias

        layer_norm = 2 * w  # scale + bias
        n = self.patch_size**2 * self.in_channels * w + w  # patch embedding conv (with bias)
        n += w + self.num_tokens * w  # class token + position embeddings
        block = layer_norm + 4 * linear(w, w)  # norm1, query/key/value/proj
        block += layer_norm + linear(w, m) + linear(m, w)  # norm2, fc1, fc2
        n += self.depth * block
        return n + layer_norm + linear(w, self.num_classes)  # final norm, head

    def flops_per_sample(self) -> int:
        """Forward FLOPs for one image_size x image_size image, counted as 2 x MACs.

        Counted: the patch-embedding conv, per block the q/k/v/proj projections, the QK^T and AV
        attention matmuls and the two MLP layers, and the head (on the class token only).
        Ignored: LayerNorms, softmax, the 1/sqrt(head_dim) scaling, GELU, biases, the position
        embedding and residual additions (together well under 1%). ViT-B/16 at 224: ~35.1 GFLOPs
        (~17.6 GMACs).
        """
        t, w, m = self.num_tokens, self.width, self.mlp_dim
        macs = self.num_patches * self.patch_size**2 * self.in_channels * w  # patch embedding
        block = 4 * t * w * w  # query, key, value and output projections
        block += 2 * t * t * w  # QK^T and AV: heads x (t x t x head_dim) each
        block += 2 * t * w * m  # fc1 and fc2
        macs += self.depth * block
        macs += w * self.num_classes  # head, class token only
        return 2 * macs
