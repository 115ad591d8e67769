"""repro: reproducible, Jupyter-first benchmarks of AI frameworks and architectures.

Two sides live here. `repro.driver` is the `repro` command (plans, kernels, papermill, run
folders), in the project's own environment. `repro.kernel` is what a report imports inside a
pinned framework kernel (the protocol, the report's cells, frameworks, models): the standard
library, numpy/scipy/seaborn and its own framework. The modules at this level (records, stats,
lockfile, markdown, errors, paths) serve both and import neither.
"""

__version__ = "0.1.0"
MIME = "application/vnd.repro+json"  # how the kernel hands results to the driver, via the notebook
