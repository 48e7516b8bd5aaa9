"""Reproducible benchmark scripts; their recorded results live in ``benchmarks/results/``."""

import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def progress(message: str) -> None:
    """A progress line on stderr, so the report on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def machine_section(machine: Mapping[str, object]) -> list[str]:
    """The report's closing lines: the machine it ran on."""
    return ["", "Machine:", "", *(f"- {label}: {value}" for label, value in machine.items())]


def publish(report: str, output: Path | None) -> None:
    """Print a benchmark's Markdown report, and write it to ``output`` when one is given."""
    print(report)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report)
