"""`module:` models in PyTorch: the user's function, called from the copy of its file that the
code snapshot carries (repro.kernel.models.module)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch

import repro
from repro.kernel.models.module import ModuleConfig
from repro.kernel.models.source import SourceError


def carried(cfg: ModuleConfig) -> Path:
    """The copy of the user's file inside the `repro` package this kernel imports."""
    path = Path(repro.__file__).parent.parent / cfg.carried
    if not path.is_file():
        raise SourceError(f"the code this kernel runs carries no copy of {cfg.file}")
    return path


def call(cfg: ModuleConfig):
    """(model, example or None): what the user's function returns."""
    path = carried(cfg)
    spec = importlib.util.spec_from_file_location(f"repro_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, cfg.function, None)
    if not callable(function):
        raise SourceError(f"{cfg.file} defines no function {cfg.function}")
    made = function()
    model, example = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not isinstance(model, torch.nn.Module):
        raise SourceError(
            f"{cfg.file}:{cfg.function}() returned {type(model).__name__}, not a torch.nn.Module "
            "(or a pair (model, example inputs))"
        )
    if example is not None and not isinstance(example, torch.Tensor):
        raise SourceError(f"{cfg.file}:{cfg.function}()'s example inputs are not a tensor")
    return model, example


def shape(cfg: ModuleConfig, example) -> dict:
    """The input shape: the example's, else the spec's; SourceError naming what to set."""
    if example is not None and example.ndim == 4 and example.is_floating_point():
        if example.shape[2] != example.shape[3]:
            raise SourceError(f"the example images are {tuple(example.shape)}: repro's are square")
        return {"image_size": int(example.shape[2]), "in_channels": int(example.shape[1])}
    if example is not None and example.ndim == 2 and not example.is_floating_point():
        if cfg.vocab_size is None:
            raise SourceError("the example is token ids: set vocab_size in the spec's model entry")
        return {"sequence_length": int(example.shape[1]), "vocab_size": cfg.vocab_size}
    if example is not None:
        raise SourceError(
            f"the example inputs {tuple(example.shape)} {example.dtype} are neither images "
            "(N, C, H, W) float nor token ids (N, T) integer"
        )
    if cfg.image_size:
        return {"image_size": cfg.image_size, "in_channels": cfg.in_channels or 3}
    if cfg.vocab_size and cfg.sequence_length:
        return {"sequence_length": cfg.sequence_length, "vocab_size": cfg.vocab_size}
    raise SourceError(
        "the function returned no example inputs: return (model, example) or set image_size, "
        "or vocab_size and sequence_length, in the spec's model entry"
    )


def resolve(cfg: ModuleConfig) -> dict:
    """The config with the task, input shape, class count, parameter count and the file's
    sha256 filled in, from one forward pass on one synthetic sample."""
    from repro.kernel import models

    digest = hashlib.sha256(carried(cfg).read_bytes()).hexdigest()
    if cfg.sha256 and cfg.sha256 != digest:
        raise SourceError(f"{cfg.file} is not the file the report ran (sha256 differs)")
    model, example = call(cfg)
    inputs = shape(cfg, example)
    images = "image_size" in inputs
    task = "image-classification" if images else "causal-lm"  # for one sample's inputs
    probe = ModuleConfig(**{**vars(cfg), **inputs, "task": task, "num_classes": 1})
    sample = torch.from_numpy(models.synthetic_batch(probe, 1, 0)[0])
    with torch.no_grad():
        out = model.eval()(sample.permute(0, 3, 1, 2) if images else sample)
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3):
        raise SourceError(
            f"{cfg.file}:{cfg.function}'s model returned {type(out).__name__}"
            f"{tuple(getattr(out, 'shape', ()))}: repro needs logits, (N, classes) or "
            "(N, T, vocabulary)"
        )
    task = cfg.task or (
        "causal-lm"
        if out.ndim == 3
        else "image-classification"
        if images
        else "sequence-classification"
    )
    classes = int(out.shape[-1])
    if task == "causal-lm" and classes != inputs["vocab_size"]:
        raise SourceError(
            f"the model predicts {classes} tokens, not vocab_size {inputs['vocab_size']}"
        )
    return {
        **vars(cfg),
        **inputs,
        "task": task,
        "num_classes": None if task == "causal-lm" else classes,
        "params": sum(p.numel() for p in model.parameters()),
        "sha256": digest,
    }


def build(cfg: ModuleConfig) -> torch.nn.Module:
    return call(cfg)[0]


def describe(cfg: ModuleConfig) -> dict:
    """What the report states beside the config: the copy the kernel built from."""
    return {"built_from": cfg.carried, "torch": torch.__version__}
