"""Parameter validation and bad input: one clear line, exit 2, nothing created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, repro, run_folders

from repro import records
from repro.driver import kernels, plan, templates
from repro.errors import UserError
from repro.kernel import models
from repro.lockfile import target_python
from repro.paths import KERNELSPECS, LESSONS


def test_defaults_come_from_the_workload_spec():
    p = plan.resolve("resnet-50", "jax")
    assert p.params["batch_size"] == plan.workloads()["resnet-50"]["batch_size"]
    assert p.params["precision"] == "fp32" and p.params["mode"] == "inference"
    assert p.kernel == "jax-cpu"
    assert p.template.name == "image-classification.ipynb"


def test_every_key_of_a_workload_spec_is_one_repro_reads():
    # reference_params: read by tests/test_models.py; a key nothing reads misleads (optimizer:
    # and lr_schedule: were such keys: training is always AdamW with the shared schedule)
    for name, spec in plan.workloads().items():
        assert set(spec) <= {*plan.SPEC_KEYS, "reference_params"}, name


def test_parameters_are_typed_and_threads_resolved_to_a_number():
    p = plan.resolve("resnet-tiny", "torch", plan.parse_assignments(["batch_size=3", "seed=7"]))
    assert p.params["batch_size"] == 3 and p.params["seed"] == 7
    assert p.params["threads"] == len(os.sched_getaffinity(0))


def test_attention_is_a_run_parameter_built_into_attention_families_and_compared(tmp_path):
    p = plan.resolve("gpt-mini", "torch", {"attention": "explicit"})
    assert plan.resolve("gpt-mini", "torch").params["attention"] == "fused"  # the default
    assert p.notebook_parameters({})["attention"] == "explicit"  # what papermill injects
    assert models.build_options("gpt", "explicit") == {"attention": "explicit"}
    assert models.build_options("resnet", "explicit") == {}  # no attention: nothing to choose
    with pytest.raises(ValueError, match="choose one of fused, explicit"):
        models.build_options("vit", "flash")

    real = json.loads((FIXTURES / "records" / "metrics.json").read_text())  # resnet-tiny, bs 2
    environment = json.loads((FIXTURES / "records" / "environment.json").read_text())

    def run(attention, suffix):  # what compare reads of a run folder: a real one, changed
        metrics = {
            **real,
            "workload": "gpt-mini",
            "params": {**real["params"], "attention": attention},
            "model": {"config": {}, "attention": {"kind": attention, "kernel": "?"}},
        }
        folder = tmp_path / f"20261122T000000Z_gpt-mini_torch_{suffix}"
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "environment.json").write_text(json.dumps(environment))
        return records.load(folder)

    # the same function computed two ways, like eager vs compile: compared, not a mixed context
    fused, explicit = run("fused", "aaaaaa"), run("explicit", "bbbbbb")
    assert records.context_differences([fused, explicit]) == {}
    assert fused.label == "torch eager gpt-mini bs2 #aaaaaa"
    assert explicit.label == "torch eager gpt-mini bs2 explicit-attn #bbbbbb"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workload": "resnet-5000"}, "unknown workload 'resnet-5000' (did you mean resnet-50?)"),
        ({"workload": "resnet50"}, "unknown workload 'resnet50' (did you mean resnet-50?)"),
        ({"workload": "ViT_Tiny"}, "(did you mean vit-tiny?)"),
        ({"workload": "nope"}, "unknown workload 'nope'; choose one of: "),
        ({"workload": "nope"}, "resnet-50, resnet-tiny"),
        ({"framework": "caffe"}, "choose one of: torch, tensorflow, jax, mxnet"),
        ({"framework": "pytorch"}, "unknown framework 'pytorch' (did you mean torch?)"),
        ({"framework": "tf"}, "unknown framework 'tf' (did you mean tensorflow?)"),
        ({"framework": "JAX"}, "unknown framework 'JAX' (did you mean jax?)"),
        ({"params": {"batch": "4"}}, "unknown parameter 'batch' (did you mean batch_size?)"),
        ({"params": {"stepz": "4"}}, "unknown parameter 'stepz' (did you mean steps?)"),
        ({"params": {"xyzzy": "4"}}, "unknown parameter 'xyzzy'; choose one of: batch_size"),
        ({"params": {"batch_size": "four"}}, "batch_size must be an integer, got 'four'"),
        ({"params": {"batch_size": "0"}}, "batch_size must be >= 1, got 0"),
        ({"params": {"precision": "fp8"}}, "choose one of: fp32, tf32"),
        ({"params": {"attention": "flash"}}, "choose one of: fused, explicit"),
        ({"params": {"device": "tpu"}}, "choose one of: auto, cpu, gpu"),
        (
            {"kernel": "torch-rocm"},
            "unknown kernel 'torch-rocm' for torch; choose one of: torch-cpu",
        ),
    ],
)
def test_bad_input_names_the_valid_choices(kwargs, message):
    args = {"workload": "resnet-tiny", "framework": "torch", **kwargs}
    with pytest.raises(UserError) as error:
        plan.resolve(args.pop("workload"), args.pop("framework"), args.pop("params", None), **args)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("workload", "params", "message"),
    [
        ("vit-tiny", {}, "mxnet runs the resnet family only in repro: MXNet 1.9.1 is the last"),
        ("gpt-mini", {"mode": "generate"}, "mxnet runs the resnet family only in repro: "),
        ("resnet-tiny", {"device": "gpu"}, "mxnet runs on the CPU only in repro"),
        ("resnet-tiny", {"precision": "bf16"}, "mxnet runs fp32 only in repro, not precision=bf16"),
        ("resnet-tiny", {"precision": "tf32"}, "mxnet runs fp32 only in repro, not precision=tf32"),
        ("resnet-tiny", {"devices": "2", "mode": "training"}, "mxnet runs on one device only"),
        (
            "resnet-tiny",
            {"runtime": "onnxruntime"},
            "not mxnet (mxnet.onnx.export_model would export it; not built in repro yet)",
        ),
        ("resnet-tiny", {"compile": "jit"}, "choose one of: auto, hybridize, imperative"),
    ],
)
def test_mxnet_is_refused_what_repro_does_not_run_in_it_in_one_line(workload, params, message):
    with pytest.raises(UserError) as error:
        plan.resolve(workload, "mxnet", params)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_mxnet_runs_resnet_in_its_cpu_kernel_hybridized_by_default(nvidia_smi):
    nvidia_smi(LISTS_A_GPU)  # a GPU is no reason to look for an mxnet-cuda kernel
    chosen = plan.resolve("resnet-tiny", "mxnet", {"mode": "training"})
    assert (chosen.kernel, chosen.kernel_reason) == (
        "mxnet-cpu",
        "auto: mxnet runs on the CPU only",
    )
    assert chosen.params["compile"] == "hybridize"
    inference = plan.resolve("resnet-tiny", "mxnet")
    assert inference.params["repeats"] == plan.REPEATS["inference"]  # a CPU run's, not a GPU's


@pytest.mark.parametrize(
    "args",
    [
        ["run", "nope"],
        ["run", "resnet-tiny", "-f", "caffe"],
        ["run", "resnet-tiny", "-p", "steps=many"],
        ["run", "resnet-tiny", "-p", "stepz=3"],
        ["run", "resnet-tiny", "-p", "steps"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_creates_nothing(args, runs_dir):
    done = repro(*args, "--runs-dir", str(runs_dir))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repro: "), done.stderr
    assert run_folders(runs_dir) == [] and not runs_dir.exists()


@pytest.mark.parametrize("template", ["benchmark", *sorted(set(plan.TASK_TEMPLATES.values()))])
def test_template_parameters_cell_matches_the_schema(template, tmp_path):
    import papermill

    path = tmp_path / "template.ipynb"  # what a run executes: a task's assembled template
    path.write_text(
        templates.BODY.read_text()
        if template == "benchmark"
        else templates.assembled(template).text
    )
    declared = set(papermill.inspect_notebook(str(path)))
    injected = set(plan.resolve("resnet-tiny", "torch").notebook_parameters({}))
    assert declared == injected


@pytest.fixture
def nvidia_smi(tmp_path, monkeypatch):
    """Put a fake `nvidia-smi` first on PATH; call it with the shell line it runs."""
    if Path("/proc/driver/nvidia/gpus").is_dir():
        pytest.skip("this machine has an NVIDIA driver")

    def install(script: str) -> None:
        smi = tmp_path / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\n{script}\n")
        smi.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    return install


LISTS_A_GPU = "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)'"


@pytest.mark.parametrize(
    ("script", "params", "kernel", "reason"),
    [
        (LISTS_A_GPU, {}, "jax-cuda", "auto: nvidia-smi lists an NVIDIA GPU"),
        (LISTS_A_GPU, {"device": "cpu"}, "jax-cpu", "auto: device=cpu"),
        ("echo 'NVIDIA-SMI has failed: no driver'; exit 9", {}, "jax-cpu", "auto: no NVIDIA GPU"),
        ("exit 0", {}, "jax-cpu", "auto: no NVIDIA GPU seen (no nvidia-smi, or it lists none)"),
    ],
)
def test_auto_kernel_follows_what_nvidia_smi_sees(nvidia_smi, script, params, kernel, reason):
    nvidia_smi(script)
    chosen = plan.resolve("resnet-tiny", "jax", params)  # auto is the default
    assert (chosen.kernel, chosen.kernel_reason[: len(reason)]) == (kernel, reason)


def test_a_named_kernel_wins_over_auto_and_unknown_ones_keep_their_error(nvidia_smi):
    nvidia_smi(LISTS_A_GPU)
    chosen = plan.resolve("resnet-tiny", "torch", kernel="torch-cpu")
    assert (chosen.kernel, chosen.kernel_reason) == ("torch-cpu", "named with --kernel")
    with pytest.raises(UserError, match="unknown kernel 'torch-rocm' for torch; choose one of: "):
        plan.resolve("resnet-tiny", "torch", kernel="torch-rocm")


def test_repro_kernels_builds_cuda_kernels_only_where_a_gpu_is():
    chosen, skipped = kernels.defaults(gpu=False)
    assert {"analysis", "torch-cpu", "jax-cpu", "tensorflow-cpu"} <= set(chosen)
    assert not [name for name in chosen if name.endswith("-cuda")]
    assert "torch-cuda: no NVIDIA GPU here" in "\n".join(skipped)
    chosen, skipped = kernels.defaults(gpu=True)  # then those locked for this Python
    for name in kernels.available():
        target = target_python((KERNELSPECS / name / "requirements.lock").read_text())
        assert (name in chosen) is (target == kernels.running_python())


@pytest.mark.skipif(kernels.running_python() == "3.12", reason="would build the kernel")
def test_a_kernel_locked_for_another_python_is_refused_in_one_line(tmp_path):
    done = repro("kernels", "torch-cuda")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "kernel torch-cuda's lock was made for Python 3.12, but repro runs on Python" in (
        done.stderr
    )


@pytest.mark.kernel  # starts a kernel build: a venv, then uv asks PyPI for torch
def test_a_missing_cpu_torch_wheel_says_where_it_comes_from_in_one_line(tmp_path):
    # No wheel folder: uv finds no torch==2.13.0+cpu on the index and fails before installing
    env = {**os.environ, "PIP_FIND_LINKS": "", "REPRO_KERNELS_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "repro", "kernels", "torch-cpu"],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if not k.startswith("UV_")},
        timeout=600,
    )
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("repro: kernel torch-cpu pins torch==2.13.0+cpu, a build that PyPI")
    assert "https://download.pytorch.org/whl/cpu" in error and "PIP_FIND_LINKS" in error
    assert "made for Python 3.11" in error and "unsatisfiable" not in done.stderr
    assert "unsatisfiable" in (tmp_path / "torch-cpu.build.log").read_text()  # uv's own words


def test_the_reports_equivalence_claim_states_the_tolerance_the_test_uses():
    claim = plan.equivalence(plan.workloads()["resnet-tiny"])["claim"]
    tolerance = f"{models.EQUIVALENCE_ATOL:g} + {models.EQUIVALENCE_RTOL:g} * max|output|"
    assert tolerance in claim


def test_repeats_default_to_four_processes_for_inference_on_a_cpu_and_one_for_training():
    for mode, processes in (("inference", 4), ("training", 1)):
        p = plan.resolve("resnet-tiny", "torch", {"mode": mode, "device": "cpu"})
        assert p.params["repeats"] == processes


def test_a_parameter_of_another_mode_or_scenario_is_null_and_refused_only_off_its_default():
    """One rule (plan.ONLY_IN): where a parameter does not apply it is recorded as null; a value
    away from its default is refused, its default (as a rerun of an older report gives it) is
    not."""
    given = {"min_duration_ms": "1000", "new_tokens": "128", "max_steps": "1000"}
    params = plan.resolve("gpt-mini", "torch", given).params
    elsewhere = [n for n, (key, where) in plan.ONLY_IN.items() if params[key] not in where]
    assert elsewhere and all(params[name] is None for name in elsewhere)
    assert params["runtime"] == "native"  # inference: it applies
    with pytest.raises(UserError, match="max_steps applies to mode=train-to-accuracy only"):
        plan.resolve("gpt-mini", "torch", {"max_steps": "5"})
    served = plan.resolve("gpt-mini", "torch", {"scenario": "offline"}).params
    assert served["target_qps"] == 0.0 and served["min_query_count"] is None


def test_run_sh_of_a_template_of_ones_own_passes_it_back_as_one_argument(tmp_path):
    """A template's path reaches run.sh quoted: one with a newline stays one argument, in a
    comment it stays on its line, and the script runs nothing but repro."""
    from repro.driver.finalize import run_script

    template = tmp_path / "mine\ntouch injected.ipynb"
    template.write_bytes(templates.BODY.read_bytes())
    made = plan.resolve("resnet-tiny", "torch", template=str(template), kernel="torch-cpu")
    script = run_script(made, {"run_id": "r1", "git": {"commit": "abc", "dirty": False}})
    stub = tmp_path / "repro-stub"  # stands in for repro: prints the arguments it was given
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    env = {**os.environ, "REPRO": str(stub)}
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    args = json.loads(done.stdout)
    assert args[:2] == ["run", "resnet-tiny"] and args[args.index("--template") + 1] == str(
        template
    )
    assert not (tmp_path / "injected.ipynb").exists()


def test_run_sh_runs_as_written_from_its_run_folder(tmp_path):
    """`cd runs/X && ./run.sh` finds the .venv of the checkout the folder is in, at any depth;
    outside one, with no repro on PATH, it says in one line how to run it."""
    from repro.driver.finalize import run_script

    made = plan.resolve("resnet-tiny", "torch", kernel="torch-cpu")
    script = run_script(made, {"run_id": "r1", "git": {"commit": "abc", "dirty": False}})
    venv = tmp_path / "checkout" / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "repro").write_text(
        f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n"
    )
    (venv / "repro").chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no repro on PATH, no REPRO
    for folder in (
        tmp_path / "checkout" / "runs" / "r1",
        tmp_path / "checkout" / "runs" / "lessons" / "r2",
        tmp_path / "elsewhere" / "r3",
    ):
        folder.mkdir(parents=True)
        (folder / "run.sh").write_text(script)
        (folder / "run.sh").chmod(0o755)
    for depth in ("runs/r1", "runs/lessons/r2"):
        done = subprocess.run(
            ["./run.sh"], cwd=tmp_path / "checkout" / depth, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[:4] == ["run", "resnet-tiny", "--framework", "torch"]
    done = subprocess.run(
        ["./run.sh"], cwd=tmp_path / "elsewhere" / "r3", env=env, capture_output=True, text=True
    )
    assert done.returncode == 127 and done.stdout == ""
    assert done.stderr == (
        "run.sh: repro not found; run this from a checkout of commit abc after `make venv` (a run "
        "folder inside it finds its .venv), or set REPRO=path/to/repro\n"
    )


def test_openmp_threads_wait_passively_unless_a_run_says_otherwise(monkeypatch):
    """The default, how a rerun of a report older than it runs, and where each run records it."""
    from repro.driver import accuracy
    from repro.driver.execute import declared
    from repro.kernel import capture, frameworks, repeat

    assert plan.resolve("resnet-tiny", "torch").params["omp_wait_policy"] == "passive"
    older = {**plan.FORMERLY, "threads": "2"}  # what a rerun adds to an older report's params
    assert plan.resolve("resnet-tiny", "torch", older).params["omp_wait_policy"] == "unset"
    with pytest.raises(UserError, match="choose one of: passive, active, unset"):
        plan.resolve("resnet-tiny", "torch", {"omp_wait_policy": "spin"})

    # every notebook a run executes takes it, and hands it on to the run's other processes
    notebooks = [templates.assembled(n).notebook() for n in set(plan.TASK_TEMPLATES.values())]
    others = [accuracy.TEMPLATE, *LESSONS.glob("*.ipynb")]
    notebooks += [templates.from_file(p).notebook() for p in others]
    assert all("omp_wait_policy" in declared(nb) for nb in notebooks)
    assert "omp_wait_policy" in repeat.PARAMS

    for var in (*frameworks.THREAD_ENV, "OMP_WAIT_POLICY"):  # restored after the test
        monkeypatch.setenv(var, "")
    threads = len(os.sched_getaffinity(0))  # all of them: the affinity stays as it is
    monkeypatch.delenv("OMP_WAIT_POLICY")
    frameworks.prepare_process(threads, False)  # before the framework's import, as load() does
    assert capture.env_vars()["OMP_WAIT_POLICY"] == "PASSIVE"  # environment.json records it
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # unset: the environment's, kept
    frameworks.prepare_process(threads, False, "unset")
    assert capture.env_vars()["OMP_WAIT_POLICY"] == "ACTIVE"
