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
    "keras": "KerasConfig",  # a saved Keras 3 model (.keras), the user's own
}
SOURCES = {  # a user's model (repro.kernel.models.source): family -> its config dataclass
    "hf": "HFConfig",
    "module": "ModuleConfig",
}
# module suffix per framework; MXNet's Gluon has the resnet family only (repro.driver.plan)
NATIVE = {"torch": "torch", "tensorflow": "keras", "jax": "flax", "mxnet": "gluon"}
# families loaded from a file by one module for every framework (Keras 3 on each one's backend)
SAVED = {"keras": "keras_saved"}
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
    name = SAVED.get(arch) or f"{arch}_{NATIVE[framework]}"
    return importlib.import_module(f"repro.kernel.models.{name}")


def located(model: dict) -> dict:
    """A workload's `model` entry with the files it names as absolute paths: the driver reads
    them from its own directory, the kernel from the run folder."""
    if model.get("arch") not in SAVED or not isinstance(model.get("config"), dict):
        return model
    family = importlib.import_module(f"repro.kernel.models.{model['arch']}")
    return {**model, "config": family.located(model["config"])}


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


def same_outputs(saved: list) -> dict | None:
    """Whether runs of one saved model gave the same outputs: each run's `saved` record (its model
    section's, repro.kernel.report.saved_model) against the first's, fp32, on the same seeded
    input, within EQUIVALENCE_ATOL + EQUIVALENCE_RTOL * max|output|. None unless every run is of
    a saved model; "why" says what could not be checked."""
    if len(saved) < 2 or not all(isinstance(s, dict) for s in saved):
        return None
    base = saved[0]
    out = {"sha256": base.get("sha256"), "backends": [s.get("backend") for s in saved]}
    for key, what in (("sha256", "files"), ("seed", "seeds"), ("precision", "precisions")):
        if len({s.get(key) for s in saved}) > 1:
            return {**out, "same": None, "why": f"not checked: the runs' {what} differ"}
    if base.get("precision") != "fp32":
        return {**out, "same": None, "why": "not checked: outputs are compared in fp32 only"}
    values = [s.get("values") for s in saved]
    if not all(isinstance(v, list) and all(type(x) in (int, float) for x in v) for v in values):
        return {**out, "same": None, "why": "not checked: a run's recorded outputs are not numbers"}
    if len({len(v) for v in values}) > 1 or len({str(s.get("shape")) for s in saved}) > 1:
        return {**out, "same": False, "why": "the runs' outputs differ in shape"}
    pairs = (abs(a - b) for v in values[1:] for a, b in zip(values[0], v, strict=True))
    diff = max(pairs, default=0.0)
    bound = EQUIVALENCE_ATOL + EQUIVALENCE_RTOL * max(map(abs, values[0]), default=0.0)
    return {**out, "same": diff <= bound, "max_abs_diff": diff, "bound": bound, "why": None}


def said(same: dict) -> str:
    """same_outputs' finding as a line of markdown (`repro compare` shows it)."""
    from repro.markdown import escape

    on = escape(", ".join(str(b) for b in same["backends"]))
    if same["same"] is None:
        return f"Same saved model on {on}: {same['why']}."  # `why`: same_outputs' own words
    if same["same"]:
        return (
            f"✓ **The same model** on {on}: one saved file (sha256 "
            f"{escape(str(same['sha256'])[:12])}…) gave the same fp32 outputs on one seeded "
            f"input, max |diff| {same['max_abs_diff']:.2g} <= {same['bound']:.2g}."
        )
    why = same["why"] or (
        f"max |diff| {same['max_abs_diff']:.2g} > {same['bound']:.2g} on one seeded input"
    )
    return f"> ⚠ **Not the same outputs** from one saved model on {on}: {why}."
