"""repro sweep: a sweep file is checked whole (every cell resolved) before anything runs; the
cells run as ordinary runs on Ray's embedded cluster, then one comparison report; the sweep
folder's state makes a rerun of the same command resume (done cells skipped, failed ones retried
up to --retries). A cell on another Ray node sends its run folder back as a bundle, which the
driver takes in as untrusted input; a real second node checks it end to end."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from conftest import FIXTURES, ROOT, read_metrics, repro, run_folders

from repro import records
from repro.driver import integrity, memory
from repro.driver import sweep as sweeps
from repro.driver.folders import write_manifest
from repro.driver.sweep import check, label, landed, load
from repro.errors import UserError

SMALL = {"steps": 5, "warmup": 3, "repeats": 1, "threads": 1}


def sweep_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def given(tmp_path: Path, body: dict) -> Path:
    return sweep_file(tmp_path, json.dumps(body))  # JSON is YAML


def sweep(path: Path, runs_dir: Path, *more: str) -> subprocess.CompletedProcess:
    return repro("sweep", str(path), "--runs-dir", str(runs_dir), *more)


@pytest.mark.parametrize(
    "text, message",
    [
        (  # one bad cell among four: named, with the fix
            {
                "workload": "resnet-tiny",
                "axes": {"framework": ["torch", "jax"], "compile": ["eager", "jit"]},
            },
            "cell framework=torch compile=jit: compile='jit' is not valid for torch; choose one of",
        ),
        (
            {"workload": "resnet-tiny", "axes": {"batch_size": [2, 0]}},
            "cell batch_size=0: batch_size must be >= 1, got 0",
        ),
        (
            {"workload": "resnet-tiny", "axes": {"batch_size": [2.5]}},
            "cell batch_size=2.5: batch_size must be an integer, got '2.5'",
        ),
        (
            {"workload": "resnet-tiny", "axes": {"batch_size": [2]}, "concurency": 2},
            "unknown key 'concurency' (did you mean concurrency?)",
        ),
        ({"axes": {"batchsize": [2]}}, "unknown axis 'batchsize' (did you mean batch_size?)"),
        ({"axes": {"xyzzy": [2]}}, "unknown axis 'xyzzy'; choose one of: workload, framework"),
        ({"axes": {"batch_size": 2}}, "axes.batch_size must be a non-empty list"),
        ({"axes": {"batch_size": [[2]]}}, "axes.batch_size must be a single value"),
        ({"axes": {"batch_size": [2, 2]}}, "axes.batch_size lists a value twice"),
        ({"params": {"steps": 5}}, "no axes; name at least one"),
        ({"axes": ["steps"]}, "axes must be a mapping"),
        ({"axes": {"steps": [5]}, "params": {"steps": 5}}, "steps is both fixed and an axis"),
        ({"axes": {"steps": [5]}, "concurrency": 0}, "concurrency must be >= 1, got 0"),
        ({"axes": {"steps": [5]}, "name": "../x"}, "name must be up to 64 letters"),
        ({"axes": {"steps": [5]}, "num_gpus": True}, "num_gpus must be a number, got True"),
        ("axes: {steps: [5]}\nnum_gpus: .inf", "num_gpus must be a finite number, got inf"),
        ({"axes": {"steps": list(range(1, 41)), "seed": list(range(30))}}, "1,200 cells; at most"),
        ({"axes": {"device": ["gpu"]}}, "cell device=gpu: device=gpu needs num_gpus >= 1"),
        ("axes: [", "cannot read sweep file"),
        ("- a list", "must be a mapping"),
        ({"axes": {"steps": [5]}, "shared_dir": "runs"}, "shared_dir must be an absolute path"),
        ({"axes": {"steps": [5]}, "shared_dir": ["/a"]}, "shared_dir must be an absolute path"),
        (
            {"axes": {"steps": [5]}, "shared_dir": "/nonexistent/mount"},
            "shared_dir /nonexistent/mount is not a folder here; mount the shared file system",
        ),
        (
            {"axes": {"steps": [5]}, "shared_dir": "/tmp", "runs_dir": "/tmp"},
            "shared_dir is where the sweep goes (on every node); drop runs_dir or --runs-dir",
        ),
    ],
)
def test_a_bad_sweep_is_refused_with_its_fix(text, message, tmp_path):
    path = sweep_file(tmp_path, text) if isinstance(text, str) else given(tmp_path, text)
    with pytest.raises(UserError) as refused:
        check(load(path, None if "shared_dir" in str(text) else tmp_path / "runs"), remote=False)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_cells_that_resolve_to_the_same_run_run_once(tmp_path):
    """scaling means nothing on one device: devices=1 x {weak, strong} is one run."""
    text = {
        "workload": "gpt-mini",
        "params": {"mode": "training", "batch_size": 2},
        "axes": {"devices": [1, 2], "scaling": ["weak", "strong"]},
    }
    log = io.StringIO()
    sweep = check(load(given(tmp_path, text), tmp_path / "runs"), remote=False, log=log)
    assert [label(c) for c in sweep.cells] == [
        "devices=1 scaling=weak",
        "devices=2 scaling=weak",
        "devices=2 scaling=strong",
    ]
    assert log.getvalue() == (
        "cell devices=1 scaling=strong is the same run as devices=1 scaling=weak: it runs once\n"
    )


@pytest.mark.parametrize(
    "body, message",
    [
        (  # one bad cell among four: nothing runs
            {
                "workload": "resnet-tiny",
                "axes": {"framework": ["torch", "jax"], "batch_size": [2, 0]},
            },
            "cell framework=torch batch_size=0: batch_size must be >= 1, got 0",
        ),
        (
            {"axes": {"batch_size": [2]}, "concurency": 2},
            "unknown key 'concurency' (did you mean concurrency?)",
        ),
    ],
)
def test_the_cli_refuses_a_bad_sweep_before_anything_runs(body, message, tmp_path):
    done = sweep(given(tmp_path, body), tmp_path / "runs")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()  # one line, no traceback, nothing started
    assert line.startswith("repro: sweep file ") and message in line, line
    assert run_folders(tmp_path / "runs") == []


def test_a_shared_dir_is_where_the_sweep_goes(tmp_path):
    path = given(tmp_path, {"axes": {"batch_size": [2]}, "shared_dir": str(tmp_path)})
    loaded = load(path)
    assert loaded.shared_dir == tmp_path and loaded.folder.parent == tmp_path


def test_a_node_that_does_not_see_the_shared_dir_fails_its_cell_writing_nothing(
    tmp_path, monkeypatch
):
    ray = pytest.importorskip("ray")  # the [sweep] extra

    class OtherNode:  # what Ray says in a task on another node than the driver's
        def get_node_id(self) -> str:
            return NODE

    monkeypatch.setattr(ray, "get_runtime_context", OtherNode)
    loaded = load(given(tmp_path, {"axes": {"batch_size": [2]}, "shared_dir": str(tmp_path)}))
    cell_dir, log = loaded.folder / "cells" / CELL, loaded.folder / "logs" / f"{CELL}.1.log"
    outcome = sweeps.run_cell(loaded, loaded.cells[0], str(cell_dir), str(log), {}, "cd" * 28)
    assert outcome["status"] == "failed" and outcome["node"] == NODE
    assert (
        f"node abababab does not see the sweep folder {loaded.folder} (shared_dir)"
        in (outcome["error"])
    )
    assert not loaded.folder.exists()


# --- run folders sent back from another node: untrusted until they pass the gate --------------

RUN = "20261123T000000Z_resnet-tiny_torch_a1b2c3"
CELL = "00_batch_size=2"
NODE = "ab" * 28  # a Ray node id


def bundled(parent: Path) -> bytes:
    return sweeps.packed(finished(parent))


def finished(parent: Path, name: str = RUN) -> Path:
    """A finalised run folder as `verify` sees one: files and their MANIFEST.sha256."""
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "ok"}))
    (folder / "report.html").write_text("<p>report</p>")
    write_manifest(folder)
    return folder


def tar(members: dict[str, bytes], kind: bytes = tarfile.REGTYPE) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data), "/etc/passwd"
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


def sent(bundle: bytes | None, **more) -> dict:
    """What `send_back` returns from another node."""
    outcome = {"status": "done", "folder": None, "error": None, "node": NODE, "log": "its log\n"}
    return {**outcome, "bundle": bundle, **more}


def arrive(tmp_path: Path, outcome: dict) -> tuple[dict, Path]:
    loaded = load(given(tmp_path, {"axes": {"batch_size": [2]}}), tmp_path / "runs")
    log = loaded.folder / "logs" / f"{CELL}.1.log"
    return landed(loaded, outcome, CELL, log, set()), loaded.folder


def test_a_run_folder_sent_back_arrives_as_an_ordinary_verified_run_folder(tmp_path):
    data = bundled(tmp_path / "node")
    outcome, folder = arrive(tmp_path, sent(data))
    cell = folder / "cells" / CELL
    assert outcome == {
        "node": NODE,
        "status": "done",
        "folder": str(cell / RUN),
        "error": None,
        "bundle_bytes": len(data),
    }
    assert [p.name for p in cell.iterdir()] == [RUN]  # nothing else left in the cell's folder
    assert integrity.check(cell / RUN) == []
    assert (folder / "logs" / f"{CELL}.1.log").read_text() == "its log\n"


def test_a_node_sends_back_no_unfinished_or_oversized_run_folder(tmp_path, monkeypatch):
    folder = finished(tmp_path)
    (folder / "MANIFEST.sha256").unlink()  # a run whose driver was killed
    with pytest.raises(UserError, match="is not a finalised run folder"):
        sweeps.packed(folder)
    monkeypatch.setattr(sweeps, "MAX_BUNDLE", 100)
    with pytest.raises(UserError, match=r"its run folder packs to 0.00 MiB, more than 0.00 MiB"):
        sweeps.packed(finished(tmp_path / "other"))
    assert list((tmp_path / "other").iterdir()) == [tmp_path / "other" / RUN]  # no archive left


def test_a_failed_cell_on_another_node_comes_back_failed_with_its_error_and_log(tmp_path):
    outcome, folder = arrive(tmp_path, sent(None, status="failed", error="kernel torch-cpu: no"))
    assert outcome["status"] == "failed" and outcome["error"] == "kernel torch-cpu: no"
    assert outcome["folder"] is None and outcome["node"] == NODE
    assert (folder / "logs" / f"{CELL}.1.log").read_text() == "its log\n"


@pytest.mark.parametrize(
    "make, limit, message",
    [
        (lambda t: tar({"../escape": b"x", f"{RUN}/a": b""}), None, "is outside the destination"),
        (lambda t: tar({f"{RUN}/link": b""}, tarfile.SYMTYPE), None, "is a link or device"),
        (lambda t: tar({"a/x": b"", "b/y": b""}), None, "does not hold exactly one run folder"),
        (lambda t: tar({f"{RUN}/x": b"", "stray": b""}), None, "not hold one plainly named run"),
        (lambda t: tar({"-x/y": b""}), None, "does not hold one plainly named run folder"),
        (lambda t: b"\x1f\x8b not a tar.gz", None, "as a bundle"),
        # small limits, not gigabytes of test data
        (bundled, (sweeps, "MAX_BUNDLE", 100), "more than 0.00 MiB"),
        (bundled, (integrity, "MAX_UNPACKED", 10), "unpacks to more than"),
        (bundled, (integrity, "MAX_MEMBERS", 2), "more than 2 files"),
    ],
)
def test_a_bundle_from_another_node_is_refused_on_arrival(
    make, limit, message, tmp_path, monkeypatch
):
    data = make(tmp_path / "node")
    if limit:
        monkeypatch.setattr(*limit)
    outcome, folder = arrive(tmp_path, sent(data))
    assert outcome["status"] == "failed" and outcome["folder"] is None
    assert outcome["error"].startswith("its run folder was refused: ")
    assert message in outcome["error"] and "\n" not in outcome["error"]
    cell = folder / "cells" / CELL
    assert not cell.exists() or list(cell.iterdir()) == []  # no scratch, nothing half-placed
    assert not (tmp_path / "escape").exists() and not (folder / "cells" / "escape").exists()


def test_a_bundle_changed_on_the_way_or_clashing_is_failed_and_nothing_overwritten(tmp_path):
    folder = finished(tmp_path / "node")
    (folder / "metrics.json").write_text(json.dumps({"status": "ok", "throughput": 1e9}))
    outcome, sweep_folder = arrive(tmp_path, sent(sweeps.packed(folder)))
    assert outcome["status"] == "failed"
    assert outcome["error"] == "changed on arrival: metrics.json was modified"
    kept = sweep_folder / "cells" / CELL / RUN  # kept where it landed, for a look; not done
    again, _ = arrive(tmp_path, sent(bundled(tmp_path / "other")))
    assert again["status"] == "failed" and f"{kept} exists already" in again["error"]
    assert "throughput" in (kept / "metrics.json").read_text()


@pytest.mark.parametrize(
    "change",
    [{"status": "bogus"}, {"node": "../x"}, {"bundle": "text"}, {"log": None}, {"error": 1}],
)
def test_an_outcome_that_is_not_one_is_a_failed_cell(change, tmp_path):
    outcome, folder = arrive(tmp_path, sent(None) | change)
    assert outcome["status"] == "failed" and outcome["folder"] is None
    assert "sent back an outcome that is not one" in outcome["error"]
    assert not (folder / "cells").exists()


@pytest.mark.kernel
def test_a_sweep_runs_its_cells_compares_them_and_resumes(tmp_path):
    body = {"workload": "resnet-tiny", "params": SMALL, "axes": {"batch_size": [2, 4]}}
    path, runs_dir = given(tmp_path, body), tmp_path / "runs"
    done = sweep(path, runs_dir)
    assert done.returncode == 0, done.stderr
    [folder] = run_folders(runs_dir)
    state = json.loads((folder / "state.json").read_text())
    assert state["max_concurrent"] == 1
    cells = state["cells"]
    assert [c["status"] for c in cells.values()] == ["done", "done"]
    batches = [read_metrics(Path(c["folder"]))["params"]["batch_size"] for c in cells.values()]
    assert batches == [2, 4]
    assert "batch_size=4: done [2 done, 0 running, 0 failed of 2; ETA 0s]" in done.stderr
    comparison = Path(state["comparison"]["folder"])
    assert f"comparison report: {comparison / 'report.html'}" in done.stdout
    for cell in cells.values():  # the sweep ends with its cells' headlines
        quote = records.load(cell["folder"]).headline.quote()
        assert f"{cell['label']}  {quote}\n" in done.stdout
    notebook = nbformat.read(comparison / "report.ipynb", as_version=4)
    assert "over batch_size" in notebook.cells[0].source
    assert "at most 1 cell ran at once" in notebook.cells[0].source
    heatmap = next(c for c in notebook.cells if "plot_heatmap" in c.source)
    assert "Columns: **batch size**" in heatmap.outputs[0]["data"]["text/markdown"]
    assert repro("verify", str(comparison)).returncode == 0
    again = sweep(path, runs_dir, "--json")  # resumes: both cells done, the same report, no Ray
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert "nothing to run" in again.stderr and str(comparison) in answer["report_html"]
    assert [c["label"] for c in answer["cells"]] == ["batch_size=2", "batch_size=4"]
    assert all(
        c["status"] == "done" and c["headline"]["quote"] in done.stdout for c in answer["cells"]
    )
    assert json.loads((folder / "state.json").read_text()) == state
    assert len(list((folder / "comparisons").iterdir())) == 1


@pytest.mark.kernel
def test_a_failing_cell_is_recorded_and_retried_up_to_the_limit(tmp_path):
    body = {
        "workload": "resnet-tiny",
        "template": str(FIXTURES / "failing.ipynb"),
        "axes": {"batch_size": [2]},
    }
    path, runs_dir = given(tmp_path, body), tmp_path / "runs"
    done = sweep(path, runs_dir)
    assert done.returncode == 1
    assert "repro: sweep s: 1 of 1 cells not done (batch_size=2)" in done.stderr.splitlines()[-1]
    [folder] = run_folders(runs_dir)
    [cell] = json.loads((folder / "state.json").read_text())["cells"].values()
    assert cell["status"] == "failed" and cell["attempts"] == 1
    assert "planted failure" in cell["error"]
    assert read_metrics(Path(cell["folder"]))["status"] == "failed"  # its failed run folder
    assert (folder / "logs" / "00_batch_size=2.1.log").is_file()
    limited = sweep(path, runs_dir, "--retries", "0")  # tried once already: not again
    assert limited.returncode == 1
    assert "failed 1 times, not retried (--retries 0" in limited.stderr
    assert json.loads((folder / "state.json").read_text())["cells"]["00_batch_size=2"] == cell


@pytest.mark.kernel
def test_ctrl_c_leaves_the_sweep_resumable(tmp_path):
    body = {"workload": "resnet-tiny", "template": str(FIXTURES / "sleeping.ipynb")}
    path, runs_dir = given(tmp_path, {**body, "axes": {"batch_size": [2, 4]}}), tmp_path / "runs"
    stderr = tmp_path / "stderr"
    process = subprocess.Popen(
        [sys.executable, "-m", "repro", "sweep", str(path), "--runs-dir", str(runs_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("w"),
        env=os.environ,
        # Ctrl-C reaches it even where this test runs as a background job (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    log = None
    deadline = time.monotonic() + 90
    while log is None or "sleeping now" not in log.read_text():  # the first cell is running
        assert time.monotonic() < deadline and process.poll() is None, stderr.read_text()
        time.sleep(0.5)
        log = next(runs_dir.glob("*/logs/00_*.log"), None)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 130, stderr.read_text()
    assert stderr.read_text().splitlines()[-1] == "repro: interrupted"
    [folder] = run_folders(runs_dir)
    cells = json.loads((folder / "state.json").read_text())["cells"]
    assert [(c["status"], c["attempts"]) for c in cells.values()] == [
        ("interrupted", 0),
        ("pending", 0),
    ]
    [run] = run_folders(folder / "cells" / "00_batch_size=2")
    assert read_metrics(run)["status"] == "interrupted"  # finalised, as a run's Ctrl-C leaves it


# --- a real second Ray node on this machine -------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(folder: Path, env: dict, *args: str) -> subprocess.Popen:
    """`ray start --block` in its own session, with its own temporary `folder` (short: Ray's
    socket paths must fit in 107 bytes) and ports; all the node's processes run below it."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--block", *args]
        + ["--temp-dir", str(folder), "--disable-usage-stats", "--include-log-monitor=false"]
        + ["--dashboard-agent-listen-port", str(free_port()), f"--object-store-memory={80 << 20}"],
        cwd=folder,
        env=env,
        stdout=(folder / "ray-start.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def started(node: subprocess.Popen, deadline: float) -> None:
    log = Path(node.args[node.args.index("--temp-dir") + 1]) / "ray-start.log"
    while "Ray runtime started" not in log.read_text():
        assert node.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def kill_node(node: subprocess.Popen) -> None:
    """Kill a node's processes by their PIDs (and its own session's group): `ray stop` would
    stop every Ray on this machine, other users' included."""
    for pid in [*memory.descendants(node.pid), node.pid]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(node.pid, signal.SIGKILL)
    node.wait(timeout=30)


@pytest.fixture
def two_nodes(monkeypatch):
    """A head node with no CPU for tasks and a second node with one, both on loopback with their
    own token, ports and temporary folders, so every task runs on the second node. Started at
    once (the second waits for the head). Yields the address and the second node's TMPDIR."""
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    for name, value in token.items():
        monkeypatch.setenv(name, value)  # for the driver too
    env = {**os.environ, **token, "RAY_USAGE_STATS_ENABLED": "0"}
    port, nodes = free_port(), []
    short = Path(tempfile.mkdtemp(prefix="repro-ray-"))  # the kernels' sockets are there too
    head, second, worker_tmp = (Path(tempfile.mkdtemp(dir=short)) for _ in range(3))
    try:
        nodes.append(
            start_node(
                head,
                env,
                *("--head", "--num-cpus=0", "--node-ip-address=127.0.0.1", f"--port={port}"),
                *("--include-dashboard=false", f"--dashboard-port={free_port()}"),
            )
        )
        nodes.append(
            start_node(
                second,
                {**env, "TMPDIR": str(worker_tmp)},
                *(f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.2"),
            )
        )
        deadline = time.monotonic() + 90
        for node in nodes:
            started(node, deadline)
        yield f"127.0.0.1:{port}", worker_tmp
    finally:
        for node in reversed(nodes):
            kill_node(node)
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.kernel
def test_a_cell_on_another_node_sends_its_run_folder_back_as_a_bundle(two_nodes, tmp_path):
    """The cell runs on the second node (the head has no CPU for it), in a temporary folder
    there, and its run folder comes back through the bundle path, verified."""
    address, worker_tmp = two_nodes
    body = {"workload": "resnet-tiny", "params": SMALL, "axes": {"batch_size": [2]}}
    path, runs_dir = given(tmp_path, body), tmp_path / "runs"
    done = sweep(path, runs_dir, "--address", address)
    assert done.returncode == 0, done.stderr
    [folder] = run_folders(runs_dir)
    [cell] = json.loads((folder / "state.json").read_text())["cells"].values()
    assert cell["status"] == "done" and cell["bundle_bytes"] > 0, cell
    line = f"batch_size=2: done, sent back from node {cell['node'][:8]} as a bundle of"
    assert line in done.stderr
    run = Path(cell["folder"])
    assert run.parent == folder / "cells" / "00_batch_size=2"
    assert integrity.check(run) == []  # as `repro verify` checks it
    report = nbformat.read(run / "report.ipynb", as_version=4)
    assert report.metadata.repro.run.sweep.node == cell["node"]  # the second node ran it
    assert "executing" in (folder / "logs" / "00_batch_size=2.1.log").read_text()
    assert list(worker_tmp.glob("repro-cell-*")) == []  # the node's temporary folder is gone


CONNECT = (  # start_ray alone, as `repro sweep` calls it: the engine it names, or its one line
    "import sys, tempfile; from pathlib import Path; from repro.driver import cli, sweep; "
    "from repro.errors import ReproError\n"
    "try:\n"
    "    s = sweep.load(sys.argv[2], tempfile.mkdtemp())\n"
    "    print(sweep.start_ray(sys.argv[1] or None, s, Path(tempfile.mkdtemp())))\n"
    "except ReproError as error:\n"
    "    sys.exit(print(f'repro: {error}', file=sys.stderr) or error.exit_code)\n"
)


def test_address_reaches_a_head_started_with_plain_ray_start(tmp_path, monkeypatch):
    """Ray 2.60's `ray start --head` turns token authentication on where a token exists (here
    ~/.ray/auth_token, as an embedded start leaves it), while a driver given an address does
    not: repro follows `ray start`'s rule. A driver without the token gets one line saying what
    to set, not Ray's retries (a line a second) and "cannot reach"."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    home, stranger = tmp_path / "home", tmp_path / "stranger"
    stranger.mkdir()
    ray = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    body = {"workload": "resnet-tiny", "params": SMALL, "axes": {"batch_size": [2]}}
    path, port = given(tmp_path, body), free_port()
    folder = Path(tempfile.mkdtemp(prefix="repro-ray-"))
    head = start_node(
        folder,
        env,
        *("--head", "--num-cpus=0", "--node-ip-address=127.0.0.1", f"--port={port}"),
        *("--include-dashboard=false", f"--dashboard-port={free_port()}"),
    )
    try:
        started(head, time.monotonic() + 90)
        driver = [sys.executable, "-c", CONNECT, f"127.0.0.1:{port}", str(path)]
        done = subprocess.run(driver, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout == f"the Ray cluster at 127.0.0.1:{port}\n"
        env = {**env, "HOME": str(stranger), "RAY_NUM_REDIS_GET_RETRIES": "2"}  # Ray's: 20 s
        done = subprocess.run(driver, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr == (
            f"repro: the Ray cluster at 127.0.0.1:{port} asks for its auth token "
            "(InvalidAuthToken): set RAY_AUTH_TOKEN to the one `ray get-auth-token` prints on "
            "its head\n"
        )
    finally:
        kill_node(head)
        shutil.rmtree(folder, ignore_errors=True)


def test_an_embedded_ray_that_cannot_start_is_one_line_with_a_retry(tmp_path):
    """A start that times out on a loaded machine is the machine's doing, not a bug."""
    body = {"workload": "resnet-tiny", "params": SMALL, "axes": {"batch_size": [2]}}
    timeout = (
        "import sys, ray; from repro.driver import cli\n"
        "def init(**_): raise Exception('The current node timed out during startup. This could "
        "happen because some of the raylet failed to startup or the GCS has become overloaded.')\n"
        "ray.init = init; sys.exit(cli.main(sys.argv[1:]))"
    )
    runs = ["--runs-dir", str(tmp_path / "runs")]
    command = [sys.executable, "-c", timeout, "sweep", str(given(tmp_path, body)), *runs]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(
        "repro: could not start the embedded Ray cluster: The current node timed out during "
        "startup. This could happen"
    )
    assert line.endswith(
        "retry (a busy machine slows its start), or start one with `ray start "
        "--head` and give --address HOST:PORT"
    )


def test_rays_sockets_fit_a_unix_socket_path_under_a_long_tmpdir(tmp_path):
    """macOS's TMPDIR (/var/folders/…) or a deep one: Ray's session, and its sockets, go to a
    short scratch folder instead, removed after; nothing is made before Ray has started."""
    body = {"workload": "resnet-tiny", "params": SMALL, "axes": {"batch_size": [2]}}
    seen = (
        "import sys, ray; from repro.driver import cli\n"
        "def init(_temp_dir, **_): print(_temp_dir); raise Exception('Ray died')\n"
        "ray.init = init; sys.exit(cli.main(sys.argv[1:]))"
    )
    long = tmp_path / ("t" * 80)
    long.mkdir()
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", seen, "sweep", str(given(tmp_path, body)), "--runs-dir", str(runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(long)},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    temp = done.stdout.strip()
    # Ray's longest socket path: <temp>/session_<date>_<time>_<microseconds>_<pid>/sockets/…
    plasma = f"{temp}/session_2026-12-07_18-40-30_582552_4194304/sockets/plasma_store"
    assert len(os.fsencode(plasma)) <= 107 and not Path(temp).exists()
    assert not list(long.iterdir()) and not runs.exists()  # no half-made sweep folder
