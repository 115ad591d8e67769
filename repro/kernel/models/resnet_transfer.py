"""Copy PyTorch ResNet weights into the Keras, Flax and Gluon ResNets, to prove they compute the
same.

The input is a torch state_dict as plain numpy arrays ({name: np.ndarray}, e.g. loaded from an
.npz), so this module needs only numpy and runs in any framework's kernel. The transfer is all
or nothing: every torch tensor must land on exactly one target variable of the same shape and
every target variable must be written, else TransferError is raised before anything is written.

Names: a torch module "layer1.0.downsample.0" is the Keras layer "layer1_0_downsample_0" and
the Flax submodule path ("layer1_0", "downsample_0"); see _keras_layer and _flax_path.
Layouts: conv OIHW -> HWIO, linear (out, in) -> (in, out), BN vectors as they are. Gluon
(MXNet, NCHW) keeps torch's names and layouts; only BatchNorm's weight/bias are gamma/beta.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from repro.kernel.models import transfer
from repro.kernel.models.transfer import (
    Layout,
    TransferError,
    as_is,
    oihw_to_hwio,
    out_in_to_in_out,
)

# torch buffers with no counterpart: a step counter only used when BN momentum is None
IGNORED = ("num_batches_tracked",)

# Gluon's name for a torch tensor where it differs (the module path is torch's: resnet_gluon)
GLUON_NAMES = {"batchnorm": {"weight": "gamma", "bias": "beta"}}

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


def _targets(
    state_dict: Mapping[str, np.ndarray],
) -> Iterator[tuple[str, tuple[str, str], tuple[str, ...], np.ndarray]]:
    """Yield (torch key, (Keras layer, variable attribute), Flax path, value in the target
    layout) for every tensor of the state_dict."""
    for module, (kind, tensors) in _modules(state_dict).items():
        for tensor, value in tensors.items():
            attr, (collection, leaf), layout = MAPPING[kind][tensor]
            flax_path = (collection, *_flax_path(module), leaf)
            yield f"{module}.{tensor}", (_keras_layer(module), attr), flax_path, layout(value)


def torch_state_to_keras(state_dict: Mapping[str, np.ndarray], keras_model: Any) -> None:
    """Write a torch ResNet state_dict into a model from resnet_keras.build, in place."""
    transfer.write_keras(keras_model, _targets(state_dict))


def torch_state_to_flax(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of variables ({"params", "batch_stats"}) holding a torch ResNet's weights."""
    return transfer.write_flax(variables, _targets(state_dict))


def torch_state_to_gluon(state_dict: Mapping[str, np.ndarray], gluon_net: Any) -> None:
    """Write a torch ResNet state_dict into a block from resnet_gluon.build, in place: torch's
    layouts as they are (Gluon is NCHW, its conv weights OIHW, its Dense weight (out, in))."""
    from repro.kernel.models.resnet_gluon import parameters

    plan = []
    for module, (kind, tensors) in _modules(state_dict).items():
        for tensor, value in tensors.items():
            name = GLUON_NAMES.get(kind, {}).get(tensor, tensor)
            plan.append((f"{module}.{tensor}", f"{module}.{name}", value))
    transfer.assign_gluon(parameters(gluon_net), plan)
