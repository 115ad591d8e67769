"""Lessons (driver side): the notebooks in lessons/, each showing one benchmarking pitfall with
the measurements of the machine that runs it.

A lesson is a template like any other: `repro lesson NAME` resolves it as a run of the workload
and framework its metadata names (`metadata.lesson`), with the lesson's small parameters under
the user's, and executes it into a run folder under runs/lessons/: a report of record that
verifies, bundles and reruns like any run. A lesson ends with repro's own measurement, so its
report also carries a step-time summary; `summary.lesson` holds the claims it tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from repro.driver import plan
from repro.driver.integrity import read_notebook
from repro.errors import UserError, option, unknown
from repro.paths import LESSONS, RUNS


@dataclass(frozen=True)
class Lesson:
    name: str
    path: Path
    order: int
    teaches: str  # one line: what a student learns
    workload: str
    framework: str  # the default; `frameworks` lists those it runs in
    frameworks: tuple[str, ...]
    params: dict = field(default_factory=dict)  # the lesson's small defaults, as text


def read(path: Path) -> Lesson:
    about = read_notebook(path, "lesson").metadata["lesson"]
    return Lesson(
        name=path.stem,
        path=path,
        order=about["order"],
        teaches=about["teaches"],
        workload=about["workload"],
        framework=about["frameworks"][0],
        frameworks=tuple(about["frameworks"]),
        params={k: str(v) for k, v in about.get("params", {}).items()},
    )


def available() -> list[Lesson]:
    """Every lesson, in the order a student reads them."""
    return sorted((read(p) for p in LESSONS.glob("*.ipynb")), key=lambda lesson: lesson.order)


def find(name: str) -> Lesson:
    lessons = {lesson.name: lesson for lesson in available()}
    if name not in lessons:
        raise UserError(unknown("lesson", name, list(lessons)))
    return lessons[name]


def resolve(
    name: str,
    framework: str | None = None,
    params: dict[str, str] | None = None,
    runs_dir: str | Path | None = None,
) -> plan.RunPlan:
    """The run that executes lesson `name` in `framework` (default: the lesson's first)."""
    lesson = find(name)
    framework = framework or lesson.framework
    if framework not in lesson.frameworks:
        raise UserError(
            f"lesson {name} runs in {', '.join(lesson.frameworks)}, not {framework!r}; "
            f"use {option('--framework', lesson.framework)}"
        )
    request = plan.resolve(
        lesson.workload,
        framework,
        {**lesson.params, **(params or {})},
        template=str(lesson.path),
        runs_dir=runs_dir or RUNS / "lessons",
    )
    return replace(request, lesson=name)


def listing() -> str:
    """One line per lesson: its name, frameworks and what it teaches."""
    return "\n".join(
        f"{lesson.order}. {lesson.name} ({', '.join(lesson.frameworks)}): {lesson.teaches}"
        for lesson in available()
    )
