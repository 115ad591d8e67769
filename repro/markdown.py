"""Markdown built from values that may come from anyone (run folders, shared reports), for both
sides of a run. Standard library only."""

from __future__ import annotations

import html


def escape(value) -> str:
    """`value` as text for markdown: markdown passes HTML through to report.html, so a CPU name
    or package read from someone's run folder is escaped, as are table pipes."""
    return html.escape(str(value)).replace("|", "\\|")
