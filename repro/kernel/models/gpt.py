"""GPT configuration, shared by the PyTorch, Keras and Flax implementations.

Framework-free (stdlib only) so the driver can read configs, count parameters and FLOPs
without importing a framework. The architecture is GPT-2 as in nanoGPT's `model.py`:

    token ids (N, T) -> wte (token) + wpe (learned position) embeddings -> `layers` x Block
    -> final LayerNorm ln_f -> LM head -> logits (N, T, vocab_size)
    Block: x + attn(ln_1(x)), then x + mlp(ln_2(x))          (pre-norm, residual)
    attn:  c_attn (width -> 3 width: q, k, v) -> causal softmax(q k^T / sqrt(head_dim)) v
           -> c_proj (width -> width)
    mlp:   c_fc (width -> mlp_ratio width) -> GELU (`activation`) -> c_proj (back to width)

Every linear layer has a bias (q/k/v's is optional, see `qkv_bias`); the LM head has none and by
default reuses the token embedding matrix (`tie_embeddings`). No dropout anywhere (rate 0), so
train and eval mode compute the same function. The causal mask is position i attends to
positions j <= i: the frameworks' fused attention with is_causal=True, or (attention=explicit)
-inf before the softmax, in all three frameworks.

`activation` picks the GELU: "gelu", the exact (erf) one, as in nanoGPT (the default), or
"gelu_tanh", its tanh approximation, which GPT-2 and GPT-Neo use (Hugging Face's "gelu_new"):
slightly different numbers, the same shapes and counts.

GPT-Neo-2.7B is approximated by this block at its sizes (width 2560, 32 layers, 20 heads,
context 2048, vocab 50257) with `qkv_bias=False`, as GPT-Neo has. NOT reproduced: GPT-Neo
alternates global and local attention layers (a 256-token sliding window), here every layer is
global (causal over the whole sequence); and GPT-Neo does not scale q k^T by 1/sqrt(head_dim),
here every layer does. Neither changes a parameter: the count is exactly the published
2,651,307,520. The FLOP count is that of this model (local layers, computed the same masked
way, would cost the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from repro.kernel.models.config_base import Config


@dataclass(frozen=True)
class GPTConfig(Config):
    task: ClassVar[str] = "causal-lm"

    vocab_size: int = 50257  # GPT-2 BPE vocabulary
    context: int = 1024  # maximum positions (rows of the position embedding)
    width: int = 768  # residual stream (d_model)
    layers: int = 12  # transformer blocks
    heads: int = 12  # attention heads; head_dim = width // heads
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * width
    sequence_length: int = 1024  # tokens per sample, used for FLOPs and example inputs
    layer_norm_eps: float = 1e-5  # torch's default, set explicitly in Keras and Flax
    tie_embeddings: bool = True  # LM head reuses the token embedding (GPT-2, GPT-Neo)
    qkv_bias: bool = True  # bias on the q/k/v projection (GPT-2 yes, GPT-Neo no)
    activation: str = "gelu"  # one of ACTIVATIONS: exact (erf) GELU, or its tanh approximation

    ACTIVATIONS: ClassVar[tuple[str, ...]] = ("gelu", "gelu_tanh")

    def __post_init__(self) -> None:
        if self.activation not in self.ACTIVATIONS:
            raise ValueError(
                f"activation {self.activation!r}; choose one of {', '.join(self.ACTIVATIONS)}"
            )
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if not 0 < self.sequence_length <= self.context:
            raise ValueError(
                f"sequence_length {self.sequence_length} must be in 1..context ({self.context})"
            )

    @property
    def tanh_gelu(self) -> bool:
        """Whether the MLP's GELU is the tanh approximation (activation "gelu_tanh")."""
        return self.activation == "gelu_tanh"

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def hidden(self) -> int:
        """MLP hidden width (3072 for GPT-2 small)."""
        return self.mlp_ratio * self.width

    def num_params(self) -> int:
        """Trainable parameters, the tied LM head counted once (as all three frameworks do).

        124,439,808 for the default (GPT-2 small); 2,651,307,520 for the GPT-Neo-2.7B sizes
        with qkv_bias=False.
        """
        c, h = self.width, self.hidden
        embeddings = self.vocab_size * c + self.context * c  # wte + wpe
        layer_norm = 2 * c  # weight (gamma) + bias (beta)
        attn = c * 3 * c + (3 * c if self.qkv_bias else 0) + c * c + c  # c_attn + c_proj
        mlp = c * h + h + h * c + c  # c_fc + c_proj
        block = 2 * layer_norm + attn + mlp
        lm_head = 0 if self.tie_embeddings else self.vocab_size * c  # no bias
        return embeddings + self.layers * block + layer_norm + lm_head  # ... + ln_f

    def flops_per_sample(self) -> int:
        """Forward FLOPs for one sequence of sequence_length tokens, counted as 2 x MACs.

        Counted: every matmul, i.e. per token and layer the q/k/v, attention output and two MLP
        projections, the LM head per token, and per layer the attention matmuls q k^T and
        (softmax) v over the FULL T x T score matrix (the masked upper triangle is computed and
        then discarded, as in all three implementations). Ignored: embedding lookups, LayerNorm,
        softmax, masking, GELU, biases, the 1/sqrt(head_dim) scaling and residual additions.
        About 2 x (parameters without wpe) per token plus attention: GPT-2 small at 1024 tokens
        is ~291.6 GFLOPs.
        """
        c, t = self.width, self.sequence_length
        per_token = self.layers * (c * 3 * c + c * c + 2 * c * self.hidden)  # projections
        per_token += c * self.vocab_size  # LM head
        attention = self.layers * 2 * t * t * c  # q k^T and att v, all heads together
        return 2 * (t * per_token + attention)

    def generation_flops(self, prompt_length: int, new_tokens: int) -> int:
        """Forward FLOPs of one greedy generation per sequence (mode=generate), 2 x MACs: the
        prefill of prompt_length tokens, then new_tokens - 1 decode steps of one token each, as
        computed with a fixed-size cache of L = prompt_length + new_tokens positions: per token
        the projections and the LM head as in flops_per_sample, and attention against all L
        cache slots (the masked ones are computed and discarded, as in all three frameworks)."""
        c, length = self.width, prompt_length + new_tokens
        tokens = prompt_length + new_tokens - 1  # run through the model: the prompt, then each fed
        per_token = self.layers * (c * 3 * c + c * c + 2 * c * self.hidden) + c * self.vocab_size
        attention = self.layers * 2 * length * c  # q k^T and att v per query, all heads together
        return 2 * tokens * (per_token + attention)
