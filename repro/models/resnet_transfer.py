"""Copy PyTorch ResNet weights into the Keras and Flax ResNets, to prove they compute the same.

The input is a torch state_dict as plain numpy arrays ({name: np.ndarray}, e.g. loaded from an
.npz), so this module needs only numpy and runs in any framework's kernel. The transfer is all
or nothing: every torch tensor must land on exactly one target variable of the same shape and
every target variable must be written, else TransferError is raised before anything is written.

Names: a torch module "layer1.0.downsample.0" is the Keras layer "layer1_0_downsample_0" and
the Flax submodule path ("layer1_0", "downsample_0"); see _keras_layer and _flax_path.
Layouts: conv OIHW -> HWIO, linear (out, in) -> (in, out), BN vectors as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from repro.models.transfer import (
    TransferError,
    as_is,
    check_shape,
    flatten,
    oihw_to_hwio,
    out_in_to_in_out,
    unflatten,
)

# torch buffers with no counterpart: a step counter only used when BN momentum is None
IGNORED = ("num_batches_tracked",)


Layout = Callable[[np.ndarray], np.ndarray]

# module kind -> torch tensor -> (Keras variable attribute, Flax (collection, leaf), layout)
MAPPING: dict[str, dict[str, tuple[str, tuple[str, str], Layout]]] = {
    "conv": {"weight": ("kernel", ("params", "kernel"), oihw_to_hwio)},
    "linear": {
        "weight": ("kernel", ("params", "kernel"), out_in_to_in_out),
        "bias": ("bias", ("params", "bias"), as_is),
    },
    "batchnorm": {
        "weight": ("gamma", ("params", "scale"), as_is),
        "bias": ("beta", ("params", "bias"), as_is),
        "running_mean": ("moving_mean", ("batch_stats", "mean"), as_is),
        "running_var": ("moving_variance", ("batch_stats", "var"), as_is),
    },
}


def _modules(state_dict: Mapping[str, np.ndarray]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Group a state_dict by module: {module name: (kind, {tensor name: array})}."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        module, _, tensor = key.rpartition(".")
        if tensor not in IGNORED:
            groups.setdefault(module, {})[tensor] = np.asarray(value)
    out = {}
    for module, tensors in groups.items():
        weight = tensors.get("weight")
        if "running_mean" in tensors:
            kind = "batchnorm"
        elif weight is not None and weight.ndim == 4:
            kind = "conv"
        elif weight is not None and weight.ndim == 2:
            kind = "linear"
        else:
            raise TransferError(
                f"cannot tell the kind of torch module {module!r}: {sorted(tensors)}"
            )
        unmapped = sorted(set(tensors) - set(MAPPING[kind]))
        if unmapped:
            raise TransferError(f"unmapped torch keys {[f'{module}.{t}' for t in unmapped]}")
        out[module] = (kind, tensors)
    return out


def _keras_layer(module: str) -> str:
    """torch "layer1.0.conv1" -> Keras layer "layer1_0_conv1"."""
    return module.replace(".", "_")


def _flax_path(module: str) -> tuple[str, ...]:
    """torch "layer1.0.downsample.0" -> ("layer1_0", "downsample_0"); "conv1" -> ("conv1",)."""
    block = re.fullmatch(r"(layer\d+)\.(\d+)\.(.+)", module)
    if block:
        return f"{block[1]}_{block[2]}", block[3].replace(".", "_")
    return (module.replace(".", "_"),)


def torch_state_to_keras(state_dict: Mapping[str, np.ndarray], keras_model: Any) -> None:
    """Write a torch ResNet state_dict into a model from resnet_keras.build, in place."""
    layers = {layer.name: layer for layer in keras_model.layers}
    plan = []  # (keras variable, value), all checked before any is assigned
    for module, (kind, tensors) in _modules(state_dict).items():
        layer = layers.get(_keras_layer(module))
        if layer is None:
            raise TransferError(
                f"unmapped torch module {module!r}: no Keras layer {_keras_layer(module)!r}"
            )
        for tensor, value in tensors.items():
            attr, _, layout = MAPPING[kind][tensor]
            variable = getattr(layer, attr, None)
            if variable is None:
                raise TransferError(f"Keras layer {layer.name!r} has no {attr!r} for {module}")
            value = layout(value)
            check_shape(f"{module}.{tensor}", variable.path, value, variable.shape)
            plan.append((variable, value))
    written = {id(variable) for variable, _ in plan}
    missed = [v.path for v in keras_model.weights if id(v) not in written]
    if missed:
        raise TransferError(f"Keras variables not in the torch state_dict: {missed}")
    for variable, value in plan:
        variable.assign(value.astype(variable.dtype))


def torch_state_to_flax(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of variables ({"params", "batch_stats"}) holding a torch ResNet's weights."""
    import jax.numpy as jnp

    target = flatten(variables)  # {("params", "conv1", "kernel"): array, ...}
    new: dict[tuple[str, ...], Any] = {}
    for module, (kind, tensors) in _modules(state_dict).items():
        for tensor, value in tensors.items():
            _, (collection, leaf), layout = MAPPING[kind][tensor]
            path = (collection, *_flax_path(module), leaf)
            if path not in target:
                raise TransferError(
                    f"unmapped torch key {module}.{tensor}: no Flax variable {'/'.join(path)}"
                )
            value = layout(value)
            check_shape(f"{module}.{tensor}", "/".join(path), value, target[path].shape)
            new[path] = jnp.asarray(value, dtype=target[path].dtype)
    missed = ["/".join(p) for p in target if p not in new]
    if missed:
        raise TransferError(f"Flax variables not in the torch state_dict: {missed}")
    return unflatten(new)
