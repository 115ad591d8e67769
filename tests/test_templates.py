"""The task templates: one shared body, each task's own cells put in its slots (no kernel)."""

from __future__ import annotations

import nbformat
import pytest

from repro.driver import plan, templates

TASKS = sorted(set(plan.TASK_TEMPLATES.values()))


def body():
    return nbformat.read(templates.BODY, as_version=4)


def task(name: str):
    return nbformat.read(templates.TASKS / name, as_version=4)


@pytest.mark.parametrize("name", TASKS)
def test_a_task_template_is_the_body_with_the_tasks_cells_in_its_slots(name):
    shared, cells = body(), task(name)
    notebook = templates.assembled(name).notebook()
    expected = []
    for cell in shared.cells:
        filled = templates.slot(cell)
        ours = [c.source for c in cells.cells if templates.slot(c) == filled]
        expected += ours if filled else [cell.source]
    assert [c.source for c in notebook.cells] == expected
    assert notebook.cells[0].source.startswith("# ")  # the task's title comes first
    assert notebook.metadata == shared.metadata
    nbformat.validate(notebook)


def test_the_shared_cells_are_written_once():
    shared = {c.source for c in body().cells if templates.slot(c) is None}
    for name in TASKS:
        cells = task(name).cells
        assert all(templates.slot(c) for c in cells), name  # a task holds only its slots
        assert not shared & {c.source for c in cells}, name
    assert {p.name for p in templates.TASKS.glob("*.ipynb")} == set(TASKS)


def test_a_slot_the_task_leaves_empty_is_dropped_and_a_stray_task_cell_is_refused():
    shared = body()
    empty = nbformat.v4.new_notebook()
    notebook = templates.assemble(shared, empty)
    assert len(notebook.cells) == len([c for c in shared.cells if templates.slot(c) is None])
    stray = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("lost?")])
    stray.cells[0].metadata["tags"] = ["task-nowhere"]
    with pytest.raises(ValueError, match=r"task cells \[0\] fill no slot of the body"):
        templates.assemble(shared, stray)


def test_the_recorded_text_is_stable_and_is_what_the_checkout_compares_with(tmp_path):
    name = "language-model.ipynb"
    assert templates.assembled(name) == templates.assembled(name)  # same text each time
    assert templates.checkout_text(name) == templates.assembled(name).text
    assert templates.checkout_text("benchmark.ipynb") == templates.BODY.read_text()
    assert templates.checkout_text("someone-elses.ipynb") is None
    copy = tmp_path / name  # a rerun runs the recorded text as a plain notebook
    copy.write_text(templates.assembled(name).text)
    assert templates.from_file(copy) == templates.assembled(name)


def test_a_run_executes_its_tasks_template_or_a_plain_notebook_as_it_is():
    assert plan.resolve("gpt-mini", "torch").template == templates.assembled("language-model.ipynb")
    plain = plan.resolve("gpt-mini", "torch", template=str(templates.BODY)).template
    assert plain == templates.from_file(templates.BODY) and plain.name == "benchmark.ipynb"
