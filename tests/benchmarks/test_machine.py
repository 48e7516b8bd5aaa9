"""The pure parts of the machine description and CPU accounting every benchmark records."""

from pathlib import Path

import pytest

from benchmarks.machine import CpuSample, Mount, cores_busy, filesystem_of

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
tmpfs /tmp tmpfs rw,nosuid 0 0
/dev/vdb /srv/bench\\040data xfs rw 0 0
"""


def test_filesystem_of_picks_the_innermost_mount():
    assert filesystem_of(Path("/tmp/x/data"), MOUNTS) == Mount("tmpfs", "tmpfs", "/tmp")
    assert filesystem_of(Path("/tmp"), MOUNTS) == ("tmpfs", "tmpfs", "/tmp")
    assert filesystem_of(Path("/tmpfoo/data"), MOUNTS) == ("ext4", "/dev/vda", "/")


def test_filesystem_of_reads_escaped_spaces_in_mount_points():
    found = filesystem_of(Path("/srv/bench data/zone"), MOUNTS)
    assert found == Mount("xfs", "/dev/vdb", "/srv/bench data")


def test_filesystem_of_is_unknown_without_mounts():
    assert filesystem_of(Path("/srv"), "") == Mount("unknown", "unknown", "")


def test_cores_busy_splits_machine_time_between_the_process_the_benchmark_and_the_rest():
    before, after = CpuSample(process=10.0, machine=100.0), CpuSample(process=30.0, machine=150.0)
    cores = cores_busy(before, after, elapsed=20.0, benchmark_cpu_seconds=10.0)
    assert (cores.under_test, cores.benchmark, cores.rest) == (1.0, 0.5, pytest.approx(1.0))
    # Clock-tick rounding can make the parts exceed the whole; the rest is never negative.
    skewed = cores_busy(before, CpuSample(30.0, 125.0), elapsed=20.0, benchmark_cpu_seconds=10.0)
    assert skewed.rest == 0.0
