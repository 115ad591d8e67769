"""Energy of a benchmark's measured window (in-kernel side).

Two sources, each labelled with what it really is:
- GPU: NVML's total energy counter (mJ since driver load), read before and after the window.
  It is a measurement, but of the whole device, other processes included.
- codecarbon's offline tracker: CPU, RAM (and GPU) energy and a CO2 figure from the country's
  average carbon intensity. Without RAPL its CPU figure is a TDP-based estimate, and its RAM
  figure is always a model, so the total is reported as "estimated" unless every part was measured.
Only the standard library is imported here; pynvml and codecarbon are imported when used, and
any failure of theirs becomes a recorded reason, never an exception.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

SHORT_WINDOW_S = 1.0  # NVML's counter updates about every 100 ms; codecarbon samples every 1 s
IDLE_SAMPLES, IDLE_PERIOD_S = 5, 0.1  # idle power: 5 readings over ~0.5 s
MEASURED_CPU_MODES = {"intel_rapl", "windows_emi", "intel_power_gadget"}


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class EnergyMeter:
    """Context manager around the measured window of a benchmark.

    Idle GPU power is sampled when the meter is made: make it before the run puts work on the
    GPU (on an H100, power sampled right after warm-up read 400 W where the idle device drew
    150 W)."""

    def __init__(
        self,
        country_iso_code: str = "USA",
        gpu_indices: list[int] | None = None,
        use_codecarbon: bool = True,
    ) -> None:
        self.country_iso_code = country_iso_code
        self.gpu_indices = gpu_indices  # NVML indices; default: those CUDA_VISIBLE_DEVICES shows
        self.use_codecarbon = use_codecarbon
        self.warnings: list[str] = []
        self._t0: float | None = None
        self._t1: float | None = None
        self._nvml = None
        self._gpus: list[dict] = []  # index, name, handle, start_mj, end_mj
        self._idle_w: float | None = None
        self._gpu_reason: str | None = None
        self._tracker = None
        self._codecarbon: dict = {"status": "unavailable", "reason": "not run"}
        self._open_gpus()  # idle power is sampled now, before the run's work starts

    def __enter__(self) -> EnergyMeter:
        self._start_codecarbon()  # its hardware set-up takes ~1 s: keep it out of the window
        if self._gpus:
            self._read_counters("start_mj")
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._t1 = time.perf_counter()
        if self._gpus:
            self._read_counters("end_mj")
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        self._stop_codecarbon()

    # -- GPU: NVML ------------------------------------------------------------------------

    def _visible_indices(self, count: int) -> list[int]:
        if self.gpu_indices is not None:
            return list(self.gpu_indices)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return list(range(count))
        indices = []
        for item in filter(None, (s.strip() for s in visible.split(","))):
            if not item.lstrip("-").isdigit():  # UUIDs or MIG names: not mapped here
                self.warnings.append(
                    f"CUDA_VISIBLE_DEVICES={visible!r} names GPUs by UUID: all {count} GPUs "
                    "were measured; pass gpu_indices to choose."
                )
                return list(range(count))
            if int(item) < 0:  # CUDA ignores everything from the first invalid entry
                break
            indices.append(int(item))
        return indices

    def _open_gpus(self) -> None:
        try:
            import pynvml
        except Exception as e:
            self._gpu_reason = f"pynvml is not importable ({_error(e)})"
            return
        try:
            pynvml.nvmlInit()
        except Exception as e:
            self._gpu_reason = f"NVML did not start: no NVIDIA driver or GPU ({_error(e)})"
            return
        self._nvml = pynvml
        try:
            indices = self._visible_indices(pynvml.nvmlDeviceGetCount())
            for i in indices:
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else str(name)
                self._gpus.append({"index": i, "name": name, "handle": handle})
        except Exception as e:
            self._gpus, self._gpu_reason = [], f"NVML could not list the GPUs ({_error(e)})"
            return
        if not self._gpus:
            self._gpu_reason = "no NVIDIA GPU is visible (none found, or CUDA_VISIBLE_DEVICES)"
            return
        try:
            readings = []
            for k in range(IDLE_SAMPLES):
                if k:
                    time.sleep(IDLE_PERIOD_S)
                readings.append(
                    sum(pynvml.nvmlDeviceGetPowerUsage(g["handle"]) for g in self._gpus)
                )
            self._idle_w = sum(readings) / len(readings) / 1000.0  # mW -> W
        except Exception as e:
            self.warnings.append(f"Idle GPU power could not be read ({_error(e)}).")

    def _read_counters(self, key: str) -> None:
        for g in self._gpus:
            try:
                g[key] = self._nvml.nvmlDeviceGetTotalEnergyConsumption(g["handle"])  # mJ
            except Exception as e:
                where = f"GPU {g['index']} ({g['name']})"
                self._gpu_reason = f"NVML total energy counter unsupported on {where}: {_error(e)}"
                self._gpus = []
                return

    # -- codecarbon -----------------------------------------------------------------------

    def _start_codecarbon(self) -> None:
        if not self.use_codecarbon:
            self._codecarbon = {
                "status": "unavailable",
                "reason": "disabled (use_codecarbon=False)",
            }
            return
        try:
            from codecarbon import OfflineEmissionsTracker

            # Importing codecarbon set its logger to INFO: quiet it before the tracker speaks.
            logging.getLogger("codecarbon").setLevel(logging.ERROR)

            tracker = OfflineEmissionsTracker(
                country_iso_code=self.country_iso_code,
                gpu_ids=self.gpu_indices,
                log_level="error",
                allow_multiple_runs=True,  # no lock file
                save_to_file=False,
                save_to_api=False,
                save_to_logger=False,
                save_to_prometheus=False,
                save_to_logfire=False,
                output_handlers=[],
                emissions_endpoint=None,
                electricitymaps_api_token=None,
                force_carbon_intensity_g_co2e_kwh=None,
            )
            # A legacy co2_signal token in a config file would send it to the network.
            tracker._electricitymaps_api_token = None
            tracker.start()  # codecarbon logs its own errors instead of raising them
            if getattr(tracker, "_start_time", None) is None:
                raise RuntimeError("the tracker did not start (codecarbon swallowed the error)")
            self._tracker = tracker
        except Exception as e:
            self._codecarbon = {"status": "unavailable", "reason": f"codecarbon: {_error(e)}"}

    def _stop_codecarbon(self) -> None:
        if self._tracker is None:
            return
        try:
            import codecarbon

            self._tracker.stop()
            data = getattr(self._tracker, "final_emissions_data", None)
            if data is None:
                raise RuntimeError("the tracker produced no data (codecarbon swallowed the error)")
            method, measured = _codecarbon_method(self._tracker._hardware, data.gpu_model)
            self._codecarbon = {
                "status": "measured" if measured else "estimated",
                "method": f"codecarbon {codecarbon.__version__} offline; {method}",
                "energy_kwh": float(data.energy_consumed),
                "components_kwh": {
                    "cpu": float(data.cpu_energy),
                    "gpu": float(data.gpu_energy),
                    "ram": float(data.ram_energy),
                },
                "emissions_kg_co2eq": float(data.emissions),
                "emissions_note": "estimated from the country's average grid carbon intensity",
                "country_iso_code": self.country_iso_code,
            }
        except Exception as e:
            self._codecarbon = {"status": "unavailable", "reason": f"codecarbon: {_error(e)}"}

    # -- result ---------------------------------------------------------------------------

    def result(self, samples: int) -> dict:
        """The window's energy as a JSON-serialisable dict; `samples` processed in the window."""
        if self._t0 is None or self._t1 is None:
            raise RuntimeError("EnergyMeter.result() needs a completed `with` block")
        window = self._t1 - self._t0
        warnings = list(self.warnings)

        def per_1000(x: float) -> float | None:
            return x * 1000.0 / samples if samples > 0 else None

        if self._gpus:
            devices = [
                {
                    "index": g["index"],
                    "name": g["name"],
                    "joules": (g["end_mj"] - g["start_mj"]) / 1e3,
                }
                for g in self._gpus
            ]
            joules = sum(d["joules"] for d in devices)
            gpu = {
                "status": "measured",
                "method": "NVML total energy counter",
                "joules": joules,
                "joules_per_1000_samples": per_1000(joules),
                "idle_power_w": self._idle_w,
                "devices": devices,
                "note": "covers the whole device, other processes included",
            }
            if any(d["joules"] < 0 for d in devices):
                gpu = {"status": "unavailable", "reason": "the NVML energy counter went backwards"}
            elif joules == 0:
                warnings.append("The GPU energy counter did not advance during the window.")
        else:
            gpu = {"status": "unavailable", "reason": self._gpu_reason or "no GPU was measured"}

        codecarbon = dict(self._codecarbon)
        if "energy_kwh" in codecarbon:
            codecarbon["kwh_per_1000_samples"] = per_1000(codecarbon["energy_kwh"])
        if window < SHORT_WINDOW_S:
            warnings.append(
                f"The measured window was {window:.2f} s, shorter than {SHORT_WINDOW_S:g} s: "
                "NVML's energy counter updates about every 100 ms and codecarbon samples power "
                "about once a second, so the energy figures are rough; rerun with more steps."
            )
        return {"window_s": window, "gpu": gpu, "codecarbon": codecarbon, "warnings": warnings}


def _codecarbon_method(hardware: list, gpu_model: str) -> tuple[str, bool]:
    """What codecarbon (3.3.2) really did for each part, and whether every part was measured."""
    measured, parts = True, []
    for hw in hardware:
        kind = type(hw).__name__
        if kind == "CPU" and hw._mode in MEASURED_CPU_MODES:
            parts.append(f"CPU: measured ({hw._mode})")
        elif kind == "CPU":  # hw._tdp is the assumed full-load power of all sockets
            how = "CPU load scaled to" if hw._mode == "cpu_load" else "a constant half of"
            generic = " generic" if getattr(hw, "_is_generic_tdp", False) else ""
            parts.append(
                f"CPU: estimate from {how} an assumed{generic} {hw._tdp} W TDP for "
                f"{hw._model!r} (no RAPL or other power counter readable)"
            )
            measured = False
        elif kind == "GPU":
            parts.append(f"GPU: measured via NVML ({gpu_model})")
        elif kind == "RAM":
            parts.append("RAM: estimate from installed memory size")
            measured = False
        else:  # Apple or Raspberry Pi power readings
            parts.append(f"{kind} {getattr(hw, 'chip_part', '')}: measured")
    return "; ".join(sorted(parts)), measured


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(result: dict) -> str:
    """A small Markdown table of `result`; every number carries its status word."""
    gpu, cc = result["gpu"], result["codecarbon"]
    if gpu["status"] == "measured":
        idle = gpu.get("idle_power_w")
        per = gpu.get("joules_per_1000_samples")
        gpu_cell = f"measured: {gpu['joules']:.4g} J" + (
            f" ({per:.4g} J / 1000 samples)" if per is not None else ""
        )
        gpu_cell += f"; idle {idle:.4g} W measured" if idle is not None else "; idle power unknown"
        gpu_cell += f" ({gpu['method']}; {gpu['note']})"
    else:
        gpu_cell = f"unavailable: {gpu['reason']}"
    if cc["status"] == "unavailable":
        energy_cell = co2_cell = f"unavailable: {cc['reason']}"
    else:
        per = cc.get("kwh_per_1000_samples")
        energy_cell = f"{cc['status']}: {cc['energy_kwh']:.4g} kWh" + (
            f" ({per:.4g} kWh / 1000 samples)" if per is not None else ""
        )
        energy_cell += f" ({cc['method']})"
        co2_cell = (
            f"estimated: {cc['emissions_kg_co2eq']:.4g} kg CO2eq "
            f"({cc['country_iso_code']} average grid intensity)"
        )
    rows = [
        ("GPU energy", gpu_cell),
        ("Machine energy (codecarbon)", energy_cell),
        ("CO2", co2_cell),
        ("Window", f"measured: {result['window_s']:.3g} s"),
    ]
    table = ["| Energy | Value |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows)]
    warnings = [f"> ⚠ {w}" for w in result.get("warnings", [])]  # one quote each
    return "\n\n".join(["\n".join(table), *warnings]) + "\n"
