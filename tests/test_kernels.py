"""Pinned kernels are registered where Jupyter (and so papermill and JupyterLab) finds them."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_lock

from repro.driver import kernels, plan
from repro.paths import JUPYTER_DATA, ROOT

pytestmark = pytest.mark.kernel


def test_jupyter_lists_every_pinned_kernel_from_the_project_data_dir():
    for name in kernels.defaults(plan.has_nvidia_gpu())[0]:  # what `repro kernels` builds here
        kernels.ensure(name)
    env = {**os.environ, "JUPYTER_PATH": str(JUPYTER_DATA)}
    jupyter = Path(sys.executable).with_name("jupyter")
    listed = json.loads(
        subprocess.run(
            [jupyter, "kernelspec", "list", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["kernelspecs"]
    for name in ("torch-cpu", "tensorflow-cpu", "jax-cpu"):
        spec = listed[f"repro-{name}"]["spec"]
        assert spec["metadata"]["repro"] == {"kernel": name, "pinned": True}
        assert Path(spec["argv"][0]).is_relative_to(kernels.KERNELS / name)
        resources = Path(listed[f"repro-{name}"]["resource_dir"])  # JupyterLab's tile: a logo
        for logo in kernels.LOGOS:
            assert (resources / logo.name).read_bytes() == logo.read_bytes()
            assert logo.read_bytes().startswith(b"\x89PNG")


def test_a_kernel_environment_holds_exactly_its_lock():
    kernel = kernels.ensure("jax-cpu")
    check = kernels.verify(kernel)
    assert check["ok"] and check["files_checked"] > 1000
    # The environment is made without pip: only locked distributions are installed.
    assert "pip" not in check["extra"]
    assert (
        subprocess.run([kernel.python, "-c", "import torch"], capture_output=True).returncode != 0
    )


# The real CLI with its kernelspecs and Jupyter data dir elsewhere: argv is SPECS DATA ARGS...
CLI = (
    "import sys; from pathlib import Path; from repro.driver import cli, kernels; "
    "kernels.KERNELSPECS, kernels.JUPYTER_DATA = Path(sys.argv[1]), Path(sys.argv[2]); "
    "sys.exit(cli.main(sys.argv[3:]))"
)


def processes() -> dict[int, tuple[int, str, str]]:
    """{pid: (parent pid, state, name)} of every process, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:  # gone meanwhile
            continue
        state, parent = tail.split()[:2]
        found[int(stat.parent.name)] = (int(parent), state, head.split("(", 1)[1])
    return found


def descendants(pid: int) -> dict[int, str]:
    """{pid: name} of the processes below `pid`."""
    table, found, frontier = processes(), {}, {pid}
    while frontier:
        frontier = {p for p, (parent, _, _) in table.items() if parent in frontier} - set(found)
        found.update({p: table[p][2] for p in frontier})
    return found


def test_an_interrupted_kernel_build_leaves_the_old_kernel_and_no_process(tmp_path):
    """Ctrl-C or SIGTERM during `repro kernels --rebuild` (uv installing) kills uv with repro and
    leaves the kernel built before, intact; a build is made beside and renamed into place."""
    specs, data, kernels_dir = tmp_path / "kernelspecs", tmp_path / "jupyter", tmp_path / "kernels"
    (specs / "tiny").mkdir(parents=True)  # one small wheel, with a console script
    (specs / "tiny" / "requirements.lock").write_text(small_lock("pygments"))
    (kernels_dir / ".tiny.building-99999999").mkdir(parents=True)  # a build killed outright
    env = {**os.environ, "REPRO_KERNELS_DIR": str(kernels_dir)}
    cli = [sys.executable, "-c", CLI, specs, data, "kernels"]
    first = subprocess.run([*cli, "tiny"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0 and "files match the lock" in first.stdout, first.stderr
    venv = kernels_dir / "tiny"
    assert not list(kernels_dir.glob(".tiny.*"))  # the leftover too
    spec = json.loads((data / "kernels" / "repro-tiny" / "kernel.json").read_text())
    assert spec["argv"][0] == str(venv / "bin" / "python")
    # built elsewhere and renamed: its console scripts and activate script work from here
    assert subprocess.run([venv / "bin" / "pygmentize", "-V"], capture_output=True).returncode == 0
    assert f'VIRTUAL_ENV="{venv}"' in (venv / "bin" / "activate").read_text()
    built = venv.stat().st_ino
    cache = tmp_path / "uv-cache"
    cache.mkdir()
    for signum, code, last in [
        (signal.SIGINT, 130, "repro: interrupted"),
        (signal.SIGTERM, 143, "repro: terminated (SIGTERM)"),
    ]:
        with open(cache / ".lock", "w") as held:  # uv waits for its cache: a build under way
            fcntl.flock(held, fcntl.LOCK_EX)
            rebuild = subprocess.Popen(
                [*cli, "--rebuild", "tiny"],
                cwd=ROOT,
                env={**env, "UV_CACHE_DIR": str(cache)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            while "uv" not in (below := descendants(rebuild.pid)).values():
                assert time.monotonic() < deadline and rebuild.poll() is None
                time.sleep(0.05)
            rebuild.send_signal(signum)
            out, err = rebuild.communicate(timeout=60)
        assert rebuild.returncode == code and err.splitlines()[-1] == last, err
        assert "Traceback" not in err
        table = processes()
        assert not [name for pid, name in below.items() if table.get(pid, (0, "Z"))[1] != "Z"]
        assert venv.stat().st_ino == built and not list(kernels_dir.glob(".tiny.*"))
    again = subprocess.run([*cli, "tiny"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "building" not in again.stderr, again.stderr
