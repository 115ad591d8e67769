"""Tests for repro.kernel.capture: parsing, absence handling and the Markdown summary."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from repro.kernel import capture

GPUS = [
    {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "driver_version": "550.54.15",
        "memory.total": "81559 MiB",
        "clocks.max.sm": "1980 MHz",
        "clocks.max.mem": "2619 MHz",
        "power.limit": "700.00 W",
        "persistence_mode": "Enabled",
        "ecc.mode.current": "Enabled",
        "mig.mode.current": "Disabled",
        "pci.bus_id": "00000000:19:00.0",
        "compute_cap": "9.0",
    },
    {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-66666666-7777-8888-9999-000000000000",
        "driver_version": "550.54.15",
        "memory.total": "81559 MiB",
        "clocks.max.sm": "1980 MHz",
        "clocks.max.mem": "2619 MHz",
        "power.limit": "[N/A]",
        "persistence_mode": "Enabled",
        "ecc.mode.current": "Enabled",
        "mig.mode.current": "Enabled",
        "pci.bus_id": "00000000:3B:00.0",
        "compute_cap": "9.0",
    },
]
XML = '<?xml version="1.0" ?>\n<nvidia_smi_log><attached_gpus>2</attached_gpus></nvidia_smi_log>\n'

NESTED_LSCPU = {
    "lscpu": [
        {"field": "Architecture:", "data": "x86_64"},
        {"field": "CPU(s):", "data": "8"},
        {
            "field": "Vendor ID:",
            "data": "GenuineIntel",
            "children": [
                {
                    "field": "Model name:",
                    "data": "Fake Xeon 9000",
                    "children": [
                        {"field": "Thread(s) per core:", "data": "2"},
                        {"field": "Core(s) per socket:", "data": "2"},
                        {"field": "Socket(s):", "data": "2"},
                    ],
                }
            ],
        },
        {
            "field": "Caches (sum of all):",
            "data": None,
            "children": [{"field": "L1d:", "data": "192 KiB (4 instances)"}],
        },
    ]
}


def _script(directory: Path, name: str, body: str) -> Path:
    """Write an executable Python script (absolute shebang, so it needs nothing on PATH)."""
    path = directory / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is the whole PATH (no lscpu, no nvidia-smi); no pynvml."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    return directory


def _fake_smi(directory: Path, reject: tuple[str, ...] = ()) -> Path:
    """A fake nvidia-smi answering --query-gpu from GPUS and -q -x with XML; logs its calls."""
    (directory / "gpu.xml").write_text(XML)
    return _script(
        directory,
        "nvidia-smi",
        f"""
        import pathlib, sys
        here = pathlib.Path(__file__).parent
        args = sys.argv[1:]
        with open(here / "calls.log", "a") as log:
            log.write(" ".join(args) + "\\n")
        if args == ["-q", "-x"]:
            sys.stdout.write((here / "gpu.xml").read_text())
            sys.exit(0)
        assert "--format=csv,noheader" in args, args
        fields = next(a for a in args if a.startswith("--query-gpu=")).split("=", 1)[1].split(",")
        for field in fields:
            if field in {reject!r}:
                print(f'Field "{{field}}" is not a valid field to query.', file=sys.stderr)
                sys.exit(2)
        for gpu in {GPUS!r}:
            print(", ".join(gpu[f] for f in fields))
        """,
    )


def _fake_lscpu(directory: Path) -> Path:
    return _script(
        directory,
        "lscpu",
        f"""
        import json, sys
        if sys.argv[1:] == ["-J"]:
            print(json.dumps({NESTED_LSCPU!r}))
        else:
            print("Architecture:  x86_64\\nModel name:    Fake Xeon 9000")
        """,
    )


def test_flatten_lscpu_nested_children() -> None:
    flat = capture.flatten_lscpu(NESTED_LSCPU)
    assert flat == {
        "Architecture": "x86_64",
        "CPU(s)": "8",
        "Vendor ID": "GenuineIntel",
        "Model name": "Fake Xeon 9000",
        "Thread(s) per core": "2",
        "Core(s) per socket": "2",
        "Socket(s)": "2",
        "L1d": "192 KiB (4 instances)",
    }


def test_flatten_lscpu_old_flat_format_and_repeated_fields() -> None:
    data = {
        "lscpu": [
            {"field": "Architecture:", "data": "aarch64"},
            {"field": "Model name:", "data": "Cortex-A53"},
            {"field": "Model name:", "data": "Cortex-A72"},
        ]
    }
    assert capture.flatten_lscpu(data) == {
        "Architecture": "aarch64",
        "Model name": "Cortex-A53; Cortex-A72",
    }
    assert capture.flatten_lscpu({}) == {}


def test_lscpu_runs_the_command_and_flattens(bin_dir: Path) -> None:
    _fake_lscpu(bin_dir)
    assert capture.lscpu()["Model name"] == "Fake Xeon 9000"
    assert capture.lscpu_text().startswith("Architecture:  x86_64")


def test_lscpu_missing_gives_empty_dict_and_reason(bin_dir: Path) -> None:
    assert capture.lscpu() == {}
    assert capture.lscpu_text() == "lscpu unavailable: lscpu not found"


def test_lscpu_failure_and_timeout_are_reasons(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(bin_dir, "lscpu", "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    assert capture.lscpu() == {}
    assert capture.lscpu_text() == "lscpu unavailable: lscpu exited with 3: boom"
    _script(bin_dir, "lscpu", "import time\ntime.sleep(5)\n")
    monkeypatch.setattr(capture, "TIMEOUT_S", 0.3)
    assert "timed out after 0.3 s" in capture.lscpu_text()


def test_cpu_from_cpuinfo_without_lscpu(
    bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = [
        f"processor\t: {i}\nmodel name\t: Cpuinfo CPU\n"
        f"physical id\t: {i // 4}\ncore id\t\t: {i % 2}"
        for i in range(8)
    ]
    (tmp_path / "cpuinfo").write_text("\n\n".join(blocks) + "\n\n")
    (tmp_path / "governor").write_text("performance\n")
    monkeypatch.setattr(capture, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(capture, "GOVERNOR", tmp_path / "governor")
    info = capture.cpu()
    assert info["model"] == "Cpuinfo CPU"
    assert info["physical_cores"] == 4  # 2 sockets x 2 cores, hyperthreaded
    assert info["governor"] == "performance"
    assert info["governor_reason"] is None
    assert info["lscpu"] == {}
    if hasattr(capture.os, "sched_getaffinity"):
        assert info["affinity"] == sorted(capture.os.sched_getaffinity(0))


def test_cpu_falls_back_to_lscpu_and_records_missing_governor(
    bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_lscpu(bin_dir)
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")
    monkeypatch.setattr(capture, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(capture, "GOVERNOR", tmp_path / "absent")
    info = capture.cpu()
    assert info["model"] == "Fake Xeon 9000"
    assert info["physical_cores"] == 4
    assert info["governor"] is None
    assert "No such file" in info["governor_reason"]


def test_memory_reads_meminfo_in_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "meminfo").write_text(
        "MemTotal:       16384 kB\nMemFree:         1000 kB\nMemAvailable:    8192 kB\n"
    )
    monkeypatch.setattr(capture, "MEMINFO", tmp_path / "meminfo")
    assert capture.memory() == {
        "total_bytes": 16384 * 1024,
        "available_bytes": 8192 * 1024,
        "reason": None,
    }
    monkeypatch.setattr(capture, "MEMINFO", tmp_path / "absent")
    missing = capture.memory()
    assert missing["total_bytes"] is None and "cannot read" in missing["reason"]


def test_system_records_python_and_missing_os_release(monkeypatch: pytest.MonkeyPatch) -> None:
    info = capture.system()
    assert info["python"] == {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }
    assert info["kernel"] == platform.release()

    def no_os_release() -> dict:
        raise OSError("no os-release file")

    monkeypatch.setattr(platform, "freedesktop_os_release", no_os_release)
    info = capture.system()
    assert info["os_pretty_name"] is None
    assert "no os-release file" in info["os_reason"]


def test_gpus_absent_without_nvidia_smi_or_pynvml(bin_dir: Path) -> None:
    info = capture.gpus()
    assert info["present"] is False
    assert info["reason"] == "nvidia-smi not found; NVML: pynvml not installed"
    assert info["nvidia_smi"]["query"] == [] and info["nvidia_smi"]["xml"] is None
    assert info["nvml"]["available"] is False


def test_gpus_parses_fake_nvidia_smi(bin_dir: Path) -> None:
    _fake_smi(bin_dir)
    info = capture.gpus()
    smi = info["nvidia_smi"]
    assert info["present"] is True and info["reason"] is None
    assert smi["query"] == GPUS
    assert smi["query_fields"] == list(capture.GPU_QUERY_FIELDS)
    assert smi["dropped_fields"] == []
    assert smi["xml"] == XML


def test_gpus_drops_fields_the_driver_rejects(bin_dir: Path) -> None:
    _fake_smi(bin_dir, reject=("compute_cap", "mig.mode.current"))
    smi = capture.gpus()["nvidia_smi"]
    assert smi["dropped_fields"] == ["mig.mode.current", "compute_cap"]
    assert "compute_cap" not in smi["query_fields"]
    expected = [
        {k: v for k, v in g.items() if k not in ("compute_cap", "mig.mode.current")} for g in GPUS
    ]
    assert smi["query"] == expected
    calls = (bin_dir / "calls.log").read_text().splitlines()
    assert len([c for c in calls if "--query-gpu" in c]) == 3  # two rejections, one success


def test_gpus_driver_failure_is_a_reason(bin_dir: Path) -> None:
    msg = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    _script(bin_dir, "nvidia-smi", f"import sys\nprint({msg!r})\nsys.exit(9)\n")
    info = capture.gpus()
    assert info["present"] is False
    assert "exited with 9" in info["reason"] and msg in info["reason"]


def _fake_pynvml(fail_init: bool = False) -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def unsupported(*_: object) -> None:
        raise NVMLError("Not Supported")

    def init() -> None:
        if fail_init:
            raise NVMLError("Driver Not Loaded")

    mod.__dict__.update(
        NVMLError=NVMLError,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: b"550.54.15",
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"handle{i}",
        nvmlDeviceGetName=lambda h: "NVIDIA H100 80GB HBM3",
        nvmlDeviceGetUUID=lambda h: "GPU-abc",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=85520809984),
        nvmlDeviceGetMaxClockInfo=lambda h, kind: {1: 1980, 2: 2619}[kind],
        nvmlDeviceGetPowerManagementLimit=lambda h: 700000,
        nvmlDeviceGetPersistenceMode=lambda h: 1,
        nvmlDeviceGetEccMode=lambda h: (1, 1),
        nvmlDeviceGetMigMode=unsupported,
    )
    return mod


def test_nvml_fields_and_one_unsupported_query(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    info = capture.gpus()
    nvml = info["nvml"]
    assert info["present"] is True  # NVML sees a device even without nvidia-smi
    assert nvml["driver_version"] == "550.54.15"
    assert nvml["cuda_driver_version"] == "12.4"
    assert nvml["devices"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-abc",
            "memory_total_bytes": 85520809984,
            "max_sm_clock_mhz": 1980,
            "max_mem_clock_mhz": 2619,
            "power_limit_w": 700.0,
            "persistence_mode": 1,
            "ecc_mode": 1,
            "mig_mode": None,
        }
    ]


def test_nvml_init_failure_is_a_reason(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))
    info = capture.gpus()
    assert info["present"] is False
    assert info["reason"] == "nvidia-smi not found; NVML: Driver Not Loaded"


@pytest.fixture
def no_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every container marker at absent files and clear the related variables."""
    for name in ("DOCKERENV", "CONTAINERENV", "CGROUP"):
        monkeypatch.setattr(capture, name, tmp_path / name.lower())
    for var in ("KUBERNETES_SERVICE_HOST", "container", *capture.CONTAINER_IMAGE_VARS):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_container_absent(no_container: Path) -> None:
    info = capture.container()
    assert info["inside"] is False and info["hints"] == []
    assert info["image"] is None and info["image_id"] is None
    assert info["image_reason"] == "no image reference found (not in a container)"


def test_container_podman_containerenv(no_container: Path) -> None:
    (no_container / "containerenv").write_text(
        'engine="podman-4.9.3"\nname="bench"\n'
        'image="ghcr.io/example/repro:1.0"\nimageid="sha256:0123abcd"\n'
    )
    (no_container / "cgroup").write_text("0::/machine.slice/libpod-1234.scope\n")
    info = capture.container()
    assert info["inside"] is True
    assert info["hints"] == [str(no_container / "containerenv"), "cgroup:libpod"]
    assert info["image"] == "ghcr.io/example/repro:1.0"
    assert info["image_id"] == "sha256:0123abcd"
    assert info["image_reason"] is None


def test_container_image_from_environment(
    no_container: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_container / "dockerenv").touch()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("REPRO_CONTAINER_IMAGE", "repro@sha256:feed")
    info = capture.container()
    assert info["hints"] == [str(no_container / "dockerenv"), "env:KUBERNETES_SERVICE_HOST"]
    assert info["image"] == "repro@sha256:feed"


def test_env_vars_selects_result_changing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("TORCH_HOME", "/cache")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=0")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("MY_OMP_NUM_THREADS", "8")
    monkeypatch.setenv("PYTHONPATH", "/x")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # TensorFlow's: kept
    terraform = ("TF_VAR_region", "TF_LOG", "TF_CLI_ARGS_plan", "TF_TOKEN_app_example_io")
    for name in terraform:
        monkeypatch.setenv(name, "x")  # Terraform's, sharing TensorFlow's prefix: left out
    found = capture.env_vars()
    assert found["OMP_NUM_THREADS"] == "4"
    assert found["TORCH_HOME"] == "/cache"
    assert found["XLA_FLAGS"] == "--xla_gpu_autotune_level=0"
    assert found["PYTHONHASHSEED"] == "0"
    assert found["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert not {"MY_OMP_NUM_THREADS", "PYTHONPATH", "PATH", "HOME"} & set(found)
    assert not set(terraform) & set(found)
    assert list(found) == sorted(found)


def test_packages_like_pip_freeze() -> None:
    pkgs = capture.packages()
    assert f"pytest=={importlib.metadata.version('pytest')}" in pkgs
    names = [p.split("==")[0] for p in pkgs]
    keys = [re.sub(r"[-_.]+", "-", n).lower() for n in names]
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[^=\s]+==\S+", p) for p in pkgs)


def test_capture_is_complete_json_and_never_hangs() -> None:
    start = time.perf_counter()
    env = capture.capture().to_json()
    elapsed = time.perf_counter() - start
    # a bound against a command that hangs until its timeout, not a benchmark: well under a
    # second on an idle machine, seconds on a loaded 2-core one
    assert elapsed < capture.TIMEOUT_S
    assert env["schema"] == "repro.environment/1"
    assert set(env) == {
        "schema",
        "captured_at",
        "system",
        "cpu",
        "memory",
        "gpu",
        "container",
        "env_vars",
        "packages",
        "lscpu_text",
        "framework",  # these three the report adds in the kernel
        "settings",
        "run",
    }
    assert env["captured_at"].endswith("+00:00")
    assert json.loads(json.dumps(env)) == env
    assert isinstance(env["gpu"]["present"], bool)
    assert env["gpu"]["present"] or env["gpu"]["reason"]


def _env(**overrides: object) -> dict:
    env = {
        "captured_at": "2025-01-01T00:00:00+00:00",
        "cpu": {
            "model": "Fake Xeon 9000",
            "logical_cores": 9,
            "physical_cores": 4,
            "affinity": [0, 1, 2, 3, 8],
            "governor": None,
            "governor_reason": "cannot read scaling_governor",
        },
        "memory": {"total_bytes": 2 * 2**30, "available_bytes": 2**30},
        "system": {"os_pretty_name": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0"},
        "gpu": {"present": False, "reason": "nvidia-smi not found"},
        "container": {"inside": True, "hints": ["/.dockerenv"], "image": "repro:1"},
        "lscpu_text": "Architecture:  x86_64\nModel name:    Fake Xeon 9000",
    }
    return env | overrides


def test_hardware_markdown_without_gpu() -> None:
    md = capture.hardware_markdown(_env())
    for heading in ("## CPU", "## Memory", "## OS", "## GPU", "## Container"):
        assert heading in md
    assert "- Model: Fake Xeon 9000" in md
    assert "- Affinity: 0-3,8" in md
    assert "unavailable (cannot read scaling_governor)" in md
    assert "```text\nArchitecture:  x86_64\nModel name:    Fake Xeon 9000\n```" in md
    assert "- Total: 2.0 GiB" in md
    assert "Debian GNU/Linux 12 (bookworm)" in md
    assert "No NVIDIA GPU: nvidia-smi not found" in md
    assert "- Image: repro:1" in md


def test_hardware_markdown_gpu_table_from_fake_nvidia_smi(bin_dir: Path) -> None:
    _fake_smi(bin_dir)
    md = capture.hardware_markdown(_env(gpu=capture.gpus()))
    lines = md.splitlines()
    header = "| " + " | ".join(capture.GPU_QUERY_FIELDS) + " |"
    i = lines.index(header)
    assert lines[i + 1] == "|" + " --- |" * len(capture.GPU_QUERY_FIELDS)
    assert lines[i + 2].startswith("| NVIDIA H100 80GB HBM3 | GPU-1111")
    assert "| [N/A] |" in lines[i + 3]
    assert "No NVIDIA GPU" not in md


def test_hardware_markdown_of_a_real_capture() -> None:
    env = capture.capture().to_json()
    md = capture.hardware_markdown(env)
    assert md.startswith("# Hardware and environment")
    assert env["lscpu_text"] in md
    assert f"{platform.python_version()}" in md
