"""One exception family. A ReproError is a message for the user (no traceback) and an exit code;
anything else escaping the CLI is a bug and keeps its traceback."""


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
