"""A minimal hand-written inference loop, run in a framework's kernel by overhead.py.

What a careful user would write without repro: build the same model, warm up, time N steps,
synchronise once at the end. Prints samples/s as one JSON line.

    python hand_loop.py FRAMEWORK BATCH STEPS WARMUP MODEL

MODEL is the workload's `model` entry as JSON (overhead.py reads it from resnet-50.yaml).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from repro.kernel import models

framework, batch, steps, warmup = sys.argv[1], *map(int, sys.argv[2:5])
cfg = models.config(json.loads(sys.argv[5]))
size = (batch, cfg.image_size, cfg.image_size, cfg.in_channels)
x = np.random.default_rng(0).standard_normal(size, dtype=np.float32)

if framework == "torch":
    import torch

    from repro.kernel.models import resnet_torch

    net = resnet_torch.build(cfg).eval()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    def run(n):
        with torch.inference_mode():
            for _ in range(n):
                net(xt)  # CPU ops are synchronous

elif framework == "tensorflow":
    import tensorflow as tf

    from repro.kernel.models import resnet_keras

    net = resnet_keras.build(cfg)
    forward = tf.function(lambda v: net(v, training=False))
    xt = tf.constant(x)

    def run(n):
        for _ in range(n):
            out = forward(xt)
        out.numpy()

elif framework == "jax":
    import jax

    from repro.kernel.models import resnet_flax

    module, variables = resnet_flax.build(cfg, seed=0)
    forward = jax.jit(lambda v, inp: module.apply(v, inp, train=False))
    xt = jax.device_put(x)

    def run(n):
        for _ in range(n):
            out = forward(variables, xt)
        jax.block_until_ready(out)


run(1 + warmup)
start = time.perf_counter()
run(steps)
print(json.dumps({"samples_per_s": batch * steps / (time.perf_counter() - start)}))
