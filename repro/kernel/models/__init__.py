"""Architectures: one framework-free config per family, one native implementation per framework.

`repro.kernel.models.<arch>` holds the config dataclass (with analytic parameter and FLOP
counts); `repro.kernel.models.<arch>_torch`, `_keras` and `_flax` hold the native models
(and `resnet_gluon`, MXNet's one).
Nothing is downloaded: models start from random weights. A user's model comes in through a
source (`hf:`, `module:`; repro.kernel.models.source), a family like these.
"""

from __future__ import annotations

import importlib

from repro.kernel.models.source import FORMS

ARCHS = {  # architecture -> its config dataclass in repro/kernel/models/<arch>.py
    "resnet": "ResNetConfig",
    "vit": "ViTConfig",
    "convnext": "ConvNeXtConfig",
    "bert": "BertConfig",
    "gpt": "GPTConfig",
}
SOURCES = {  # a user's model (repro.kernel.models.source): family -> its config dataclass
    "hf": "HFConfig",
    "module": "ModuleConfig",
}
# module suffix per framework; MXNet's Gluon has the resnet family only (repro.driver.plan)
NATIVE = {"torch": "torch", "tensorflow": "keras", "jax": "flax", "mxnet": "gluon"}
# "The same fp32 outputs" in every framework, as tests/test_models.py checks it on the small
# presets: |difference| <= EQUIVALENCE_ATOL + EQUIVALENCE_RTOL * max|output|
EQUIVALENCE_ATOL, EQUIVALENCE_RTOL = 1e-7, 1e-5


def config(model: dict):
    """The config dataclass for a workload's `model: {arch, config}` entry."""
    arch, families = model.get("arch"), {**ARCHS, **SOURCES}
    if arch not in families:
        raise ValueError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}, or give a "
            f"source: {FORMS}"
        )
    module = importlib.import_module(f"repro.kernel.models.{arch}")
    return getattr(module, families[arch]).from_dict(model.get("config", {}))


def native(arch: str, framework: str):
    """The module with `build(cfg)` for `arch` in `framework` (imports that framework)."""
    return importlib.import_module(f"repro.kernel.models.{arch}_{NATIVE[framework]}")


def has_attention(arch: str) -> bool:
    """Whether `arch`'s models take the attention choice (repro.kernel.models.attention)."""
    from repro.kernel.models.attention import ARCHS

    return arch in ARCHS


def build_options(arch: str, attention: str) -> dict:
    """The keyword arguments of `arch`'s build() beyond its config: `attention` for the families
    with attention, nothing for the others."""
    from repro.kernel.models.attention import check

    return {"attention": check(attention)} if has_attention(arch) else {}


def synthetic_batch(cfg, batch_size: int, seed: int):
    """A seeded random batch, identical in every framework, as numpy arrays (inputs, labels).

    image-classification: images channels-last (N, H, W, C) float32, class labels (N,);
    sequence-classification: token ids (N, T), class labels (N,);
    causal-lm: token ids (N, T) and the next token at every position (N, T).
    Training on one fixed batch is a learnable task (the model memorises it): the loss must fall.
    """
    import numpy as np  # in-kernel only: the driver lists workloads without numpy

    rng = np.random.default_rng(seed)
    if cfg.task == "image-classification":
        shape = (batch_size, cfg.image_size, cfg.image_size, cfg.in_channels)
        images = rng.standard_normal(shape, dtype=np.float32)
        return images, rng.integers(0, cfg.num_classes, size=batch_size)
    tokens = rng.integers(0, cfg.vocab_size, size=(batch_size, cfg.sequence_length + 1))
    if cfg.task == "causal-lm":
        return tokens[:, :-1], tokens[:, 1:]
    return tokens[:, :-1], rng.integers(0, cfg.num_classes, size=batch_size)


def tokens_per_sample(cfg) -> int | None:
    """Tokens in one sample of a sequence task (for tokens/s), None for images."""
    return None if cfg.task == "image-classification" else cfg.sequence_length
