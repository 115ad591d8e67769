"""Pinned kernels are registered where Jupyter (and so papermill and JupyterLab) finds them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro.driver import kernels, plan
from repro.paths import JUPYTER_DATA

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
