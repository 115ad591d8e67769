"""A run that talks: never silent for long, framework log noise kept out of the terminal, each
extra process's progress shown as it comes (repro.driver.talk, repro.kernel.noise,
repro.kernel.repeat.fresh). The closing block and --json of real runs are checked where those
runs are made (test_run, test_compare, test_rerun, test_sweep)."""

from __future__ import annotations

import io
import json
import re
import sys
import time
from pathlib import Path

from repro.driver import kernels
from repro.driver.execute import Sieve
from repro.driver.talk import CLEAR, Talk
from repro.kernel import noise, repeat

TF_NOISE = [  # what TensorFlow 2.20 and its CUDA libraries print at import, as seen in runs
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796657184.263710   12315 port.cc:153] oneDNN custom operations are on. You may",
    "E0000 00:00:1733334221.101020    4242 cuda_dnn.cc:8310] Unable to register cuDNN factory",
    "2024-01-05 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
]


class Clocked(io.StringIO):
    """A stream that notes when each line arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.times.append((time.monotonic(), text))
        return super().write(text)


def test_a_silent_phase_is_told_every_few_seconds_and_a_terminal_gets_a_spinner():
    log = io.StringIO()
    with Talk(log, every=0.3) as talk, talk.phase("building kernel torch-cpu"):
        time.sleep(1.6)
    told = log.getvalue().splitlines()
    assert len(told) >= 3 and all(
        line.startswith("still building kernel torch-cpu") for line in told
    )
    assert told[-1].endswith(" (1 s)")  # its elapsed time, once there is one

    screen = io.StringIO()
    with Talk(screen, spinner=True) as talk:
        with talk.phase("running code cell 3/11"):
            time.sleep(0.6)
            talk.write("first call: 0.5 s\n")  # a line: the spinner is erased before it
        time.sleep(0.6)  # no phase: nothing to spin
    before, after = screen.getvalue().split("first call: 0.5 s\n")
    clear = re.escape(CLEAR)
    assert re.fullmatch(rf"({clear}[-|/\\] running code cell 3/11)+{clear}", before), before
    assert after == ""  # nothing under way: no spinner


def test_framework_log_noise_stays_out_of_the_terminal_line_by_line():
    assert all(noise.noise(line) for line in TF_NOISE)
    kept = ["first call: 0.052 s (includes compilation / cold start)", "I0 is not a log", ""]
    assert not any(noise.noise(line) for line in kept)
    terminal = io.StringIO()
    with Sieve(terminal) as sieve:
        for line in [*TF_NOISE, *kept[:2]]:  # lines arrive in pieces, as a kernel sends them
            sieve.write(line[:7])
            sieve.write(line[7:] + "\n")
        sieve.write("no newline at the end")
    assert terminal.getvalue() == f"{kept[0]}\n{kept[1]}\nno newline at the end\n"


def test_a_kernel_build_streams_uv_and_is_never_silent(tmp_path, monkeypatch):
    fake_uv = tmp_path / "uv"  # a slow install: uv's lines, with a long silence between them
    fake_uv.write_text(
        "#!/bin/sh\necho 'Resolved 2 packages in 3ms' >&2\nsleep 1.5\n"
        "echo ' + numpy==2.2.0' >&2\necho 'Installed 2 packages in 1.5s' >&2\n"
    )
    fake_uv.chmod(0o755)
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.2.0 --hash=sha256:00\n")
    monkeypatch.setattr(kernels, "KERNELS", tmp_path / "kernels")
    monkeypatch.setattr(kernels, "uv", lambda: str(fake_uv))
    log = Clocked()
    with Talk(log, every=0.5) as talk:
        kernels.build("fake", lock, talk)
    lines = [text for _, text in log.times]
    said = "".join(lines)
    assert "building kernel fake from" in said and "kernel fake built in" in said
    assert "  Resolved 2 packages" in said and "  Installed 2 packages" in said
    assert "numpy==" not in said  # uv's line per package: in the build log only
    assert "numpy==2.2.0" in (tmp_path / "kernels" / "fake.build.log").read_text()
    assert any(line.startswith("still building kernel fake") for line in lines)
    gaps = [b - a for (a, _), (b, _) in zip(log.times, log.times[1:], strict=False)]
    assert max(gaps) < 1.2  # 0.5 s asked for, on a busy machine


def test_an_extra_process_shows_its_progress_as_it_comes(tmp_path, monkeypatch):
    kernel_log = tmp_path / "kernel.log"
    monkeypatch.setenv(noise.KERNEL_LOG_VARIABLE, str(kernel_log))
    child = (
        "import sys, time\n"
        f"print({TF_NOISE[1]!r}, file=sys.stderr)\n"
        "print('first call: 0.1 s')\n"
        "time.sleep(1.0)\n"
        "print('measured 5/5 steps')\n"
        "print('{\"step_s\": [0.1]}')\n"
    )
    log = Clocked()
    result = repeat.fresh([sys.executable, "-u", "-c", child], "process 2/3", log)
    assert result == {"step_s": [0.1]}
    shown = [(t, text) for t, text in log.times if text.strip()]
    assert [text for _, text in shown] == [
        "process 2/3: starting",
        "process 2/3: first call: 0.1 s",
        "process 2/3: measured 5/5 steps",
    ]
    assert shown[2][0] - shown[1][0] > 0.7  # the first line came before the process ended
    assert TF_NOISE[1] in kernel_log.read_text()  # its stderr: in the run's kernel.log


def test_a_failing_extra_process_says_why(tmp_path):
    child = "import sys; print('Boom: no such model', file=sys.stderr); sys.exit(3)"
    try:
        repeat.fresh([sys.executable, "-c", child], "process 2/2", io.StringIO())
    except RuntimeError as error:
        assert "process 2/2 failed (exit 3)" in str(error) and "Boom" in str(error)
    else:
        raise AssertionError("no error")


def test_json_helpers_give_one_object(capsys):
    from repro.driver.closing import answering

    with answering(True) as give:
        print("a closing block, for people")
        give({"status": "ok", "folder": Path("/tmp/x")})
    out, err = capsys.readouterr()
    assert json.loads(out) == {"status": "ok", "folder": "/tmp/x"}
    assert err == "a closing block, for people\n"
