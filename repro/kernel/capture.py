"""Capture the hardware and software environment a benchmark ran in.

Standard library only: this runs inside every framework kernel as well as in the driver.
Nothing here raises because something is absent; what cannot be found is recorded with a reason.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from repro.records import Environment

TIMEOUT_S: float = 10
CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
DOCKERENV = Path("/.dockerenv")
CONTAINERENV = Path("/run/.containerenv")
CGROUP = Path("/proc/self/cgroup")
GPU_QUERY_FIELDS = (
    "name",
    "uuid",
    "driver_version",
    "memory.total",
    "clocks.max.sm",
    "clocks.max.mem",
    "power.limit",
    "persistence_mode",
    "ecc.mode.current",
    "mig.mode.current",
    "pci.bus_id",
    "compute_cap",
)
ENV_PREFIXES = (
    "CUDA_",
    "XLA_",
    "TF_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "NCCL_",
    "CUBLAS_",
    "KERAS_",
    "CUDNN_",
    "JAX_",
    "TORCH",
    "PYTORCH_",
    "KMP_",
    "NVIDIA_",
    "TORCHINDUCTOR_",
)
ENV_NAMES = ("PYTHONHASHSEED", "LD_PRELOAD", "CUDA_VISIBLE_DEVICES")
# TF_ is TensorFlow's prefix and Terraform's: Terraform's own variables, as its CLI documents them
# (developer.hashicorp.com/terraform/cli/config/environment-variables), change no result
TERRAFORM_NAMES = (
    "TF_LOG",
    "TF_LOG_PATH",
    "TF_LOG_CORE",
    "TF_LOG_PROVIDER",
    "TF_INPUT",
    "TF_CLI_ARGS",
    "TF_DATA_DIR",
    "TF_WORKSPACE",
    "TF_IN_AUTOMATION",
    "TF_REGISTRY_DISCOVERY_RETRY",
    "TF_REGISTRY_CLIENT_TIMEOUT",
    "TF_STATE_PERSIST_INTERVAL",
    "TF_CLI_CONFIG_FILE",
    "TF_PLUGIN_CACHE_DIR",
    "TF_IGNORE",
)
TERRAFORM_PREFIXES = ("TF_VAR_", "TF_CLI_ARGS_", "TF_TOKEN_")
CONTAINER_IMAGE_VARS = ("REPRO_CONTAINER_IMAGE", "CONTAINER_IMAGE")
CGROUP_HINTS = ("docker", "kubepods", "containerd", "libpod", "lxc")


def _run(*args: str) -> tuple[str | None, str | None]:
    """Run a command with a timeout; return ``(stdout, None)`` or ``(None, reason)``."""
    exe = shutil.which(args[0])
    if exe is None:
        return None, f"{args[0]} not found"
    try:
        proc = subprocess.run(
            [exe, *args[1:]],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return None, f"{args[0]} timed out after {TIMEOUT_S} s"
    except OSError as exc:
        return None, f"{args[0]}: {exc}"
    if proc.returncode != 0:
        detail = " ".join((proc.stderr + proc.stdout).split())[:500]
        return None, f"{' '.join(args)} exited with {proc.returncode}: {detail}"
    return proc.stdout, None


def _read(path: Path) -> tuple[str | None, str | None]:
    """Read a text file; return ``(text, None)`` or ``(None, reason)``."""
    try:
        return path.read_text(), None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"


def _safe(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; None if it raises. Bytes are decoded (older pynvml returns bytes)."""
    try:
        value = fn()
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else value


def flatten_lscpu(data: dict) -> dict:
    """Flatten parsed ``lscpu -J`` output (nested ``children`` or flat) to ``{field: data}``."""
    flat: dict[str, Any] = {}

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            field, value = str(entry.get("field", "")).strip().rstrip(":"), entry.get("data")
            if field and value is not None:
                old = flat.get(field)
                flat[field] = value if old in (None, value) else f"{old}; {value}"
            walk(entry.get("children") or [])

    walk(data.get("lscpu") or [])
    return flat


def lscpu() -> dict:
    """``lscpu -J`` as a flat dict; ``{}`` when lscpu is missing or fails."""
    out, _ = _run("lscpu", "-J")
    try:
        return flatten_lscpu(json.loads(out)) if out else {}
    except (ValueError, AttributeError):
        return {}


def lscpu_text() -> str:
    """Plain ``lscpu`` output, or a one-line reason why it is unavailable."""
    out, reason = _run("lscpu")
    return out.rstrip() if out is not None else f"lscpu unavailable: {reason}"


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block ([] when unreadable)."""
    text, _ = _read(CPUINFO)
    blocks = [b for b in (text or "").split("\n\n") if b.strip()]
    return [
        {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in b.splitlines())}
        for b in blocks
    ]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def cpu() -> dict:
    """CPU model, core counts, affinity, frequency governor and the flat lscpu fields."""
    flat, procs = lscpu(), _cpuinfo()
    first = procs[0] if procs else {}
    cores = {
        (p["physical id"], p["core id"]) for p in procs if "physical id" in p and "core id" in p
    }
    sockets = _int(flat.get("Socket(s)"))
    per_socket = _int(flat.get("Core(s) per socket") or flat.get("Core(s) per cluster"))
    governor, governor_reason = _read(GOVERNOR)
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "model": flat.get("Model name") or first.get("model name") or first.get("cpu"),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or (sockets * per_socket if sockets and per_socket else None),
        "affinity": sorted(affinity(0)) if affinity else None,
        "governor": governor.strip() if governor else None,
        "governor_reason": governor_reason,
        "lscpu": flat,
    }


def memory() -> dict:
    """Total and available memory in bytes from /proc/meminfo."""
    text, reason = _read(MEMINFO)
    info = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        info[key] = _int(value.split()[0]) if value.split() else None
    kib = {"total_bytes": info.get("MemTotal"), "available_bytes": info.get("MemAvailable")}
    return {k: v * 1024 if v is not None else None for k, v in kib.items()} | {"reason": reason}


def system() -> dict:
    """OS, kernel, hostname, machine architecture and Python interpreter."""
    try:
        pretty, os_reason = platform.freedesktop_os_release().get("PRETTY_NAME"), None
    except OSError as exc:
        pretty, os_reason = None, f"no os-release: {exc}"
    return {
        "platform": platform.platform(),
        "os_pretty_name": pretty,
        "os_reason": os_reason,
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
    }


def _nvidia_smi() -> tuple[dict, str | None]:
    """nvidia-smi query (dropping fields it rejects) and ``-q -x`` XML; reason if no GPUs."""
    fields, dropped = list(GPU_QUERY_FIELDS), []
    while fields:
        out, reason = _run("nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader")
        rejected = [f for f in fields if reason and f'"{f}"' in reason]
        if not rejected:
            break
        fields = [f for f in fields if f not in rejected]
        dropped += rejected
    rows = csv.reader((out or "").splitlines(), skipinitialspace=True)
    query = [dict(zip(fields, row, strict=False)) for row in rows if row]
    if out is not None and not query:
        reason = "nvidia-smi listed no GPUs"
    xml, xml_reason = _run("nvidia-smi", "-q", "-x") if query else (None, reason)
    smi = {"query": query, "query_fields": fields, "dropped_fields": dropped, "reason": reason}
    return smi | {"xml": xml, "xml_reason": xml_reason}, reason


def _nvml_device(pynvml: Any, index: int) -> dict:
    h = _safe(lambda: pynvml.nvmlDeviceGetHandleByIndex(index))
    return {
        "index": index,
        "name": _safe(lambda: pynvml.nvmlDeviceGetName(h)),
        "uuid": _safe(lambda: pynvml.nvmlDeviceGetUUID(h)),
        "memory_total_bytes": _safe(lambda: pynvml.nvmlDeviceGetMemoryInfo(h).total),
        "max_sm_clock_mhz": _safe(
            lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
        ),
        "max_mem_clock_mhz": _safe(
            lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)
        ),
        "power_limit_w": _safe(lambda: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000),
        "persistence_mode": _safe(lambda: pynvml.nvmlDeviceGetPersistenceMode(h)),
        "ecc_mode": _safe(lambda: pynvml.nvmlDeviceGetEccMode(h)[0]),
        "mig_mode": _safe(lambda: pynvml.nvmlDeviceGetMigMode(h)[0]),
    }


def _nvml() -> dict:
    """Driver and per-device facts via pynvml, if it is installed and NVML initialises."""
    try:
        import pynvml
    except ImportError:
        return {"available": False, "reason": "NVML: pynvml not installed", "devices": []}
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return {"available": False, "reason": f"NVML: {exc}", "devices": []}
    try:
        cuda = _safe(pynvml.nvmlSystemGetCudaDriverVersion)
        return {
            "available": True,
            "reason": None,
            "driver_version": _safe(pynvml.nvmlSystemGetDriverVersion),
            "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
            "devices": [
                _nvml_device(pynvml, i) for i in range(_safe(pynvml.nvmlDeviceGetCount) or 0)
            ],
        }
    finally:
        _safe(pynvml.nvmlShutdown)


def gpus() -> dict:
    """NVIDIA GPUs via nvidia-smi and NVML; ``present`` False with a reason when there are none."""
    smi, smi_reason = _nvidia_smi()
    nvml = _nvml()
    present = bool(smi["query"] or nvml["devices"])
    reason = None if present else "; ".join(r for r in (smi_reason, nvml["reason"]) if r)
    return {"present": present, "reason": reason or None, "nvidia_smi": smi, "nvml": nvml}


def container() -> dict:
    """Whether this runs in a container, and the image reference/digest when discoverable."""
    hints = [str(p) for p in (DOCKERENV, CONTAINERENV) if p.exists()]
    cgroup, _ = _read(CGROUP)
    hints += [f"cgroup:{h}" for h in CGROUP_HINTS if h in (cgroup or "")]
    hints += [f"env:{v}" for v in ("KUBERNETES_SERVICE_HOST", "container") if v in os.environ]
    found = dict(re.findall(r'^(image|imageid)="?([^"\n]*)"?$', _read(CONTAINERENV)[0] or "", re.M))
    image = next((os.environ[v] for v in CONTAINER_IMAGE_VARS if os.environ.get(v)), None)
    image = image or found.get("image") or None
    return {
        "inside": bool(hints),
        "hints": hints,
        "image": image,
        "image_id": found.get("imageid") or None,
        "image_reason": None
        if image or found.get("imageid")
        else "no image reference found" + ("" if hints else " (not in a container)"),
    }


def env_vars() -> dict:
    """Environment variables that can change results, sorted by name."""
    return {k: v for k, v in sorted(os.environ.items()) if result_changing(k)}


def result_changing(name: str) -> bool:
    """Whether environment variable `name` is one a framework or its libraries read."""
    if name in TERRAFORM_NAMES or name.startswith(TERRAFORM_PREFIXES):
        return False
    return name in ENV_NAMES or name.startswith(ENV_PREFIXES)


def packages() -> list[str]:
    """Installed distributions as ``name==version`` (like ``pip freeze``), without needing pip."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        if name := dist.metadata["Name"]:
            seen.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={dist.version}")
    return [seen[key] for key in sorted(seen)]


def capture() -> Environment:
    """The machine and software, as environment.json records them (repro.records.Environment;
    the framework, its settings and the run context are added by repro.kernel.report)."""
    return Environment(
        captured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        system=system(),
        cpu=cpu(),
        memory=memory(),
        gpu=gpus(),
        container=container(),
        env_vars=env_vars(),
        packages=tuple(packages()),
        lscpu_text=lscpu_text(),
    )


def _ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _gib(n: int | None) -> str:
    return f"{n / 2**30:.1f} GiB ({n} bytes)" if n is not None else "unknown"


def _gpu_markdown(gpu: dict) -> str:
    """The nvidia-smi query (else the NVML devices) as a Markdown table, or why there is no GPU."""
    smi, nvml = gpu.get("nvidia_smi") or {}, gpu.get("nvml") or {}
    rows = smi.get("query") or nvml.get("devices")
    if not rows:
        return f"No NVIDIA GPU: {gpu.get('reason') or 'not recorded'}"
    fields = (smi.get("query") and smi.get("query_fields")) or list(rows[0])
    cells = [fields, ["---"] * len(fields)]
    cells += [[str(r.get(f, "")).replace("|", "\\|") for f in fields] for r in rows]
    table = "\n".join("| " + " | ".join(row) + " |" for row in cells)
    if nvml.get("available"):
        table += f"\n\nNVML: driver {nvml.get('driver_version')}, "
        table += f"CUDA driver API {nvml.get('cuda_driver_version')}"
    return table


def gpu_names(gpu: dict) -> str:
    """The GPUs of a :func:`capture` record's ``gpu`` entry by name, or none and why."""
    if gpu.get("present"):
        return ", ".join(g.get("name", "?") for g in gpu["nvidia_smi"]["query"])
    return f"none ({gpu.get('reason')})"


def hardware_markdown(env: dict) -> str:
    """A readable Markdown document (``hardware.md``) from a :func:`capture` record."""
    c, m, s = env.get("cpu", {}), env.get("memory", {}), env.get("system", {})
    py, k = s.get("python", {}), env.get("container", {})
    affinity = _ranges(c["affinity"]) if c.get("affinity") else "unknown"
    governor = c.get("governor") or f"unavailable ({c.get('governor_reason')})"
    image = k.get("image") or k.get("image_id") or f"not discoverable ({k.get('image_reason')})"
    hints = ", ".join(k.get("hints") or []) or "none"
    return f"""# Hardware and environment

Captured at {env.get("captured_at", "unknown")}.

## CPU

- Model: {c.get("model") or "unknown"}
- Cores: {c.get("logical_cores")} logical, {c.get("physical_cores") or "unknown"} physical
- Affinity: {affinity}
- Frequency governor: {governor}

```text
{env.get("lscpu_text") or "lscpu output not captured"}
```

## Memory

- Total: {_gib(m.get("total_bytes"))}
- Available at capture: {_gib(m.get("available_bytes"))}

## OS

- Distribution: {s.get("os_pretty_name") or "unknown"}
- Platform: {s.get("platform")} ({s.get("machine")}), kernel {s.get("kernel")}
- Hostname: {s.get("hostname")}
- Python: {py.get("implementation")} {py.get("version")} ({py.get("executable")})

## GPU

{_gpu_markdown(env.get("gpu", {}))}

## Container

- Inside a container: {"yes" if k.get("inside") else "no"} (markers: {hints})
- Image: {image}
"""


if __name__ == "__main__":
    print(json.dumps(capture().to_json(), indent=2))
