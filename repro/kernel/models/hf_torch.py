"""`hf:` models in PyTorch, through transformers' Auto classes (repro.kernel.models.hf).

A transformers model returns a ModelOutput; `Logits` hands repro's step, loss and FLOP counter
the logits alone, its only parameters the model's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn

with warnings.catch_warnings():  # tqdm's note that a notebook kernel has no ipywidgets
    warnings.filterwarnings("ignore", message="IProgress not found")
    import transformers

from repro.kernel.models.hf import HFConfig, inputs, task_of
from repro.kernel.models.source import SourceError
from repro.lockfile import sha256

AUTO = {
    "image-classification": transformers.AutoModelForImageClassification,
    "sequence-classification": transformers.AutoModelForSequenceClassification,
    "causal-lm": transformers.AutoModelForCausalLM,
}
HASHED = ("*.json", "*.safetensors", "*.bin")  # a local directory's config and weight files


class Logits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # ids (N, T) or images (N, C, H, W)
        return self.model(x).logits  # (N, classes) or (N, T, vocabulary)


def local(cfg: HFConfig) -> bool:
    return Path(cfg.ref).is_dir()


def files(directory: str) -> dict[str, str]:
    """sha256 of each config and weight file of a local directory, by name."""
    found = sorted({p for pattern in HASHED for p in Path(directory).glob(pattern)})
    return {p.name: sha256(p).hexdigest() for p in found}  # in chunks: weights reach GBs


def digest(hashes: dict[str, str]) -> str:
    """One sha256 over the files' names and hashes."""
    return hashlib.sha256("".join(f"{h}  {n}\n" for n, h in hashes.items()).encode()).hexdigest()


def model_config(cfg: HFConfig):
    """The transformers config: the directory's or the hub's at `revision`, the spec's input
    fields set on it (hf.CONFIG_FIELDS), no KV cache (each step is one whole forward)."""
    revision = None if local(cfg) else cfg.revision
    config = transformers.AutoConfig.from_pretrained(cfg.ref, revision=revision, **cfg.overrides())
    if hasattr(config, "use_cache"):
        config.use_cache = False
    return config


def load(cfg: HFConfig, config, task: str) -> nn.Module:
    auto = AUTO[task]
    if cfg.weights == "pretrained":
        revision = None if local(cfg) else cfg.revision
        return auto.from_pretrained(cfg.ref, config=config, revision=revision)
    return auto.from_config(config)


def resolve(cfg: HFConfig) -> dict:
    """The config with the task, input shape, parameter count and pins filled in: the hub
    commit read, or the sha256 of a local directory's files (which must be those recorded).
    What transformers cannot find (no such model or revision, no network, no weights) is a
    SourceError: its first line."""
    try:
        return resolved(cfg)
    except OSError as error:
        raise SourceError(f"{cfg.ref}: {str(error).strip()}") from None


def resolved(cfg: HFConfig) -> dict:
    config = model_config(cfg)
    task = task_of(config.architectures, cfg.task)
    pins = {"revision": getattr(config, "_commit_hash", None) or cfg.revision}
    if local(cfg):
        pins = {"ref": str(Path(cfg.ref).resolve()), "sha256": digest(files(cfg.ref))}
        if cfg.sha256 not in (None, pins["sha256"]):
            raise SourceError(f"the files in {cfg.ref} are not those the report ran (sha256)")
    try:
        if cfg.weights == "random":  # only the count: no memory for the weights
            with torch.device("meta"):
                net = load(cfg, config, task)
        else:  # pretrained: fetched (or found) now, so a missing file is said before the run
            net = load(cfg, config, task)
    except ValueError as error:  # the Auto class has no model of this config for the task
        raise SourceError(f"{cfg.ref} has no {task} model in transformers: {error}") from None
    shape = inputs(config.to_dict(), task, cfg)
    return {
        **dataclasses.asdict(cfg),
        **shape,
        **pins,
        "task": task,
        "params": sum(p.numel() for p in net.parameters()),
    }


def describe(cfg: HFConfig) -> dict:
    """What the report states of the model: transformers' version, the class, the files."""
    return {
        "transformers": transformers.__version__,
        "files_sha256": files(cfg.ref) if local(cfg) else None,
    }


def build(cfg: HFConfig) -> nn.Module:
    return Logits(load(cfg, model_config(cfg), cfg.task))
