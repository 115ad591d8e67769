"""PyTorch adapter. CPU ops are synchronous; CUDA work is synchronised before each clock read.

On a GPU, images and convolution weights are channels-last (NHWC in memory, NCHW in shape):
cuDNN's tensor-core convolutions work in that layout, and NCHW would add a transpose around every
convolution. On a CPU they stay contiguous NCHW.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from repro.kernel import models
from repro.kernel.frameworks.base import OPTIMIZER, missed_work
from repro.kernel.frameworks.base import Adapter as Base

LOW_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cross_entropy(logits, labels):
    """Mean cross-entropy over every label: (N, C) per sample or (N, T, V) per token."""
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten())


def flop_counter():
    """A FlopCounterMode that counts what torch's own formulas miss, and records the ops that ran
    without a formula (`.uncounted`). torch 2.13 has no formula for CPU fused attention
    (_scaled_dot_product_flash_attention_for_cpu and its backward: counted as 0, ~13% of GPT-2's
    forward at T = 1024), so it gets the CUDA variants' one; its convolution backward counts a
    grouped (depthwise) convolution's weight gradient `groups` times over (ConvNeXt training
    counted at 2.3x the work)."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    aten = torch.ops.aten
    conv_backward = flop_registry[aten.convolution_backward]

    def grouped_conv_backward(*args, out_val=None, **kwargs):
        flops = conv_backward(*args, out_val=out_val, **kwargs)
        groups, mask = args[9], args[10]
        if groups > 1 and mask[1]:  # the weight gradient: each group sees its own channels
            weight = conv_backward(*args[:10], [False, True, False], out_val=out_val, **kwargs)
            flops -= weight - weight // groups
        return flops

    grouped_conv_backward._get_raw = True  # called as torch calls its own (shapes from tensors)

    class Counter(FlopCounterMode):
        def _count_flops(self, func_packet, out, args, kwargs):
            if func_packet not in self.flop_registry:
                self.uncounted.add(str(func_packet))
            return super()._count_flops(func_packet, out, args, kwargs)

    counter = Counter(
        display=False, custom_mapping={aten.convolution_backward: grouped_conv_backward}
    )
    counter.uncounted = set()
    fused = {
        aten._scaled_dot_product_flash_attention_for_cpu: aten._scaled_dot_product_flash_attention,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: (
            aten._scaled_dot_product_flash_attention_backward
        ),
    }
    for op, same in fused.items():  # already wrapped: into the counter's table as they are
        counter.flop_registry.setdefault(op, flop_registry[same])
    return counter


class Adapter(Base):
    name = "torch"
    image_layout = "NCHW"  # how the built model takes images: a saved Keras model's are NHWC

    def setup(self, device: str) -> str:
        torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        # fp32 means fp32: PyTorch keeps TF32 off for matmuls by default but on for cuDNN convs.
        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        if self.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        picked = self.pick(device, torch.cuda.is_available())
        self.torch_device = torch.device("cuda" if picked == "gpu" else "cpu")
        return picked

    def info(self) -> dict:
        return {
            "version": torch.__version__,
            "git_version": torch.version.git_version,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()
            if torch.backends.cudnn.is_available()
            else None,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "memory_format": str(self.memory_format()).removeprefix("torch."),
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            or ["cpu"],
            "build_config": torch.__config__.show(),
        }

    def build(self, model: dict, attention: str = "fused"):
        cfg, options = models.config(model), models.build_options(model["arch"], attention)
        torch.manual_seed(self.seed)  # the same initial weights however often it is built
        net = models.native(model["arch"], self.name).build(cfg, **options)
        net = net.to(self.torch_device, memory_format=self.memory_format())
        self.image_layout = getattr(net, "image_layout", "NCHW")
        self.sync()
        return net

    def attention_kernel(self, net, model: dict) -> str:
        """The scaled_dot_product_attention backends one eager forward dispatched to (torch's
        profiler names the aten op, e.g. _scaled_dot_product_flash_attention_for_cpu)."""
        x = self.probe(model)
        was_training = net.training
        net.eval()
        with warnings.catch_warnings():  # the profiler's notes are not the report's business
            warnings.simplefilter("ignore")
            with torch.profiler.profile() as prof, torch.inference_mode(), self.autocast():
                net(x)
        net.train(was_training)
        ops = sorted(
            {e.name for e in prof.events() if e.name.startswith("aten::_scaled_dot_product")}
        )
        return ", ".join(ops) or "no scaled_dot_product_attention kernel ran"

    def device_name(self) -> str | None:
        return torch.cuda.get_device_name(self.torch_device) if self.device == "gpu" else None

    def count_params(self, net) -> int:
        """Trainable parameters (a Keras model's BatchNorm statistics are frozen parameters)."""
        return sum(p.numel() for p in net.parameters() if p.requires_grad)

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.device == "gpu" else torch.contiguous_format

    def to_native(self, array: np.ndarray):
        """numpy -> tensor on the device; images (N, H, W, C) become NCHW-shaped tensors, in the
        adapter's memory format, for a model that takes them so (not a saved Keras model)."""
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.torch_device)
        if tensor.ndim == 4 and self.image_layout == "NCHW":
            tensor = tensor.permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format())
        return tensor

    def to_numpy(self, tensor) -> np.ndarray:
        if isinstance(tensor, np.ndarray):  # an exported runtime's output
            return tensor
        tensor = tensor.detach().cpu()  # numpy has no bfloat16: its values, exactly, in fp32
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()

    def export_openvino(self, net, inputs, path) -> dict:
        """The eval-mode model as OpenVINO IR at `path` (model.xml, its weights in model.bin
        beside it, fp32: save_model would compress them to fp16 by default), converted by
        openvino.convert_model from the module traced on `inputs`, the batch dimension dynamic;
        what the report records of the exporter."""
        import openvino as ov

        net.eval()
        shape = ov.PartialShape([-1, *inputs.shape[1:]])
        with torch.no_grad():
            model = ov.convert_model(net, example_input=inputs, input=[shape])
        ov.save_model(model, str(path), compress_to_fp16=False)
        return {
            "exporter": "openvino.convert_model (the torch module, traced)",
            "openvino": ov.__version__,
            "torch": torch.__version__,
        }

    def export_onnx(self, net, inputs, path) -> dict:
        """The eval-mode model as ONNX at `path` (weights beside it when over 2 GB), exported by
        torch.onnx.export's dynamo exporter with the batch dimension dynamic; what the report
        records of the exporter."""
        import logging

        import onnxscript

        net.eval()
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        quiet = logging.getLogger("torch.onnx")  # it lists torchvision ops it cannot register
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings(), torch.inference_mode(False):
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    net, (inputs,), dynamic_shapes=({0: batch},), dynamo=True, verbose=False
                )
            program.save(str(path))
        finally:
            quiet.setLevel(level)
        return {
            "exporter": "torch.onnx.export (dynamo=True)",
            "torch": torch.__version__,
            "onnxscript": onnxscript.__version__,
        }

    def autocast(self):
        dtype = LOW_PRECISION.get(self.precision)
        return torch.autocast(self.torch_device.type, dtype=dtype, enabled=dtype is not None)

    def inference_function(self, net, compile: str):
        net.eval()
        forward = torch.compile(net) if compile == "compile" else net

        @torch.inference_mode()
        def infer(inputs):
            with self.autocast():
                return forward(inputs)

        return infer

    def generation(self, net, prompt, new_tokens: int, compile: str):
        """A static cache, written in place; torch.compile traces the prefill and the decode step
        once each (dynamic=False: two fixed shapes, the position a tensor, so no recompiles)."""
        gpt = models.native("gpt", self.name)
        net.eval()
        n, p = prompt.shape
        dtype = LOW_PRECISION.get(self.precision, torch.float32)
        device = self.torch_device
        with torch.inference_mode():
            cache = gpt.new_cache(net.cfg, n, p + new_tokens, dtype, device)
            # decode i is at p + i: each position a tensor of its own (a view of one would differ
            # in storage offset, and torch.compile would compile again for each)
            positions = [torch.tensor(i, device=device) for i in range(p, p + new_tokens)]
            zero = torch.tensor(0, device=device)

        def forward(idx, cache, pos):
            with self.autocast():
                logits, cache = net(idx, cache, pos)
            last = logits[:, -1]  # (N, vocab_size)
            return last.argmax(dim=-1), last  # greedy: (N,)

        if compile == "compile":  # one graph per shape: the prompt's and one token's
            forward = torch.compile(forward, dynamic=False)

        @torch.inference_mode()
        def prefill(cache):
            return cache, *forward(prompt, cache, zero)

        @torch.inference_mode()
        def decode(cache, token, i):
            return cache, *forward(token[:, None], cache, positions[i])

        return prefill, decode, cache

    def training_step(self, net, inputs, labels, compile: str, lr_table):
        train, _ = self.trainer(net, compile, lr_table)
        return lambda: train(inputs, labels)

    def trainer(self, net, compile: str, lr_table):
        """(train(x, y) -> loss, predict(x) -> class indices as numpy): one AdamW step on a
        batch, and the trained model's eval-mode prediction (it then trains on)."""
        net.train()
        forward = torch.compile(net) if compile == "compile" else net
        o = OPTIMIZER
        optimizer = torch.optim.AdamW(
            net.parameters(),
            lr=float(lr_table[0]),
            betas=(o["beta1"], o["beta2"]),
            eps=o["eps"],
            weight_decay=o["weight_decay"],
        )
        count = 0

        def train(inputs, labels):
            nonlocal count
            for group in optimizer.param_groups:  # the shared schedule (repro.kernel.measure)
                group["lr"] = float(lr_table[min(count, len(lr_table) - 1)])
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = cross_entropy(forward(inputs), labels)
            loss.backward()
            optimizer.step()
            count += 1
            return loss.detach()

        @torch.inference_mode()
        def predict(inputs) -> np.ndarray:
            net.eval()
            with self.autocast():
                classes = forward(inputs).argmax(-1)
            net.train()
            return classes.cpu().numpy()

        return train, predict

    def count_flops(self, net, inputs, labels, mode: str) -> dict:
        """FLOPs of one step from torch's FlopCounterMode (forward, plus backward in training),
        with the formulas it lacks (flop_counter) and the ops that ran without one."""
        counter = flop_counter()
        net.train(mode == "training")
        with counter, self.autocast():
            if mode == "training":
                loss = cross_entropy(net(inputs), labels)
                forward = counter.get_total_flops()
                loss.backward()
            else:
                with torch.no_grad():
                    net(inputs)
                forward = counter.get_total_flops()
        net.zero_grad(set_to_none=True)
        return {
            "flops": int(counter.get_total_flops()),
            "forward": int(forward),
            "method": "torch FlopCounterMode",
            "uncounted": missed_work(counter.uncounted),
        }

    def to_float(self, value) -> float:
        return float(value)

    def sync(self, _out=None) -> None:
        if self.device == "gpu":
            torch.cuda.synchronize()

    def reset_peak_memory(self) -> None:
        if self.device == "gpu":
            torch.cuda.reset_peak_memory_stats()

    def device_peak_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated()
