"""The receiver's Prometheus metrics, rendered as text at ``/metrics``, one set per worker.

Every sample carries the ``worker`` label, the worker's writer id (``<hostname>-<pid>``),
which also names its landing files. A receiver of one process keeps its counters in memory.
With ``--workers N`` each worker keeps them in a small file of its own in a folder the
workers share (memory-mapped, so a count is visible the moment it is made), and whichever
worker a scrape reaches renders every live worker's counters: one scrape is the whole
receiver, each worker on its own series, and ``sum without (worker)`` is the total.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("spend_receiver")

# write + fsync of a group commit: from a page-cache hit to a slow disk.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Every status the callback answers with, and every reason a request is refused whole.
REQUEST_CODES = (200, 400, 401, 408, 413, 415, 500, 503)
REJECT_REASONS = (
    "body_timeout",
    "encoding",
    "invalid_body",
    "too_large",
    "unauthorized",
    "write_failed",
)
PREFIX = "spend_receiver"

# The counters, in their order in a worker's buffer (float64 each: exact to 2**53).
_SCALARS = (
    "events_accepted",
    "events_quarantined",
    "received_bytes",
    "landed_bytes",
    "commits",
    "writer_up",
    "open_connections",
    "commit_seconds_sum",
    "commit_seconds_count",
)
_SLOTS = (
    *_SCALARS,
    *(f"requests:{code}" for code in REQUEST_CODES),
    *(f"rejected:{reason}" for reason in REJECT_REASONS),
    *(f"commit_seconds_bucket:{bound:g}" for bound in COMMIT_BUCKETS),
)
_INDEX = {name: index for index, name in enumerate(_SLOTS)}
# A worker's file: magic, pid, writer id, then the slots.
_HEADER = struct.Struct("<8sq64s")
_MAGIC = b"spendrx1"
_FILE_SIZE = _HEADER.size + 8 * len(_SLOTS)
FILE_SUFFIX = ".metrics"


class _Labelled:
    """One counter per label value (``metrics.requests[200] += 1``)."""

    def __init__(self, values: memoryview, kind: str) -> None:
        self._values, self._kind = values, kind

    def __getitem__(self, key: object) -> float:
        return self._values[_INDEX[f"{self._kind}:{key}"]]

    def __setitem__(self, key: object, value: float) -> None:
        self._values[_INDEX[f"{self._kind}:{key}"]] = value


def _slot(name: str) -> property:
    index = _INDEX[name]

    def get(self: ReceiverMetrics) -> float:
        return self._values[index]

    def set_(self: ReceiverMetrics, value: float) -> None:
        self._values[index] = value

    return property(get, set_)


class ReceiverMetrics:
    """One worker's counters; ``directory`` is the folder shared by the workers, or None for
    a receiver of one process."""

    def __init__(self, worker: str, directory: str | Path | None = None) -> None:
        self.worker = worker
        self.directory = Path(directory) if directory is not None else None
        self._file: Path | None = None
        self._map: mmap.mmap | bytearray
        if self.directory is None:
            self._map = bytearray(_FILE_SIZE)
        else:
            self._file = self.directory / f"{worker}{FILE_SUFFIX}"
            self._map = _create_mapped(self._file, worker)
        self._values = memoryview(self._map)[_HEADER.size :].cast("d")
        self.requests = _Labelled(self._values, "requests")  # by HTTP status
        self.rejected = _Labelled(self._values, "rejected")  # refused requests, by reason

    events_accepted = _slot("events_accepted")
    events_quarantined = _slot("events_quarantined")
    received_bytes = _slot("received_bytes")
    landed_bytes = _slot("landed_bytes")
    commits = _slot("commits")
    writer_up = _slot("writer_up")  # 1 while this worker's landing writer thread runs
    open_connections = _slot("open_connections")  # a gauge: this worker's, now

    def observe_commit(self, seconds: float) -> None:
        """A group commit's write + fsync time, into the ``commit_seconds`` histogram."""
        index = bisect.bisect_left(COMMIT_BUCKETS, seconds)
        if index < len(COMMIT_BUCKETS):
            self._values[_INDEX[f"commit_seconds_bucket:{COMMIT_BUCKETS[index]:g}"]] += 1
        self._values[_INDEX["commit_seconds_sum"]] += seconds
        self._values[_INDEX["commit_seconds_count"]] += 1

    def open_connections_per_worker(self) -> list[float]:
        """The open connections of every live worker, this one first."""
        counts = [self.open_connections]
        if self.directory is not None:
            counts += [
                w["open_connections"]
                for w in _other_workers(self.directory)
                if w.worker != self.worker
            ]
        return counts

    def close(self) -> None:
        """Leave the shared folder (a worker that stops no longer reports)."""
        if self._file is not None:
            self._file.unlink(missing_ok=True)

    def render(self) -> str:
        """Prometheus text of every live worker of the receiver, this one first."""
        workers = [_Snapshot(self.worker, list(self._values))]
        if self.directory is not None:
            workers += [w for w in _other_workers(self.directory) if w.worker != self.worker]
        return render(workers)


@dataclass(frozen=True)
class _Snapshot:
    worker: str
    values: list[float]

    def __getitem__(self, name: str) -> float:
        return self.values[_INDEX[name]]


def _create_mapped(path: Path, worker: str) -> mmap.mmap:
    """The worker's zeroed file, published whole (so a reader never sees half a header)."""
    temporary = path.with_name(f".{path.name}.tmp")
    header = _HEADER.pack(_MAGIC, os.getpid(), worker.encode())
    temporary.write_bytes(header + bytes(_FILE_SIZE - len(header)))
    os.replace(temporary, path)
    with open(path, "r+b") as file:
        return mmap.mmap(file.fileno(), _FILE_SIZE)


def _other_workers(directory: Path) -> Iterator[_Snapshot]:
    """The counters of every worker whose process still runs; a dead worker's file (killed,
    and replaced by a new worker) is removed."""
    for path in sorted(directory.glob(f"*{FILE_SUFFIX}")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # its worker stopped meanwhile
        if len(data) != _FILE_SIZE or not data.startswith(_MAGIC):
            continue
        _, pid, worker = _HEADER.unpack_from(data)
        if not _running(pid):
            log.info("worker %s is gone; its metrics are dropped", path.stem)
            path.unlink(missing_ok=True)
            continue
        values = memoryview(data)[_HEADER.size :].cast("d").tolist()
        yield _Snapshot(worker.rstrip(b"\0").decode(), values)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def render(workers: Sequence[_Snapshot]) -> str:
    """Prometheus text: each metric once, one sample per worker (and label value)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples: Iterator[tuple[str, float]]) -> None:
        lines.append(f"# HELP {PREFIX}_{name} {help_}")
        lines.append(f"# TYPE {PREFIX}_{name} {kind}")
        lines.extend(f"{PREFIX}_{sample} {value}" for sample, value in samples)

    def each(name: str, slot: str) -> Iterator[tuple[str, str]]:
        for w in workers:
            yield f'{name}{{worker="{w.worker}"}}', _number(w[slot])

    family(
        "events_accepted_total",
        "counter",
        "Events landed durably (fsync'd) and acknowledged.",
        each("events_accepted_total", "events_accepted"),
    )
    family(
        "events_quarantined_total",
        "counter",
        "Invalid events written to the quarantine with their reason.",
        each("events_quarantined_total", "events_quarantined"),
    )
    family(
        "requests_rejected_total",
        "counter",
        "Callback requests refused whole (their events are not parsed), by reason.",
        (
            (f'requests_rejected_total{{reason="{r}",worker="{w.worker}"}}', _number(count))
            for w in workers
            for r in REJECT_REASONS
            if (count := w[f"rejected:{r}"])  # a reason that has happened
        ),
    )
    family(
        "requests_total",
        "counter",
        "Callback requests answered, by HTTP status.",
        (
            (f'requests_total{{code="{c}",worker="{w.worker}"}}', _number(count))
            for w in workers
            for c in REQUEST_CODES
            if (count := w[f"requests:{c}"])  # a status that has been answered
        ),
    )
    family(
        "received_bytes_total",
        "counter",
        "Request body bytes received on the callback.",
        each("received_bytes_total", "received_bytes"),
    )
    family(
        "landed_bytes_total",
        "counter",
        "NDJSON bytes written to the landing zone and quarantine.",
        each("landed_bytes_total", "landed_bytes"),
    )
    family(
        "commits_total",
        "counter",
        "Group commits (one write + fsync for all waiting requests).",
        each("commits_total", "commits"),
    )
    family(
        "commit_seconds",
        "histogram",
        "Write + fsync latency of a group commit.",
        (sample for w in workers for sample in _histogram(w)),
    )
    family(
        "writer_up",
        "gauge",
        "1 while the worker's landing writer thread runs.",
        each("writer_up", "writer_up"),
    )
    family(
        "open_connections",
        "gauge",
        "Client connections the worker holds open.",
        each("open_connections", "open_connections"),
    )
    return "\n".join(lines) + "\n"


def _histogram(w: _Snapshot) -> Iterator[tuple[str, str]]:
    name, label = "commit_seconds", f'worker="{w.worker}"'
    cumulative = 0.0
    for bound in COMMIT_BUCKETS:
        cumulative += w[f"commit_seconds_bucket:{bound:g}"]
        yield f'{name}_bucket{{le="{bound:g}",{label}}}', _number(cumulative)
    yield f'{name}_bucket{{le="+Inf",{label}}}', _number(w["commit_seconds_count"])
    yield f"{name}_sum{{{label}}}", f"{w['commit_seconds_sum']:.6f}"
    yield f"{name}_count{{{label}}}", _number(w["commit_seconds_count"])
