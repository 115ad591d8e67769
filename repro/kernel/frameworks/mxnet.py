"""MXNet adapter (Gluon HybridBlocks), CPU and fp32 only, ResNet family only (the plan refuses
the rest: repro.driver.plan.check_mxnet). MXNet 1.9.1 is the last release (Apache retired the
project), pinned in the mxnet-cpu kernel with the numpy<1.24 it needs.

Compile modes: `hybridize` (the default) runs HybridBlock.hybridize(static_alloc=True,
static_shape=True), a cached symbolic graph traced on the first call; `imperative` runs the
NDArray ops one by one. MXNet's engine is asynchronous: an op returns before it is computed, so
`sync` waits for every pending op (mx.nd.waitall) before a clock is read. The engine runs ops on
MXNET_CPU_WORKER_NTHREADS=1 worker (set by frameworks.load before the import), each op on
OMP_NUM_THREADS threads: the run's `threads`, as torch's intra-op pool.

Training: MXNet 1.9 has AdamW only as the contrib operator adamw_update, which leaves Adam's bias
correction to the caller; AdamW below passes it in so that the operator takes torch.optim.AdamW's
step (decoupled weight decay, bias-corrected moments, epsilon outside the square root), the same
as the other frameworks take.
"""

from __future__ import annotations

import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from repro.kernel import models
from repro.kernel.frameworks.base import OPTIMIZER
from repro.kernel.frameworks.base import Adapter as Base


class AdamW(mx.optimizer.Optimizer):
    """torch.optim.AdamW's update (repro's OPTIMIZER settings), in MXNet's fused contrib operator
    adamw_update. torch: w <- w (1 - lr wd) - lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps).
    adamw_update: w <- w - eta (alpha m / (sqrt(v) + epsilon) + wd w), with no bias correction;
    the same step with eta = lr, alpha = sqrt(1 - b2^t) / (1 - b1^t), epsilon = eps sqrt(1 - b2^t)
    (the denominator multiplied by sqrt(1 - b2^t))."""

    def __init__(self, beta1, beta2, epsilon, **kwargs):
        super().__init__(**kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        zeros = mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype)
        return [zeros, zeros.copy(), 0]  # m, v, steps taken

    def update(self, index, weight, grad, state):
        state[2] += 1
        t = state[2]
        root = (1 - self.beta2**t) ** 0.5  # sqrt of the second moment's bias correction
        mx.nd.contrib.adamw_update(
            weight,
            grad,
            state[0],
            state[1],
            self.rescale_grad,
            lr=root / (1 - self.beta1**t),
            eta=self._get_lr(index),
            beta1=self.beta1,
            beta2=self.beta2,
            epsilon=self.epsilon * root,
            wd=self._get_wd(index),
            out=weight,
        )


class Adapter(Base):
    name = "mxnet"

    def setup(self, device: str) -> str:
        if device == "gpu":
            raise RuntimeError("repro runs MXNet on the CPU only (the mxnet-cpu kernel)")
        if self.precision != "fp32" or self.devices > 1:
            raise RuntimeError("repro runs MXNet in fp32 on one device only")
        mx.random.seed(self.seed)
        self.ctx = mx.cpu()
        return "cpu"

    def info(self) -> dict:
        from mxnet.runtime import Features

        features = Features()
        return {
            "version": mx.__version__,
            "numpy": np.__version__,
            "features": sorted(name for name, f in features.items() if f.enabled),
            "mkldnn": features.is_enabled("MKLDNN"),  # oneDNN, under its old name
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "engine_cpu_workers": os.environ.get("MXNET_CPU_WORKER_NTHREADS"),
            "engine": os.environ.get("MXNET_ENGINE_TYPE", "ThreadedEnginePerDevice"),
            "devices": ["cpu"],
        }

    def build(self, model: dict, attention: str = "fused"):
        if model["arch"] != "resnet":
            raise ValueError(f"repro runs the resnet family only in MXNet, not {model['arch']}")
        cfg = models.config(model)
        mx.random.seed(self.seed)  # the same initial weights however often it is built
        net = models.native(model["arch"], self.name).build(cfg, ctx=self.ctx)
        mx.nd.waitall()
        return net

    def attention_kernel(self, net, model: dict) -> str:
        return "not applicable: repro runs no attention model in MXNet"

    def device_name(self) -> str | None:
        return None

    def count_params(self, net) -> int:
        """Trainable parameters (BatchNorm's running statistics have grad_req 'null')."""
        params = net.collect_params().values()
        return sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null")

    def to_native(self, array: np.ndarray):
        """numpy -> NDArray on the CPU; images (N, H, W, C) become NCHW (what MXNet's CPU
        convolutions take)."""
        array = np.ascontiguousarray(array.transpose(0, 3, 1, 2) if array.ndim == 4 else array)
        dtype = np.float32 if array.dtype.kind == "f" else array.dtype
        return mx.nd.array(array, ctx=self.ctx, dtype=dtype)

    def to_numpy(self, tensor) -> np.ndarray:
        return tensor.asnumpy()

    @staticmethod
    def compiled(net, compile: str):
        if compile == "hybridize":
            net.hybridize(static_alloc=True, static_shape=True)
        else:
            net.hybridize(active=False)
        return net

    def inference_function(self, net, compile: str):
        forward = self.compiled(net, compile)

        def infer(inputs):
            with autograd.predict_mode():  # BatchNorm on its running statistics
                return forward(inputs)

        return infer

    def training_step(self, net, inputs, labels, compile: str, lr_table):
        train, _ = self.trainer(net, compile, lr_table)
        return lambda: train(inputs, labels)

    def trainer(self, net, compile: str, lr_table):
        """(train(x, y) -> loss, predict(x) -> class indices as numpy): one AdamW step on a
        batch, and the trained model's inference-mode prediction."""
        forward = self.compiled(net, compile)
        o = OPTIMIZER
        optimizer = AdamW(
            o["beta1"],
            o["beta2"],
            o["eps"],
            learning_rate=float(lr_table[0]),
            wd=o["weight_decay"],
        )
        trainer = gluon.Trainer(net.collect_params(), optimizer, kvstore=None)
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        count = 0

        def train(inputs, labels):
            nonlocal count
            trainer.set_learning_rate(float(lr_table[min(count, len(lr_table) - 1)]))
            with autograd.record():  # train mode: BatchNorm on batch statistics
                loss = loss_fn(forward(inputs), labels).mean()
            loss.backward()
            trainer.step(1)  # the loss is already the batch mean
            count += 1
            return loss

        def predict(inputs) -> np.ndarray:
            with autograd.predict_mode():
                return forward(inputs).argmax(axis=-1).asnumpy().astype(np.int64)

        return train, predict

    def count_flops(self, net, inputs, labels, mode: str) -> dict:
        return {
            "flops": None,
            "method": "none",
            "reason": "MXNet 1.9 has no FLOP counter (the report uses the analytic count)",
        }

    def to_float(self, value) -> float:
        return float(value.asscalar())

    def sync(self, out=None) -> None:
        # The engine is asynchronous: wait for every pending op (the step's outputs and the
        # optimizer's writes), not only for `out`.
        mx.nd.waitall()
