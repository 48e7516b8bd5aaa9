"""What a benchmark ran on, and how busy the machine's cores were meanwhile.

A recorded result is only comparable to another taken on the same hardware, kernel,
interpreter, packages, code and kind of disk, on an otherwise idle machine; every benchmark
of this project records those facts next to its numbers and uses the CPU accounting below
to show how much of the machine the code under test, the benchmark itself and everything
else used. Linux only: the facts come from ``/proc``.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from benchmarks import REPO_ROOT

MEMORY_FILESYSTEMS = {"tmpfs", "ramfs"}  # fsync there costs nothing and proves nothing


# --- machine description --------------------------------------------------------------


class Mount(NamedTuple):
    fs_type: str
    device: str
    mount_point: str


def filesystem_of(path: Path, mounts: str) -> Mount:
    """The filesystem holding ``path``, from the text of ``/proc/mounts``."""
    resolved = str(path.resolve())
    best = Mount("unknown", "unknown", "")
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount_point, fs_type = (p.replace("\\040", " ") for p in parts[:3])
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best.mount_point):  # the innermost mount wins
            best = Mount(fs_type, device, mount_point)
    return best


def mounted_filesystem(path: Path) -> Mount:
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        mounts = ""
    return filesystem_of(path, mounts)


def in_memory(path: Path) -> bool:
    """Whether ``path`` lies on a RAM filesystem, where a durable write measures nothing."""
    return mounted_filesystem(path).fs_type in MEMORY_FILESYSTEMS


def _first_value(path: str, key: str) -> str:
    """The value of the first ``key: value`` line of a ``/proc`` file such as cpuinfo."""
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return "unknown"


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def code_revision(code_paths: Sequence[str]) -> str:
    """The checkout's commit, and whether the code under test (``code_paths``) differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", *code_paths],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git checkout)"
    modified = sorted(line[3:] for line in changed if line.strip())
    return commit + (f" with uncommitted changes to {', '.join(modified)}" if modified else "")


def describe_machine(
    data_dir: Path, packages: Mapping[str, Sequence[str]], code_paths: Sequence[str]
) -> dict[str, str]:
    """The facts a result depends on, by label, in the order a report lists them.

    ``packages`` maps a label (say "server stack") to the distributions whose versions it
    lists; ``code_paths`` are the checkout's folders holding the code under test.
    """
    mount = mounted_filesystem(data_dir)
    memory_kib = _first_value("/proc/meminfo", "MemTotal").split()[0]
    memory = f"{int(memory_kib) / 2**20:.1f} GiB" if memory_kib.isdigit() else "unknown"
    return {
        "CPU": _first_value("/proc/cpuinfo", "model name"),
        "cores": str(os.cpu_count()),
        "RAM": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "data dir filesystem": (
            f"{mount.fs_type} on {mount.device} (mounted at {mount.mount_point}), {data_dir}"
        ),
        **{
            label: ", ".join(f"{name} {package_version(name)}" for name in names)
            for label, names in packages.items()
        },
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "code": code_revision(code_paths),
    }


# --- CPU accounting -------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from ``/proc/<pid>/stat``; NaN if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, their children, and so on, from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], list(parents.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending += parents.get(child, [])
    return found


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and every process it started that is
    still running (a multi-process server's workers)."""
    return process_cpu_seconds(pid) + sum(
        seconds
        for child in descendants(pid)
        if not math.isnan(seconds := process_cpu_seconds(child))
    )


def machine_busy_seconds() -> float:
    """CPU time all cores have spent not idle so far, from the ``cpu`` line of ``/proc/stat``."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """CPU time used so far by the process under test and by the whole machine."""

    process: float
    machine: float


def sample_cpu(pid: int, with_children: bool = False) -> CpuSample:
    """``with_children``: count the processes ``pid`` started too."""
    seconds = process_tree_cpu_seconds(pid) if with_children else process_cpu_seconds(pid)
    return CpuSample(seconds, machine_busy_seconds())


@dataclass(frozen=True)
class CoresBusy:
    """Average cores kept busy over an interval by the process under test, the benchmark
    process itself, and the rest.

    The rest is every other process on the machine (and kernel work charged to none): a
    large value means the run shared the machine and its numbers are not to be trusted.
    """

    under_test: float
    benchmark: float
    rest: float


def cores_busy(
    before: CpuSample, after: CpuSample, elapsed: float, benchmark_cpu_seconds: float
) -> CoresBusy:
    """``benchmark_cpu_seconds`` is this process's CPU time over the same ``elapsed`` seconds."""
    under_test = (after.process - before.process) / elapsed
    benchmark = benchmark_cpu_seconds / elapsed
    machine = (after.machine - before.machine) / elapsed
    return CoresBusy(under_test, benchmark, max(machine - under_test - benchmark, 0.0))
