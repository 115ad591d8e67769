"""Framework adapters (in-kernel side): the only code that knows a framework's API.

This package's front: the frameworks and compile modes a run may name (the driver validates a
plan against them), and `load`. The adapters' shared base is `base.Adapter`.

`load(name, ...)` sets the process environment first (thread pools and determinism switches are
read when a framework starts), then imports just that framework's module, so a kernel never
imports another framework. Each adapter supplies what the protocol in `repro.kernel.measure`
needs: a step for inference or training in the chosen compile mode and precision, a device sync,
FLOP counts, and peak memory.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repro.kernel.frameworks.base import Adapter

FRAMEWORKS = ("torch", "tensorflow", "jax", "mxnet")
COMPILE_MODES = {  # the first one is the framework's usual default
    "torch": ("eager", "compile"),
    "tensorflow": ("function", "xla", "eager"),
    "jax": ("jit", "eager"),
    "mxnet": ("hybridize", "imperative"),  # Gluon's HybridBlock.hybridize(): a cached graph
}
DATA_PARALLEL_COMPILE_MODES = {  # devices > 1: training only, in these (repro.kernel.parallel)
    "torch": ("eager", "compile"),
    "tensorflow": ("function",),
    "jax": ("jit", "eager"),
}
# Keras 3's backend in each framework's kernel, read when Keras is first imported: a saved Keras
# model (repro.kernel.models.keras_saved) runs on the run's framework, `-f jax` on Keras' JAX
KERAS_BACKEND = {"torch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Idle OpenMP threads sleep by default: left to spin (libgomp's default spins up to 300,000
# iterations at every barrier), torch's two threads on a 2-core VM beside two busy loops ran
# resnet-tiny at 15 samples/s against 456 passive (README: "Threads on a busy machine").
WAIT_POLICY = "passive"
DETERMINISM_ENV = {  # read when the framework initialises its GPU backend
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "MXNET_ENFORCE_DETERMINISM": "1",
    "TF_DETERMINISTIC_OPS": "1",
    "XLA_FLAGS": "--xla_gpu_deterministic_ops=true",
}


def parallel_batches(batch_size: int, devices: int, scaling: str | None) -> tuple[int, int]:
    """(per-device batch, global batch) of a run on `devices` (repro.kernel.parallel): weak
    scaling (and one device) puts batch_size samples on each device; strong scaling splits a
    global batch of batch_size evenly, or raises ValueError."""
    if scaling != "strong":
        return batch_size, batch_size * devices
    if batch_size % devices:
        raise ValueError(
            f"scaling=strong splits batch_size={batch_size} evenly over devices={devices}, "
            "and it does not divide"
        )
    return batch_size // devices, batch_size


def prepare_process(threads: int, deterministic: bool, omp_wait_policy: str = WAIT_POLICY) -> int:
    """Pin the thread count (and CPU affinity), OpenMP's wait policy (`unset`: the
    environment's) and determinism variables; return threads."""
    available = sorted(os.sched_getaffinity(0))
    threads = threads or len(available)
    if threads < len(available):  # the same cores for every framework, JAX included
        os.sched_setaffinity(0, available[:threads])
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    if omp_wait_policy != "unset":  # read when the OpenMP runtime loads, with the framework
        os.environ["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    if deterministic:
        for var, value in DETERMINISM_ENV.items():
            current = os.environ.get(var, "")
            os.environ[var] = f"{current} {value}".strip() if var == "XLA_FLAGS" else value
    return threads


def load(name: str, devices: int = 1, **options) -> Adapter:
    """The adapter for framework `name`, set up with device, threads, seed, precision and
    deterministic, in a process with `omp_wait_policy` (prepare_process); `devices` > 1 readies
    that many CPU devices for data parallelism (JAX and TensorFlow; torch runs a process per
    device)."""
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown framework {name!r}; choose one of {', '.join(FRAMEWORKS)}")
    options["threads"] = prepare_process(
        options.get("threads", 0),
        options.get("deterministic"),
        options.pop("omp_wait_policy", WAIT_POLICY),
    )
    if name in KERAS_BACKEND:
        os.environ["KERAS_BACKEND"] = KERAS_BACKEND[name]
    if name == "mxnet":  # read when libmxnet loads: one engine worker runs the ops in order,
        os.environ["MXNET_CPU_WORKER_NTHREADS"] = "1"  # each on OMP_NUM_THREADS threads
    if name == "jax" and devices > 1:  # N CPU devices, read when the backend starts
        flag = f"--xla_force_host_platform_device_count={devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    module = importlib.import_module(f"repro.kernel.frameworks.{name}")
    return module.Adapter(devices=devices, **options)
