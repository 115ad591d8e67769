"""Peak dense throughput per device and precision, for MFU (standard library only).

Figures are NVIDIA's datasheet numbers for dense math (the datasheets print TF32/BF16/FP16 with
sparsity; those are halved here), from the specifications tables NVIDIA publishes for each part:
A100 SXM / PCIe (https://www.nvidia.com/en-us/data-center/a100/), H100 SXM / PCIe / NVL
(https://www.nvidia.com/en-us/data-center/h100/), H200 SXM / NVL
(https://www.nvidia.com/en-us/data-center/h200/). The part is told by the name NVML and the
frameworks give: "NVIDIA H100 80GB HBM3" is the SXM part, "NVIDIA H100 PCIe" and
"NVIDIA H100 NVL" say so, as do "NVIDIA H200" and "NVIDIA H200 NVL". A device that is not listed
gets no MFU, with the reason, rather than a guessed peak.
"""

from __future__ import annotations

TFLOPS = [  # (name fragments that must all appear, part) -> precision -> TFLOP/s; first match wins
    (("H100", "PCIe"), "H100 PCIe", {"fp32": 51, "tf32": 378, "bf16": 756, "fp16": 756}),
    (("H100", "NVL"), "H100 NVL", {"fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (("H100",), "H100 SXM", {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (("H200", "NVL"), "H200 NVL", {"fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (("H200",), "H200 SXM", {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (("A100", "PCIe"), "A100 PCIe", {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}),
    (("A100",), "A100 SXM", {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}),
]


def peak_flops(device_name: str | None, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s, source) for a device and precision, or (None, why not)."""
    if not device_name:
        return None, "no peak figure for CPUs: MFU omitted"
    for fragments, part, peaks in TFLOPS:
        if all(f in device_name for f in fragments):
            return peaks[precision] * 1e12, f"{part} dense {precision} datasheet peak"
    return None, f"no peak figure for {device_name}: MFU omitted"
