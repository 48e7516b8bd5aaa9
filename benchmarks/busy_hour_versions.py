"""The busy hour's pipeline at two versions of the code, alternately, on one landing.

A change's cost is its version's summed step compute against another version's on the same
landed events, each run on a fresh instance and an empty lake (the landing is this
checkout's traffic, which the older code must still read). The other version is a checkout
of its own, for example ``git worktree add ../before <commit>``::

    .venv/bin/python -m benchmarks.busy_hour_versions --before ../before \
        --output benchmarks/results/busy_hour_versions.md
    .venv/bin/python -m benchmarks.busy_hour_versions --before ../before --events 20000 \
        --rounds 1   # a quick check
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks import REPO_ROOT, machine_section, progress, publish
from benchmarks.busy_hour import CODE_UNDER_TEST, HOUR, PACKAGES, START_DATE, fresh_outputs
from benchmarks.machine import describe_machine
from benchmarks.pipeline_run import (
    RunMeasure,
    add_work_options,
    materialize,
    pipeline_environment,
    work_dir,
)
from benchmarks.spend_data import land_hour


def commit_of(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def run_version(tree: Path, data_dir: Path, home: Path) -> RunMeasure:
    """One run of ``tree``'s pipeline (its code first on the path) over the landed hour."""
    fresh_outputs(data_dir)
    env = pipeline_environment(data_dir, home, START_DATE, checkout=tree)
    env["PYTHONPATH"] = str(tree)
    return materialize(env, HOUR, HOUR, checkout=tree)


def render(
    command: str, machine: dict[str, str], trees: dict[str, Path], runs: dict[str, list]
) -> str:
    medians = {name: statistics.median(r.compute_seconds for r in runs[name]) for name in trees}
    lines = [
        "# The busy hour at two versions of the code",
        "",
        f"Command: `{command}`",
        "",
        "| version | commit | summed step compute (median) | rounds | peak MiB |",
        "|---|---|---|---|---|",
    ]
    for name, tree in trees.items():
        rounds = ", ".join(f"{r.compute_seconds:.2f}" for r in runs[name])
        peak = max(r.peak_rss_mib for r in runs[name])
        lines.append(
            f"| {name} | {commit_of(tree)} | {medians[name]:.2f} s | {rounds} | {peak:,.0f} |"
        )
    lines += ["", f"Ratio this / before: **{medians['this'] / medians['before']:.3f}**", ""]
    steps = sorted({step for name in trees for r in runs[name] for step in r.step_seconds})
    lines += ["| step | " + " | ".join(f"{name} s" for name in trees) + " |", "|---|---|---|"]
    for step in steps:
        cells = []
        for name in trees:
            values = [r.step_seconds[step] for r in runs[name] if step in r.step_seconds]
            cells.append(f"{statistics.median(values):.2f}" if values else "–")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += machine_section(machine)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--events", type=int, default=1_000_000, help="unique requests")
    parser.add_argument("--rounds", type=int, default=3)
    add_work_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    trees = {"before": options.before.resolve(), "this": REPO_ROOT}
    if not (trees["before"] / "pipelines" / "definitions.py").is_file():
        raise SystemExit(f"{trees['before']} is not a checkout of this project")
    with work_dir(options.work_dir, "busy-hour-versions-") as work:
        data_dir = work / "data"
        progress(f"landing {options.events:,} requests in {data_dir} ...")
        shutil.rmtree(data_dir / "landing", ignore_errors=True)
        land_hour(data_dir, HOUR, options.events, seed=1)
        machine = describe_machine(data_dir, PACKAGES, CODE_UNDER_TEST)
        runs: dict[str, list[RunMeasure]] = {name: [] for name in trees}
        for number in range(1, options.rounds + 1):
            for name, tree in trees.items():  # alternating, the older version first
                run = run_version(tree, data_dir, work / f"home-{name}-{number}")
                runs[name].append(run)
                progress(f"round {number} {name}: compute {run.compute_seconds:.2f} s")
    publish(render(shlex.join(sys.orig_argv), machine, trees, runs), options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
