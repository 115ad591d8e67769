"""JupyterLab on the project (driver side): `repro lab`, which `make lab` runs.

It opens at once: every pinned kernel for this machine is registered, none is built. Each
kernelspec starts `python -m repro.driver.lab NAME CONNECTION_FILE` (`launch`), which builds the
kernel from its lock on its first start, as a run would, and then becomes it. Jupyter's
checkpoints go under .jupyter/checkpoints/, never into a run folder, and new notebooks open in the
pinned kernel a default `make run` uses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import sys
from pathlib import Path

from repro.driver import kernels, plan
from repro.errors import INTERRUPTED, ReproError, UserError
from repro.paths import JUPYTER_DATA, KERNELS, KERNELSPECS, ROOT

CHECKPOINTS = JUPYTER_DATA / "checkpoints"  # Lab's checkpoints, mirroring the checkout's folders
# How long Lab waits for a kernel to answer: a first start builds it (a few minutes).
START_TIMEOUT_S = 900


def register() -> str:
    """Register every kernel for this machine to start through `launch`; return the kernelspec
    new notebooks get (the one `make run` picks here)."""
    names, _ = kernels.defaults(plan.has_nvidia_gpu())
    specs = {}
    for name in names:
        lock = KERNELSPECS / name / "requirements.lock"
        kernel = kernels.Kernel(name, KERNELS / name / "bin" / "python", lock)
        launcher = [sys.executable, "-m", "repro.driver.lab", name, "{connection_file}"]
        kernels.register(kernel, argv=launcher)
        specs[name] = kernel.spec_name
    default, _ = plan.auto_kernel(plan.DEFAULT_FRAMEWORK, "auto")
    return specs.get(default) or specs[f"{plan.DEFAULT_FRAMEWORK}-cpu"]


def checked_port(text: str) -> int:
    """PORT as a free TCP port on this machine, or UserError naming the fix."""
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= 65535:
        raise UserError(f"PORT must be a port number from 1 to 65535, got {text[:40]!r}")
    with socket.socket() as probe:
        try:
            probe.bind(("", int(text)))
        except OSError:
            raise UserError(f"port {text} is in use: choose another with PORT=") from None
    return int(text)


def command(
    port: str | None,
    ip: str | None,
    token: str | None,
    default: str,
    root: Path = ROOT,
    checkpoints: Path = CHECKPOINTS,
) -> list[str]:
    """`jupyter lab` serving `root`: checkpoints under `checkpoints`, new notebooks in kernelspec
    `default`, one Ctrl-C stops it (-y: no "shut down?" prompt); UserError for a bad value."""
    if ip is not None and not re.fullmatch(r"[A-Za-z0-9.:_-]{1,255}", ip):
        raise UserError(f"IP must be an address or host name such as 127.0.0.1, got {ip[:40]!r}")
    if token is not None and not re.fullmatch(r"[\x21-\x7e]{1,255}", token):
        raise UserError("TOKEN must be printable characters without spaces")
    port = None if port is None else str(checked_port(port))
    if importlib.util.find_spec("jupyterlab") is None:
        raise UserError("JupyterLab is not installed here: `make lab` installs it")
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "-y"]
    args += [f"--ServerApp.root_dir={root}", f"--FileCheckpoints.root_dir={checkpoints}"]
    args += ["--ContentsManager.checkpoints_class=repro.driver.checkpoints.Checkpoints"]
    args += [f"--MappingKernelManager.default_kernel_name={default}"]
    args += [f"--MappingKernelManager.kernel_info_timeout={START_TIMEOUT_S}"]
    if port is not None:
        args += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if ip is not None:
        args += [f"--ServerApp.ip={ip}"]
    if token is not None:
        args += [f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        args += ["--allow-root"]
    return args


def open_lab(port: str | None, ip: str | None, token: str | None) -> None:
    """Register the kernels, then become JupyterLab (so Ctrl-C reaches it alone)."""
    args = command(port, ip, token, register())
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    kernels.jupyter_env()  # Jupyter finds the project's kernelspecs in .jupyter/
    sys.stdout.flush()
    os.execv(args[0], args)


def launch(name: str, connection_file: str) -> None:
    """Start kernel `name` for Jupyter: build it from its lock first if it is not built yet
    (its progress goes to Lab's log), then replace this process with it."""
    kernel = kernels.build(name, reuse=True)
    os.execv(kernel.python, kernels.kernel_argv(kernel.python, connection_file))


if __name__ == "__main__":
    try:
        launch(*sys.argv[1:])
    except ReproError as error:
        print(f"repro: kernel {sys.argv[1]} cannot start: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt as stop:  # stopped while building: Lab's SIGTERM (errors.Terminated)
        print(
            f"repro: kernel {sys.argv[1]} not started: {str(stop) or 'interrupted'}",
            file=sys.stderr,
        )
        sys.exit(getattr(stop, "exit_code", INTERRUPTED))
