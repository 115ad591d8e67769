"""Framework log noise (both sides): the C++ log lines of TensorFlow, XLA, oneDNN and the CUDA
libraries (absl's preamble, "oneDNN custom operations are on", cuDNN factory registrations,
CPU instruction notes). They say nothing about the run's figures, so they stay out of the
terminal; the run keeps them in its folder's kernel.log: what the kernel process wrote to its
own stderr and stdout, and the noise of its repeat processes (repro.kernel.repeat)."""

from __future__ import annotations

import os
import re

KERNEL_LOG = "kernel.log"
KERNEL_LOG_VARIABLE = "REPRO_KERNEL_LOG"  # the kernel's kernel.log, for its repeat processes

NOISE = re.compile(
    r"[IWEF]\d{4} \S+\s+\d+ \S+:\d+\] "  # absl: `I0000 00:00:1796657184.26 12315 port.cc:153]`
    r"|\d{4}-\d\d-\d\d [\d:.]+: [IWEF] \S+:\d+\] "  # older TF: `2026-12-07 15:26:24.2: I x.cc:113]`
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .*rebuild TensorFlow"
)


def noise(line: str) -> bool:
    return NOISE.match(line.strip()) is not None


def keep(text: str) -> None:
    """Append `text` to the kernel's kernel.log, where the driver named one."""
    path = os.environ.get(KERNEL_LOG_VARIABLE)
    if path and text:
        with open(path, "a") as log:
            log.write(text if text.endswith("\n") else text + "\n")
