"""PyTorch adapter. CPU ops are synchronous; CUDA work is synchronised before each clock read."""

from __future__ import annotations

import numpy as np
import torch

from repro import models
from repro.frameworks import Adapter as Base


class Adapter(Base):
    name = "torch"

    def setup(self, device: str) -> str:
        torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        # fp32 means fp32: PyTorch keeps TF32 off for matmuls by default but on for cuDNN convs.
        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
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
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            or ["cpu"],
            "build_config": torch.__config__.show(),
        }

    def build(self, model: dict):
        cfg = models.config(model)
        net = models.native(model["arch"], self.name).build(cfg).to(self.torch_device).eval()
        return net

    def count_params(self, net) -> int:
        return sum(p.numel() for p in net.parameters())

    def to_native(self, batch: np.ndarray):
        """Channels-last numpy batch -> NCHW tensor on the device."""
        return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(
            self.torch_device
        )

    def inference_step(self, net, inputs):
        @torch.inference_mode()
        def step():
            return net(inputs)

        return step

    def sync(self, _out=None) -> None:
        if self.device == "gpu":
            torch.cuda.synchronize()

    def reset_peak_memory(self) -> None:
        if self.device == "gpu":
            torch.cuda.reset_peak_memory_stats()

    def device_peak_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated()
