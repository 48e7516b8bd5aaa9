"""Reproducible benchmark scripts; their recorded results live in ``benchmarks/results/``."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def publish(report: str, output: Path | None) -> None:
    """Print a benchmark's Markdown report, and write it to ``output`` when one is given."""
    print(report)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report)
