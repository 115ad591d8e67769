"""Data-parallel check run inside ONE framework's kernel; tests/test_parallel.py drives it.

    python parallel_check.py FRAMEWORK MODEL DEVICES [COMPILE]

MODEL is a workload's `model` entry as JSON; COMPILE defaults to the framework's usual mode (the
tests use it; torch `compile` and JAX `eager` pass too, run by hand: 104 s and 37 s here). Trains
the model for STEPS steps on one global batch twice from the same initial weights: on one device
with the adapter's own step, then data-parallel over DEVICES devices (repro.kernel.parallel), each
device taking its part of the batch. Prints one JSON object as its last line: both runs' losses,
the largest weight difference after the steps, and the largest change the steps made to any
weight (so a tolerance can be judged against it); for torch, the last step's gradients too.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from repro.kernel import frameworks, models, parallel

BATCH, SEED, LR, STEPS = 4, 0, 1e-3, 2
DEFAULT_COMPILE = {"torch": "eager", "tensorflow": "function", "jax": "jit"}


def largest(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b], "the weights differ in shape"
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def check(framework: str, model: dict, devices: int, compile: str) -> dict:
    fw = frameworks.load(framework, devices=devices, threads=1, seed=SEED)
    x, y = models.synthetic_batch(models.config(model), BATCH, SEED)
    table = [LR] * STEPS

    net = fw.build(model)
    step = fw.step(
        net, fw.to_native(x), fw.to_native(y), mode="training", compile=compile, lr_table=table
    )
    before = parallel.trained_weights(fw, net, step)
    one = [fw.to_float(step()) for _ in range(STEPS)]
    single = parallel.trained_weights(fw, net, step)

    replicated = parallel.training(
        fw, model, x, y, devices=devices, compile=compile, lr_table=table
    )
    try:
        many = [fw.to_float(replicated.step()) for _ in range(STEPS)]
        weights = replicated.weights()
        grads = torch_grads(replicated.net) if framework == "torch" else None
    finally:
        replicated.close()
    return {
        "loss_1": one,
        f"loss_{devices}": many,
        "weights_max_abs_diff": largest(single, weights),
        "update_max_abs": largest(single, before),
        "tensors": len(single),
        # torch reports the loss apart from DDP's gradient averaging: compare the gradients
        "grads_max_abs_diff": largest(torch_grads(net), grads) if grads else None,
        "grads_max_abs": largest(grads, [0 * g for g in grads]) if grads else None,
    }


def torch_grads(net) -> list[np.ndarray]:
    """The last step's gradients (the adapter's step clears them at its start, not its end)."""
    module = getattr(net, "module", net)
    return [p.grad.numpy().copy() for p in module.parameters()]


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    framework, model, devices = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    compile = sys.argv[4] if len(sys.argv) > 4 else DEFAULT_COMPILE[framework]
    print(json.dumps(check(framework, model, devices, compile)))
