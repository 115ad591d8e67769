"""Bad input, in every command and through make: one line on stderr naming the fix, exit 2, no
traceback, nothing created, and no value ever runs as a command. No row starts a kernel: every
check comes before one."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from conftest import FIXTURES, ROOT, repro

from repro.driver import plan
from repro.errors import UserError

EVIL = "repro-test-evil-member"  # a bundle member that would land beside the extraction folder
# `repro` with repro/workloads/ swapped for a test folder (argv: folder, then the command)
WITH_WORKLOADS = (
    "import sys; from pathlib import Path; from repro.driver import cli, plan; "
    "plan.WORKLOADS = Path(sys.argv[1]); sys.exit(cli.main(sys.argv[2:]))"
)
NO_GPU = pytest.mark.skipif(plan.has_nvidia_gpu(), reason="this machine has an NVIDIA GPU")


def tar_gz(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("run/escape")
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tar.addfile(info)
    return path


def run_folder(path: Path, metrics: dict) -> Path:
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "environment.json").write_text("{}")
    return path


def workloads(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of bad inputs, each named for what is wrong with it."""
    d = tmp_path_factory.mktemp("bad")
    report = (ROOT / "templates" / "benchmark.ipynb").read_text()
    (d / "empty.ipynb").write_text("")
    (d / "notjson.ipynb").write_text("not json at all")
    (d / "truncated.ipynb").write_text(report[: len(report) // 2])
    (d / "list.ipynb").write_text("[1, 2]")
    nbformat.write(nbformat.v4.new_notebook(), d / "no-cells.ipynb")
    (d / "notes.txt").write_text("not a notebook")
    (d / "garbage.tar.gz").write_bytes(b"\x1f\x8b garbage, not gzip")
    whole = tar_gz(d / "whole.tar.gz", {"run/report.ipynb": os.urandom(100_000)})
    (d / "truncated.tar.gz").write_bytes(whole.read_bytes()[:20_000])
    tar_gz(d / "evil.tar.gz", {"run/report.ipynb": b"{}", f"../{EVIL}": b"pwned"})
    tar_gz(d / "link.tar.gz", {"run/report.ipynb": b"{}"}, symlink="/etc/passwd")
    python = d / "fake-python"  # runs, exits 0, but is no Python
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    (d / "fake-run").mkdir()
    (d / "fake-run" / "MANIFEST.sha256").write_text("")
    (d / "empty-folder").mkdir()
    run_folder(d / "not-a-run", {})
    run_folder(d / "not-a-run-2", {})
    run_folder(d / "no-params", {"schema": "repro.metrics/1", "status": "ok"})
    for name, batch in (("mixed-a", 2), ("mixed-b", 4)):  # finished runs of another batch size
        metrics = json.loads((FIXTURES / "records" / "metrics.json").read_text())
        metrics["params"]["batch_size"], metrics["run_id"] = batch, name
        run_folder(d / name, metrics)
        shutil.copy(FIXTURES / "records" / "environment.json", d / name)
    tiny = (plan.WORKLOADS / "resnet-tiny.yaml").read_text()
    workloads(d / "wl-unknown-key", {"a.yaml": tiny.replace("config: {", "config: {colour: 1, ")})
    workloads(d / "wl-syntax", {"a.yaml": "name: [unclosed\n"})
    workloads(d / "wl-twice", {"a.yaml": tiny, "b.yaml": tiny})
    workloads(d / "wl-bad-batch", {"a.yaml": re.sub(r"batch_size: \d+", "batch_size: two", tiny)})
    workloads(d / "wl-not-a-mapping", {"a.yaml": "- just\n- a list\n"})
    (d / "model-syntax.py").write_text("def build(:\n")  # model sources (repro.driver.sources)
    (d / "model.py").write_text("def build():\n    raise NotImplementedError\n")
    (d / "model spaced.py").write_text("def build():\n    pass\n")
    source = "name: mine\ntask: {task}\npreset: user\nmodel: {model}\nbatch_size: 1\n"
    source += "sequence_length: null\nprecision: fp32\nmode: inference\n"
    spec = source.format(task="auto", model=f"{{source: 'module:{d}/model.py:build'}}")
    (d / "mine.yaml").write_text(spec)
    spec = source.format(task="causal-lm", model="{source: 'hf:a/b', task: image-classification}")
    (d / "two-tasks.yaml").write_text(spec)
    (d / "no-task.yaml").write_text(source.format(task="auto", model="{arch: resnet}"))
    return d


RUN = ["repro", "run", "resnet-tiny", "--runs-dir", "{d}/runs"]
GPT = ["repro", "run", "gpt-mini", "--runs-dir", "{d}/runs"]
ROWS = [
    # run: names, values, bounds, duplicates, hardware, paths
    (["repro", "run", "nope"], "unknown workload 'nope'; choose one of:"),
    (["repro", "run", ""], "argument workload: must not be empty"),
    (["repro", "run", "resnet-tiny", "-f", ""], "argument -f/--framework: must not be empty"),
    (["repro", "run", "resnet-tiny", "-f", "caffe"], "unknown framework 'caffe'"),
    (  # did you mean: both names in one line
        ["repro", "run", "resnet50", "-f", "pytorch"],
        "unknown workload 'resnet50' (did you mean resnet-50?); unknown framework 'pytorch' "
        "(did you mean torch?)",
    ),
    ([*RUN, "-p", "iterations=5"], "unknown parameter 'iterations' (did you mean steps?)"),
    (
        [*RUN, "--params", "steps=5,warmup=2"],
        "parameters are separated by spaces, not commas: --params 'steps=5 warmup=2'",
    ),
    ([*RUN, "-p", "steps=many"], "steps must be an integer, got 'many'"),
    ([*RUN, "-p", "stepz=3"], "unknown parameter 'stepz'"),
    ([*RUN, "-p", "steps"], "parameters are name=value, got 'steps'"),
    ([*RUN, "-p", "lr=nan"], "lr must be a finite number, got nan"),
    ([*RUN, "-p", "price_per_hour=inf"], "price_per_hour must be a finite number, got inf"),
    ([*RUN, "-p", "price_per_hour=1e999"], "price_per_hour must be a finite number"),
    ([*RUN, "-p", "batch_size=100000"], "batch_size must be <= 65536, got 100000"),
    ([*RUN, "-p", "steps=10000000"], "steps must be <= 100000"),
    ([*RUN, "-p", "warmup=-1"], "warmup must be >= 0, got -1"),
    ([*RUN, "-p", "seed=4294967296"], "seed must be <= 4294967295"),
    ([*RUN, "-p", "lr=100"], "lr must be <= 10"),
    ([*RUN, "-p", "steps=3", "-p", "steps=4"], "steps is given twice (steps=3 and steps=4)"),
    ([*RUN, "--params", "steps=3 warmup=2 steps=4"], "steps is given twice"),
    ([*RUN, "-p", "sequence_length=8"], "sequence_length applies to sequence workloads only"),
    (
        ["repro", "run", "bert-mini", "-p", "sequence_length=1000", "--runs-dir", "{d}/runs"],
        "sequence_length (1000) exceeds max_position (128)",
    ),
    ([*RUN, "-p", "precision=fp16", "-p", "mode=training"], "fp16 is for inference only"),
    # mode=generate: causal LMs only, its parameters in that mode only, within the context
    ([*RUN, "-p", "mode=generate"], "mode=generate is for causal language models (gpt-mini, "),
    ([*GPT, "-p", "mode=generate"], "128 + 128 exceed gpt-mini's context of 64 positions"),
    ([*GPT, "-p", "new_tokens=8"], "new_tokens applies to mode=generate only, not mode=inference"),
    ([*GPT, "-p", "mode=generate", "-p", "new_tokens=1"], "new_tokens must be >= 2, got 1"),
    (
        [*GPT, "-p", "mode=generate", "-p", "prompt_length=8", "-p", "sequence_length=16"],
        "with mode=generate the input is the prompt: give prompt_length, not sequence_length",
    ),
    (
        [*GPT, "-p", "mode=generate", "-p", "prompt_length=8", "-p", "devices=2"],
        "devices=2 is for training (mode=training); generate uses one",
    ),
    ([*RUN, "-p", "devices=2", "-p", "mode=inference"], "devices=2 is for training"),
    ([*RUN, "-p", "devices=0"], "devices must be >= 1, got 0"),
    ([*RUN, "-p", "devices=65"], "devices must be <= 64"),
    (
        [*RUN, "-f", "tensorflow", "-p", "devices=2", "-p", "mode=training", "-p", "compile=xla"],
        "devices=2 with tensorflow runs compile=function, not 'xla'",
    ),
    (
        [*RUN, "-p", "devices=2", "-p", "mode=training", "-p", "repeats=3"],
        "devices=2 is measured by one process; use repeats=1",
    ),
    (
        [
            *RUN,
            "-p",
            "devices=2",
            "-p",
            "mode=training",
            "-p",
            "scaling=strong",
            "-p",
            "batch_size=3",
        ],
        "scaling=strong splits batch_size=3 evenly over devices=2, and it does not divide; give a "
        "batch_size divisible by 2",
    ),
    ([*RUN, "-p", "scaling=both"], "scaling='both' is not valid; choose one of: weak, strong"),
    pytest.param([*RUN, "-p", "device=gpu"], "this machine has no NVIDIA GPU", marks=NO_GPU),
    ([*RUN, "--kernel", "torch-rocm"], "unknown kernel 'torch-rocm' for torch"),
    ([*RUN, "--template", "{d}/notes.txt"], "cannot read template {d}/notes.txt as a notebook"),
    ([*RUN, "--template", "{d}/missing.ipynb"], "template not found"),
    (["repro", "verify", "--", "x" * 5000], "a name or path given is too long: 'xxx"),
    (["repro", "rerun", "--", "x" * 300], "a name or path given is too long: 'xxx"),
    ([*RUN, "--template", "{d}/no-cells.ipynb"], "template {d}/no-cells.ipynb has no code to run"),
    ([*RUN, "--runs-dir", "{d}/notes.txt"], "{d}/notes.txt is a file; choose another"),
    ([*RUN, "--runs-dir", "{d}/notes.txt/runs"], "{d}/notes.txt is a file"),
    ([*RUN, "--unpinned", "--python", "/etc/passwd"], "/etc/passwd is not a Python interpreter"),
    ([*RUN, "--unpinned", "--python", "{d}/fake-python"], "cannot run a notebook kernel"),
    ([*RUN, "--unpinned", "--python", "{d}/nothing"], "python interpreter not found"),
    ([*RUN, "--python", sys.executable], "--python applies to --unpinned runs only"),
    ([*RUN, "--bogus"], "unrecognized arguments: --bogus"),
    (["repro"], "the following arguments are required: command"),
    (["repro", "fly"], "invalid choice: 'fly'"),
    # verify: reports and bundles that cannot be read
    (["repro", "verify", "{d}/missing"], "{d}/missing does not exist"),
    (["repro", "verify", ""], "argument report: must not be empty"),
    (["repro", "verify", "{d}/notes.txt"], "cannot verify {d}/notes.txt"),
    (["repro", "verify", "{d}/empty-folder"], "{d}/empty-folder is not a run folder"),
    (["repro", "verify", "{d}/empty.ipynb"], "cannot read report {d}/empty.ipynb as a notebook"),
    (["repro", "verify", "{d}/notjson.ipynb"], "does not appear to be JSON"),
    (["repro", "verify", "{d}/truncated.ipynb"], "cannot read report {d}/truncated.ipynb"),
    (["repro", "verify", "{d}/list.ipynb"], "cannot read report {d}/list.ipynb"),
    (["repro", "verify", "{d}/garbage.tar.gz"], "cannot read {d}/garbage.tar.gz as a bundle"),
    (["repro", "verify", "{d}/truncated.tar.gz"], "cannot read {d}/truncated.tar.gz as a bundle"),
    (["repro", "verify", "{d}/evil.tar.gz"], "is outside the destination"),
    (["repro", "verify", "{d}/link.tar.gz"], "cannot read {d}/link.tar.gz as a bundle"),
    # bundle, compare, rerun, kernels, lock
    (["repro", "bundle", "{d}/notes.txt"], "is not a finalised run folder"),
    (["repro", "bundle", "{d}/fake-run", "-o", "{d}/no/such.tar.gz"], "{d}/no is not a folder"),
    (
        ["repro", "compare", "{d}/not-a-run", "{d}/not-a-run-2"],
        "got 0; skipping 2: {d}/not-a-run: a metrics.json that is not",
    ),
    (
        ["repro", "compare", "{d}/no-params", "{d}/no-params"],
        "no-params/metrics.json has no 'run_id'",
    ),
    (["repro", "compare", "{d}/notes.txt", "{d}/not-a-run"], "notes.txt: a file, not a run"),
    (["repro", "compare", "{d}/empty-folder"], "holds no finished run folders"),
    (["repro", "compare", "{d}/mixed-a", "{d}/mixed-b"], "compare them anyway with --allow-mixed"),
    (["repro", "rerun", "{d}/missing.ipynb"], "cannot rerun"),
    (["repro", "rerun", "{d}/notjson.ipynb"], "cannot read"),
    (["repro", "rerun", "{d}/garbage.tar.gz"], "cannot read {d}/garbage.tar.gz as a bundle"),
    (["repro", "rerun", "{d}/notjson.ipynb", "--tolerance", "lots"], "takes a percentage"),
    (["repro", "kernels", "nope"], "unknown kernel 'nope'"),
    (["repro", "lock", "nope"], "no requirements.in for kernel 'nope'"),
    # a broken workload file is named, in `list` and in `run`
    (["workloads", "{d}/wl-unknown-key", "list"], "wl-unknown-key/a.yaml: model: unknown"),
    (["workloads", "{d}/wl-unknown-key", "run", "resnet-tiny"], "wl-unknown-key/a.yaml"),
    (
        ["workloads", "{d}/wl-syntax", "list"],
        "cannot read workload file {d}/wl-syntax/a.yaml: line 2:",
    ),
    (["workloads", "{d}/wl-twice", "list"], "workload 'resnet-tiny' is defined twice"),
    (["workloads", "{d}/wl-bad-batch", "list"], "wl-bad-batch/a.yaml: batch_size must be a"),
    (["workloads", "{d}/wl-not-a-mapping", "list"], "wl-not-a-mapping/a.yaml must be a mapping"),
    # make: every value is data (nothing runs), empty means an error, make fails with repro
    (["make", "run", "FRAMEWORK=torch;touch {d}/pwned"], "unknown framework 'torch;touch"),
    (["make", "run", "PARAMS=steps=x;id>{d}/pwned;"], "steps must be an integer, got 'x;id>"),
    (["make", "run", "WORKLOAD=$(shell touch {d}/pwned)"], "unknown workload '$(shell touch"),
    (["make", "run", "PARAMS=steps=`touch {d}/pwned`"], "parameters are name=value"),
    (["make", "run", "PARAMS=steps=$$(touch {d}/pwned)"], "parameters are name=value"),
    (["make", "run", "KERNEL=x; touch {d}/pwned"], "unknown kernel 'x; touch"),
    (["make", "run", "WORKLOAD="], "WORKLOAD: must not be empty (see `make help`)"),
    (["make", "run", "FRAMEWORK="], "FRAMEWORK: must not be empty"),
    (
        ["make", "run", "WORKLOAD=resnet50", "FRAMEWORK=tf"],
        "unknown workload 'resnet50' (did you mean resnet-50?); unknown framework 'tf' (did you "
        "mean tensorflow?)",
    ),
    (
        ["make", "run", "PARAMS=steps=5,warmup=2"],
        "parameters are separated by spaces, not commas: PARAMS='steps=5 warmup=2'",
    ),
    (["make", "run", "PARAMS=lr=nan"], "lr must be a finite number"),
    (["make", "run", "PARAMS=steps=3 steps=4"], "steps is given twice"),
    (["make", "run", "RUNS_DIR={d}/notes.txt"], "{d}/notes.txt is a file; choose another"),
    (["make", "verify"], "REPORT: must not be empty"),
    (["make", "verify", "REPORT={d}/missing;touch {d}/pwned"], "does not exist"),
    (["make", "compare", "RUNS={d}/x;touch {d}/pwned"], "{d}/x;touch does not exist"),
    (["make", "compare", "RUNS={d}/not-a-run*"], "not-a-run-2: a metrics.json that is not"),
    (["make", "compare"], "the following arguments are required: RUNS (see `make help`)"),
    (["make", "compare", "RUNS={d}/mixed-a {d}/mixed-b"], "compare them anyway with ALLOW_MIXED=1"),
    (["make", "sweep", "SWEEP={d}/x.yaml", "RETRIES=-1"], "RETRIES must be >= 0, got -1"),
    (["make", "bundle", "RUN=$(touch {d}/pwned)"], "is not a finalised run folder"),
    (["make", "rerun", "REPORT={d}/x", "TOLERANCE=5%;touch {d}/pwned"], "TOLERANCE takes a"),
    (["make", "history", "RUNS={d}/x;touch {d}/pwned"], "{d}/x;touch does not exist"),
    (["make", "history", "RUNS={d}", "BY=size;touch {d}/pwned"], "BY takes one of time,"),
    (["make", "history", "RUNS={d}", "THRESHOLD=5%;touch {d}/pwned"], "THRESHOLD takes a"),
    (["make", "history", "RUNS={d}", "BY=$(shell touch {d}/pwned)"], "BY takes one of time,"),
    # a user's model (repro.driver.sources): every row stops before a kernel starts
    (["repro", "run", "--model", "timm:x"], "--model: source must be hf:<hub id or local"),
    (["repro", "run", "--model", "keras:x"], "--model: model: file: no saved Keras model at 'x'"),
    (["repro", "run", "--model", "module:{d}/model.py"], "source must be hf:<hub id or"),
    (["repro", "run", "--model", "module:{d}/nope.py:build"], "module: '{d}/nope.py' is not a"),
    (["repro", "run", "--model", "module:{d}/model-syntax.py:build"], "model-syntax.py does not"),
    (["repro", "run", "--model", "module:{d}/model.py:make"], "defines no function make (its"),
    (["repro", "run", "--model", "module:{d}/model spaced.py:build"], "not a plain file name"),
    (["repro", "run", "--model", "hf:{d}/empty-folder"], "empty-folder holds no config.json"),
    (["repro", "run", "--model", "hf:../a b"], "is neither a directory here nor a hub id"),
    (["repro", "run", "--model", "hf:a/b", "-f", "jax"], "models run in torch in repro, not jax"),
    (["repro", "run", "bert-mini", "--model", "hf:a/b"], "give a workload or --model, not both"),
    (["repro", "run", "--model", "hf:a/b", "-p", "runtime=onnxruntime"], "use runtime=native"),
    (["repro", "run", "--model", "hf:a/b", "-p", "mode=generate"], "mode=generate is for causal"),
    (["repro", "run", "{d}/mine.yaml", "-f", "tensorflow"], "module: models run in torch in"),
    (["repro", "run", "{d}/two-tasks.yaml"], "task is causal-lm, but model's is image-class"),
    (["repro", "run", "{d}/no-task.yaml"], "unknown task 'auto'; choose one of"),
    (["repro", "run", "{d}/missing.yaml"], "missing.yaml"),
    (["make", "run", "MODEL=hf:{d}/empty-folder"], "empty-folder holds no config.json"),
    (["make", "run", "MODEL="], "MODEL: must not be empty"),
    (["make", "run", "MODEL=hf:a/b", "WORKLOAD=bert-mini"], "give a workload or MODEL, not both"),
]


def make_env() -> dict[str, str]:
    """This environment without make's own variables or the Makefile's (an outer `make test`
    exports them), so each row sees only what it sets."""
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^(?:override )?USER_VARS := (.*?)\n(?!\t)", makefile, re.M | re.S)
    names = listed.group(1).replace("\\", " ").split() if listed else []
    return {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k not in names}


def invoke(argv: list[str], d: Path) -> subprocess.CompletedProcess:
    args = [a.replace("{d}", str(d)) for a in argv]
    if args[0] == "repro":
        return repro(*args[1:])
    if args[0] == "workloads":
        command = [sys.executable, "-c", WITH_WORKLOADS, *args[1:]]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if args[1] in ("run", "compare", "rerun") and not any(a.startswith("RUNS_DIR=") for a in args):
        args.append(f"RUNS_DIR={d}/runs")
    env = make_env()
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    ("argv", "message"), ROWS, ids=lambda v: " ".join(v) if isinstance(v, list) else "_"
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(argv, message, bad):
    runs_before = sorted((ROOT / "runs").glob("*"))
    done = invoke(argv, bad)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("repro: ")]
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert len(ours) == 1 and message.replace("{d}", str(bad)) in ours[0], done.stderr
    if argv[0] == "make":  # repro's line, then make's own line saying the recipe failed
        assert done.returncode != 0
        assert all(re.match(r"make(\[\d+\])?: \*\*\* ", line) for line in lines if line != ours[0])
    else:
        assert done.returncode == 2 and lines == ours, done.stderr
    assert not list(bad.glob("pwned*")), "a value ran as a shell command"
    assert not (Path(tempfile.gettempdir()) / EVIL).exists()
    assert not (bad / "runs").exists() and sorted((ROOT / "runs").glob("*")) == runs_before


BUG = (  # `repro list` with a planted bug: workloads() raises what no user input can cause
    "import sys; from repro.driver import cli, plan; "
    "plan.workloads = lambda: {{}}['{0}']; sys.exit(cli.main(['list']))"
)


def test_a_bug_keeps_its_traceback_and_says_it_is_one():
    done = subprocess.run(
        [sys.executable, "-c", BUG.format("planted")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 70
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "repro: internal error (a bug in repro, please report it with the traceback above): "
        "KeyError: 'planted'"
    )


def test_ctrl_c_outside_a_run_is_one_line_exit_130():
    interrupt = BUG.replace("{{}}['{0}']", "(_ for _ in ()).throw(KeyboardInterrupt)")
    done = subprocess.run([sys.executable, "-c", interrupt], cwd=ROOT, capture_output=True)
    assert done.returncode == 130 and done.stderr.decode().strip() == "repro: interrupted"


def test_a_runs_folder_that_cannot_be_created_is_a_user_error():
    """A folder that fails to be created after run.check_runs_dir passed (a read-only file
    system, a race) is still one line, not a traceback."""
    from repro.driver.folders import new_folder
    from repro.errors import UserError

    with pytest.raises(UserError, match="cannot create a run folder in /proc/repro-test"):
        new_folder(Path("/proc/repro-test"), "resnet-tiny_torch")


@pytest.mark.parametrize(
    ("script", "found"),
    [
        ("echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)'", True),
        ("echo 'NVIDIA-SMI has failed: no driver'; exit 9", False),
    ],
)
def test_device_gpu_needs_a_gpu_that_nvidia_smi_lists(script, found, tmp_path, monkeypatch):
    if Path("/proc/driver/nvidia/gpus").is_dir():
        pytest.skip("this machine has an NVIDIA driver")
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n{script}\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert plan.has_nvidia_gpu() is found
    if found:
        assert plan.resolve("resnet-tiny", "torch", {"device": "gpu"}).params["device"] == "gpu"
        with pytest.raises(UserError, match="devices=2, but nvidia-smi lists 1 GPU"):
            plan.resolve("gpt-mini", "torch", {"devices": "2", "mode": "training"})


@pytest.mark.parametrize(
    ("given", "form"),
    [
        (["STEPS=5"], '(STEPS): make run PARAMS="steps=5"'),
        (["PARAMS=warmup=2", "BATCH_SIZE=4", "lr=0.1"], 'PARAMS="warmup=2 batch_size=4 lr=0.1"'),
        (["STEPS=$(shell touch {d}/pwned)"], 'PARAMS="steps=$(shell touch {d}/pwned)"'),
    ],
)
def test_a_run_parameter_given_as_a_make_variable_stops_showing_the_params_form(given, form, bad):
    """`make run STEPS=5` would run with the default steps: make stops before anything (no
    venv, no kernel), exit 2, in one line; the value is shown, never run."""
    args = ["make", "run", *(a.replace("{d}", str(bad)) for a in given)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=make_env())
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert re.fullmatch(
        r"Makefile:\d+: \*\*\* run parameters go in PARAMS, not in make .*Stop\.", line
    )
    assert form.replace("{d}", str(bad)) in line
    assert not list(bad.glob("pwned*"))


def test_make_knows_every_run_parameter_and_its_help_stays_instant():
    """The Makefile's list comes from plan.py's source, asked only when the command line sets a
    variable the Makefile does not read."""
    listed = subprocess.run(
        ["python3", "repro/driver/makevars.py"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert listed == [f"{p}:{n}" for n in plan.PARAMS for p in (n.upper(), n)]
    started = time.monotonic()
    done = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, env=make_env())
    assert done.returncode == 0 and time.monotonic() - started < 1


def test_an_option_is_named_as_the_user_set_it(monkeypatch):
    from repro.errors import option

    monkeypatch.delenv("REPRO_MAKE_VARS", raising=False)
    cli = [option("--allow-mixed", True), option("--tolerance", "5%"), option("--trust")]
    assert cli == ["--allow-mixed", "--tolerance 5%", "--trust"]
    monkeypatch.setenv("REPRO_MAKE_VARS", "ALLOW_MIXED TOLERANCE TRUST REPORT")
    made = [option("--allow-mixed", True), option("--tolerance", "5%"), option("--trust")]
    assert made == ["ALLOW_MIXED=1", "TOLERANCE=5%", "TRUST"]
    assert option("report") == "REPORT" and option("--python", "x") == "--python x"
