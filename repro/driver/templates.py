"""The notebook a run executes (driver side): a task's template, assembled from one shared body.

Every task runs the same cells (set up, environment, model, inputs, FLOPs, measure, results), so
they are written once, in `templates/benchmark.ipynb`. What differs between tasks is prose: the
title, what the synthetic batch holds, notes on counting the work. Each task says it in a small
notebook of its own, `templates/tasks/<template>.ipynb`, whose cells are tagged with the slot
they fill; `assemble` puts them in place of the body's cells with the same tag, as `execute`
adds the banner. Both are plain notebooks: the body runs as it is in JupyterLab (the small
ResNet preset), and a task's cells read on their own.

Why assemble at run time rather than generate task notebooks into the repository and test that
they stay in sync: a generated copy is a second place to edit by mistake, and what a report must
record is the notebook that ran, which assembly yields as one text (`Template.text`). That text
is what the report carries (`repro.driver.snapshot`) and what `repro rerun` runs again, so a
rerun does not depend on this checkout's templates. `repro run --template FILE` runs a plain
notebook as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from repro.paths import TEMPLATES

BODY = TEMPLATES / "benchmark.ipynb"
TASKS = TEMPLATES / "tasks"
SLOT = "task-"  # the tag prefix of a cell that a task's cells replace


@dataclass(frozen=True)
class Template:
    """The notebook a run executes, as one text: what the report records and a rerun runs."""

    name: str
    text: str

    def notebook(self):
        return nbformat.reads(self.text, as_version=4)


def slot(cell) -> str | None:
    """The slot a cell fills or is, by its `task-…` tag; None for a shared cell."""
    tags = [t for t in cell.metadata.get("tags", []) if t.startswith(SLOT)]
    return tags[0] if tags else None


def assemble(body, task):
    """`body` with each cell tagged `task-<slot>` replaced by `task`'s cells with that tag, in
    their order (none: the slot is dropped). ValueError for a task cell that fills no slot of the
    body, or an untagged one: it would be lost."""
    slots = {slot(c) for c in body.cells} - {None}
    stray = [i for i, c in enumerate(task.cells) if slot(c) not in slots]
    if stray:
        raise ValueError(
            f"task cells {stray} fill no slot of the body; tag each with one of: "
            f"{', '.join(sorted(slots))}"
        )
    notebook = nbformat.v4.new_notebook(metadata=body.metadata)
    for cell in body.cells:
        name = slot(cell)
        notebook.cells += [c for c in task.cells if slot(c) == name] if name else [cell]
    nbformat.validate(notebook)
    return notebook


def assembled(name: str) -> Template:
    """The task template `name` (plan.TASK_TEMPLATES): the body with templates/tasks/`name`'s
    cells in place."""
    body, task = (nbformat.read(p, as_version=4) for p in (BODY, TASKS / name))
    return Template(name, nbformat.writes(assemble(body, task)))


def from_file(path: Path) -> Template:
    """A plain notebook run as it is (`repro run --template`, a rerun's recorded text)."""
    return Template(path.name, path.read_bytes().decode())


def checkout_text(name: str) -> str | None:
    """This checkout's text of the template a report names: a task's assembled template, else a
    notebook in templates/; None if it has neither."""
    if (TASKS / name).is_file():
        return assembled(name).text
    path = TEMPLATES / name
    return from_file(path).text if path.is_file() else None
