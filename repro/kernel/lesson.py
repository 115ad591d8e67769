"""What a lesson states and records (in-kernel side): each claim it tests on this machine, whether
it held here, and the measured evidence.

A lesson (lessons/*.ipynb, `repro lesson NAME`) demonstrates one benchmarking pitfall with
measurements taken where it runs. A claim such as "unsynchronised JAX timing is under 10% of the
synchronised time" is checked against those measurements, never assumed: where it does not hold
the report says so, with the figures and the likely reason, and `summary.lesson` in metrics.json
records it (the tests read it there).
"""

from __future__ import annotations

from repro.kernel.report import publish
from repro.markdown import escape


def claim(statement: str, held: bool, evidence: dict, why_not: str = "") -> dict:
    """Show whether `statement` held on this machine, with `evidence` (name: measured value);
    `why_not` says what likely kept it from holding here, shown only when it did not."""
    figures = "; ".join(f"{escape(k)}: {_shown(v)}" for k, v in evidence.items())
    if held:
        text = f"✓ **Held on this machine:** {escape(statement)}\n\nMeasured: {figures}."
    else:
        text = (
            f"⚠ **Did not hold on this machine:** {escape(statement)}\n\nMeasured: {figures}."
            + (f"\n\nWhy, most likely: {escape(why_not)}" if why_not else "")
        )
    data = {
        "statement": statement,
        "held": bool(held),
        "evidence": evidence,
        "why_not": "" if held else why_not,
    }
    return publish("lesson_claim", data, text)


def summary(name: str, claims: list[dict]) -> dict:
    """The lesson's record in metrics.json (summary.lesson): its name and every claim."""
    return {"name": name, "claims": claims, "held": all(c["held"] for c in claims)}


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(value)
