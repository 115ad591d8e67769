"""What every framework adapter shares (in-kernel side): the settings it records, the seeds it
sets, and the optimizer every framework trains with; `torch.py`, `tensorflow.py` and `jax.py` fill
in the framework-specific parts."""

from __future__ import annotations

import os
import random
import re
import resource

from repro.kernel.frameworks import COMPILE_MODES

# Ops that do a model's multiply-adds (matmuls, convolutions, attention), by name: one that ran
# without a formula in the framework's FLOP counter is work the counter missed (report.flops).
WORK_OPS = re.compile(r"attention|attn|fmha|einsum|matmul|gemm|conv|dot|linear|mm$", re.I)


def missed_work(uncounted_ops) -> list[str]:
    """The multiply-add ops among those a FLOP counter had no formula for, sorted."""
    return sorted({str(op) for op in uncounted_ops if WORK_OPS.search(str(op))})


def keras_info() -> dict:
    """Keras' version and the backend it runs on here (KERAS_BACKEND, set by frameworks.load),
    where this kernel has Keras: read from its metadata, so Keras is not imported for it."""
    from importlib import metadata

    try:
        version = metadata.version("keras")
    except metadata.PackageNotFoundError:
        return {}
    return {"keras": version, "keras_backend": os.environ.get("KERAS_BACKEND")}


OPTIMIZER = {"name": "adamw", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}


class Adapter:
    """What every framework shares; subclasses fill in the framework-specific parts."""

    name = ""

    def __init__(
        self,
        device: str = "auto",
        threads: int = 0,
        seed: int = 0,
        precision: str = "fp32",
        deterministic: bool = False,
        devices: int = 1,
    ) -> None:
        self.threads = threads or len(os.sched_getaffinity(0))  # load() pinned the process
        self.seed = seed
        random.seed(seed)
        import numpy as np  # in-kernel only: the driver imports this module for its tables

        np.random.seed(seed)
        self.precision = precision
        self.deterministic = deterministic
        self.requested_device = device
        self.devices = devices  # data-parallel devices (repro.kernel.parallel)
        self.device = self.setup(device)

    # -- set up by each framework ------------------------------------------------------------
    def setup(self, device: str) -> str:
        """Configure the framework; return the device used ("cpu" or "gpu")."""
        raise NotImplementedError

    @staticmethod
    def pick(device: str, has_gpu: bool) -> str:
        if device == "gpu" and not has_gpu:
            raise RuntimeError("device='gpu' was asked for, but the framework sees no GPU")
        return "gpu" if device in ("auto", "gpu") and has_gpu else "cpu"

    def device_name(self) -> str | None:
        """The GPU's name (for its peak FLOP/s), or None on a CPU."""
        raise NotImplementedError

    def step(self, net, inputs, labels, *, mode: str, compile: str, lr_table=None, new_tokens=None):
        """A zero-argument callable running one inference or training step, or (generate) one
        greedy generation of `new_tokens` tokens after the prompt `inputs`."""
        if compile not in COMPILE_MODES[self.name]:
            raise ValueError(f"compile={compile!r}; {self.name} offers {COMPILE_MODES[self.name]}")
        if mode == "generate":
            from repro.kernel import generation

            return generation.step(self, net, inputs, new_tokens, compile)
        if mode == "training":
            if self.precision == "fp16":
                raise ValueError(
                    "fp16 training needs loss scaling, which repro does not do: use bf16"
                )
            return self.training_step(net, inputs, labels, compile, lr_table)
        infer = self.serving_function(net, compile)
        return lambda: infer(inputs)

    served = None  # an exported runtime's inference function (repro.kernel.runtimes), if any

    def serving_function(self, net, compile: str):
        """What serves inference: the exported runtime where the run has one
        (`runtime=onnxruntime`), else the framework's own `inference_function`."""
        return self.served or self.inference_function(net, compile)

    def inference_function(self, net, compile: str):
        """The inference step as a function of its inputs (a batch on the device), compiled
        as `compile` says: `step` binds it to one batch, a LoadGen SUT (repro.kernel.loadgen)
        calls it on each query's samples."""
        raise NotImplementedError

    def to_numpy(self, tensor):
        """A framework tensor (an output, or the inputs an exported runtime takes) as a NumPy
        array on the host."""
        raise NotImplementedError

    def generation(self, net, prompt, new_tokens: int, compile: str):
        """(prefill, decode, cache) for repro.kernel.generation: prefill(cache) -> (cache, first
        token, logits) runs the prompt (N, P); decode(cache, token, i) -> (cache, next token,
        logits) feeds output token i at position P + i; cache is a fixed-size KV cache of
        P + new_tokens positions. Tokens are (N,) greedy ids (the argmax of the last position's
        logits, (N, vocab_size)), on the device."""
        raise NotImplementedError

    # -- attention ---------------------------------------------------------------------------
    def probe(self, model: dict):
        """One seeded sample of the model's input, on the device: for a look at what runs."""
        from repro.kernel import models

        return self.to_native(models.synthetic_batch(models.config(model), 1, self.seed)[0])

    def attention_kernel(self, net, model: dict) -> str:
        """What computed the fused attention of one forward pass, as far as the framework says."""
        raise NotImplementedError

    # -- memory ------------------------------------------------------------------------------
    def memory(self) -> dict:
        """Peak host RSS of this kernel process, and the framework's peak device memory."""
        return {
            "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "device_peak_bytes": self.device_peak_bytes() if self.device == "gpu" else None,
        }

    def reset_peak_memory(self) -> None:
        """Reset the framework's peak-memory counter where it can (not JAX)."""

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
            "deterministic": self.deterministic,
            "optimizer": OPTIMIZER,
        }
