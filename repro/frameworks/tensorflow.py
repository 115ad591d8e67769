"""TensorFlow adapter (Keras 3 models). Steps run as a `tf.function` graph; the first call
traces it."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ info logs out of the report

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from repro import models  # noqa: E402
from repro.frameworks import Adapter as Base  # noqa: E402


class Adapter(Base):
    name = "tensorflow"

    def setup(self, device: str) -> str:
        tf.config.threading.set_intra_op_parallelism_threads(self.threads)
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:  # do not grab the whole GPU up front
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.keras.utils.set_random_seed(self.seed)
        # TF enables TF32 on Ampere+ by default; set it explicitly either way.
        tf.config.experimental.enable_tensor_float_32_execution(self.precision == "tf32")
        picked = self.pick(device, bool(gpus))
        self.tf_device = "/GPU:0" if picked == "gpu" else "/CPU:0"
        return picked

    def info(self) -> dict:
        build = tf.sysconfig.get_build_info()
        return {
            "version": tf.__version__,
            "git_version": tf.version.GIT_VERSION,
            "keras": tf.keras.__version__ if hasattr(tf.keras, "__version__") else None,
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
        }

    def build(self, model: dict):
        cfg = models.config(model)
        with tf.device(self.tf_device):
            return models.native(model["arch"], self.name).build(cfg)

    def count_params(self, net) -> int:
        return int(sum(np.prod(w.shape) for w in net.trainable_weights))

    def to_native(self, batch: np.ndarray):
        with tf.device(self.tf_device):
            return tf.constant(batch)

    def inference_step(self, net, inputs):
        forward = tf.function(lambda x: net(x, training=False))
        return lambda: forward(inputs)

    def sync(self, out=None) -> None:
        # Fetching a value to the host waits for the ops that produce it, on any device.
        if out is not None:
            out.numpy()

    def reset_peak_memory(self) -> None:
        if self.device == "gpu":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def device_peak_bytes(self) -> int | None:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"]
