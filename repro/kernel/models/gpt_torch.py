"""GPT-2 in PyTorch, after nanoGPT's `model.py`; module names are nanoGPT's, so state_dicts match.

Shapes: ids (N, T) int64 -> wte + wpe -> h.0..h.{layers-1} -> ln_f -> logits (N, T, vocab_size)

Attention is causal softmax(q k^T * 1/sqrt(head_dim)) v through `attention_torch.attend`:
scaled_dot_product_attention(is_causal=True) (`fused`, the default) or written out (`explicit`:
scores, -inf above the diagonal, softmax, times v), the same function. No dropout (rate 0).
With tied embeddings there is no lm_head module: the logits are x @ wte.weight^T, so the
state_dict holds the shared matrix once.

Generation (repro.kernel.generation) calls the same modules with a KV cache: `new_cache` makes a
static, pre-allocated one (a (k, v) pair per layer, each (N, heads, L, head_dim)), and
`net(idx, cache, pos)` writes the new tokens' keys and values at positions pos.. in place
(index_copy_, no new shapes: torch.compile traces it once) and attends over the whole cache,
masked beyond each query's position (`attention_torch.attend_cached`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.kernel.models.attention_torch import attend, attend_cached
from repro.kernel.models.gpt import GPTConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, attention: str):
        super().__init__()
        self.heads, self.attention = cfg.heads, attention
        self.c_attn = nn.Linear(cfg.width, 3 * cfg.width, bias=cfg.qkv_bias)  # q, k, v
        self.c_proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor, cache=None, positions=None) -> torch.Tensor:  # (N, T, C)
        n, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)  # 3 x (N, T, C)
        q = q.view(n, t, self.heads, c // self.heads).transpose(1, 2)  # (N, H, T, D)
        k = k.view(n, t, self.heads, c // self.heads).transpose(1, 2)  # (N, H, T, D)
        v = v.view(n, t, self.heads, c // self.heads).transpose(1, 2)  # (N, H, T, D)
        scale = 1.0 / math.sqrt(k.size(-1))
        if cache is None:
            y = attend(q, k, v, causal=True, scale=scale, kind=self.attention)  # (N, H, T, D)
        else:  # written at `positions` of the (N, H, L, D) cache, in place; attend over it
            k_cache, v_cache = cache
            k_cache.index_copy_(2, positions, k.to(k_cache.dtype))
            v_cache.index_copy_(2, positions, v.to(v_cache.dtype))
            kind = self.attention
            y = attend_cached(q, k_cache, v_cache, positions=positions, scale=scale, kind=kind)
        y = y.transpose(1, 2).contiguous().view(n, t, c)  # heads side by side: (N, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.width, cfg.hidden)
        self.c_proj = nn.Linear(cfg.hidden, cfg.width)
        self.tanh_gelu = cfg.tanh_gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C)
        approximate = "tanh" if self.tanh_gelu else "none"  # cfg.activation
        return self.c_proj(F.gelu(self.c_fc(x), approximate=approximate))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, attention: str):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg, attention)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache=None, positions=None) -> torch.Tensor:  # (N, T, C)
        x = x + self.attn(self.ln_1(x), cache, positions)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig, attention: str = "fused"):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.width),
                wpe=nn.Embedding(cfg.context, cfg.width),
                h=nn.ModuleList([Block(cfg, attention) for _ in range(cfg.layers)]),
                ln_f=nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps),
            )
        )
        self.lm_head = (
            None if cfg.tie_embeddings else nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # nanoGPT's init: N(0, 0.02) for linear and embedding weights, zero biases, LayerNorm
        # 1 and 0, and N(0, 0.02 / sqrt(2 layers)) for the projections into the residual stream
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                std = 0.02 / math.sqrt(2 * self.cfg.layers) if name.endswith("c_proj") else 0.02
                nn.init.normal_(m.weight, mean=0.0, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, cache=None, pos=None):  # (N, T) int64 token ids
        """Logits (N, T, vocab_size); with a KV cache (`new_cache`) and `pos`, a 0-d long
        tensor (the first token's position), (logits, cache), the cache updated in place."""
        t = idx.size(1)
        assert t <= self.cfg.context, f"sequence of {t} tokens, context is {self.cfg.context}"
        positions = torch.arange(t, dtype=torch.long, device=idx.device)  # (T,)
        if cache is not None:
            positions = positions + pos
        x = self.transformer.wte(idx) + self.transformer.wpe(positions)  # (N, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache[i], positions)  # (N, T, C)
        x = self.transformer.ln_f(x)
        if self.lm_head is None:  # tied: the token embedding matrix is the output projection
            logits = F.linear(x, self.transformer.wte.weight)  # (N, T, vocab_size)
        else:
            logits = self.lm_head(x)  # (N, T, vocab_size)
        return logits if cache is None else (logits, cache)


def build(cfg: GPTConfig, attention: str = "fused") -> nn.Module:
    """A freshly initialised GPT for cfg (in training mode, like any new nn.Module); `attention`
    is `fused` or `explicit` (repro.kernel.models.attention)."""
    return GPT(cfg, attention)


def new_cache(
    cfg: GPTConfig, batch: int, length: int, dtype=torch.float32, device=None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A static KV cache of `length` positions: per layer (k, v), each (N, heads, L, head_dim)."""
    shape = (batch, cfg.heads, length, cfg.head_dim)
    return [
        (
            torch.zeros(shape, dtype=dtype, device=device),
            torch.zeros(shape, dtype=dtype, device=device),
        )
        for _ in range(cfg.layers)
    ]
