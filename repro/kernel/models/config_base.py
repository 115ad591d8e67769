"""The base of the families' config dataclasses (stdlib only, like the configs themselves)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from repro.errors import quoted

C = TypeVar("C", bound="Config")
SIZES = (1, 2**20)  # every int: a width, depth, head count, size, vocabulary or class count
COUNTS = (1, 10**13)  # a Count: a model's parameters (a source's, counted when resolved)
Count = int
SCALES = (0, 1)  # every float: an epsilon or initial scale, in (0, 1]
STAGES = 16  # the most entries of a tuple (stages of a ResNet or ConvNeXt)
NAME = 32  # the longest text value (a choice by name)
TEXT = 4096  # the longest Text value (a model source's path, hub id or sha256)
Text = str  # a field of free text, such as a path: printable, up to TEXT characters


def checked(name: str, kind: str, value):
    """A config value of its field's type (`kind`, the annotation's text) and range, the range
    checked before any framework builds a layer of it; ValueError otherwise. An annotation
    `X | None` also takes None (not given)."""
    size = "a whole number from {:,} to {:,}".format(*SIZES)
    if value is None and kind.endswith(" | None"):
        return None
    kind = kind.removesuffix(" | None")
    if kind == "Text":
        ok, what = (
            isinstance(value, str) and 0 < len(value) <= TEXT and value.isprintable(),
            f"printable text of 1 to {TEXT} characters",
        )
    elif kind == "Count":
        ok, what = (
            type(value) is int and COUNTS[0] <= value <= COUNTS[1],
            "a whole number from {:,} to {:,}".format(*COUNTS),
        )
    elif kind == "bool":
        ok, what = isinstance(value, bool), "true or false"
    elif kind == "int":
        ok, what = type(value) is int and SIZES[0] <= value <= SIZES[1], size
    elif kind == "float":
        what = f"a number above {SCALES[0]} and at most {SCALES[1]}"
        ok = type(value) in (int, float) and SCALES[0] < value <= SCALES[1]
    elif kind == "str":  # a choice, such as GPT's activation: the family checks which
        ok, what = (
            isinstance(value, str) and 0 < len(value) <= NAME,
            f"a name of 1 to {NAME} characters",
        )
    else:  # tuple[int, ...]
        what = f"a list of 1 to {STAGES} entries, each {size}"
        value = tuple(value) if isinstance(value, list | tuple) else value
        ok = isinstance(value, tuple) and 1 <= len(value) <= STAGES
        ok = ok and all(type(v) is int and SIZES[0] <= v <= SIZES[1] for v in value)
    if not ok:
        raise ValueError(f"{name} must be {what}, got {quoted(value)}")
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Inherited by every family's config, itself a frozen dataclass: frozen, hence hashable (Flax
    holds the config as a module field), which the frozen base enforces on every subclass."""

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Build from a plain mapping (e.g. parsed YAML), each value checked (`checked`); lists
        become tuples."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a {cls.__name__} is a mapping of keys to values, not {d!r}")
        kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(kinds), key=str)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} keys {quoted(unknown)}; valid keys are {list(kinds)}"
            )
        return cls(**{k: checked(k, kinds[k], v) for k, v in d.items()})
