"""Model sources: a user's model as a workload, beside the built-in families (stdlib only).

A spec names one as `model: {source: "hf:<hub id or directory>", weights: random, ...}` or
`model: {source: "module:path/to/file.py:function"}`; `normalise` turns that into the shape every
family has, `{arch: "hf", config: {...}}`, so records, compare, history, sweeps and rerun see one
shape. A source is a family like the others: a config dataclass here (what the rest of repro
reads: task, input shape, parameter count) and `build(cfg)` in `<family>_<framework>.py`.

What the driver cannot know without the framework (a hub config, what the user's function
returns) is resolved in the kernel's interpreter before the run (repro.driver.sources runs
repro.kernel.models.probe): it fills in the task, the input shape, the parameter count and what
pins the model (a hub commit, the files' sha256), so the spec a report records builds exactly
that model again.
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.kernel.models.config_base import Config, Count

# prefix -> family (repro/kernel/models/<family>.py) and the frameworks that can run it
FAMILIES = {"hf": ("torch",), "module": ("torch",)}
TASKS = ("image-classification", "sequence-classification", "causal-lm")
FORMS = "hf:<hub id or local directory>, module:<path/to/file.py>:<function> or keras:<file.keras>"


class SourceError(ValueError):
    """Something about the user's model that one line tells them how to fix."""


def normalise(model: dict) -> dict:
    """A spec's `model` entry with `source:` as `{arch, config}`; any other entry as it is."""
    if not isinstance(model, dict) or "source" not in model:
        return model
    source = model["source"]
    prefix, _, ref = source.partition(":") if isinstance(source, str) else ("", "", "")
    rest = {k: v for k, v in model.items() if k != "source"}
    if prefix == "keras" and ref:  # a saved Keras 3 model: its own family (models.SAVED)
        return {"arch": "keras", "config": {"file": ref, **rest}}
    if prefix not in FAMILIES or not ref:
        raise ValueError(f"source must be {FORMS}, got {source!r}"[:300])
    if prefix == "module":
        file, _, function = ref.rpartition(":")
        if not file or not function:
            raise ValueError(f"source must be {FORMS}, got {source!r}"[:300])
        return {"arch": prefix, "config": {"file": file, "function": function, **rest}}
    return {"arch": prefix, "config": {"ref": ref, **rest}}


def is_source(arch) -> bool:
    return arch in FAMILIES


@dataclass(frozen=True)
class SourceConfig(Config):
    """What every source shares: the task and the input shape (None: from the model, filled in
    by the probe; a value given in the spec overrides the model's), and the parameter count the
    probe took from the built model. There is no analytic FLOP count: FLOPs come from the
    framework's counter only."""

    task: str | None = None  # one of TASKS; None: from the model's own head
    image_size: int | None = None  # images: square side
    in_channels: int | None = None  # images: channels
    num_classes: int | None = None  # classification: classes (causal-lm: the vocabulary)
    vocab_size: int | None = None  # tokens: vocabulary
    sequence_length: int | None = None  # tokens per sample
    params: Count | None = None  # counted from the built model by the probe

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")

    def num_params(self) -> int | None:
        return self.params

    def flops_per_sample(self) -> None:
        """None: no analytic count exists for a source's model (report.flops says so)."""
        return None
