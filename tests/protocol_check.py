"""In-kernel checks for tests/test_protocol.py; each prints one JSON line.

python protocol_check.py sync            JAX: an unsynchronised loop vs a synchronised one
python protocol_check.py train FW MODEL  losses of a short deterministic training run
                                         (MODEL: a workload's `model` entry as JSON)
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def sync() -> dict:
    from repro.kernel import frameworks, measure

    fw = frameworks.load("jax", device="cpu")
    import jax
    import jax.numpy as jnp

    x = jnp.ones((1024, 1024), jnp.float32) / 1024
    work = jax.jit(lambda a: jnp.tanh(a @ a) @ a)  # ~4 GFLOP: tens of ms on this CPU
    jax.block_until_ready(work(x))  # compile outside every timing
    n = 10
    start = time.perf_counter()
    for _ in range(n):
        out = work(x)  # dispatch only: the clock is read before the work is done
    unsynced = (time.perf_counter() - start) / n
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(n):
        jax.block_until_ready(work(x))
    synced = (time.perf_counter() - start) / n
    m = measure.protocol(lambda: work(x), fw.sync, batch_size=1, warmup=3, steps=n, log=sys.stderr)
    return {"unsynced_s": unsynced, "synced_s": synced, "protocol_s": statistics.median(m.step_s)}


def train(framework: str, model_json: str) -> list[float]:
    from repro.kernel import frameworks, measure, models

    fw = frameworks.load(framework, device="cpu", seed=0, deterministic=True)
    model = json.loads(model_json)
    net = fw.build(model)
    images, labels = models.synthetic_batch(models.config(model), 4, 0)
    step = fw.step(
        net,
        fw.to_native(images),
        fw.to_native(labels),
        mode="training",
        compile=frameworks.COMPILE_MODES[framework][0],
        lr_table=measure.lr_schedule(1e-3, warmup_steps=2, total_steps=8),
    )
    m = measure.protocol(
        step, fw.sync, batch_size=4, warmup=0, steps=5, keep_outputs=True, log=sys.stderr
    )
    return [fw.to_float(out) for out in m.outputs]


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    print(json.dumps(sync() if command == "sync" else train(*args)))
