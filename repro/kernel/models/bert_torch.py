"""BERT for sequence classification in PyTorch. Module names follow HuggingFace's
BertForSequenceClassification ("bert.encoder.layer.0.attention.self.query", ...), so its
state_dict has the same keys and shapes (less HF's non-persistent position_ids buffer).

Shapes: ids (N, T) int64 -> embeddings (N, T, hidden) -> encoder layers (N, T, hidden)
        -> pooler (N, hidden) on the first token -> classifier -> logits (N, num_classes)

No dropout (HF's would be identities at rate 0) and no attention mask: all tokens are valid.
Attention is `attention_torch.attend`: scaled_dot_product_attention (`fused`, the default) or
written out (`explicit`), the same function either way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.kernel.models.attention_torch import attend
from repro.kernel.models.bert import BertConfig


class Embeddings(nn.Module):
    """word + learned position + token type (always type 0) embeddings -> LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.max_position, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (N, T) int64
        positions = torch.arange(ids.shape[1], device=ids.device)  # (T,)
        x = self.word_embeddings(ids)  # (N, T, hidden)
        x = x + self.position_embeddings(positions)  # + (T, hidden)
        x = x + self.token_type_embeddings(torch.zeros_like(ids))  # + (N, T, hidden), type 0
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (HF's BertSelfAttention)."""

    def __init__(self, cfg: BertConfig, attention: str):
        super().__init__()
        self.heads, self.attention = cfg.heads, attention
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, hidden)
        n, t, hidden = x.shape
        d = hidden // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:  # (N, T, hidden) -> (N, heads, T, d)
            return y.view(n, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        context = attend(q, k, v, causal=False, scale=1 / math.sqrt(d), kind=self.attention)
        return context.transpose(1, 2).reshape(n, t, hidden)  # (N, T, hidden)


class AddNorm(nn.Module):
    """dense -> add the residual -> LayerNorm (HF's BertSelfOutput and BertOutput)."""

    def __init__(self, n_in: int, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(n_in, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)  # (N, T, hidden)


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig, attention: str):
        super().__init__()
        self.self = SelfAttention(cfg, attention)
        self.output = AddNorm(cfg.hidden, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, hidden)
        return self.output(self.self(x), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, hidden)
        return F.gelu(self.dense(x))  # (N, T, intermediate), exact erf GELU


class Layer(nn.Module):
    """One post-norm encoder layer: LayerNorm(x + attention), then LayerNorm(x + feed-forward)."""

    def __init__(self, cfg: BertConfig, attention: str):
        super().__init__()
        self.attention = Attention(cfg, attention)
        self.intermediate = Intermediate(cfg)
        self.output = AddNorm(cfg.intermediate, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, hidden)
        x = self.attention(x)
        return self.output(self.intermediate(x), x)  # (N, T, hidden)


class Encoder(nn.Module):
    def __init__(self, cfg: BertConfig, attention: str):
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg, attention) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, hidden)
        for layer in self.layer:
            x = layer(x)
        return x


class Pooler(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, hidden)
        return torch.tanh(self.dense(x[:, 0]))  # (N, hidden), the first ([CLS]) token


class BertModel(nn.Module):
    def __init__(self, cfg: BertConfig, attention: str):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg, attention)
        self.pooler = Pooler(cfg)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (N, T) int64
        return self.pooler(self.encoder(self.embeddings(ids)))  # (N, hidden)


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg: BertConfig, attention: str = "fused"):
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(cfg, attention)
        self.classifier = nn.Linear(cfg.hidden, cfg.num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # BERT's init: N(0, 0.02) weights and embeddings, zero biases, LayerNorm 1 / 0
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (N, T) int64 token ids
        return self.classifier(self.bert(ids))  # (N, num_classes)


def build(cfg: BertConfig, attention: str = "fused") -> nn.Module:
    """A freshly initialised BERT classifier for cfg (in training mode, like any new nn.Module);
    `attention` is `fused` or `explicit` (repro.kernel.models.attention)."""
    return BertForSequenceClassification(cfg, attention)
