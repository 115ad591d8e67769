"""TensorFlow adapter (Keras 3 models). Steps run eagerly, as a `tf.function` graph, or as a
`tf.function` compiled by XLA; the first call traces (and compiles)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ info logs out of the report

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from repro.kernel import models  # noqa: E402
from repro.kernel.frameworks.base import OPTIMIZER, missed_work  # noqa: E402
from repro.kernel.frameworks.base import Adapter as Base  # noqa: E402

POLICY = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
ONNX_OPSET = 17  # what tf2onnx writes: ONNX Runtime has run opset 17 since 1.14


@functools.cache
def count_einsum() -> None:
    """Give TensorFlow's profiler a FLOP formula for Einsum, which it lacks: Keras' fused
    attention (keras.ops.dot_product_attention) is two Einsums, counted as 0 (~13% of GPT-2's
    forward at T = 1024). A two-operand Einsum does 2 x the product of every index's size."""
    from tensorflow.python.framework import graph_util, ops

    def einsum_flops(graph, node):
        operands = node.attr["equation"].s.decode().split("->")[0].split(",")
        sizes = {}
        for operand, name in zip(operands, node.input, strict=False):
            shape = graph_util.tensor_shape_from_node_def_name(graph, name)
            if "." in operand or not shape.is_fully_defined():
                return ops.OpStats("flops")  # ellipsis or unknown size: left uncounted
            sizes.update(zip(operand, shape.as_list(), strict=True))
        return ops.OpStats("flops", 2 * math.prod(sizes.values()) if len(operands) == 2 else None)

    with contextlib.suppress(KeyError):  # a TensorFlow that has its own keeps it
        ops.RegisterStatistics("Einsum", "flops")(einsum_flops)


class Adapter(Base):
    name = "tensorflow"

    def setup(self, device: str) -> str:
        if self.devices > 1:  # N logical CPUs for data parallelism, before TF sets up devices
            cpu = tf.config.list_physical_devices("CPU")[0]
            config = [tf.config.LogicalDeviceConfiguration() for _ in range(self.devices)]
            tf.config.set_logical_device_configuration(cpu, config)
        tf.config.threading.set_intra_op_parallelism_threads(self.threads)
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:  # do not grab the whole GPU up front
            tf.config.experimental.set_memory_growth(gpu, True)
        keras.utils.set_random_seed(self.seed)
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        # TF enables TF32 on Ampere+ by default; set it explicitly either way.
        tf.config.experimental.enable_tensor_float_32_execution(self.precision == "tf32")
        tf.config.experimental.set_synchronous_execution(True)  # TF's default, made explicit
        keras.mixed_precision.set_global_policy(POLICY.get(self.precision, "float32"))
        picked = self.pick(device, bool(gpus))
        self.tf_device = "/GPU:0" if picked == "gpu" else "/CPU:0"
        return picked

    def info(self) -> dict:
        build = tf.sysconfig.get_build_info()
        return {
            "version": tf.__version__,
            "git_version": tf.version.GIT_VERSION,
            "keras": keras.__version__,
            "keras_policy": keras.mixed_precision.global_policy().name,
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
        }

    def build(self, model: dict, attention: str = "fused"):
        cfg, options = models.config(model), models.build_options(model["arch"], attention)
        keras.utils.set_random_seed(self.seed)  # the same initial weights however often built
        with tf.device(self.tf_device):
            return models.native(model["arch"], self.name).build(cfg, **options)

    def attention_kernel(self, net, model: dict) -> str:
        return "not reported by Keras (its TensorFlow backend composes einsum and softmax ops)"

    def device_name(self) -> str | None:
        if self.device == "cpu":
            return None
        gpu = tf.config.list_physical_devices("GPU")[0]
        return tf.config.experimental.get_device_details(gpu).get("device_name")

    def count_params(self, net) -> int:
        return int(sum(np.prod(w.shape) for w in net.trainable_weights))

    def to_numpy(self, tensor) -> np.ndarray:
        return np.asarray(tensor)

    def to_native(self, array: np.ndarray):
        with tf.device(self.tf_device):
            return tf.constant(array)

    @staticmethod
    def compiled(fn, compile: str):
        if compile == "eager":
            return fn
        return tf.function(fn, jit_compile=compile == "xla")

    def inference_function(self, net, compile: str):
        return self.compiled(lambda x: net(x, training=False), compile)

    def serving_graph(self, net, inputs):
        """The eval-mode forward pass as a tf.function with the batch dimension dynamic, and its
        input signature: what both exporters convert."""
        spec = tf.TensorSpec([None, *inputs.shape[1:]], inputs.dtype, name="inputs")
        return tf.function(lambda x: net(x, training=False), input_signature=[spec]), spec

    def export_onnx(self, net, inputs, path) -> dict:
        """The model as ONNX at `path`, converted by tf2onnx from its serving graph (ONNX opset
        ONNX_OPSET); what the report records of the exporter."""
        import tf2onnx

        fn, spec = self.serving_graph(net, inputs)
        tf2onnx.convert.from_function(
            fn, input_signature=[spec], opset=ONNX_OPSET, output_path=str(path)
        )
        return {
            "exporter": f"tf2onnx.convert.from_function (opset {ONNX_OPSET})",
            "tf2onnx": tf2onnx.__version__,
            "tensorflow": tf.__version__,
        }

    def export_tflite(self, net, inputs, path) -> dict:
        """The model as a TFLite flatbuffer at `path`: its serving graph with the weights frozen
        to constants (the interpreter holds no TensorFlow variables), converted by the TFLite
        converter to LiteRT's builtin ops only (no TensorFlow ops fall back)."""
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        fn, _ = self.serving_graph(net, inputs)
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], net)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        Path(path).write_bytes(converter.convert())
        return {
            "exporter": "tf.lite.TFLiteConverter (frozen tf.function, builtin ops)",
            "tensorflow": tf.__version__,
        }

    def generation(self, net, prompt, new_tokens: int, compile: str):
        """A fixed-size cache updated by ops.slice_update; a tf.function (compiled by XLA with
        compile=xla) traces the prefill and the decode step once each (the position a tensor)."""
        gpt = models.native("gpt", self.name)
        n, p = prompt.shape
        dtype = keras.mixed_precision.global_policy().compute_dtype
        with tf.device(self.tf_device):
            cache = gpt.new_cache(net.cfg, n, p + new_tokens, dtype)
            positions = [tf.constant(i, tf.int32) for i in range(p, p + new_tokens)]
            zero, prompt = tf.constant(0, tf.int32), tf.cast(prompt, tf.int32)

        def forward(idx, cache, pos):
            logits, cache = net(idx, training=False, cache=cache, pos=pos)
            last = logits[:, -1]  # (N, vocab_size)
            return cache, tf.argmax(last, axis=-1, output_type=tf.int32), last  # greedy: (N,)

        forward = self.compiled(forward, compile)

        def prefill(cache):
            return forward(prompt, cache, zero)

        def decode(cache, token, i):
            return forward(token[:, None], cache, positions[i])

        return prefill, decode, cache

    def training_step(self, net, inputs, labels, compile: str, lr_table):
        train, _ = self.trainer(net, compile, lr_table)
        return lambda: train(inputs, labels)

    def trainer(self, net, compile: str, lr_table):
        """(train(x, y) -> loss, predict(x) -> class indices as numpy): one AdamW step on a
        batch, and the trained model's inference-mode prediction."""
        train = self.compiled(self.train_function(net, lr_table), compile)
        forward = self.compiled(lambda x: tf.argmax(net(x, training=False), -1), compile)
        return train, lambda x: forward(x).numpy()

    def train_function(self, net, lr_table):
        """One training step (x, y) -> loss, not compiled: repro.kernel.parallel runs it on each
        replica of a tf.distribute strategy, whose scope it is then built in."""
        table = tf.constant(lr_table)
        o = OPTIMIZER
        optimizer = keras.optimizers.AdamW(
            learning_rate=lambda: table[tf.minimum(optimizer.iterations, len(lr_table) - 1)],
            beta_1=o["beta1"],
            beta_2=o["beta2"],
            epsilon=o["eps"],
            weight_decay=o["weight_decay"],
        )
        optimizer.build(net.trainable_variables)  # its variables now, not inside a replica
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def train(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, tf.cast(net(x, training=True), tf.float32))
            # dense, as torch's and JAX's: Keras' AdamW squares an embedding's sparse gradient
            # per row (ops.square on IndexedSlices) before summing repeated rows, so its second
            # moment for a token seen k times is sum(g_i^2), not (sum g_i)^2
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, net.trainable_variables)]
            optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
            return loss

        return train

    def count_flops(self, net, inputs, labels, mode: str) -> dict:
        """FLOPs of the forward graph from TensorFlow's profiler (training: x3, the usual rule),
        Einsum counted (count_einsum), and the ops that ran without a formula."""
        from tensorflow.python.framework import ops
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )
        from tensorflow.python.util import deprecation

        count_einsum()
        try:
            concrete = tf.function(lambda x: net(x, training=False)).get_concrete_function(inputs)
            graph = convert_variables_to_constants_v2(concrete).graph
            options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            options["output"] = "none"
            with deprecation.silence():  # the v1 profiler's own notice, in every TF run
                flops = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
        except Exception as error:  # the profiler is a v1 API and does not cover every op
            return {"flops": None, "method": "tf.compat.v1.profiler", "reason": str(error)}
        uncounted = {
            op.type
            for op in graph.get_operations()
            if ops.get_stats_for_node_def(graph, op.node_def, "flops").value is None
        }
        counted = {"forward": int(flops), "uncounted": missed_work(uncounted)}
        if mode == "training":
            return {"flops": 3 * flops, "method": "tf.compat.v1.profiler forward x 3", **counted}
        return {"flops": int(flops), "method": "tf.compat.v1.profiler (forward graph)", **counted}

    def to_float(self, value) -> float:
        return float(value.numpy())

    def sync(self, out=None) -> None:
        # Execution is synchronous (set in setup): a returned CPU tensor is computed. GPU kernels
        # may still be queued, so wait for the devices; no copy of the outputs to the host.
        if self.device == "gpu":
            tf.test.experimental.sync_devices()

    def reset_peak_memory(self) -> None:
        if self.device == "gpu":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def device_peak_bytes(self) -> int | None:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"]
