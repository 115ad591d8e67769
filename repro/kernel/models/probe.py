"""Resolve a source's model in a kernel's interpreter, before a run (repro.driver.sources):

    python -m repro.kernel.models.probe FRAMEWORK < model.json

reads a normalised `model` entry ({arch, config}) on stdin and prints {"config": ...}, the
config with the task, input shape, parameter count and pins filled in (`<family>_<framework>
.resolve`). A SourceError is one line on stderr, exit 2; anything else (the user's function
raised, transformers found no such model) its traceback, exit 1. What the user's code prints
goes to stderr, so stdout holds the answer alone.
"""

from __future__ import annotations

import contextlib
import json
import sys

from repro.kernel import models
from repro.kernel.models.source import SourceError


def main() -> int:
    framework, model = sys.argv[1], json.load(sys.stdin)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            config = models.native(model["arch"], framework).resolve(models.config(model))
    except SourceError as error:  # its first line: the driver shows the last line it gets
        print(str(error).strip().splitlines()[0], file=sys.stderr)
        return 2
    json.dump({"config": config}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
