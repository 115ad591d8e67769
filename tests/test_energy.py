"""Energy meter: codecarbon's offline estimate on this machine, and the NVML path with a fake GPU.

The real checks run in the pinned kernels' interpreters (the driver has neither codecarbon nor
pynvml) and read back one JSON line; markdown() and the import are checked in the driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from repro.driver import kernels
from repro.kernel.energy import EnergyMeter, markdown

ROOT = Path(__file__).resolve().parents[1]
FAKE_POWER_W = 100.0

# One GPU drawing a steady FAKE_POWER_W: its total-energy counter (mJ) advances with time.
FAKE_PYNVML = f"""
import os, time

_T0 = time.perf_counter()
_POWER_W = {FAKE_POWER_W}


class NVMLError(Exception):
    pass


def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return 1
def nvmlDeviceGetHandleByIndex(i): return ("fake-handle", i)
def nvmlDeviceGetName(handle): return b"Fake GPU"  # bytes, like older pynvml
def nvmlDeviceGetPowerUsage(handle): return int(_POWER_W * 1000)  # mW


def nvmlDeviceGetTotalEnergyConsumption(handle):
    if os.environ.get("FAKE_ENERGY_UNSUPPORTED") == "1":
        raise NVMLError("Not Supported")
    return 5_000_000 + int((time.perf_counter() - _T0) * _POWER_W * 1000)
"""

# Runs the meter around `seconds` of numpy work, with every network connection refused and
# recorded, and prints the result, the attempts, the wall time and the body's own time (inside
# the `with`) as one JSON line.
SNIPPET = """
import json, socket, sys, time

attempts = []


def refuse(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError("network disabled by test_energy")


socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
start = time.perf_counter()
import numpy as np
from repro.kernel.energy import EnergyMeter

seconds, use_codecarbon = float(sys.argv[1]), sys.argv[2] == "1"
with EnergyMeter(use_codecarbon=use_codecarbon) as meter:
    body = time.perf_counter()
    a, n, end = np.random.rand(200, 200), 0, body + seconds
    while time.perf_counter() < end:
        a @ a
        n += 1
    body = time.perf_counter() - body
result = meter.result(samples=n)
wall = time.perf_counter() - start
out = {"result": result, "samples": n, "attempts": attempts, "wall_s": wall, "body_s": body}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def python() -> Path:
    return kernels.ensure("torch-cpu").python


def run_meter(
    python: Path, seconds: float, use_codecarbon: bool, fake_dir: Path | None = None, **env: str
) -> dict:
    path = [str(fake_dir)] if fake_dir else []  # the fake pynvml shadows the kernel's own
    full_env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    full_env.update(PYTHONPATH=os.pathsep.join([*path, str(ROOT)]), **env)
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(SNIPPET), str(seconds), "1" if use_codecarbon else "0"],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        pytest.fail(f"energy snippet failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def fake_nvml(tmp_path: Path) -> Path:
    (tmp_path / "pynvml.py").write_text(FAKE_PYNVML)
    return tmp_path


# -- this machine: no GPU, codecarbon's offline estimate -----------------------------------


@pytest.mark.kernel  # runs in the torch-cpu kernel's interpreter
def test_no_gpu_codecarbon_offline_estimate(python: Path) -> None:
    start = time.perf_counter()
    out = run_meter(python, 1.5, use_codecarbon=True, CUDA_VISIBLE_DEVICES="")
    elapsed = time.perf_counter() - start
    result = out["result"]
    assert elapsed < 120, f"took {elapsed:.1f} s"  # a hang guard: tens of seconds when loaded
    assert out["attempts"] == [], "codecarbon tried the network"
    # the window is the body alone, without codecarbon's ~1 s of set-up: bounded by the body's
    # own time, not by a wall time that a loaded machine stretches
    assert 1.5 <= out["body_s"] <= result["window_s"] < out["body_s"] + 0.5
    assert result["gpu"]["status"] == "unavailable" and result["gpu"]["reason"]
    cc = result["codecarbon"]
    assert cc["status"] == "estimated", cc
    assert "offline" in cc["method"] and "estimate" in cc["method"]
    assert cc["energy_kwh"] > 0 and cc["emissions_kg_co2eq"] > 0
    assert cc["country_iso_code"] == "USA"
    assert cc["kwh_per_1000_samples"] == pytest.approx(cc["energy_kwh"] * 1000 / out["samples"])
    assert not any("shorter than" in w for w in result["warnings"])
    table = markdown(result)
    assert "unavailable:" in table and "estimated:" in table


# -- NVML path with a fake pynvml, codecarbon off --------------------------------------------


def assert_energy_of(gpu: dict, window_s: float) -> None:
    """The counter is read just before the window's clock starts and just after it stops, so the
    energy covers the window and a moment more: 0.5 ms seen on a loaded machine, 50 ms allowed
    (a busy 2-core machine can deschedule us for that long), which still catches a wrong unit or
    a wrong window. The counter's whole millijoules take 0.1% off at the most."""
    assert FAKE_POWER_W * window_s * 0.999 <= gpu["joules"] <= FAKE_POWER_W * (window_s + 0.05)


@pytest.mark.kernel  # runs in the torch-cpu kernel's interpreter
def test_fake_gpu_short_window(python: Path, fake_nvml: Path) -> None:
    out = run_meter(python, 0.3, use_codecarbon=False, fake_dir=fake_nvml)
    result, samples = out["result"], out["samples"]
    gpu = result["gpu"]
    assert gpu["status"] == "measured", gpu
    assert gpu["method"] == "NVML total energy counter"
    assert_energy_of(gpu, result["window_s"])
    assert gpu["joules_per_1000_samples"] == pytest.approx(gpu["joules"] * 1000 / samples)
    assert gpu["idle_power_w"] == pytest.approx(FAKE_POWER_W)
    assert gpu["devices"] == [{"index": 0, "name": "Fake GPU", "joules": gpu["joules"]}]
    assert "other processes" in gpu["note"]
    assert result["codecarbon"]["status"] == "unavailable"
    assert "use_codecarbon=False" in result["codecarbon"]["reason"]
    assert any("shorter than 1 s" in w and "100 ms" in w for w in result["warnings"])
    assert out["attempts"] == []


@pytest.mark.kernel  # runs in the torch-cpu kernel's interpreter
def test_fake_gpu_long_window_no_warning(python: Path, fake_nvml: Path) -> None:
    result = run_meter(python, 1.1, use_codecarbon=False, fake_dir=fake_nvml)["result"]
    assert result["gpu"]["status"] == "measured"
    assert_energy_of(result["gpu"], result["window_s"])
    assert result["warnings"] == []


@pytest.mark.kernel  # runs in the torch-cpu kernel's interpreter
def test_fake_gpu_counter_unsupported(python: Path, fake_nvml: Path) -> None:
    out = run_meter(
        python, 0.2, use_codecarbon=False, fake_dir=fake_nvml, FAKE_ENERGY_UNSUPPORTED="1"
    )
    gpu = out["result"]["gpu"]
    assert gpu["status"] == "unavailable"
    assert "total energy counter unsupported" in gpu["reason"] and "Not Supported" in gpu["reason"]
    assert "Fake GPU" in gpu["reason"]


@pytest.mark.kernel  # runs in the torch-cpu kernel's interpreter
def test_fake_gpu_hidden_by_cuda_visible_devices(python: Path, fake_nvml: Path) -> None:
    out = run_meter(python, 0.1, use_codecarbon=False, fake_dir=fake_nvml, CUDA_VISIBLE_DEVICES="")
    gpu = out["result"]["gpu"]
    assert gpu["status"] == "unavailable" and "CUDA_VISIBLE_DEVICES" in gpu["reason"]


# -- driver side: stdlib-only import, exceptions pass through, markdown labels ---------------


def test_driver_import_and_body_exception_propagates() -> None:
    # The driver has neither pynvml nor codecarbon: both become reasons, the body's error passes.
    with pytest.raises(ValueError, match="boom"), EnergyMeter() as meter:
        raise ValueError("boom")
    result = meter.result(samples=10)
    assert result["gpu"]["status"] == "unavailable" and "pynvml" in result["gpu"]["reason"]
    assert result["codecarbon"]["status"] == "unavailable"
    assert "codecarbon" in result["codecarbon"]["reason"]
    json.dumps(result)


def test_markdown_labels_every_figure() -> None:
    result = {
        "window_s": 0.4,
        "gpu": {
            "status": "measured",
            "method": "NVML total energy counter",
            "joules": 123.4,
            "joules_per_1000_samples": 61.7,
            "idle_power_w": 55.0,
            "devices": [{"index": 0, "name": "Fake GPU", "joules": 123.4}],
            "note": "covers the whole device, other processes included",
        },
        "codecarbon": {
            "status": "estimated",
            "method": "codecarbon 3.3.2 offline; CPU: estimate from CPU load; RAM: estimate",
            "energy_kwh": 2e-5,
            "emissions_kg_co2eq": 7e-6,
            "country_iso_code": "FRA",
            "kwh_per_1000_samples": 1e-5,
        },
        "warnings": ["The measured window was 0.40 s, shorter than 1 s."],
    }
    table = markdown(result)
    gpu_row = next(line for line in table.splitlines() if line.startswith("| GPU energy"))
    assert "measured: 123.4 J" in gpu_row and "61.7 J / 1000 samples" in gpu_row
    assert "idle 55 W measured" in gpu_row
    assert "estimated: 2e-05 kWh" in table and "estimated: 7e-06 kg CO2eq" in table
    assert "FRA" in table and "measured: 0.4 s" in table
    assert "> ⚠ The measured window was 0.40 s" in table

    result["gpu"] = {"status": "unavailable", "reason": "no NVIDIA GPU | none"}
    result["codecarbon"] = {"status": "unavailable", "reason": "codecarbon: ImportError"}
    table = markdown(result)
    assert "| GPU energy | unavailable: no NVIDIA GPU \\| none |" in table
    assert table.count("unavailable: codecarbon: ImportError") == 2  # energy and CO2 rows
    assert " J" not in table and "kWh" not in table
