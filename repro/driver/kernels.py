"""Pinned Jupyter kernels: build from the lock, register, verify (driver side).

A kernel is a virtual environment under `.kernels/<name>` installed with
`uv pip install --require-hashes` from `kernelspecs/<name>/requirements.lock` (built beside it
and renamed into place when complete: `_build`), registered as the
kernelspec `repro-<name>` in the project-local Jupyter data dir `.jupyter/`. The environment
holds exactly the locked distributions (it is created without pip; the driver's uv installs into
it), and the kernel finds the in-kernel part of `repro` through PYTHONPATH, so code edits need no
reinstall. A lock is compiled for one Python (its `# python: X.Y` line) on Linux x86_64, and a
kernel is built only by a driver running that Python (the kernel's venv is made from it).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from repro.driver.talk import talking
from repro.errors import DriftError, ReproError, Terminated, UserError, brief, option, unknown
from repro.lockfile import LockCheck, read_lock, sha256, target_python
from repro.paths import JUPYTER_DATA, KERNELS, KERNELSPECS, ROOT

PLATFORM = "x86_64-manylinux_2_28"  # what every lock is compiled for (uv's --python-platform)
LOCK_HEADER = """\
# Compiled by `make lock` (uv pip compile --generate-hashes) from requirements.in: edit that.
# python: {python}
# platform: Linux x86_64 ({platform})
"""


@dataclass(frozen=True)
class Kernel:
    name: str  # kernelspecs/ folder name (+ "-lock-<sha>" when built from a report's lock)
    python: Path
    lock: Path | None  # None when unpinned
    code: Path = ROOT  # the folder holding the `repro` package the kernel imports

    @property
    def spec_name(self) -> str:
        return f"repro-{self.name}" + ("" if self.code == ROOT else f"-code-{self.code.name}")

    @property
    def display_name(self) -> str:
        return f"repro {self.name}" + (" (unpinned)" if self.lock is None else "")

    @property
    def notebook_spec(self) -> dict:
        """The report's `metadata.kernelspec`: JupyterLab opens the report in this kernel."""
        return {"name": self.spec_name, "display_name": self.display_name, "language": "python"}


def available() -> list[str]:
    return sorted(p.parent.name for p in KERNELSPECS.glob("*/requirements.lock"))


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a kernel's name: a folder's, never a path


def kernel_dir(name: str) -> Path:
    """.kernels/<name>, where kernel `name` is built, its .lock and .build.log beside it: the one
    place a kernel is written or deleted. A kernel is named (a kernelspec's name, or one derived
    from it), never given as a path, so no build reaches outside the kernels dir."""
    if not NAME.fullmatch(name):
        raise UserError(f"a kernel is named, not given as a path: {name!r}")
    return KERNELS / name


def spec_lock(name: str) -> Path:
    """kernelspecs/<name>/requirements.lock; UserError (did you mean) unless `name` is a kernel's
    name: a kernel is named, never given as a path."""
    if name not in available():
        raise UserError(unknown("kernel", name, available()))
    return KERNELSPECS / name / "requirements.lock"


def lockable() -> list[str]:
    """The kernels with a requirements.in, locked or not yet."""
    return sorted(p.parent.name for p in KERNELSPECS.glob("*/requirements.in"))


def running_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def python_mismatch(name: str, lock: Path) -> str | None:
    """Why this driver cannot build kernel `name` from `lock` (made for another Python), or None."""
    target = target_python(lock.read_text())
    if target is None or target == running_python():
        return None
    return (
        f"kernel {name}'s lock was made for Python {target}, but repro runs on Python "
        f"{running_python()} (a kernel is built from the driver's Python): run repro from a "
        f"Python {target} environment (`make clean venv PYTHON=python{target}`) or pick another "
        "kernel"
    )


def defaults(gpu: bool) -> tuple[list[str], list[str]]:
    """The kernels `repro kernels` builds on this machine, and a line for each one it leaves out:
    CUDA kernels where no NVIDIA GPU is seen, and kernels locked for another Python."""
    chosen, skipped = [], []
    for name in available():
        target = target_python((KERNELSPECS / name / "requirements.lock").read_text())
        if name.endswith("-cuda") and not gpu:
            skipped.append(f"{name}: no NVIDIA GPU here (build it on a GPU machine)")
        elif target not in (None, running_python()):
            skipped.append(f"{name}: locked for Python {target}, this is {running_python()}")
        else:
            chosen.append(name)
    return chosen, skipped


def uv() -> str:
    """The uv binary installed with the driver (pyproject.toml)."""
    from uv import find_uv_bin

    return find_uv_bin()


def find_links() -> list[str]:
    """uv options for the wheel folders pip is told about in PIP_FIND_LINKS (such as a local
    folder holding torch's CPU build), which uv would not read; they never reach a lock."""
    return [a for d in os.environ.get("PIP_FIND_LINKS", "").split() for a in ("--find-links", d)]


def jupyter_env() -> None:
    """Make this process (and papermill) find the project's kernelspecs."""
    paths = os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
    if str(JUPYTER_DATA) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(JUPYTER_DATA), *filter(None, paths)])


def shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _run(
    cmd: list, what: str, log_file: Path | None = None, echo=None, **kwargs
) -> subprocess.CompletedProcess:
    """Run `cmd`; on failure a ReproError with the end of its output. `log_file` keeps all of
    it (the command line, stdout, stderr), failed or not; `echo` shows it as it comes."""
    cmd = [str(c) for c in cmd]
    done = streamed(cmd, echo, **kwargs)
    if log_file is not None:
        log_file.write_text(f"$ {shlex.join(cmd)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        where = f"; full log: {shown(log_file)}" if log_file else ""
        raise ReproError(f"{what} failed (exit {done.returncode}{where}):\n{tail}")
    return done


PROGRESS = (
    "Using ",
    "Resolved ",
    "Prepared ",
    "Installed ",
    "Uninstalled ",
    "Audited ",
    "Bytecode",
)


def streamed(cmd: list[str], echo=None, **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd`, its output captured. With `echo`, stderr joins stdout and its progress lines
    (uv's: resolved, prepared, installed N packages...) are shown on `echo` as they come; the
    rest (a line per package, an error's explanation) is only in the output returned, for the
    log and the one-line error. `cmd` runs in a process group of its own, killed whole when this
    process stops waiting for it (Ctrl-C, SIGTERM under `terminable`, an error): nothing it
    started (uv's bytecode compilers, say) goes on writing into a kernel no one builds."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT if echo else subprocess.PIPE}
    with subprocess.Popen(cmd, text=True, start_new_session=True, **pipes, **kwargs) as process:
        try:
            if echo is None:
                out, err = process.communicate()
            else:
                lines = []
                for line in process.stdout:
                    lines.append(line)
                    if line.lstrip().startswith(PROGRESS):
                        echo.write(f"  {line.strip()}\n")
                out, err = "".join(lines), ""
                process.wait()
        except BaseException:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    return subprocess.CompletedProcess(cmd, process.returncode, out, err)


@contextmanager
def terminable() -> Iterator[None]:
    """SIGTERM raises Terminated here, as Ctrl-C raises KeyboardInterrupt, so that a build it
    stops cleans up (its children killed, its folder removed) and repro says so, exit 143,
    instead of dying silently. A SIGTERM handler already set (a run's, Ray's) is kept."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def stop(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def built(name: str, lock: Path) -> bool:
    """Whether .kernels/<name> is a finished build of `lock`: its marker is written last."""
    marker = kernel_dir(name) / "repro-lock.sha256"
    return marker.is_file() and marker.read_text() == sha256(lock).hexdigest()


@contextmanager
def building(name: str, log=sys.stderr) -> Iterator[None]:
    """Hold .kernels/<name>.lock: one process builds a kernel, any other waits for it."""
    path = kernel_dir(name).with_name(f"{name}.lock")
    try:
        KERNELS.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")  # noqa: SIM115 (closed by the `with` below)
    except OSError as error:
        raise UserError(
            f"cannot build kernels in {KERNELS}: {brief(error)}; set REPRO_KERNELS_DIR to a "
            "folder you can write, or unset it (default: .kernels in the checkout)"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process building kernel {name}", file=log)
            with talking(log, f"waiting for kernel {name}"):
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # released when the file closes, or when this process dies


def build(name: str, lock: Path | None = None, log=sys.stderr, reuse: bool = False) -> Kernel:
    """(Re)create the environment of kernel `name` from its lock, hashes checked by uv; with
    `reuse`, keep a finished build (another process's, made while this one waited)."""
    lock = lock or spec_lock(name)
    problem = python_mismatch(name, lock)
    if problem:
        raise UserError(problem)
    with terminable(), building(name, log):
        if reuse and built(name, lock):
            return Kernel(name, kernel_dir(name) / "bin" / "python", lock)
        with talking(log, f"building kernel {name}") as talk:
            return _build(name, lock, talk)


def _build(name: str, lock: Path, log) -> Kernel:
    """Build the kernel in `.kernels/.<name>.building-<pid>` and rename it into place once
    complete, the old one (if any) moved aside and removed: however the build ends (an error,
    Ctrl-C, SIGTERM), `.kernels/<name>` is the old kernel, the new one or, if stopped between the
    two renames, none, never a partial one that counts as built. What a build killed outright
    leaves beside it is removed by the next build of the kernel (whose lock the caller holds)."""
    venv = kernel_dir(name)
    print(
        f"building kernel {name} from {shown(lock)} (first time: a few minutes)",
        file=log,
    )
    start = time.perf_counter()
    staging = KERNELS / f".{name}.building-{os.getpid()}"
    try:
        clear_leftovers(name)
        _install(name, lock, staging, venv, log)
        if venv.exists() or venv.is_symlink():
            os.rename(venv, staging.with_name(f"{staging.name}.old"))
        os.rename(staging, venv)
    finally:
        clear_leftovers(name)
    print(f"kernel {name} built in {time.perf_counter() - start:.0f} s", file=log)
    return Kernel(name, venv / "bin" / "python", lock)


def clear_leftovers(name: str) -> None:
    """Remove the folders a build of kernel `name` works in (see `_build`)."""
    for leftover in KERNELS.glob(f".{name}.building-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _install(name: str, lock: Path, venv: Path, final: Path, log) -> None:
    """Make at `venv` the environment of `lock`, to be moved to `final`, its marker last."""
    _run(
        [sys.executable, "-m", "venv", "--without-pip", "--prompt", name, venv],
        f"creating {shown(venv)}",
    )
    config = venv / "pyvenv.cfg"  # uv then writes console scripts that find their python
    config.write_text(config.read_text() + "relocatable = true\n")  # relative to themselves
    python = venv / "bin" / "python"
    log_file = venv.with_name(f"{name}.build.log")
    command = [uv(), "pip", "install", "--python", python, "--require-hashes", "--no-deps"]
    command += ["--only-binary", ":all:", "--compile-bytecode", *find_links(), "-r", lock]
    command += ["--link-mode", "copy"]  # not hard links into uv's cache, which edits would change
    try:
        _run(command, f"installing {shown(lock)}", log_file, echo=log)
    except ReproError:
        hint = not_served(name, lock, log_file)
        if hint:
            raise UserError(hint) from None
        raise
    for text in [config, *(venv / "bin").glob("activate*")]:  # the only files naming the folder
        text.write_text(text.read_text().replace(str(venv), str(final)))
    # written last: its absence means "not (fully) built"
    (venv / "repro-lock.sha256").write_text(sha256(lock).hexdigest())


def not_served(name: str, lock: Path, log_file: Path) -> str | None:
    """The one line for an install that found no file for a local build such as torch's
    `+cpu` (PyPI serves none) instead of uv's resolver report (kept in `log_file`), or None."""
    text, output = lock.read_text(), log_file.read_text()
    pins = [f"{n}=={p.version}" for n, p in read_lock(text).items() if "+" in p.version]
    missing = [pin for pin in pins if f"no version of {pin}" in output]
    if not missing:
        return None
    target = target_python(text)
    return (
        f"kernel {name} pins {', '.join(missing)}, a build that PyPI does not serve: give it "
        "its wheel index (PyTorch's CPU builds: UV_INDEX=https://download.pytorch.org/whl/cpu) or "
        "a folder holding the wheel (PIP_FIND_LINKS=/path/to/wheels); "
        + (f"the lock was made for Python {target} on Linux x86_64 " if target else "")
        + f"(full log: {shown(log_file)})"
    )


LOGOS = [KERNELSPECS / f"logo-{n}x{n}.png" for n in (64, 32)]  # the kernel's icon in JupyterLab


def kernel_argv(python: Path, connection_file: str = "{connection_file}") -> list[str]:
    """The command that starts a kernel in `python`."""
    return [str(python), "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", connection_file]


def register(kernel: Kernel, argv: list[str] | None = None) -> Path:
    """Write the kernelspec, with its logo, into the project-local Jupyter data dir; `argv`
    starts it some other way than `kernel.python` (JupyterLab's launcher, repro.driver.lab)."""
    folder = JUPYTER_DATA / "kernels" / kernel.spec_name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": argv or kernel_argv(kernel.python),
        "display_name": kernel.display_name,
        "language": "python",
        "env": {"PYTHONPATH": str(kernel.code), "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        "metadata": {"repro": {"kernel": kernel.name, "pinned": kernel.lock is not None}},
    }
    files = {"kernel.json": (json.dumps(spec, indent=2) + "\n").encode()}
    files.update({logo.name: logo.read_bytes() for logo in LOGOS})  # Lab's tile, not an "R"
    for name, content in files.items():
        path = folder / name
        if not path.is_file() or path.read_bytes() != content:  # concurrent runs: never
            tmp = folder / f".{name}.{os.getpid()}.tmp"  # half-written
            tmp.write_bytes(content)
            os.replace(tmp, path)
    return folder


def ensure(name: str, log=sys.stderr, lock: Path | None = None, code: Path = ROOT) -> Kernel:
    """The pinned kernel `name`, built first if missing or built from another lock.

    `lock` (a report's own lock, for a rerun) builds a separate environment named after its hash
    when it differs from kernelspecs/<name>/requirements.lock; `code` is what PYTHONPATH points at.
    """
    local = spec_lock(name)
    if lock is None or lock.read_bytes() == local.read_bytes():
        lock = local
    else:
        name = f"{name}-lock-{sha256(lock).hexdigest()[:12]}"
    if built(name, lock):
        kernel = Kernel(name, kernel_dir(name) / "bin" / "python", lock, code)
    else:
        kernel = Kernel(name, build(name, lock, log, reuse=True).python, lock, code)
    register(kernel)
    return kernel


def unpinned(python: str) -> Kernel:
    """A kernel on an existing interpreter (a GPU box's preinstalled stack, say). Not verified."""
    path = shutil.which(python) or python
    if not Path(path).is_file():
        raise UserError(f"python interpreter not found: {python}")
    try:  # a Python prints the marker; anything else (a text file, /bin/echo) does not
        probe = subprocess.run(
            [path, "-c", "import ipykernel; print('ipykernel ok')"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise UserError(f"{path} is not a Python interpreter: {brief(error)}") from None
    if probe.stdout.strip() != "ipykernel ok":
        raise UserError(
            f"{path} cannot run a notebook kernel: give --python a Python interpreter that has "
            "ipykernel (pip install ipykernel)"
        )
    kernel = Kernel("unpinned", Path(path), None)
    register(kernel)
    return kernel


def verify(kernel: Kernel, allow_drift: bool | None = None) -> dict | None:
    """Check the kernel's installed files against its lock, in the kernel's own interpreter.

    Drift raises DriftError listing every difference, unless `allow_drift`, in which case the
    result (with its problems) is returned for the report to show at the top. None: the command
    has no --allow-drift, so its error suggests only a rebuild. The check runs without `site`
    (-S: it reads site-packages by path), so no startup hook it may find there (a `.pth`,
    sitecustomize) runs first, to print into its answer or change it.
    """
    if kernel.lock is None:
        return None
    done = _run(
        [kernel.python, "-S", "-m", "repro.lockfile", kernel.lock],
        f"verifying kernel {kernel.name}",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    check = json.loads(done.stdout)
    if not check["ok"] and not allow_drift:
        problems = LockCheck.from_dict(check).problems()
        raise DriftError(
            f"kernel {kernel.name} differs from {shown(kernel.lock)} "
            f"({len(problems)} differences):\n  "
            + "\n  ".join(problems[:50])
            + "\nRebuild it with `make kernels REBUILD=1`"
            + (
                f", or run with {option('--allow-drift', True)} (the report then shows the drift "
                "at the top)."
                if allow_drift is not None
                else "."
            )
        )
    return check


def compile_lock(name: str, upgrade: bool = False, log=sys.stderr) -> Path:
    """Recompile kernelspecs/<name>/requirements.lock from its requirements.in with uv, for the
    Python its `# python: X.Y` line names, from the index's published hashes (no downloads).
    Pins already in the lock are kept where requirements.in still allows them (as pip-compile
    does), so adding a package moves nothing else; `upgrade` takes the newest of everything."""
    source = KERNELSPECS / name / "requirements.in"
    if name not in lockable():  # a name, never a path: the lock is written beside it
        raise UserError(f"no requirements.in for kernel {name!r}; kernels: {', '.join(lockable())}")
    python = target_python(source.read_text())
    if python is None:
        raise UserError(f"{shown(source)} names no Python to lock for: add a line `# python: 3.11`")
    lock = source.with_name("requirements.lock")
    print(f"compiling {shown(lock)} for Python {python}", file=log)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "requirements.lock"  # uv reads the pins to keep from its output
        if lock.is_file() and not upgrade:
            shutil.copyfile(lock, out)
        _run(
            [uv(), "pip", "compile", "--quiet", "--no-header", "--generate-hashes"]
            + ["--python-version", python, "--python-platform", PLATFORM, *find_links()]
            + ["--output-file", out, *(["--upgrade"] if upgrade else [])]
            + [shown(source)],  # relative: the lock's `# via -r ...` comments name no machine path
            f"compiling the lock of {name}",
            cwd=ROOT,
        )
        lock.write_text(LOCK_HEADER.format(python=python, platform=PLATFORM) + out.read_text())
    return lock
