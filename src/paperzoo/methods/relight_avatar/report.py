"""The relightable-avatar section of the report (filled in below)."""
from __future__ import annotations


def report_section(run_dirs):
    return ""
