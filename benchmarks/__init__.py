"""Reproducible benchmark scripts; their recorded results live in ``benchmarks/results/``."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
