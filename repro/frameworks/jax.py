"""JAX adapter (Flax Linen models). Dispatch is asynchronous, on CPU too: every timed step ends
with `jax.block_until_ready`, otherwise the clock reads the dispatch time, not the compute time."""

from __future__ import annotations

import jax
import numpy as np

from repro import models
from repro.frameworks import Adapter as Base


class Adapter(Base):
    name = "jax"

    def setup(self, device: str) -> str:
        # fp32 means full-precision matmuls (JAX defaults to TF32-like precision on GPUs).
        jax.config.update(
            "jax_default_matmul_precision",
            "tensorfloat32" if self.precision == "tf32" else "highest",
        )
        has_gpu = any(d.platform == "gpu" for d in jax.devices())
        picked = self.pick(device, has_gpu)
        self.jax_device = jax.devices("gpu" if picked == "gpu" else "cpu")[0]
        return picked

    def info(self) -> dict:
        import jaxlib

        return {
            "version": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "matmul_precision": jax.config.jax_default_matmul_precision,
            "xla_flags": jax.config.values.get("xla_flags")
            if hasattr(jax.config, "values")
            else None,
        }

    def build(self, model: dict):
        cfg = models.config(model)
        module, variables = models.native(model["arch"], self.name).build(cfg, seed=self.seed)
        return module, jax.device_put(variables, self.jax_device)

    def count_params(self, net) -> int:
        _, variables = net
        return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))

    def to_native(self, batch: np.ndarray):
        return jax.device_put(batch, self.jax_device)

    def inference_step(self, net, inputs):
        module, variables = net
        forward = jax.jit(lambda v, x: module.apply(v, x, train=False))
        return lambda: forward(variables, inputs)

    def sync(self, out=None) -> None:
        jax.block_until_ready(out)

    def reset_peak_memory(self) -> None:
        pass  # JAX cannot reset its peak: one kernel process per measurement is the reset

    def device_peak_bytes(self) -> int | None:
        return self.jax_device.memory_stats().get("peak_bytes_in_use")
