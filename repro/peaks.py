"""Peak dense throughput per device and precision, for MFU (standard library only).

Datasheet figures for dense math (sparse figures halved), from shared/REFERENCE.md. A device
that is not listed gets no MFU, with the reason, rather than a guessed peak.
"""

from __future__ import annotations

TFLOPS = {  # name fragment -> precision -> TFLOP/s
    "A100": {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312},
    "H100": {"fp32": 67, "tf32": 495, "bf16": 989, "fp16": 989},  # SXM
    "H200": {"fp32": 67, "tf32": 495, "bf16": 989, "fp16": 989},  # SXM
}
NOT_SXM = ("PCIe", "NVL")  # other form factors have lower peaks that the table does not hold


def peak_flops(device_name: str | None, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s, source) for a device and precision, or (None, why not)."""
    if not device_name:
        return None, "no peak figure for CPUs: MFU omitted"
    if any(tag in device_name for tag in NOT_SXM):
        return None, f"no peak figure for {device_name} (only SXM parts are tabulated)"
    for fragment, peaks in TFLOPS.items():
        if fragment in device_name:
            return peaks[precision] * 1e12, f"{fragment} SXM dense {precision} datasheet peak"
    return None, f"no peak figure for {device_name}: MFU omitted"
