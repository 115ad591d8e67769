"""One fresh measurement (repro.kernel.repeat.once) whose every step also spins the CPU for a fixed
time: the real, exactly sized slowdown that benchmarks/rerun_verdicts.py plants. A spin, not a
sleep: it keeps the core busy as more work would, and sub-millisecond sleeps overshoot.

    <kernel python> benchmarks/slowed_process.py '<repro.kernel.repeat request>' SECONDS
"""

from __future__ import annotations

import json
import sys
import time

from repro.kernel import measure, repeat


def spinning(step, seconds: float):
    def slower():
        out = step()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return out

    return slower


def main() -> None:
    request, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
    run = measure.protocol
    measure.protocol = lambda step, *args, **kwargs: run(spinning(step, seconds), *args, **kwargs)
    print(json.dumps(repeat.once(request)))


if __name__ == "__main__":
    main()
