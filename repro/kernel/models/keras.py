"""A saved Keras 3 model as a workload: `model: {arch: keras, config: {file: model.keras}}`.

Framework-free (stdlib only), like the other families' configs: the driver reads what it needs
from the .keras file itself, a zip holding the model's `config.json` (its layers) and its weights
(`model.weights.h5`). From the config come the inputs repro synthesises: images (N, H, W, C) from
a 4-D input, token ids (N, T) from a 2-D one, with the vocabulary from the first Embedding layer
and the class count from the output layer's units. Any of them may be set in the workload's
config instead, and must be where the file does not say (repro says which).

The model itself is loaded in the kernel, on the backend of the run's framework
(repro.kernel.models.keras_saved). There is no analytic parameter or FLOP count: the framework
counts them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro.errors import quoted
from repro.kernel.models.config_base import Config, checked
from repro.lockfile import sha256

TASKS = ("image-classification", "sequence-classification", "causal-lm")
WEIGHTS = "model.weights.h5"  # in the .keras zip, beside config.json
PATH = 4096  # the longest file path accepted
SHAPED = ("image_size", "in_channels", "sequence_length")  # fixed by the input shape, if given
CONFIG_BYTES = 1 << 24  # the largest config.json read (a model's is kilobytes)


def is_file(file: str) -> bool:
    """Whether `file` is a file (a name too long for the file system is not one)."""
    try:
        return Path(file).is_file()
    except (OSError, ValueError):  # ENAMETOOLONG; a NUL in the name
        return False


def saved_config(file: str) -> dict:
    """The model config (`config.json`) inside a .keras file; ValueError saying what is wrong."""
    if not is_file(file):
        raise ValueError(f"file: no saved Keras model at {quoted(file)}")
    try:
        with zipfile.ZipFile(file) as saved:
            if saved.getinfo("config.json").file_size > CONFIG_BYTES:
                raise ValueError(
                    f"file: {quoted(file)}'s config.json is over {CONFIG_BYTES:,} bytes"
                )
            config = json.loads(saved.read("config.json"))
    except (
        zipfile.BadZipFile,
        KeyError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        OSError,
        RecursionError,
    ):
        raise ValueError(
            f"file: {quoted(file)} is not a Keras 3 saved model (a .keras zip with config.json); "
            "save it with model.save('name.keras')"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(f"file: {quoted(file)}'s config.json is not a model config")
    return config


def layer_list(saved: dict) -> list[dict]:
    layers = (saved.get("config") or {}).get("layers")
    return (
        [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []
    )


def input_shape(saved: dict) -> list | None:
    """The model's input shape, batch dimension first: its first InputLayer's, else the shape it
    was built with."""
    for layer in layer_list(saved):
        if layer.get("class_name") == "InputLayer":
            config = layer.get("config") or {}
            shape = config.get("batch_shape") or config.get("batch_input_shape")
            if isinstance(shape, list):
                return shape
    shape = (saved.get("build_config") or {}).get("input_shape")
    return shape if isinstance(shape, list) else None


def output_units(saved: dict) -> int | None:
    """The output layer's `units` (a Dense head's class count), if it has them: a Functional
    model names its output layer, a Sequential one ends with it."""
    layers = layer_list(saved)
    outputs = (saved.get("config") or {}).get("output_layers")
    if isinstance(outputs, list) and outputs:
        name = outputs[0] if isinstance(outputs[0], str) else outputs[0][0]  # one: [name, 0, 0]
        layers = [layer for layer in layers if layer.get("name") == name]
    units = (layers[-1].get("config") or {}).get("units") if layers else None
    return units if type(units) is int else None


def vocabulary(saved: dict) -> int | None:
    """The first Embedding layer's input_dim: the vocabulary of a token model."""
    for layer in layer_list(saved):
        if layer.get("class_name") == "Embedding":
            size = (layer.get("config") or {}).get("input_dim")
            return size if type(size) is int else None
    return None


@dataclasses.dataclass(frozen=True)
class KerasConfig(Config):
    file: str = ""  # the .keras file (an absolute path once the run is planned)
    sha256: str = ""  # the file's, pinned when the run is planned (`located`)
    task: str = ""  # default: image-classification for a 4-D input; a 2-D one must say
    image_size: int = 0  # 0 (here and below): from the saved model
    in_channels: int = 0
    sequence_length: int = 0
    vocab_size: int = 0
    num_classes: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KerasConfig:
        """The given values checked (Config.from_dict), the rest read from the saved model; a
        ValueError names the config key to set where the file does not say."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a KerasConfig is a mapping of keys to values, not {d!r}")
        file, sha256 = d.get("file"), d.get("sha256", "")
        if not isinstance(file, str) or not 0 < len(file) <= PATH:
            raise ValueError("file must name a saved Keras model (a .keras file)")
        if not isinstance(sha256, str) or not re.fullmatch(r"([0-9a-f]{64})?", sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {quoted(sha256)}")
        given = super().from_dict({k: v for k, v in d.items() if k not in ("file", "sha256")})
        saved = saved_config(file)
        shape = input_shape(saved)
        rank = len(shape) if shape is not None else None
        found = {"file": file, "sha256": sha256, "num_classes": output_units(saved)}
        if rank == 4:  # (N, H, W, C): Keras' channels-last images
            square = shape[1] == shape[2]
            found.update(
                task=TASKS[0], image_size=shape[1] if square else None, in_channels=shape[3]
            )
        elif rank == 2:  # (N, T): token ids
            found.update(sequence_length=shape[1], vocab_size=vocabulary(saved))
        else:
            raise ValueError(
                f"file: the saved model's input shape is {shape}; repro synthesises images "
                "(N, H, W, C) and token ids (N, T) only"
            )
        for key, fixed in found.items():  # the input's own sizes: a given one must agree
            if key in SHAPED and fixed is not None and getattr(given, key) not in (0, fixed):
                raise ValueError(
                    f"{key}={getattr(given, key)}, but the saved model takes {key} {fixed} "
                    f"(its input shape is {shape}); leave {key} out"
                )
        fields = [f.name for f in dataclasses.fields(cls)]
        values = {k: getattr(given, k) or found.get(k) for k in fields}
        tasks = TASKS[:1] if rank == 4 else TASKS[1:]
        if values["task"] not in tasks:
            raise ValueError(
                f"task: {quoted(values['task'] or None)} for a model of {rank}-D inputs; set task "
                f"to {' or '.join(tasks)}"
            )
        if values["task"] == TASKS[0]:
            needed = ("image_size", "in_channels", "num_classes")
        else:
            needed = ("sequence_length", "vocab_size")
            needed += ("num_classes",) if values["task"] != "causal-lm" else ()
        for key in needed:
            if values[key] is None:
                raise ValueError(
                    f"{key}: the saved model does not say it (a square input size, an Embedding, "
                    f"a Dense output do); set {key} in the model's config"
                )
            checked(key, "int", values[key])  # what the file says is data: in range, or said
        return cls(**values)

    def num_params(self) -> None:
        """No analytic count: the framework counts the loaded model's parameters."""
        return None

    def flops_per_sample(self) -> None:
        """No analytic count: the framework's FLOP counter counts the loaded model."""
        return None

    def stored_params(self) -> int:
        """At most this many parameters (fp32): the weights file's size / 4, for the memory
        estimate before a run (repro.driver.memory)."""
        with zipfile.ZipFile(self.file) as saved:
            return saved.getinfo(WEIGHTS).file_size // 4 if WEIGHTS in saved.namelist() else 0


def located(config: Mapping) -> dict:
    """The config with its file an absolute path (the kernel runs in the run folder) and its
    sha256 pinned, so a rerun loads that file or says it changed (ValueError)."""
    file = config.get("file")
    if not isinstance(file, str) or not is_file(file):
        return dict(config)  # KerasConfig.from_dict says what is wrong
    path = str(Path(file).resolve())
    found, pinned = sha256(path).hexdigest(), config.get("sha256")
    if pinned and pinned != found:
        raise ValueError(
            f"file: {path} is not the model this run was planned with (sha256 {found[:12]}…, "
            f"not {str(pinned)[:12]}…); bring that file back"
        )
    return {**config, "file": path, "sha256": found}
