"""JAX adapter (Flax Linen models, optax). Dispatch is asynchronous, on CPU too: every timed step
ends with `jax.block_until_ready`, otherwise the clock reads the dispatch time, not the compute."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from repro.kernel import models
from repro.kernel.frameworks.base import OPTIMIZER, missed_work
from repro.kernel.frameworks.base import Adapter as Base
from repro.kernel.models import attention_flax

LOW_PRECISION = {"bf16": jnp.bfloat16, "fp16": jnp.float16}
ONNX_OPSET = 23  # jax2onnx's default; its ReduceMean and friends take axes as inputs (opset 18+)


def model_state(variables: dict) -> dict:
    """The non-trainable collections of a Flax model (ResNet's batch_stats), maybe none."""
    return {k: v for k, v in variables.items() if k != "params"}


def xla_flops(lowered) -> int | None:
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list in older JAX versions
    flops = (cost or {}).get("flops")
    return None if flops is None else int(flops)


class Adapter(Base):
    name = "jax"
    # Set by repro.kernel.parallel for a data-parallel step: the sharding (replicated over its
    # mesh) the training state keeps, so that jit neither shards the optimizer's moments on its
    # own (ZeRO-like, not data parallelism) nor compiles again when step 2 gets them sharded.
    replicated = None

    def setup(self, device: str) -> str:
        # fp32 means full-precision matmuls (JAX defaults to TF32-like precision on GPUs).
        precision = "tensorfloat32" if self.precision == "tf32" else "highest"
        jax.config.update("jax_default_matmul_precision", precision)
        has_gpu = any(d.platform == "gpu" for d in jax.devices())
        picked = self.pick(device, has_gpu)
        self.jax_device = jax.devices("gpu" if picked == "gpu" else "cpu")[0]
        attention_flax.on_gpu(picked == "gpu")  # fused attention may call cuDNN
        return picked

    def info(self) -> dict:
        import flax
        import jaxlib

        return {
            "version": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "matmul_precision": jax.config.jax_default_matmul_precision,
        }

    def build(self, model: dict, attention: str = "fused"):
        cfg, options = models.config(model), models.build_options(model["arch"], attention)
        native = models.native(model["arch"], self.name)
        module, variables = native.build(cfg, seed=self.seed, **options)
        variables = jax.block_until_ready(jax.device_put(variables, self.jax_device))
        return module, variables

    def attention_kernel(self, net, model: dict) -> str:
        """cuDNN's fused attention if the forward calls it (a `__cudnn$fmha` custom call), else
        XLA's own lowering of the attention ops. Read from the lowered program: compiling it
        again only to look made ViT-H's model cell on an H100 take 125 s (how much of it was that
        compile was not measured)."""
        predict = self._functions(net)[0]
        text = jax.jit(predict).lower(net[1], self.probe(model)).as_text()
        calls = sorted(set(re.findall(r"__cudnn\$fmha\w*", text)))
        return f"cuDNN fused attention ({', '.join(calls)})" if calls else "XLA (no cuDNN call)"

    def device_name(self) -> str | None:
        return self.jax_device.device_kind if self.device == "gpu" else None

    def count_params(self, net) -> int:
        _, variables = net
        return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))

    def to_numpy(self, tensor) -> np.ndarray:
        return np.asarray(tensor)

    def to_native(self, array: np.ndarray):
        return jax.device_put(array, self.jax_device)

    def cast(self, tree):
        """Mixed precision: compute in bf16/fp16 from fp32 master values."""
        dtype = LOW_PRECISION.get(self.precision)
        if dtype is None:
            return tree
        return jax.tree_util.tree_map(
            lambda a: a.astype(dtype) if a.dtype == jnp.float32 else a, tree
        )

    def _functions(self, net):
        module, _ = net

        def predict(variables, x):
            return module.apply(self.cast(variables), self.cast(x), train=False)

        def loss_and_stats(params, state, x, y):
            """Mean cross-entropy over every label (per sample or per token), and the updated
            non-trainable state (BatchNorm statistics; empty for models without any)."""
            mutable = list(state) or False
            variables = self.cast({"params": params, **state})
            out = module.apply(variables, self.cast(x), train=True, mutable=mutable)
            logits, updates = out if mutable else (out, {})
            loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)
            return loss.mean(), {**state, **updates}

        return predict, loss_and_stats

    @staticmethod
    def compiled(fn, compile: str):
        return jax.jit(fn) if compile == "jit" else fn

    def export_onnx(self, net, inputs, path) -> dict:
        """The model as ONNX at `path`: jax2onnx converts the eval-mode forward's jaxpr (the
        weights folded in as initializers), the batch dimension symbolic; what the report
        records of the exporter."""
        from importlib import metadata

        import jax2onnx

        predict, (_, variables) = self._functions(net)[0], net
        shape = jax.export.symbolic_shape(", ".join(["B", *map(str, inputs.shape[1:])]))
        jax2onnx.to_onnx(
            lambda x: predict(variables, x),
            [jax.ShapeDtypeStruct(shape, inputs.dtype)],
            model_name="repro",
            opset=ONNX_OPSET,
            return_mode="file",
            output_path=str(path),
        )
        return {
            "exporter": f"jax2onnx.to_onnx (opset {ONNX_OPSET})",
            "jax2onnx": metadata.version("jax2onnx"),
            "jax": jax.__version__,
        }

    def inference_function(self, net, compile: str):
        _, variables = net
        predict = self.compiled(self._functions(net)[0], compile)
        return lambda inputs: predict(variables, inputs)

    def generation(self, net, prompt, new_tokens: int, compile: str):
        """A fixed-size cache updated by lax.dynamic_update_slice; jit compiles the prefill and
        the decode step once each (the position is traced) and takes the cache's buffers over
        (donate_argnums), so each step writes it in place."""
        gpt = models.native("gpt", self.name)
        module, variables = net
        n, p = prompt.shape
        dtype = LOW_PRECISION.get(self.precision, jnp.float32)
        cache = jax.device_put(gpt.new_cache(module.cfg, n, p + new_tokens, dtype), self.jax_device)
        # decode i is at p + i: each position a device scalar of its own, made before timing
        positions = [jax.device_put(np.int32(i), self.jax_device) for i in range(p, p + new_tokens)]
        zero = jax.device_put(np.int32(0), self.jax_device)

        def forward(variables, idx, cache, pos):
            logits, cache = module.apply(self.cast(variables), idx, cache=cache, pos=pos)
            last = logits[:, -1]  # (N, vocab_size)
            return cache, jnp.argmax(last, axis=-1).astype(jnp.int32), last  # greedy: (N,)

        if compile == "jit":
            forward = jax.jit(forward, donate_argnums=2)

        def prefill(cache):
            return forward(variables, prompt, cache, zero)

        def decode(cache, token, i):
            return forward(variables, token[:, None], cache, positions[i])

        return prefill, decode, cache

    def training_step(self, net, inputs, labels, compile: str, lr_table):
        train, _ = self.trainer(net, compile, lr_table)

        def step():
            return train(inputs, labels)

        step.params = train.params  # the trained weights (repro.kernel.parallel reads them)
        return step

    def trainer(self, net, compile: str, lr_table):
        """(train(x, y) -> loss, predict(x) -> class indices as numpy): one AdamW step on a
        batch, and the trained weights' eval-mode prediction."""
        _, variables = net
        predict, loss_and_stats = self._functions(net)
        table = jnp.asarray(lr_table)
        o = OPTIMIZER
        optimizer = optax.adamw(
            lambda count: table[jnp.minimum(count, len(lr_table) - 1)],
            b1=o["beta1"],
            b2=o["beta2"],
            eps=o["eps"],
            weight_decay=o["weight_decay"],
        )

        def train(state, x, y):
            params, model_state, opt_state = state
            grad_fn = jax.value_and_grad(loss_and_stats, has_aux=True)
            (loss, model_state), grads = grad_fn(params, model_state, x, y)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), model_state, opt_state), loss

        params = variables["params"]
        state = (params, model_state(variables), optimizer.init(params))
        # committed where step 1's outputs will be: optax's step count starts uncommitted, and jit
        # compiled the whole step a second time when step 2 got it committed
        state = jax.device_put(state, self.replicated or self.jax_device)
        if self.replicated is None:
            train = self.compiled(train, compile)
        else:  # data parallel: the state (and the loss) stay replicated
            train = jax.jit(train, out_shardings=self.replicated) if compile == "jit" else train

        def step(x, y):
            nonlocal state
            state, loss = train(state, x, y)
            return loss

        classes = self.compiled(lambda v, x: jnp.argmax(predict(v, x), -1), compile)

        def predict_classes(x) -> np.ndarray:
            params, stats, _ = state
            return np.asarray(classes({"params": params, **stats}, x))

        step.params = lambda: state[0]
        return step, predict_classes

    def count_flops(self, net, inputs, labels, mode: str) -> dict:
        """FLOPs of one step from XLA's cost analysis of the lowered computation; a custom call
        (cuDNN's fused attention on a GPU) is opaque to it, so those are named as uncounted."""
        _, variables = net
        predict, loss_and_stats = self._functions(net)
        lowered = forward = jax.jit(predict).lower(variables, inputs)
        flops = forward_flops = xla_flops(forward)
        if mode == "training":
            fn = jax.jit(jax.value_and_grad(loss_and_stats, has_aux=True))
            lowered = fn.lower(variables["params"], model_state(variables), inputs, labels)
            flops = xla_flops(lowered)
        if flops is None:
            return {"flops": None, "method": "XLA cost_analysis", "reason": "no 'flops' entry"}
        method = "XLA cost_analysis" + (" (forward + backward)" if mode == "training" else "")
        calls = re.findall(r"custom_call @([\w$.]+)", lowered.as_text())
        return {
            "flops": flops,
            "forward": forward_flops,
            "method": method,
            "uncounted": missed_work(calls),
        }

    def to_float(self, value) -> float:
        return float(value)

    def sync(self, out=None) -> None:
        jax.block_until_ready(out)

    def device_peak_bytes(self) -> int | None:
        # JAX cannot reset its peak: one kernel process per measurement is the reset.
        return self.jax_device.memory_stats().get("peak_bytes_in_use")
