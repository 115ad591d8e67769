"""The base of the families' config dataclasses (stdlib only, like the configs themselves)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Inherited by every family's config, itself a frozen dataclass: frozen, hence hashable (Flax
    holds the config as a module field), which the frozen base enforces on every subclass."""

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Build from a plain mapping (e.g. parsed YAML); lists become tuples."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a {cls.__name__} is a mapping of keys to values, not {d!r}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {valid}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
