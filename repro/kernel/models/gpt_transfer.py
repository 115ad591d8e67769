"""Copy PyTorch GPT weights into the Keras and Flax GPTs, to prove they compute the same.

The input is a torch state_dict as plain numpy arrays ({name: np.ndarray}, e.g. loaded from an
.npz), so this module needs only numpy and runs in any framework's kernel. The transfer is all
or nothing: every torch tensor must land on exactly one target variable of the same shape and
every target variable must be written, else TransferError is raised before anything is written.

Names: the torch module "transformer.h.3.attn.c_attn" is the module path
("h_3", "attn", "c_attn") in both targets: the Keras variable "gpt/h_3/attn/c_attn/kernel" (the
model's own name first) and the Flax param "params/h_3/attn/c_attn/kernel"; see _module_path.
With tied embeddings torch has no "lm_head" module (the logits use transformer.wte.weight), so
the shared matrix is one tensor and one target variable.
Layouts: linear (out, in) -> (in, out); embeddings (rows, width) and LayerNorm vectors as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from repro.kernel.models import transfer
from repro.kernel.models.transfer import TransferError

MAPPING = transfer.TRANSFORMER_MAPPING

# torch module name -> kind; the module path drops "transformer." and writes "h.3" as "h_3"
# (one to one: distinct torch keys land on distinct targets)
KINDS = {
    r"transformer\.wte": "embedding",  # token embedding (also the LM head when tied)
    r"transformer\.wpe": "embedding",  # position embedding
    r"transformer\.h\.\d+\.ln_[12]": "layernorm",
    r"transformer\.h\.\d+\.attn\.c_attn": "linear",  # q, k, v
    r"transformer\.h\.\d+\.attn\.c_proj": "linear",
    r"transformer\.h\.\d+\.mlp\.c_fc": "linear",
    r"transformer\.h\.\d+\.mlp\.c_proj": "linear",
    r"transformer\.ln_f": "layernorm",
    r"lm_head": "linear",  # untied embeddings only
}


def _module_path(module: str) -> tuple[tuple[str, ...], str]:
    """torch "transformer.h.3.attn.c_attn" -> (("h_3", "attn", "c_attn"), "linear")."""
    for pattern, kind in KINDS.items():
        if re.fullmatch(pattern, module):
            name = re.sub(r"^h\.(\d+)\.", r"h_\1.", module.removeprefix("transformer."))
            return tuple(name.split(".")), kind
    raise TransferError(f"unmapped torch module {module!r}: not part of a GPT")


def _plan(state_dict: Mapping[str, np.ndarray]):
    """Yield (torch key, module path, Keras name, Flax name, value in the target layout)."""
    for key, value in state_dict.items():
        module, _, tensor = key.rpartition(".")
        path, kind = _module_path(module)
        if tensor not in MAPPING[kind]:
            raise TransferError(f"unmapped torch key {key!r}: a {kind} has no {tensor!r}")
        keras_name, flax_name, layout = MAPPING[kind][tensor]
        yield key, path, keras_name, flax_name, layout(np.asarray(value))


def torch_state_to_keras(state_dict: Mapping[str, np.ndarray], keras_model: Any) -> None:
    """Write a torch GPT state_dict into a model from gpt_keras.build, in place."""
    # "gpt/h_3/attn/c_attn/kernel" -> ("h_3", "attn", "c_attn", "kernel")
    target = {tuple(v.path.split("/")[1:]): v for v in keras_model.weights}
    plan = []  # (torch key, Keras variable, value), all checked before any is assigned
    for key, path, keras_name, _, value in _plan(state_dict):
        variable = target.get((*path, keras_name))
        if variable is None:
            raise TransferError(
                f"unmapped torch key {key!r}: no Keras variable {'/'.join((*path, keras_name))}"
            )
        plan.append((key, variable, value))
    transfer.assign_keras(keras_model, plan)


def torch_state_to_flax(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of variables ({"params"}) holding a torch GPT's weights."""
    plan = [
        (key, ("params", *path, flax_name), value)
        for key, path, _, flax_name, value in _plan(state_dict)
    ]  # (torch key, Flax path, value), all checked before any is written
    return transfer.assign_flax(variables, plan)
