"""MFU's peak is the right part's: told apart by the device name NVML and the frameworks give."""

import pytest

from repro.kernel.peaks import peak_flops


@pytest.mark.parametrize(
    "name, precision, tflops, part",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.5, "H100 SXM"),  # the lent machine's name
        ("NVIDIA H100 PCIe", "bf16", 756, "H100 PCIe"),
        ("NVIDIA H100 NVL", "tf32", 417.5, "H100 NVL"),
        ("NVIDIA H200", "fp32", 67, "H200 SXM"),
        ("NVIDIA H200 NVL", "bf16", 835.5, "H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156, "A100 SXM"),
    ],
)
def test_each_part_gets_its_own_datasheet_peak(name, precision, tflops, part):
    peak, source = peak_flops(name, precision)
    assert peak == tflops * 1e12
    assert source == f"{part} dense {precision} datasheet peak"


@pytest.mark.parametrize("name", [None, "NVIDIA GeForce RTX 4090", "Tesla T4"])
def test_an_unknown_device_gets_no_mfu_and_says_why(name):
    peak, source = peak_flops(name, "bf16")
    assert peak is None and "MFU omitted" in source
