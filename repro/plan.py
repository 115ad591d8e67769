"""Resolve what the user asked for into a validated, immutable RunPlan (driver side).

Bad input stops here, before anything is created: every error is one line that names the
valid choices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from repro.errors import UserError
from repro.paths import KERNELSPECS, RUNS, TEMPLATES

WORKLOADS_DIR = Path(__file__).with_name("workloads")
FRAMEWORKS = ("torch", "tensorflow", "jax")
DEFAULT_WORKLOAD, DEFAULT_FRAMEWORK = "resnet-50", "torch"


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    help: str
    default: Any = None  # None: taken from the workload spec
    choices: tuple = ()
    minimum: int | None = None

    def parse(self, raw: str) -> Any:
        """Convert a command-line string to this parameter's type, or raise UserError."""
        if self.type is int:
            try:
                value = int(raw)
            except ValueError:
                raise UserError(f"{self.name} must be an integer, got {raw!r}") from None
        else:
            value = raw
        return self.check(value)

    def check(self, value: Any) -> Any:
        if self.choices and value not in self.choices:
            raise UserError(
                f"{self.name}={value!r} is not valid; choose one of: {', '.join(self.choices)}"
            )
        if self.minimum is not None and value < self.minimum:
            raise UserError(f"{self.name} must be >= {self.minimum}, got {value}")
        return value


PARAMS = {
    p.name: p
    for p in [
        Param("batch_size", int, "samples per step", minimum=1),
        Param("steps", int, "measured steps (each one timed and kept)", 20, minimum=1),
        Param("warmup", int, "warm-up steps after the first call, not measured", 5, minimum=0),
        Param("mode", str, "what is measured", choices=("inference",)),
        Param(
            "precision",
            str,
            "numeric precision, set explicitly in every framework",
            choices=("fp32", "tf32"),
        ),
        Param("seed", int, "seed for Python, NumPy, the framework and the inputs", 0, minimum=0),
        Param(
            "threads", int, "CPU threads for the framework; 0 = every core available", 0, minimum=0
        ),
        Param("device", str, "where the model runs", "auto", choices=("auto", "cpu", "gpu")),
    ]
}


def workloads() -> dict[str, dict]:
    """Every workload spec in repro/workloads/, by name."""
    specs = {}
    for path in sorted(WORKLOADS_DIR.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        specs[spec["name"]] = spec
    return specs


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["batch_size=4", "steps=20"]` -> `{"batch_size": "4", "steps": "20"}`."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"parameters are name=value, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


@dataclass(frozen=True)
class RunPlan:
    workload: dict  # the spec, as read from repro/workloads/<name>.yaml
    framework: str
    kernel: str  # a folder of kernelspecs/, or "unpinned"
    params: dict  # every parameter, resolved and typed
    template: Path
    python: str | None = None  # the interpreter of an unpinned run
    allow_drift: bool = False
    runs_dir: Path = RUNS

    def notebook_parameters(self, run_context: dict) -> dict:
        """What papermill injects into the template's parameters cell."""
        return {
            "workload": self.workload["name"],
            "framework": self.framework,
            "model": self.workload["model"],
            **self.params,
            "run_context": run_context,
        }


def kernels_for(framework: str) -> list[str]:
    return sorted(p.name for p in KERNELSPECS.iterdir() if p.name.startswith(f"{framework}-"))


def resolve(
    workload: str = DEFAULT_WORKLOAD,
    framework: str = DEFAULT_FRAMEWORK,
    params: dict[str, str] | None = None,
    *,
    kernel: str | None = None,
    unpinned_python: str | None = None,
    allow_drift: bool = False,
    template: str | None = None,
    runs_dir: str | Path | None = None,
) -> RunPlan:
    """Validate the request and return the plan, or raise UserError naming the valid choices."""
    specs = workloads()
    if workload not in specs:
        raise UserError(f"unknown workload {workload!r}; choose one of: {', '.join(specs)}")
    if framework not in FRAMEWORKS:
        raise UserError(f"unknown framework {framework!r}; choose one of: {', '.join(FRAMEWORKS)}")
    spec = specs[workload]
    unknown = sorted(set(params or {}) - set(PARAMS))
    if unknown:
        raise UserError(f"unknown parameter {unknown[0]!r}; valid parameters: {', '.join(PARAMS)}")
    resolved = {}
    for name, param in PARAMS.items():
        if params and name in params:
            resolved[name] = param.parse(params[name])
        else:
            resolved[name] = param.check(spec[name] if param.default is None else param.default)
    if resolved["threads"] == 0:  # recorded as a number, so a rerun uses the same count
        resolved["threads"] = len(os.sched_getaffinity(0))

    if unpinned_python:
        kernel_name = "unpinned"
    else:
        choices = kernels_for(framework)
        kernel_name = kernel or f"{framework}-cpu"
        if kernel_name not in choices:
            raise UserError(
                f"unknown kernel {kernel_name!r} for {framework}; "
                f"choose one of: {', '.join(choices)}"
            )
    template_path = Path(template) if template else TEMPLATES / f"{spec['task']}.ipynb"
    if not template_path.is_file():
        raise UserError(f"template not found: {template_path}")
    return RunPlan(
        workload=spec,
        framework=framework,
        kernel=kernel_name,
        params=resolved,
        template=template_path.resolve(),
        python=unpinned_python,
        allow_drift=allow_drift,
        runs_dir=Path(runs_dir) if runs_dir else RUNS,
    )
