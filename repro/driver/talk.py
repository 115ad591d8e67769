"""A terminal that is never silent for long (driver side).

Building a kernel, starting one, running a notebook cell or writing a report can each take
minutes without a line of output. `Talk` wraps the stream the driver reports on (stderr): while a
phase is under way (`phase`, `now`), a terminal shows a spinner line with the phase and its
elapsed time, and any other stream (a CI log, a file) gets `still <phase> (45 s)` after every
HEARTBEAT_S seconds without output.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

HEARTBEAT_S = 6.0  # silence before a line: with start-up and a busy machine, still under 10 s
SPIN = "|/-\\"  # ASCII: braille or emoji spinners render as boxes in some terminals' fonts
CLEAR = "\r\x1b[K"  # back to the line's start, and erase it


def elapsed(seconds: float) -> str:
    """`45 s`, `2 min 5 s`."""
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class Talk:
    """A stream (write, flush) over `out` that speaks up while a phase runs: a spinner in a
    terminal, else a `still ...` line after `every` seconds of silence."""

    def __init__(self, out, every: float = HEARTBEAT_S, spinner: bool | None = None) -> None:
        self.out, self.every = out, every
        self.spinner = is_terminal(out) if spinner is None else spinner
        self.lock = threading.RLock()  # the beat thread writes too
        self.last = time.monotonic()  # when `out` last got a line
        self.line_open = False  # the last write did not end its line
        self.drawn = False  # a spinner line is on screen
        self.what: str | None = None
        self.since = self.last
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="repro-talk", daemon=True)

    def write(self, text: str) -> int:
        with self.lock:
            self.erase()
            self.out.write(text)
            self.out.flush()
            if text:
                self.line_open = not text.endswith("\n")
                self.last = time.monotonic()
        return len(text)

    def flush(self) -> None:
        with self.lock:
            self.out.flush()

    def isatty(self) -> bool:
        return self.spinner

    def now(self, what: str | None) -> None:
        """What is under way from now on (None: nothing to speak of)."""
        with self.lock:
            self.erase()
            self.what, self.since = what, time.monotonic()

    @contextmanager
    def phase(self, what: str) -> Iterator[Talk]:
        """`what` is under way inside the block; then whatever was before it."""
        before = self.what, self.since
        self.now(what)
        try:
            yield self
        finally:
            with self.lock:
                self.erase()
                self.what, self.since = before

    def beat(self) -> None:
        turn = 0
        while not self.done.wait(0.25 if self.spinner else 0.5):
            with self.lock:
                now = time.monotonic()
                if self.what is None or self.line_open:
                    continue
                took = f" ({elapsed(now - self.since)})" if now - self.since >= 1 else ""
                if self.spinner:  # on one line, which CLEAR erases whole
                    turn += 1
                    room = shutil.get_terminal_size().columns - 3 - len(took)
                    self.out.write(f"{CLEAR}{SPIN[turn % len(SPIN)]} {self.what[:room]}{took}")
                    self.out.flush()
                    self.drawn = True
                elif now - self.last >= self.every:
                    self.write(f"still {self.what}{took}\n")

    def erase(self) -> None:
        if self.drawn:
            self.out.write(CLEAR)
            self.drawn = False

    def __enter__(self) -> Talk:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        with self.lock:
            self.erase()
            self.out.flush()


@contextmanager
def talking(log, what: str | None = None) -> Iterator[Talk]:
    """`log` as a Talk (itself, if it is one already), with `what` under way in the block."""
    if isinstance(log, Talk):
        with log.phase(what) if what else nullcontext():
            yield log
        return
    with Talk(log) as talk:
        talk.now(what)
        yield talk
