"""A saved Keras 3 model (`arch: keras`) on the backend of the kernel's framework.

repro.kernel.frameworks.load sets KERAS_BACKEND (jax, tensorflow or torch) before anything imports
Keras, so the one .keras file (its config and weights) loads as each adapter's own kind of model,
measured by the adapter as it measures repro's native models:
- tensorflow: the Keras model itself, like repro's own Keras models;
- torch: under the torch backend a Keras model is a torch.nn.Module; wrapped so that the adapter's
  `net.train()` / `net.eval()` become Keras' `training` argument, and its images stay
  channels-last (N, H, W, C), as the model was saved;
- jax: a Flax-like pair (module, variables): `module.apply` is the model's `stateless_call`, the
  variables the values of its trainable ("params") and non-trainable ("state": BatchNorm
  statistics, seed states) variables, so the adapter's jit, grad and optax apply unchanged.
"""

from __future__ import annotations

import os

import keras

from repro.lockfile import sha256

BACKENDS = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}


def load(cfg) -> keras.Model:
    """The model in cfg.file (safe mode: a saved lambda is refused, not run), no optimizer."""
    if keras.backend.backend() != os.environ.get("KERAS_BACKEND"):
        raise RuntimeError(
            f"Keras runs on {keras.backend.backend()}, not the run's framework's backend "
            f"({os.environ.get('KERAS_BACKEND')}): something imported Keras before "
            "repro.kernel.frameworks.load set KERAS_BACKEND"
        )
    if cfg.sha256 and sha256(cfg.file).hexdigest() != cfg.sha256:
        raise RuntimeError(f"{cfg.file} changed after the run was planned (sha256)")
    return keras.saving.load_model(cfg.file, compile=False, safe_mode=True)


def build(cfg, seed: int = 0):
    """The adapter's kind of model (above); the weights are the file's, so `seed` changes
    nothing (the JAX adapter passes it to every family's build)."""
    model = load(cfg)
    backend = keras.backend.backend()
    if backend == "jax":
        values = {
            "params": [v.value for v in model.trainable_variables],
            "state": [v.value for v in model.non_trainable_variables],
        }
        return Stateless(model), values
    if backend == "torch":
        return torch_module(model)
    return model


class Stateless:
    """Flax's `apply` for a Keras model on JAX: a pure function of the variables' values."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model

    def apply(self, variables: dict, x, train: bool = False, mutable=False):
        """The outputs; with `mutable` (training) also the updated non-trainable state."""
        out, state = self.model.stateless_call(
            variables["params"], variables["state"], x, training=train
        )
        return (out, {"state": state}) if mutable else out


def torch_module(model: keras.Model):
    """The Keras model inside a torch.nn.Module whose train/eval mode is Keras' `training`."""
    import torch

    class KerasModel(torch.nn.Module):
        image_layout = "NHWC"  # the adapter feeds images as Keras takes them

        def __init__(self, model: keras.Model) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x, training=self.training)

    return KerasModel(model)


def describe(cfg) -> dict:
    """What ran: Keras' version and backend, the file and its sha256."""
    backend = keras.backend.backend()
    return {
        "keras": keras.__version__,
        "backend": backend,
        "runs_as": f"Keras {keras.__version__} on {BACKENDS.get(backend, backend)}",
        "file": cfg.file,
        "sha256": cfg.sha256 or sha256(cfg.file).hexdigest(),
    }
