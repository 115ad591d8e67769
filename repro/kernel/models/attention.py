"""The attention choice, framework-free: which implementation of softmax(q k^T * scale) v runs.

`fused` (the default) calls the framework's own fused attention (torch
scaled_dot_product_attention, jax.nn.dot_product_attention, keras.ops.dot_product_attention);
`explicit` writes the same function out (scores, causal -inf mask, softmax, times v), the
reference and the teaching version. Both are the same model: the same weights and function,
proven by tests/test_models.py. It is an implementation choice, so it is not part of a config.
"""

from __future__ import annotations

KINDS = ("fused", "explicit")  # the first is the default
ARCHS = ("vit", "bert", "gpt")  # the families with attention; their build() takes `attention`


def check(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"attention={kind!r}; choose one of {', '.join(KINDS)}")
    return kind
