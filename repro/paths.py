"""Where things live in a checkout. Built environments stay inside the project, git-ignored."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
KERNELSPECS = ROOT / "kernelspecs"  # committed: requirements.in + hashed lock per kernel
RUNS = ROOT / "runs"
LESSONS = ROOT / "lessons"  # one notebook per benchmarking pitfall (repro lesson NAME)
KERNELS = Path(os.environ.get("REPRO_KERNELS_DIR", ROOT / ".kernels"))  # the virtual environments
JUPYTER_DATA = ROOT / ".jupyter"  # project-local Jupyter data dir holding the kernelspecs
WORKLOADS = Path(__file__).resolve().parent / "workloads"  # one YAML spec per workload
