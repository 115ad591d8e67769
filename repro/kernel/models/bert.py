"""BERT configuration, shared by the PyTorch, Keras and Flax implementations.

Framework-free (stdlib only) so the driver can read configs, count parameters and FLOPs
without importing a framework. The architecture is HuggingFace's BertForSequenceClassification:

    token ids (N, T) -> embeddings: word + learned position + token type (all type 0) -> LayerNorm
                     -> `layers` post-norm encoder layers:
                            x = LayerNorm(x + attention_output(self_attention(x)))
                            x = LayerNorm(x + output(gelu(intermediate(x))))
                     -> pooler: tanh(Linear(x[:, 0])) -> classifier Linear -> logits (N, classes)

No dropout anywhere (HF's dropout layers are identities at rate 0, which is what eval mode
computes) and no attention mask: every token is valid. GELU is the exact (erf) one, LayerNorm
eps is `layer_norm_eps` (1e-12) in all three frameworks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from repro.kernel.models.config_base import Config


@dataclass(frozen=True)
class BertConfig(Config):
    task: ClassVar[str] = "sequence-classification"

    vocab_size: int = 30522  # WordPiece vocabulary of bert-base-uncased
    hidden: int = 768  # model width (bert-base)
    layers: int = 12  # encoder layers (bert-base)
    heads: int = 12  # attention heads; head size = hidden // heads = 64
    intermediate: int = 3072  # feed-forward width, 4 x hidden
    max_position: int = 512  # rows of the learned position embedding table
    type_vocab: int = 2  # token type (segment) embeddings: sentence A / B
    num_classes: int = 2  # classifier outputs (binary classification, e.g. SST-2)
    sequence_length: int = 128  # tokens per sequence, used for FLOPs and example inputs
    layer_norm_eps: float = 1e-12  # every LayerNorm, as in the original BERT

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.sequence_length > self.max_position:
            raise ValueError(
                f"sequence_length ({self.sequence_length}) exceeds max_position "
                f"({self.max_position})"
            )

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    def num_params(self) -> int:
        """Trainable parameters: embedding tables, Linear weights + biases, LayerNorm gamma + beta.

        109,483,778 for the default (bert-base with a 2-label head; the BERT paper's "110M").
        """
        h, i = self.hidden, self.intermediate

        def linear(n_in: int, n_out: int) -> int:
            return n_in * n_out + n_out

        layer_norm = 2 * h
        embeddings = (self.vocab_size + self.max_position + self.type_vocab) * h + layer_norm
        attention = 4 * linear(h, h) + layer_norm  # query, key, value, output; LayerNorm
        feed_forward = linear(h, i) + linear(i, h) + layer_norm  # intermediate, output; LayerNorm
        pooler = linear(h, h)
        classifier = linear(h, self.num_classes)
        return embeddings + self.layers * (attention + feed_forward) + pooler + classifier

    def flops_per_sample(self) -> int:
        """Forward FLOPs for one sequence of sequence_length tokens, counted as 2 x MACs.

        Counted: every matmul, i.e. the Q/K/V, attention-output and feed-forward projections
        for every token, attention's QK^T and (softmax)V matmuls (T x T x hidden MACs each per
        layer), the pooler (first token only) and the classifier. Ignored: embedding lookups
        and additions, LayerNorm, softmax, the 1/sqrt(head_size) scaling, GELU, tanh, biases and
        residual additions (< 1% of the total). bert-base at T = 128: ~22.3 GFLOPs
        (~11.2 GMACs).
        """
        t, h, i = self.sequence_length, self.hidden, self.intermediate
        per_token = 4 * h * h + 2 * h * i  # Q, K, V, output projection; feed-forward
        attention = 2 * t * t * h  # QK^T and AV, summed over heads
        macs = self.layers * (t * per_token + attention)
        macs += h * h + h * self.num_classes  # pooler on the first token, classifier
        return 2 * macs
