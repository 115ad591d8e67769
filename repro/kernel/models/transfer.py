"""Weight transfer from PyTorch into the Keras, Flax (and, for ResNet, Gluon) models: the shared
toolkit.

A family's transfer lives in `<arch>_transfer.py` and exposes
`torch_state_to_keras(state_dict, keras_model) -> None` (in place) and
`torch_state_to_flax(state_dict, variables) -> variables`; resnet_transfer also
`torch_state_to_gluon(state_dict, gluon_net) -> None` (in place). The state_dict arrives as plain
numpy arrays ({name: np.ndarray}, e.g. from an .npz), so transfers need only numpy and run in any
framework's kernel. A transfer is all or nothing: every torch tensor must land on exactly one
target variable of the same shape and every target variable must be written, else TransferError
is raised before anything is written.

A family module only builds its plan, one (torch key, target, value in the target layout) per
torch tensor, with its own name and layout mapping; assign_keras and assign_flax check the plan
whole and then write it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np


class TransferError(ValueError):
    """A torch tensor has no target, a shape differs, or a target variable was not written."""


Layout = Callable[[np.ndarray], np.ndarray]  # torch layout -> the target's


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    """torch conv (out, in, kh, kw) -> Keras/Flax (kh, kw, in, out)."""
    return w.transpose(2, 3, 1, 0)


def out_in_to_in_out(w: np.ndarray) -> np.ndarray:
    """torch linear (out, in) -> Keras/Flax (in, out)."""
    return w.T


def as_is(w: np.ndarray) -> np.ndarray:
    return w


# Transformer modules (BERT, GPT): kind -> torch tensor -> (Keras variable, Flax leaf, layout)
TRANSFORMER_MAPPING: dict[str, dict[str, tuple[str, str, Layout]]] = {
    "embedding": {"weight": ("embeddings", "embedding", as_is)},  # (rows, hidden)
    "layernorm": {"weight": ("gamma", "scale", as_is), "bias": ("beta", "bias", as_is)},
    "linear": {
        "weight": ("kernel", "kernel", out_in_to_in_out),
        "bias": ("bias", "bias", as_is),
    },
}


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


def keras_by_layer(
    keras_model: Any, targets: Iterable[tuple[str, tuple[str, str], np.ndarray]]
) -> list[tuple[str, Any, np.ndarray]]:
    """(torch key, (Keras layer name, variable attribute), value) -> (torch key, Keras variable,
    value): the plan for assign_keras where a family names its Keras targets by layer."""
    layers = {layer.name: layer for layer in keras_model.layers}
    plan = []
    for key, (layer_name, attr), value in targets:
        layer = layers.get(layer_name)
        if layer is None:
            raise TransferError(f"unmapped torch key {key!r}: no Keras layer {layer_name!r}")
        variable = getattr(layer, attr, None)
        if variable is None:
            raise TransferError(f"Keras layer {layer_name!r} has no {attr!r} for torch {key!r}")
        plan.append((key, variable, value))
    return plan


def assign_keras(keras_model: Any, plan: Iterable[tuple[str, Any, np.ndarray]]) -> None:
    """Write a plan into a Keras model, in place: (torch key, Keras variable, value in the Keras
    layout) per torch tensor. Every shape is checked and a variable written twice or never is
    refused before any variable is assigned."""
    plan = list(plan)
    source: dict[int, str] = {}  # id(Keras variable) -> the torch key written into it
    for name, variable, value in plan:
        check_shape(name, variable.path, value, variable.shape)
        if id(variable) in source:
            raise TransferError(
                f"two torch tensors map to the Keras variable {variable.path}: "
                f"{source[id(variable)]!r} and {name!r}"
            )
        source[id(variable)] = name
    missed = [v.path for v in keras_model.weights if id(v) not in source]
    if missed:
        raise TransferError(f"Keras variables not in the torch state_dict: {missed}")
    for _, variable, value in plan:
        variable.assign(value.astype(variable.dtype))


def assign_flax(
    variables: Mapping[str, Any], plan: Iterable[tuple[str, tuple[str, ...], np.ndarray]]
) -> dict[str, Any]:
    """A copy of Flax variables holding a plan: (torch key, Flax path such as ("params", "h_0",
    "attn", "c_attn", "kernel"), value in the Flax layout) per torch tensor. A path not in
    variables, a shape mismatch and a variable written twice or never are refused."""
    import jax.numpy as jnp

    plan = list(plan)
    target = flatten(variables)  # {("params", "conv1", "kernel"): array, ...}
    source: dict[tuple[str, ...], str] = {}  # Flax path -> the torch key written into it
    for name, path, value in plan:
        where = "/".join(path)
        if path not in target:
            raise TransferError(f"unmapped torch key {name!r}: no Flax variable {where}")
        if path in source:
            raise TransferError(
                f"two torch tensors map to the Flax variable {where}: {source[path]!r} and {name!r}"
            )
        check_shape(name, where, value, target[path].shape)
        source[path] = name
    missed = ["/".join(p) for p in target if p not in source]
    if missed:
        raise TransferError(f"Flax variables not in the torch state_dict: {missed}")
    return unflatten({p: jnp.asarray(v, dtype=target[p].dtype) for _, p, v in plan})


def assign_gluon(params: Mapping[str, Any], plan: Iterable[tuple[str, str, np.ndarray]]) -> None:
    """Write a plan into Gluon parameters ({structural name: Parameter}, BatchNorm's running
    statistics included), in place: (torch key, Gluon name, value in the Gluon layout) per torch
    tensor. A name not in params, a shape mismatch and a parameter written twice or never are
    refused before any parameter is set."""
    import mxnet as mx

    plan = list(plan)
    source: dict[str, str] = {}  # Gluon name -> the torch key written into it
    for name, target, value in plan:
        if target not in params:
            raise TransferError(f"unmapped torch key {name!r}: no Gluon parameter {target}")
        if target in source:
            raise TransferError(
                f"two torch tensors map to the Gluon parameter {target}: "
                f"{source[target]!r} and {name!r}"
            )
        check_shape(name, target, value, params[target].shape)
        source[target] = name
    missed = [t for t in params if t not in source]
    if missed:
        raise TransferError(f"Gluon parameters not in the torch state_dict: {missed}")
    for _, target, value in plan:  # as NDArrays: a numpy copy cannot land on a parameter that a
        param = params[target]  # forward pass has moved to oneDNN's layout
        param.set_data(mx.nd.array(value, ctx=param.list_ctx()[0], dtype=param.dtype))


Target = tuple[str, tuple[str, str], tuple[str, ...], np.ndarray]
"""(torch key, (Keras layer, variable attribute), Flax path, value in the target layout)"""


def write_keras(keras_model: Any, targets: Iterable[Target]) -> None:
    """Write targets into a Keras model by layer name and attribute, all checked first."""
    by_layer = [(key, layer, value) for key, layer, _, value in targets]
    assign_keras(keras_model, keras_by_layer(keras_model, by_layer))


def write_flax(variables: Mapping[str, Any], targets: Iterable[Target]) -> dict[str, Any]:
    """A copy of Flax variables with targets written at their paths, all checked first."""
    return assign_flax(variables, [(key, path, value) for key, _, path, value in targets])


def load_torch_state(arch: str, framework: str, state_dict: Mapping[str, np.ndarray], net):
    """Put a torch state_dict into `net` as the repro adapter of `framework` built it: a Keras
    model or a Gluon block (written in place), or a Flax (module, variables) pair (returned with
    new variables). Gluon: ResNet only, the one family repro runs in MXNet."""
    module = importlib.import_module(f"repro.kernel.models.{arch}_transfer")
    if framework == "tensorflow":
        module.torch_state_to_keras(state_dict, net)
        return net
    if framework == "jax":
        flax_module, variables = net
        return flax_module, module.torch_state_to_flax(state_dict, variables)
    if framework == "mxnet":
        module.torch_state_to_gluon(state_dict, net)
        return net
    raise TransferError(f"no transfer into {framework!r}: weights come from torch")
