"""Architectures: one framework-free config per family, one native implementation per framework.

`repro.models.<arch>` holds the config dataclass (with analytic parameter and FLOP counts);
`repro.models.<arch>_torch`, `_keras` and `_flax` hold the native models. Nothing is downloaded:
models start from random weights.
"""

from __future__ import annotations

import importlib

ARCHS = {"resnet": "ResNetConfig"}
NATIVE = {"torch": "torch", "tensorflow": "keras", "jax": "flax"}  # module suffix per framework


def config(model: dict):
    """The config dataclass for a workload's `model: {arch, config}` entry."""
    arch = model["arch"]
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    module = importlib.import_module(f"repro.models.{arch}")
    return getattr(module, ARCHS[arch]).from_dict(model.get("config", {}))


def native(arch: str, framework: str):
    """The module with `build(cfg)` for `arch` in `framework` (imports that framework)."""
    return importlib.import_module(f"repro.models.{arch}_{NATIVE[framework]}")


def synthetic_batch(cfg, batch_size: int, seed: int):
    """A seeded random batch, identical in every framework: images channels-last (N, H, W, C)
    float32 and integer class labels (N,). Training on one fixed batch is a learnable task (the
    model memorises it), so the loss must fall."""
    import numpy as np  # in-kernel only: the driver lists workloads without numpy

    rng = np.random.default_rng(seed)
    shape = (batch_size, cfg.image_size, cfg.image_size, cfg.in_channels)
    images = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, cfg.num_classes, size=batch_size).astype(np.int64)
    return images, labels
