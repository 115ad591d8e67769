"""`hf:` — a Hugging Face transformers model, built through its Auto classes (stdlib only here;
the build is in hf_torch.py).

    model: {source: "hf:<hub id or local directory>", weights: random, revision: null}

`weights: random` builds the model from its config alone (AutoConfig + from_config, nothing but
the config is read); `pretrained` loads its weights (from_pretrained; the hub's cache, or the
directory). The task picks the Auto class; by default it is the head the config names
(`architectures`). The inputs are synthesised from the model's config (`inputs`), each field
overridable in the spec. After the probe, `revision` holds the hub commit that was read and
`sha256` the hash of a local directory's config and weight files.
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.kernel.models.config_base import Text
from repro.kernel.models.source import TASKS, SourceConfig, SourceError

HEADS = {  # the suffix of a transformers class name -> the task its head does
    "ForImageClassification": "image-classification",
    "ForSequenceClassification": "sequence-classification",
    "ForCausalLM": "causal-lm",
    "LMHeadModel": "causal-lm",
}
POSITIONS = ("max_position_embeddings", "n_positions", "n_ctx")  # a config's longest input
SEQUENCE = 128  # tokens per sample where the spec gives none (fewer if the model has fewer)
# a spec's input field -> the model config's field it sets (the model is built for it)
CONFIG_FIELDS = {
    "image_size": "image_size",
    "in_channels": "num_channels",
    "num_classes": "num_labels",
    "vocab_size": "vocab_size",
}


@dataclass(frozen=True)
class HFConfig(SourceConfig):
    ref: Text = ""  # a hub id (owner/name) or a local directory holding config.json
    weights: str = "random"  # random: from the config alone | pretrained: its weights
    revision: Text | None = None  # a hub branch, tag or commit; after the probe, the commit
    sha256: Text | None = None  # a local directory: its config and weight files (probe)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ref:
            raise ValueError("hf: needs a hub id or a local directory")
        if self.weights not in ("random", "pretrained"):
            raise ValueError(f"weights must be random or pretrained, got {self.weights!r}")

    def overrides(self) -> dict:
        """The model config's fields the spec sets (CONFIG_FIELDS)."""
        given = {k: getattr(self, k) for k in CONFIG_FIELDS}
        return {CONFIG_FIELDS[k]: v for k, v in given.items() if v is not None}


def task_of(architectures, given: str | None) -> str:
    """The task: `given`, else the head the config's `architectures` names; SourceError if
    neither says."""
    if given:
        return given
    for name in architectures or ():
        for suffix, task in HEADS.items():
            if str(name).endswith(suffix):
                return task
    raise SourceError(
        f"the model's config names no head repro knows (architectures: {architectures}); "
        f"set the task in the spec: one of {', '.join(TASKS)}"
    )


def inputs(config: dict, task: str, cfg: HFConfig) -> dict:
    """The input shape of `task` from the model's config (a transformers config as a dict), the
    spec's values first; SourceError naming the field to set where neither has it."""

    def field(name: str, *keys: str):
        value = getattr(cfg, name)
        for key in keys:
            value = config.get(key) if value is None else value
        if value is None:
            raise SourceError(
                f"the model's config has no {' or '.join(keys)}, so repro cannot synthesise its "
                f"inputs: set {name} in the spec's model entry"
            )
        return value

    labels = cfg.num_classes or len(config.get("id2label") or {}) or None
    if labels is None and task != "causal-lm":
        raise SourceError("the model's config has no id2label: set num_classes in the spec")
    if task == "image-classification":
        size = field("image_size", "image_size")
        if isinstance(size, list | tuple):  # (height, width): repro's images are square
            if len(set(size)) != 1:
                raise SourceError(f"the model's images are {size}: set a square image_size")
            size = size[0]
        channels = field("in_channels", "num_channels")
        return {"image_size": size, "in_channels": channels, "num_classes": labels}
    vocab = field("vocab_size", "vocab_size")
    positions = next((config[k] for k in POSITIONS if config.get(k)), None)
    length = cfg.sequence_length or (min(SEQUENCE, positions) if positions else None)
    if length is None:
        field("sequence_length", *POSITIONS)
    if positions and length > positions:
        raise SourceError(
            f"sequence_length {length} exceeds the model's {positions} positions; set a smaller one"
        )
    classes = None if task == "causal-lm" else labels  # a causal LM's labels are tokens
    return {"vocab_size": vocab, "sequence_length": length, "num_classes": classes}
