"""Save tiny Keras 3 models with random weights, in one framework's kernel; tests/test_keras.py
and benchmarks/keras_backends.py drive it.

    python keras_check.py save FOLDER       a conv net (images) and a token model, as .keras
    python keras_check.py resnet CONFIG OUT  repro's own Keras ResNet of CONFIG (JSON), as .keras

The conv net has BatchNormalization with moving statistics set away from their initial 0 and 1,
so a backend that ignored them (or trained them on inference) would give other outputs.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers


def conv_net() -> keras.Model:
    x = inputs = keras.Input((16, 16, 3), name="images")  # (N, 16, 16, 3)
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(2)(x)  # (N, 8, 8, 8)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="gelu")(x)  # (N, 4, 4, 16)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="tiny_conv")  # (N, 10)


def token_net() -> keras.Model:
    """An Embedding, one self-attention block and a per-token head: a causal LM's shapes."""
    x = inputs = keras.Input((12,), dtype="int32", name="tokens")  # (N, 12)
    x = layers.Embedding(50, 16)(x)  # (N, 12, 16)
    attended = layers.MultiHeadAttention(2, 8)(x, x, use_causal_mask=True)
    x = layers.LayerNormalization()(x + attended)
    return keras.Model(inputs, layers.Dense(50)(x), name="tiny_tokens")  # (N, 12, 50)


def save(folder: str) -> dict:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    paths = {}
    for name, model in (("image", conv_net()), ("tokens", token_net())):
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
                layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
        paths[name] = str(Path(folder) / f"{name}.keras")
        model.save(paths[name])
    return paths


def resnet(config: str, out: str) -> dict:
    from repro.kernel.models import resnet_keras
    from repro.kernel.models.resnet import ResNetConfig

    keras.utils.set_random_seed(0)
    resnet_keras.build(ResNetConfig.from_dict(json.loads(config))).save(out)
    return {"file": out, "keras": keras.__version__}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    print(json.dumps({"save": save, "resnet": resnet}[command](*args)))
