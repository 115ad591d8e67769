"""Weight transfer from PyTorch into the Keras and Flax models: the shared toolkit.

A family's transfer lives in `<arch>_transfer.py` and exposes
`torch_state_to_keras(state_dict, keras_model) -> None` (in place) and
`torch_state_to_flax(state_dict, variables) -> variables`. The state_dict arrives as plain numpy
arrays ({name: np.ndarray}, e.g. from an .npz), so transfers need only numpy and run in any
framework's kernel. A transfer is all or nothing: every torch tensor must land on exactly one
target variable of the same shape and every target variable must be written, else TransferError
is raised before anything is written.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np


class TransferError(ValueError):
    """A torch tensor has no target, a shape differs, or a target variable was not written."""


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    """torch conv (out, in, kh, kw) -> Keras/Flax (kh, kw, in, out)."""
    return w.transpose(2, 3, 1, 0)


def out_in_to_in_out(w: np.ndarray) -> np.ndarray:
    """torch linear (out, in) -> Keras/Flax (in, out)."""
    return w.T


def as_is(w: np.ndarray) -> np.ndarray:
    return w


def check_shape(name: str, target_name: str, value: np.ndarray, target_shape: Any) -> None:
    if tuple(value.shape) != tuple(target_shape):
        raise TransferError(
            f"shape mismatch: torch {name} -> {target_name} is {tuple(value.shape)} after the "
            f"layout change, the target is {tuple(target_shape)}"
        )


def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """{"params": {"conv": {"kernel": a}}} -> {("params", "conv", "kernel"): a}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def load_torch_state(arch: str, framework: str, state_dict: Mapping[str, np.ndarray], net):
    """Put a torch state_dict into `net` as the repro adapter of `framework` built it: a Keras
    model (written in place) or a Flax (module, variables) pair (returned with new variables)."""
    module = importlib.import_module(f"repro.models.{arch}_transfer")
    if framework == "tensorflow":
        module.torch_state_to_keras(state_dict, net)
        return net
    if framework == "jax":
        flax_module, variables = net
        return flax_module, module.torch_state_to_flax(state_dict, variables)
    raise TransferError(f"no transfer into {framework!r}: weights come from torch")
