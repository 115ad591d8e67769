"""An offline wheelhouse for a machine that already has the frameworks but no network.

A lent GPU box typically has Python, torch, JAX and the CUDA stack preinstalled, and nothing of
the notebook runtime. `repro wheelhouse` downloads (here, where the index is reachable) the wheels
of exactly what repro's driver and kernel side need beyond what that machine has, for its Python
and platform, into one folder to carry there; `install.sh` in the folder installs them with no
network, after which `python3 -m repro run ... --unpinned --python python3` works on that box.

The frameworks themselves are never bundled (an unpinned run uses the machine's own); what the
machine has is read from `pip list --format=freeze` output taken on it (`--have`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from repro.errors import UserError, option
from repro.paths import KERNELSPECS, ROOT, creatable, outside_records

FRAMEWORK_PACKAGES = {"torch", "jax", "jaxlib", "tensorflow", "tensorflow-cpu", "keras", "mxnet"}
LOCK_ONLY = {"pip-tools", "uv"}  # the driver needs these to compile locks, not to run
KERNEL_EXTRAS = ("jax-cpu", "tensorflow-cpu", "torch-cpu")  # flax etc., beside the framework
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")
PLATFORMS += ("manylinux2014_x86_64", "manylinux1_x86_64")
CARRY_LIMIT = 56 * 2**20  # the device tool carries 64 MiB in all, the checkout included


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The project name of one requirements line (None for comments, blanks and -r lines)."""
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    return canonical(re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0])


def read_in(path: Path) -> set[str]:
    """Project names in a requirements.in file, following its `-r` includes."""
    names = set()
    for line in path.read_text().splitlines():
        if line.strip().startswith("-r"):
            names |= read_in(path.parent / line.split(None, 1)[1].strip())
        elif name := requirement_name(line):
            names.add(name)
    return names


def needed() -> set[str]:
    """What the driver and every framework kernel need to run, frameworks left out."""
    import tomllib  # Python 3.11+, and only this command needs it

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {requirement_name(r) for r in project["dependencies"]} - LOCK_ONLY
    for kernel in KERNEL_EXTRAS:
        names |= read_in(KERNELSPECS / kernel / "requirements.in")
    return names - FRAMEWORK_PACKAGES


# A line of `pip list --format=freeze` or `pip freeze`: name==version, or name @ url.
FREEZE_LINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])? *(===?|@) *\S+")


def have(freeze: Path | None) -> set[str]:
    """Names in a `pip list --format=freeze` (or `pip freeze`) taken on the target machine;
    UserError for a file that is none, before anything is downloaded."""
    if freeze is None:
        return set()
    try:
        lines = freeze.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or "not text"
        raise UserError(f"cannot read {option('--have')} {freeze}: {why}") from None
    listed = [(n, line.strip()) for n, line in enumerate(lines, 1) if requirement_name(line)]
    wrong = next(((n, line) for n, line in listed if not FREEZE_LINE.fullmatch(line)), None)
    if wrong or not listed:
        where = f"line {wrong[0]} is {wrong[1][:60]!r}" if wrong else "it lists no packages"
        raise UserError(
            f"{option('--have')} {freeze} is not `pip list --format=freeze` output ({where}); "
            "take it on the target with `python3 -m pip list --format=freeze > have.txt`"
        )
    return {requirement_name(line.split(" @ ")[0]) for _, line in listed}


def wheel_name(path: Path) -> str:
    return canonical(path.name.split("-", 1)[0])


def destination(out: Path) -> Path:
    """`out` resolved, where a wheelhouse may go: a new folder, an empty one or a wheelhouse
    (which it replaces), outside any run or sweep folder; UserError otherwise."""
    flag = option("--out")
    fix = f"choose another folder with {flag}"
    resolved = outside_records(out, flag, fix=fix)
    creatable(resolved, flag, fix)
    if resolved.exists() and not (
        resolved.is_dir()
        and (not any(resolved.iterdir()) or {"install.sh", "wheels"} <= set(os.listdir(resolved)))
    ):
        raise UserError(
            f"{flag} {out} exists and is not a wheelhouse, which it would replace; {fix}"
        )
    return resolved


def build(out: Path, python_version: str, freeze: Path | None) -> Path:
    """Download the wheelhouse into a new folder, write its install script, then put it at `out`
    (replacing the wheelhouse there); `out` and `freeze` are checked before any download."""
    out = destination(out)
    present = have(freeze) | FRAMEWORK_PACKAGES
    wanted = sorted(needed() - present)
    partial = out.with_name(f".{out.name}.partial")  # a failed build leaves nothing at `out`
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        fill(partial, python_version, wanted, present)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    count, size = len(list((out / "wheels").iterdir())), folder_size(out / "wheels")
    print(f"{out}: {count} wheels, {size / 2**20:.1f} MiB, for CPython {python_version}")
    return out


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def fill(out: Path, python_version: str, wanted: list[str], present: set[str]) -> None:
    """Download the wheels of `wanted` into out/wheels and write the install script."""
    wheels = out / "wheels"
    wheels.mkdir()
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    command += ["--python-version", python_version, "--implementation", "cp", "-d", str(wheels)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    done = subprocess.run(command + wanted, capture_output=True, text=True)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"pip could not download the wheelhouse: {tail[0]}")
    for wheel in wheels.glob("*.whl"):  # a dependency the machine already has stays behind
        if wheel_name(wheel) in present:
            wheel.unlink()
    (out / "requirements.txt").write_text("\n".join(wanted) + "\n")
    script = out / "install.sh"
    script.write_text(
        "#!/bin/sh\n# Installs repro's runtime into this machine's python3, offline.\n"
        'cd "$(dirname "$0")" && exec "${PYTHON:-python3}" -m pip install --quiet --no-index '
        "--find-links wheels -r requirements.txt\n"
    )
    script.chmod(0o755)
    size = folder_size(wheels)
    if size > CARRY_LIMIT:
        raise UserError(
            f"the wheelhouse is {size / 2**20:.0f} MiB, over {CARRY_LIMIT / 2**20:.0f} MiB: "
            f"pass {option('--have')} with the target's `pip list --format=freeze` so that what "
            "it has stays behind"
        )
