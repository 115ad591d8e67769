"""Framework adapters (in-kernel side): the only code that knows a framework's API.

`load(name, ...)` imports just that framework's module, so a kernel never imports another
framework. Each adapter sets up the process (threads, seeds, precision, device) before its
framework runs any op, and supplies what the protocol in `repro.measure` needs: a step, a sync,
and the memory and build facts for the report.
"""

from __future__ import annotations

import importlib
import os
import random
import resource

import numpy as np

FRAMEWORKS = ("torch", "tensorflow", "jax")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Adapter:
    """What every framework shares; subclasses fill in the framework-specific parts."""

    name = ""

    def __init__(
        self, device: str = "auto", threads: int = 0, seed: int = 0, precision: str = "fp32"
    ) -> None:
        available = sorted(os.sched_getaffinity(0))
        self.threads = threads or len(available)
        if self.threads < len(available):  # the same cores for every framework, JAX included
            os.sched_setaffinity(0, available[: self.threads])
        for var in THREAD_ENV:  # read by OpenMP/MKL when the framework loads
            os.environ[var] = str(self.threads)
        self.seed = seed
        random.seed(seed)
        np.random.seed(seed)
        self.precision = precision
        self.requested_device = device
        self.device = self.setup(device)

    def setup(self, device: str) -> str:
        """Import and configure the framework; return the device used ("cpu" or "gpu")."""
        raise NotImplementedError

    @staticmethod
    def pick(device: str, has_gpu: bool) -> str:
        if device == "gpu" and not has_gpu:
            raise RuntimeError("device='gpu' was asked for, but the framework sees no GPU")
        return "gpu" if device in ("auto", "gpu") and has_gpu else "cpu"

    def memory(self) -> dict:
        """Peak host RSS of this kernel process, and the framework's peak device memory."""
        return {
            "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "device_peak_bytes": self.device_peak_bytes() if self.device == "gpu" else None,
        }

    def device_peak_bytes(self) -> int | None:
        return None

    def settings(self) -> dict:
        return {
            "framework": self.name,
            "device": self.device,
            "requested_device": self.requested_device,
            "threads": self.threads,
            "affinity": sorted(os.sched_getaffinity(0)),
            "seed": self.seed,
            "precision": self.precision,
        }


def load(name: str, **options) -> Adapter:
    """The adapter for framework `name`, set up with device, threads, seed and precision."""
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown framework {name!r}; choose one of {', '.join(FRAMEWORKS)}")
    module = importlib.import_module(f"repro.frameworks.{name}")
    return module.Adapter(**options)
