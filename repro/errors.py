"""One exception family. A ReproError is a message for the user (no traceback) and an exit code;
anything else escaping the CLI is a bug: it keeps its traceback and says so (exit INTERNAL)."""

import difflib
import os
import re
import shlex

INTERNAL = 70  # exit code of a bug in repro (EX_SOFTWARE in sysexits.h)
INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT)
TERMINATED = 143  # exit code after SIGTERM (128 + SIGTERM)


class ReproError(Exception):
    exit_code = 1

    def __str__(self) -> str:  # every message, however it was built, is cut to a readable size
        return shortened(super().__str__())


class UserError(ReproError):
    """Bad input: unknown workload, framework or parameter, a wrong type or value."""

    exit_code = 2


class DriftError(ReproError):
    """The kernel's installed packages differ from its lock."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, where a handler makes it an exception so that clean-up runs."""

    exit_code = TERMINATED


class RunFailed(ReproError):
    """The notebook raised or the kernel died; the run folder keeps the partial report."""

    exit_code = 1


VALUE_LIMIT = 100  # characters of a value that a message echoes
LINE_LIMIT = 1000  # characters of any one line of a message
LINES_LIMIT = 60  # lines of a message or of a listing shown with one


def cut(value, limit: int = VALUE_LIMIT) -> str:
    """`value` as text (a str as is, anything else as str()), its first `limit` characters then
    "… and N more characters" where it is longer: what a message echoes of a user's value."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… and {len(text) - limit:,} more characters"


def quoted(value, limit: int = VALUE_LIMIT) -> str:
    """repr(value), cut (a long string is cut before its repr is taken)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… and {len(value) - limit:,} more characters"
    return cut(repr(value), limit)


def cut_lines(text: str | list[str], limit: int = LINES_LIMIT) -> str:
    """`text` (or a list of lines) to its first `limit` lines, then "… and N more lines"."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    if len(lines) <= limit:
        return "\n".join(lines)
    return "\n".join([*lines[:limit], f"… and {len(lines) - limit:,} more lines"])


def shortened(message: str) -> str:
    """A message cut to LINES_LIMIT lines of LINE_LIMIT characters each."""
    return cut_lines([cut(line, LINE_LIMIT) for line in message.splitlines()])


def brief(error: BaseException | str, limit: int = 200) -> str:
    """An exception (or message) as one short line for the user: its first non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else lines[0] if lines else ""
    return cut(text or type(error).__name__, limit)


# Names people type for a framework or parameter that difflib would not find (tf: tensorflow).
ALIASES = {
    "pytorch": "torch",
    "pt": "torch",
    "tf": "tensorflow",
    "keras": "tensorflow",
    "flax": "jax",
    "mx": "mxnet",
    "gluon": "mxnet",
    "bs": "batch_size",
    "batch": "batch_size",
    "iterations": "steps",
    "iters": "steps",
    "warmup_steps": "warmup",
    "num_threads": "threads",
    "dtype": "precision",
    "seq_len": "sequence_length",
    "gpus": "devices",
    "learning_rate": "lr",
}


def unknown(what: str, name: str, choices) -> str:
    """ "unknown framework 'pytorch' (did you mean torch?)", or where nothing is close, the
    choices: "unknown framework 'caffe'; choose one of: torch, ...". Case, '-', '_' and '.' are
    ignored (resnet50 is resnet-50), then ALIASES, then difflib."""

    def key(text: str) -> str:
        return re.sub(r"[-_. ]", "", text.lower())

    keys = {key(c): c for c in choices}
    alias = ALIASES.get(name.lower().replace("-", "_"))
    close = difflib.get_close_matches(key(name), keys, n=1, cutoff=0.6)
    match = (
        keys.get(key(name)) or (alias if alias in choices else None) or (close and keys[close[0]])
    )
    if match:
        return f"unknown {what} {quoted(name)} (did you mean {match}?)"
    return f"unknown {what} {quoted(name)}; choose one of: {', '.join(choices)}"


def make_vars() -> list[str]:
    """The make variables the Makefile passes to repro, where make ran it (else none)."""
    return os.environ.get("REPRO_MAKE_VARS", "").split()


def option(flag: str, value: str | bool | None = None) -> str:
    """A CLI option (or positional argument) as the user sets it: the flag, or its make variable
    where make ran repro (REPRO_MAKE_VARS, set by the Makefile, lists the variables it passes).
    option("--trust", True): --trust | TRUST=1; option("--tolerance", "5%"): --tolerance 5% |
    TOLERANCE=5%; option("--tolerance"): --tolerance | TOLERANCE."""
    var = flag.lstrip("-").upper().replace("-", "_")
    if var in make_vars():
        return var if value is None else f"{var}={1 if value is True else shlex.quote(value)}"
    if value is None or value is True:
        return flag
    return f"{flag} {shlex.quote(value)}" if flag.startswith("-") else shlex.quote(value)
