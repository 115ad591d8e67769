"""Copy PyTorch ConvNeXt weights into the Keras and Flax ConvNeXts, to prove they compute the same.

The input is a torch state_dict as plain numpy arrays ({name: np.ndarray}, e.g. loaded from an
.npz), so this module needs only numpy and runs in any framework's kernel. The transfer is all
or nothing: every torch tensor must land on exactly one target variable of the same shape and
every target variable must be written, else TransferError is raised before anything is written.

RULES below is the whole mapping: one line per kind of torch tensor, giving the Keras
(layer, variable attribute) and the Flax parameter path, both spelled from the same regex groups,
and the layout change into each. Layouts: conv OIHW -> HWIO; the depthwise conv's (C, 1, 7, 7)
-> Keras DepthwiseConv2D (7, 7, C, 1) and Flax grouped Conv (7, 7, 1, C); linear (out, in) ->
(in, out); LayerNorm weight / bias and layer-scale gamma as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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


def depthwise_to_keras(w: np.ndarray) -> np.ndarray:
    """torch depthwise conv (C, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, C, 1)."""
    return w.transpose(2, 3, 0, 1)


@dataclass(frozen=True)
class Rule:
    torch: str  # regex for the full torch key; its groups fill the two templates below
    keras: tuple[str, str]  # (layer name, variable attribute)
    flax: tuple[str, ...]  # path inside variables["params"]
    keras_layout: Layout
    flax_layout: Layout


B = "stages_{0}_blocks_{1}"  # Keras layer prefix and Flax module of block {1} of stage {0}
RULES: tuple[Rule, ...] = (
    # stem: 4x4/4 conv, LayerNorm
    Rule(r"stem\.0\.weight", ("stem_0", "kernel"), ("stem_0", "kernel"),
         oihw_to_hwio, oihw_to_hwio),
    Rule(r"stem\.0\.bias", ("stem_0", "bias"), ("stem_0", "bias"), as_is, as_is),
    Rule(r"stem\.1\.weight", ("stem_1", "gamma"), ("stem_1", "scale"), as_is, as_is),
    Rule(r"stem\.1\.bias", ("stem_1", "beta"), ("stem_1", "bias"), as_is, as_is),
    # downsampling of stage s > 0: LayerNorm, 2x2/2 conv
    Rule(r"stages\.(\d+)\.downsample\.0\.weight", ("stages_{0}_downsample_0", "gamma"),
         ("stages_{0}_downsample_0", "scale"), as_is, as_is),
    Rule(r"stages\.(\d+)\.downsample\.0\.bias", ("stages_{0}_downsample_0", "beta"),
         ("stages_{0}_downsample_0", "bias"), as_is, as_is),
    Rule(r"stages\.(\d+)\.downsample\.1\.weight", ("stages_{0}_downsample_1", "kernel"),
         ("stages_{0}_downsample_1", "kernel"), oihw_to_hwio, oihw_to_hwio),
    Rule(r"stages\.(\d+)\.downsample\.1\.bias", ("stages_{0}_downsample_1", "bias"),
         ("stages_{0}_downsample_1", "bias"), as_is, as_is),
    # block b of stage s: depthwise conv, LayerNorm, MLP fc1 / fc2, layer scale
    Rule(r"stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.weight", (B + "_conv_dw", "kernel"),
         (B, "conv_dw", "kernel"), depthwise_to_keras, oihw_to_hwio),
    Rule(r"stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.bias", (B + "_conv_dw", "bias"),
         (B, "conv_dw", "bias"), as_is, as_is),
    Rule(r"stages\.(\d+)\.blocks\.(\d+)\.norm\.weight", (B + "_norm", "gamma"),
         (B, "norm", "scale"), as_is, as_is),
    Rule(r"stages\.(\d+)\.blocks\.(\d+)\.norm\.bias", (B + "_norm", "beta"),
         (B, "norm", "bias"), as_is, as_is),
    Rule(r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.(fc[12])\.weight", (B + "_mlp_{2}", "kernel"),
         (B, "mlp", "{2}", "kernel"), out_in_to_in_out, out_in_to_in_out),
    Rule(r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.(fc[12])\.bias", (B + "_mlp_{2}", "bias"),
         (B, "mlp", "{2}", "bias"), as_is, as_is),
    Rule(r"stages\.(\d+)\.blocks\.(\d+)\.gamma", (B + "_gamma", "gamma"),
         (B, "gamma"), as_is, as_is),
    # head: LayerNorm, classifier
    Rule(r"head\.norm\.weight", ("head_norm", "gamma"), ("head_norm", "scale"), as_is, as_is),
    Rule(r"head\.norm\.bias", ("head_norm", "beta"), ("head_norm", "bias"), as_is, as_is),
    Rule(r"head\.fc\.weight", ("head_fc", "kernel"), ("head_fc", "kernel"),
         out_in_to_in_out, out_in_to_in_out),
    Rule(r"head\.fc\.bias", ("head_fc", "bias"), ("head_fc", "bias"), as_is, as_is),
)  # fmt: skip


def _match(key: str) -> tuple[Rule, tuple[str, ...]]:
    """The rule for a torch key and its regex groups; TransferError if none matches."""
    for rule in RULES:
        m = re.fullmatch(rule.torch, key)
        if m:
            return rule, m.groups()
    raise TransferError(f"unmapped torch key {key!r}: no ConvNeXt rule matches it")


def keras_target(key: str) -> tuple[str, str]:
    """torch "stages.0.blocks.1.mlp.fc1.weight" -> ("stages_0_blocks_1_mlp_fc1", "kernel")."""
    rule, groups = _match(key)
    layer, attr = rule.keras
    return layer.format(*groups), attr


def flax_target(key: str) -> tuple[str, ...]:
    """torch "stages.0.blocks.1.mlp.fc1.weight" -> ("params", "stages_0_blocks_1", "mlp",
    "fc1", "kernel")."""
    rule, groups = _match(key)
    return ("params", *(part.format(*groups) for part in rule.flax))


def torch_state_to_keras(state_dict: Mapping[str, np.ndarray], keras_model: Any) -> None:
    """Write a torch ConvNeXt state_dict into a model from convnext_keras.build, in place."""
    targets = [
        (key, keras_target(key), _match(key)[0].keras_layout(np.asarray(value)))
        for key, value in state_dict.items()
    ]  # (torch key, (Keras layer, variable attribute), value)
    transfer.assign_keras(keras_model, transfer.keras_by_layer(keras_model, targets))


def torch_state_to_flax(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of variables ({"params": ...}) holding a torch ConvNeXt's weights."""
    plan = [
        (key, flax_target(key), _match(key)[0].flax_layout(np.asarray(value)))
        for key, value in state_dict.items()
    ]  # (torch key, Flax path, value)
    return transfer.assign_flax(variables, plan)
