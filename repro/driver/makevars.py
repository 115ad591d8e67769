"""The run parameters' names, read from plan.py's source (its `Param("name", ...)` calls) with the
standard library alone, so that the Makefile can ask before the project's environment exists and
in milliseconds. It prints `STEPS:steps steps:steps ...`: the names a make variable may take by
mistake (`make run STEPS=5`), each with the parameter it means."""

import ast
from pathlib import Path


def names() -> list[str]:
    tree = ast.parse((Path(__file__).parent / "plan.py").read_text())
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Param"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


if __name__ == "__main__":
    print(" ".join(f"{name.upper()}:{name} {name}:{name}" for name in names()))
