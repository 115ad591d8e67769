"""Copy PyTorch ViT weights into the Keras and Flax ViTs, to prove they compute the same.

The input is a torch state_dict as plain numpy arrays ({name: np.ndarray}, e.g. loaded from an
.npz), so this module needs only numpy and runs in any framework's kernel. The transfer is all or
nothing: every torch tensor must land on exactly one target variable of the same shape and every
target variable must be written, else TransferError is raised before anything is written.

The whole mapping is the RULES table below: a torch tensor name (a regular expression) -> the
Keras layer and variable, the Flax parameter path, and the layout change (conv OIHW -> HWIO,
linear (out, in) -> (in, out), everything else as it is).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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

_BLOCK = r"blocks\.(?P<i>\d+)\."
# torch tensor (regex)  ->  Keras "layer.variable"  |  Flax path under "params"  |  layout
# fmt: off
RULES: list[tuple[str, str, str, Layout]] = [
    (r"patch_embed\.proj\.weight", "patch_embed_proj.kernel", "patch_embed/proj/kernel",
     oihw_to_hwio),
    (r"patch_embed\.proj\.bias",   "patch_embed_proj.bias",   "patch_embed/proj/bias", as_is),
    (r"cls_token",                 "cls_token.token",         "cls_token",             as_is),
    (r"pos_embed",                 "pos_embed.embedding",     "pos_embed",             as_is),
    (_BLOCK + r"(?P<m>norm1|norm2)\.weight", "blocks_{i}_{m}.gamma", "blocks_{i}/{m}/scale",
     as_is),
    (_BLOCK + r"(?P<m>norm1|norm2)\.bias",   "blocks_{i}_{m}.beta",  "blocks_{i}/{m}/bias",
     as_is),
    (_BLOCK + r"attn\.(?P<m>query|key|value|proj)\.weight",
     "blocks_{i}_attn_{m}.kernel", "blocks_{i}/attn/{m}/kernel", out_in_to_in_out),
    (_BLOCK + r"attn\.(?P<m>query|key|value|proj)\.bias",
     "blocks_{i}_attn_{m}.bias",   "blocks_{i}/attn/{m}/bias",   as_is),
    (_BLOCK + r"mlp\.(?P<m>fc1|fc2)\.weight",
     "blocks_{i}_mlp_{m}.kernel",  "blocks_{i}/mlp/{m}/kernel",  out_in_to_in_out),
    (_BLOCK + r"mlp\.(?P<m>fc1|fc2)\.bias",
     "blocks_{i}_mlp_{m}.bias",    "blocks_{i}/mlp/{m}/bias",    as_is),
    (r"norm\.weight",              "norm.gamma",              "norm/scale",            as_is),
    (r"norm\.bias",                "norm.beta",               "norm/bias",             as_is),
    (r"head\.weight",              "head.kernel",             "head/kernel",  out_in_to_in_out),
    (r"head\.bias",                "head.bias",               "head/bias",             as_is),
]
# fmt: on


def _targets(name: str) -> tuple[tuple[str, str], tuple[str, ...], Layout]:
    """torch tensor name -> ((Keras layer, variable attribute), Flax path, layout)."""
    for pattern, keras_name, flax_path, layout in RULES:
        match = re.fullmatch(pattern, name)
        if match:
            layer, attr = keras_name.format(**match.groupdict()).split(".")
            path = ("params", *flax_path.format(**match.groupdict()).split("/"))
            return (layer, attr), path, layout
    raise TransferError(f"unmapped torch key {name!r}: no rule in vit_transfer.RULES")


def torch_state_to_keras(state_dict: Mapping[str, np.ndarray], keras_model: Any) -> None:
    """Write a torch ViT state_dict into a model from vit_keras.build, in place."""
    targets = []  # (torch key, (Keras layer, variable attribute), value)
    for name, value in state_dict.items():
        layer, _, layout = _targets(name)
        targets.append((name, layer, layout(np.asarray(value))))
    transfer.assign_keras(keras_model, transfer.keras_by_layer(keras_model, targets))


def torch_state_to_flax(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of variables ({"params": ...}) holding a torch ViT's weights."""
    plan = []  # (torch key, Flax path, value), all checked before any is written
    for name, value in state_dict.items():
        _, path, layout = _targets(name)
        plan.append((name, path, layout(np.asarray(value))))
    return transfer.assign_flax(variables, plan)
