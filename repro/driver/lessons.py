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


FIELDS = {"order": int, "teaches": str, "workload": str, "frameworks": list, "params": dict}


def read(path: Path) -> Lesson:
    """The lesson at `path`, or UserError naming what its metadata lacks."""
    about = read_notebook(path, "lesson").metadata.get("lesson")
    about = {"params": {}, **(about if isinstance(about, dict) else {})}
    wrong = [k for k, kind in FIELDS.items() if not isinstance(about.get(k), kind)]
    if not wrong and not (
        about["frameworks"] and all(isinstance(f, str) for f in about["frameworks"])
    ):
        wrong = ["frameworks"]
    if wrong:
        raise UserError(
            f"{path.name} in {path.parent.name}/ is not a lesson: its metadata.lesson needs "
            f"{', '.join(wrong)} ({', '.join(f'{k}: {t.__name__}' for k, t in FIELDS.items())})"
        )
    return Lesson(
        name=path.stem,
        path=path,
        order=about["order"],
        teaches=about["teaches"],
        workload=about["workload"],
        framework=about["frameworks"][0],
        frameworks=tuple(about["frameworks"]),
        params={k: str(v) for k, v in about["params"].items()},
    )


def survey() -> tuple[list[Lesson], dict[str, str]]:
    """Every lesson, in the order a student reads them, and {name: why not} for each notebook
    in lessons/ that is not one: one broken notebook breaks no other lesson."""
    found, broken = [], {}
    for path in sorted(LESSONS.glob("*.ipynb")):
        try:
            found.append(read(path))
        except UserError as error:
            broken[path.stem] = str(error)
    return sorted(found, key=lambda lesson: lesson.order), broken


def available() -> list[Lesson]:
    return survey()[0]


def find(name: str) -> Lesson:
    found, broken = survey()
    if name in broken:
        raise UserError(broken[name])
    lessons = {lesson.name: lesson for lesson in found}
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
    """One line per lesson: its name, frameworks and what it teaches; then what was skipped."""
    found, broken = survey()
    return "\n".join(
        [
            f"{lesson.order}. {lesson.name} ({', '.join(lesson.frameworks)}): {lesson.teaches}"
            for lesson in found
        ]
        + [f"skipped: {why}" for why in broken.values()]
    )
