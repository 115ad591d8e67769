"""repro: reproducible, Jupyter-first benchmarks of AI frameworks and architectures.

Two sides live here. The driver (cli, plan, kernels, execute, finalize) runs in the project's
own environment. The in-kernel side (capture, lockfile, measure, report, frameworks, models) runs
inside the pinned framework kernels and imports only the standard library, numpy/scipy/seaborn
and its own framework.
"""

__version__ = "0.1.0"
MIME = "application/vnd.repro+json"  # how the kernel hands results to the driver, via the notebook
