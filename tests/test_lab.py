"""JupyterLab and run folders (repro.driver.lab): a report opened and saved through a real
Jupyter server still verifies and bundles, with no checkpoint in it; cells run again are named;
`repro lab` opens at once and one Ctrl-C stops it; Lab's kernels start through the launcher."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from conftest import ROOT, repro

from repro.driver import kernels, lab

TOKEN = "lab-test-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A client of a Jupyter server's REST API, as JupyterLab's front end calls it."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body=None):
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def save(self, path: str, change=None, javascript: bool = False) -> None:
        """What Lab does to a notebook it opens and saves: GET the model, PUT it back (through
        JavaScript's numbers: 1.0 becomes 1) and create a checkpoint."""
        notebook = self.call("GET", f"/api/contents/{path}?type=notebook&content=1")["content"]
        if javascript:
            notebook = json.loads(json.dumps(notebook), parse_float=js_number)
        if change:
            change(notebook)
        body = {"type": "notebook", "format": "json", "content": notebook}
        self.call("PUT", f"/api/contents/{path}", body)
        self.call("POST", f"/api/contents/{path}/checkpoints")


def js_number(text: str):
    value = float(text)
    return int(value) if value.is_integer() else value


@contextmanager
def jupyter(root: Path, checkpoints: Path):
    """JupyterLab's server on `root`, configured as `make lab` configures it."""
    port = free_port()
    args = lab.command(str(port), "127.0.0.1", TOKEN, "repro-analysis", root, checkpoints)
    log = root / "lab.log"
    with open(log, "w") as out:
        server = subprocess.Popen(args, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    client = Server(port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.call("GET", "/api/status")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield client
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.kernel
def test_a_report_saved_in_jupyterlab_verifies_and_bundles_without_checkpoints(
    small_runs, tmp_path
):
    root = tmp_path / "checkout"
    folder = shutil.copytree(small_runs["a"], root / "runs" / small_runs["a"].name)
    rerun = shutil.copytree(folder, root / "runs" / "run-again")
    report, checkpoints = folder / "report.ipynb", root / ".jupyter" / "checkpoints"
    before = report.read_bytes()
    with jupyter(root, checkpoints) as server:
        server.save(f"runs/{folder.name}/report.ipynb")
        assert report.read_bytes() == before  # repro writes it as Jupyter's server does
        server.save(f"runs/{folder.name}/report.ipynb", javascript=True)  # as the browser does
        assert report.read_bytes() != before

        def run_again(notebook):  # two cells run again: new outputs
            code = [c for c in notebook["cells"] if c["cell_type"] == "code" and c["outputs"]]
            for cell in code[-2:]:
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "new\n"}]

        server.save("runs/run-again/report.ipynb", run_again, javascript=True)
    assert not list(root.glob("runs/**/.ipynb_checkpoints"))
    assert (checkpoints / "runs" / folder.name / ".ipynb_checkpoints").is_dir()

    done = repro("verify", str(folder))
    assert done.returncode == 0 and "intact" in done.stdout, done.stdout
    changed = repro("verify", str(rerun))
    assert changed.returncode == 1
    assert "CHANGED: 2 cells changed since the run (edited, or run again): " in changed.stdout

    bundle = tmp_path / "run.tar.gz"
    assert repro("bundle", str(folder), "-o", str(bundle)).returncode == 0
    with tarfile.open(bundle) as tar:
        assert not [n for n in tar.getnames() if ".ipynb_checkpoints" in n]


def test_lab_opens_at_once_and_one_ctrl_c_stops_it():
    port = free_port()
    pid, terminal = pty.fork()
    if pid == 0:  # the child: what `make lab PORT=... TOKEN=...` runs, in a terminal
        command = ["-m", "repro", "lab", "--port", str(port), "--token", TOKEN]
        os.execv(sys.executable, [sys.executable, *command])
    output, start = b"", time.monotonic()

    def read(seconds: float) -> bool:
        nonlocal output
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([terminal], [], [], 0.2)[0]:
                try:
                    chunk = os.read(terminal, 65536)
                except OSError:
                    return False
                if not chunk:
                    return False
                output += chunk
        return True

    specs = None
    while specs is None and time.monotonic() - start < 60:
        read(0.5)
        with suppress(OSError):
            specs = Server(port).call("GET", "/api/kernelspecs")
    assert specs, output.decode(errors="replace")[-2000:]
    assert specs["default"] == "repro-torch-cpu"  # no GPU here: `make run`'s kernel
    assert {"repro-analysis", "repro-torch-cpu"} <= set(specs["kernelspecs"])
    os.write(terminal, b"\x03")
    read(30)
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.WIFEXITED(status) or os.WIFSIGNALED(status)
    assert "Shutting down" in text and "Traceback" not in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "http"], "PORT must be a port number"),
        (["--ip", "0.0.0.0; rm -rf x"], "IP must be an address"),
        (["--token", "two words"], "TOKEN must be printable"),
    ],
)
def test_bad_lab_options_are_one_line(args, message):
    done = repro("lab", *args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"repro: {message}") and len(done.stderr.splitlines()) == 1


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        done = repro("lab", "--port", str(taken.getsockname()[1]))
    assert done.returncode == 2
    assert "is in use: choose another with PORT=" in done.stderr


@pytest.mark.kernel
def test_a_kernel_started_by_jupyter_runs_in_its_pinned_environment():
    from jupyter_client.manager import start_new_kernel

    lab.register()
    kernels.jupyter_env()
    manager, client = start_new_kernel(kernel_name="repro-analysis", cwd=str(ROOT))
    printed = []

    def output(message):
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    try:
        code = "import sys; print(sys.prefix)"
        reply = client.execute_interactive(code, timeout=60, output_hook=output)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert manager.kernel_spec.argv[:3] == [sys.executable, "-m", "repro.driver.lab"]
    assert Path("".join(printed).strip()) == kernels.KERNELS / "analysis"
