"""Bounds on what repro reads. Numbers (run parameters, sweep fields, environment variables):
ASCII digits, finite, within the field's range. Text: a length and, where the field has one, an
alphabet. YAML files: a size, a nesting depth, no anchors or aliases, no key given twice. Every
refusal is one UserError line naming the field (or file and line), the bound and the fix.

Stdlib only (yaml is imported when a file is read): the kernel imports it too."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from repro.errors import UserError, brief, quoted

# int() and float() take any Unicode digit (int("٣") == 3), "1_000", "nan" and "inf": not these.
INTEGER = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
TEXT_LIMIT = 4096  # characters of a text field with no limit of its own (PATH_MAX)


def number(value, name: str, kind: type, minimum: float, maximum: float, fix: str = ""):
    """`value` (text, or a number from YAML or JSON) as a finite `kind` (int or float) within
    [minimum, maximum]; UserError naming `name`, the bound and `fix` otherwise."""
    fix = f"; {fix}" if fix else ""
    what = "an integer" if kind is int else "a number"
    if isinstance(value, str):
        text = value.strip()
        try:
            if not (INTEGER if kind is int else DECIMAL).fullmatch(text):
                raise ValueError
            value = kind(text)  # float("1e999") is inf: refused below
        except ValueError:  # also an int of more digits than Python converts
            if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                raise UserError(f"{name} must be a finite number, got {text}{fix}") from None
            other = any(c.isdigit() and not c.isascii() for c in text)  # ٣, ３
            hint = " (ASCII digits 0-9 only)" if other else ""
            raise UserError(f"{name} must be {what}, got {quoted(value)}{hint}{fix}") from None
    wrong = kind is int and not isinstance(value, int)
    if isinstance(value, bool) or not isinstance(value, int | float) or wrong:
        raise UserError(f"{name} must be {what}, got {quoted(value)}{fix}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value}{fix}")
    shown = quoted(kind(value) if abs(value) < 1e300 else value)  # an int too big for a float
    if value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {shown}{fix}")
    if value > maximum:
        raise UserError(f"{name} must be <= {maximum}, got {shown}{fix}")
    return kind(value)


def text(value, name: str, limit: int = TEXT_LIMIT, form: str = "", what: str = "") -> str:
    """`value` as a str of at most `limit` characters, matching the regular expression `form`
    (ASCII; `what` says it in words) where given; UserError otherwise."""
    if not isinstance(value, str):
        raise UserError(f"{name} must be text, got {quoted(value)}")
    if len(value) > limit:
        raise UserError(f"{name} must be at most {limit:,} characters, got {quoted(value)}")
    if form and not re.fullmatch(form, value, re.ASCII):
        raise UserError(f"{name} must be {what or form}, got {quoted(value)}")
    return value


# Every environment variable repro reads a number from: (kind, minimum, maximum, default, unit).
ENVIRONMENT = {
    "REPRO_MIN_FREE_MB": (float, 0, 10**12, 200.0, "MB of free disk a run needs (0: no check)"),
    "REPRO_MEMORY_LIMIT_MB": (float, 1, 10**12, None, "MB of RSS the kernel may hold"),
    "REPRO_DATA_MAX_MB": (float, 0, 10**12, 2048.0, "MB of data a run may read"),
}


def setting(variable: str):
    """The environment variable's number (its default where unset or empty), or UserError."""
    kind, minimum, maximum, default, unit = ENVIRONMENT[variable]
    raw = os.environ.get(variable, "")
    if not raw.strip():
        return default
    fix = f"set it to {unit}, or unset it"
    return number(raw, variable, kind, minimum, maximum, fix)


def check_environment() -> None:
    """Every ENVIRONMENT variable read now, so a bad one stops a run before anything is made."""
    for variable in ENVIRONMENT:
        setting(variable)


YAML_BYTES = 1 << 18  # a sweep or workload file is a few hundred bytes (and yaml reads 100 KB/s)
YAML_DEPTH = 20  # nested mappings and lists


def read_yaml(path: str | Path, what: str):
    """The YAML file at `path` as data (not yet checked), or UserError naming `what`, the file
    and the line: a file over YAML_BYTES or YAML_DEPTH levels deep, an anchor or alias (an alias
    bomb expands a few hundred bytes into gigabytes) or a key given twice is refused."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise yaml.MarkedYAMLError(
                    problem="anchors and aliases (& and *) are not read; write the value out",
                    problem_mark=event.start_mark,
                )
            self.depth += 1
            if self.depth > YAML_DEPTH:
                raise yaml.MarkedYAMLError(
                    problem=f"nested more than {YAML_DEPTH} levels deep",
                    problem_mark=event.start_mark,
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str | int | float | bool):
                    if key in seen:
                        raise yaml.MarkedYAMLError(
                            problem=f"key {quoted(key)} is given twice; give it once",
                            problem_mark=key_node.start_mark,
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep)

    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(YAML_BYTES + 1)
        if len(data) > YAML_BYTES:
            raise ValueError(f"over {YAML_BYTES >> 10} KB; a {what} is a few hundred bytes")
        return yaml.load(data.decode(), Loader=Loader)  # noqa: S506 (a SafeLoader)
    except (OSError, ValueError, yaml.YAMLError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        message = getattr(error, "problem", None) if mark else None
        reason = message or (error.strerror if isinstance(error, OSError) else None) or error
        raise UserError(f"cannot read {what} {path}: {where}{brief(reason)}") from None
