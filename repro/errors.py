"""One exception family. A ReproError is a message for the user (no traceback) and an exit code;
anything else escaping the CLI is a bug: it keeps its traceback and says so (exit INTERNAL)."""

INTERNAL = 70  # exit code of a bug in repro (EX_SOFTWARE in sysexits.h)
INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT)


class ReproError(Exception):
    exit_code = 1


class UserError(ReproError):
    """Bad input: unknown workload, framework or parameter, a wrong type or value."""

    exit_code = 2


class DriftError(ReproError):
    """The kernel's installed packages differ from its lock."""

    exit_code = 3


class RunFailed(ReproError):
    """The notebook raised or the kernel died; the run folder keeps the partial report."""

    exit_code = 1


def brief(error: BaseException | str, limit: int = 200) -> str:
    """An exception (or message) as one short line for the user: its first non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else lines[0] if lines else ""
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
