"""Copy PyTorch BERT weights into the Keras and Flax BERTs, to prove they compute the same.

The input is a torch state_dict as plain numpy arrays ({name: np.ndarray}, e.g. loaded from an
.npz), so this module needs only numpy and runs in any framework's kernel. The transfer is all
or nothing: every torch tensor must land on exactly one target variable of the same shape and
every target variable must be written, else TransferError is raised before anything is written.
(A HuggingFace checkpoint also carries the constant buffers "bert.embeddings.position_ids" /
"token_type_ids"; drop them first, the models compute those ids themselves.)

Names: the torch module "bert.encoder.layer.0.attention.self.query" is the Keras layer
"bert_encoder_layer_0_attention_self_query" and the Flax submodule path
("bert", "encoder", "layer_0", "attention", "self", "query"); see _keras_layer and _flax_path.
Module kinds, by the last part of the module name: "*_embeddings" -> embedding table,
"LayerNorm" -> layer norm, anything else -> linear.
Layouts: linear (out, in) -> (in, out); embedding tables and LayerNorm vectors as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from repro.kernel.models import transfer
from repro.kernel.models.transfer import TransferError

MAPPING = transfer.TRANSFORMER_MAPPING


def _kind(module: str) -> str:
    """The kind of torch module, from its name: "bert.embeddings.LayerNorm" -> "layernorm"."""
    last = module.rpartition(".")[2]
    if last.endswith("_embeddings"):
        return "embedding"
    if last == "LayerNorm":
        return "layernorm"
    return "linear"


def _modules(state_dict: Mapping[str, np.ndarray]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Group a state_dict by module: {module name: (kind, {tensor name: array})}."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        module, _, tensor = key.rpartition(".")
        groups.setdefault(module, {})[tensor] = np.asarray(value)
    out = {}
    for module, tensors in groups.items():
        kind = _kind(module)
        unmapped = sorted(set(tensors) - set(MAPPING[kind]))
        if unmapped:
            raise TransferError(
                f"unmapped torch keys {[f'{module}.{t}' for t in unmapped]} ({kind} module)"
            )
        out[module] = (kind, tensors)
    return out


def _keras_layer(module: str) -> str:
    """torch "bert.encoder.layer.0.output.dense" -> "bert_encoder_layer_0_output_dense"."""
    return module.replace(".", "_")


def _flax_path(module: str) -> tuple[str, ...]:
    """torch "bert.encoder.layer.0.output.dense" -> ("bert", "encoder", "layer_0", "output",
    "dense"): a list index joins the name before it."""
    return tuple(re.sub(r"\.(\d+)(?=\.|$)", r"_\1", module).split("."))


def _targets(
    state_dict: Mapping[str, np.ndarray],
) -> Iterator[tuple[str, tuple[str, str], tuple[str, ...], np.ndarray]]:
    """Yield (torch key, (Keras layer, variable attribute), Flax path, value in the target
    layout) for every tensor of the state_dict."""
    for module, (kind, tensors) in _modules(state_dict).items():
        for tensor, value in tensors.items():
            attr, leaf, layout = MAPPING[kind][tensor]
            flax_path = ("params", *_flax_path(module), leaf)
            yield f"{module}.{tensor}", (_keras_layer(module), attr), flax_path, layout(value)


def torch_state_to_keras(state_dict: Mapping[str, np.ndarray], keras_model: Any) -> None:
    """Write a torch BERT state_dict into a model from bert_keras.build, in place."""
    transfer.write_keras(keras_model, _targets(state_dict))


def torch_state_to_flax(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of variables ({"params": ...}) holding a torch BERT's weights."""
    return transfer.write_flax(variables, _targets(state_dict))
