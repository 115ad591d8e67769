"""A user's model as a workload, on the driver side (repro.kernel.models.source): the spec of
`repro run --model SOURCE`, what the driver checks without a framework, the user's file carried
with the code, and the probe that resolves the model in the kernel's interpreter before the run,
so that bad input is one line and nothing is created.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from repro.driver import snapshot
from repro.errors import UserError, brief, quoted
from repro.kernel import models
from repro.kernel.models.module import FILE_NAME
from repro.kernel.models.source import FAMILIES, normalise

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
DEFAULTS = {  # what `--model SOURCE` runs unless -p says otherwise
    "task": "auto",  # the head the model has (its config's, or its output's shape)
    "preset": "user",
    "batch_size": 1,
    "sequence_length": None,  # the model's (at most hf.SEQUENCE tokens)
    "precision": "fp32",
    "mode": "inference",
}


def spec_for(source: str) -> dict:
    """The workload spec of `repro run --model SOURCE`, named after the model."""
    try:
        arch = normalise({"source": source})["arch"]
    except ValueError as error:
        raise UserError(f"--model: {error}") from None
    ref = source.partition(":")[2]
    if arch == "module":
        file, _, function = ref.rpartition(":")
        ref = f"{Path(file).stem}-{function}"
    elif arch == "keras":
        ref = Path(ref).stem
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", ref.rstrip("/\\").rsplit("/", 1)[-1]).strip("-.")
    return {"name": f"{arch}-{tail}"[:100], "model": {"source": source}, **DEFAULTS}


def check(spec: dict, framework: str, resolved: dict, carried: bool) -> None:
    """What the driver can check without the framework: that `framework` runs the source, that
    an hf: reference is a directory with a config or a hub id, that a module: file exists and
    defines its function (`carried`: a rerun's copy of it is checked by the probe instead)."""
    arch, cfg = spec["model"]["arch"], models.config(spec["model"])
    if framework not in FAMILIES[arch]:
        raise UserError(
            f"{arch}: models run in {', '.join(FAMILIES[arch])} in repro, not {framework}; "
            f"use -f {FAMILIES[arch][0]}"
        )
    if resolved["runtime"] not in (None, "native"):
        raise UserError(
            f"runtime={resolved['runtime']} exports repro's own families only; a {arch}: model "
            "runs natively: use runtime=native"
        )
    if arch == "hf":
        if Path(cfg.ref).is_dir():
            if not (Path(cfg.ref) / "config.json").is_file():
                raise UserError(
                    f"hf:{cfg.ref} holds no config.json: give a directory written by "
                    "save_pretrained, or a hub id"
                )
        elif not HUB_ID.fullmatch(cfg.ref):
            raise UserError(
                f"hf:{quoted(cfg.ref)} is neither a directory here nor a hub id (name or "
                "owner/name)"
            )
    elif arch == "module" and not carried:
        check_file(cfg.file, cfg.function)


def check_file(file: str, function: str) -> None:
    """A module: file that exists, has a plain name, parses and defines `function` (read, not
    run: the kernel runs it)."""
    path = Path(file)
    if not path.is_file():
        raise UserError(f"module: {quoted(file)} is not a file")
    if not FILE_NAME.fullmatch(path.name):
        raise UserError(f"module: {quoted(path.name)} is not a plain file name ending in .py")
    try:
        tree = ast.parse(path.read_bytes(), filename=file)
    except (SyntaxError, ValueError) as error:
        raise UserError(f"module: {file} does not parse: {brief(error)}") from None
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if function not in defined:
        has = f"its functions: {', '.join(defined)}" if defined else "it defines no functions"
        raise UserError(f"module: {file} defines no function {function} ({has})")


def carry(spec: dict) -> Path:
    """The code a module: run executes: this checkout's library with the user's file beside it
    (module.CARRIED), so the report's code snapshot holds it."""
    cfg = models.config(spec["model"])
    files = {**snapshot.library_files(), cfg.carried: Path(cfg.file).read_bytes()}
    return snapshot.code_folder(files, snapshot.tree_sha256(files)[:12])


def resolve(spec: dict, framework: str, python: str, code: Path) -> dict:
    """`spec` with its model resolved by the probe in the kernel's interpreter: the task, input
    shape, parameter count and pins filled in. A problem with the model is one UserError; where
    the model's own code or library raised, its traceback goes to a log file the line names."""
    arch, config = spec["model"]["arch"], spec["model"]["config"]
    if arch == "hf" and Path(config["ref"]).is_dir():  # the probe runs in `code`, not here
        config = {**config, "ref": str(Path(config["ref"]).resolve())}
    done = subprocess.run(  # in `code`: `-m` imports the repro of the folder it runs in
        [python, "-m", "repro.kernel.models.probe", framework],
        input=json.dumps({"arch": arch, "config": config}),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(code)},
        cwd=code,
    )
    if done.returncode == 2:
        raise UserError(f"{arch}: {brief(done.stderr.strip().splitlines()[-1])}")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        fd, log = tempfile.mkstemp(prefix="repro-source-", suffix=".log")
        with os.fdopen(fd, "w") as file:
            file.write(done.stderr)
        raise UserError(
            f"{arch}: the model could not be built: {brief(lines[-1])} (traceback in {log})"
        )
    config = json.loads(done.stdout)["config"]
    model = {"arch": arch, "config": config}
    models.config(model)  # as any spec's: typed and in range
    return {
        **spec,
        "model": model,
        "task": config["task"],
        "sequence_length": config.get("sequence_length"),
    }
