"""The webhook landing zone: where landed lines are written and how they are read back.

Files: ``<data_dir>/landing/litellm_webhook/date=YYYY-MM-DD/hour=HH/<writer-id>-<seq>.ndjson``,
filed by the event's own hour (``startTime``, UTC), not the arrival hour, so late events
reach their hour. A writer publishes each file whole (temp file, fsync, rename); the
reader still ignores a torn last line so that a future appending writer cannot break it.
What a line holds is ``resources.landing_record``'s.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.json as pa_json

from resources.duck import connection
from resources.lake import atomic_write, hive_dir
from resources.landing_record import LANDING_SCHEMA, LandingBatch, project_batch

# A landed line of real LiteLLM traffic is about 800 bytes (787 on the sample traffic):
# readers size their chunks of hours with it.
LANDED_LINE_BYTES = 800
LANDING_DIR = Path("landing") / "litellm_webhook"
QUARANTINE_DIR = Path("landing") / "_quarantine"
_WRITER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass
class WriteResult:
    landed: int = 0
    quarantined: int = 0
    files: list[Path] = field(default_factory=list)
    bytes: int = 0


@dataclass(frozen=True)
class LandedFiles:
    """Whole landing files left for DuckDB's JSON reader to parse inside a query."""

    files: tuple[Path, ...] = ()

    def sql(self) -> str:
        """The ``read_json(...)`` table expression, with the explicit landing schema."""

        def text(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        files = ", ".join(text(str(f)) for f in self.files)
        columns = ", ".join(f"{text(n)}: {text(t)}" for n, t in _duckdb_columns().items())
        return (
            f"read_json([{files}], format = 'newline_delimited', columns = {{{columns}}}, "
            "hive_partitioning = false)"
        )

    def create_view(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        if self.files:
            con.sql(f"SELECT * FROM {self.sql()}").create_view(name, replace=True)
        else:
            con.register(name, LANDING_SCHEMA.empty_table())


@dataclass
class LandingRead:
    """What the reader found for a set of hours: parsed rows, plus (from ``scan_hours``)
    whole files a query is still to read."""

    table: pa.Table
    files: list[Path]
    torn_bytes: int = 0
    malformed: list[dict[str, Any]] = field(default_factory=list)
    unread: LandedFiles = LandedFiles()


def _ndjson(lines: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(
        json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in lines
    ).encode()


def _make_dirs_durably(folder: Path) -> None:
    """``mkdir -p`` whose new entries survive a power loss (each parent is fsync'd)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync_dir(new.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    _make_dirs_durably(path.parent)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
    _fsync_dir(path.parent)  # the rename itself must survive a crash


class LandingZone:
    """Writer and reader of ``<data_dir>/landing``."""

    def __init__(self, data_dir: str | Path, writer_id: str = "writer") -> None:
        if not _WRITER_ID.match(writer_id):
            raise ValueError(f"writer id must match {_WRITER_ID.pattern}: {writer_id!r}")
        self.root = Path(data_dir) / LANDING_DIR
        self.quarantine_root = Path(data_dir) / QUARANTINE_DIR
        self.writer_id = writer_id
        self._seq = 0
        self._lock = threading.Lock()

    def hours_landed_between(self, since_ns: int, until_ns: int) -> set[datetime]:
        """Hours that received a landing file with ``since_ns <= mtime < until_ns``.

        Adding a file updates its hour folder's mtime, so only folders changed since
        ``since_ns`` are listed: one ``stat`` per hour folder, not per file.
        """
        hours: set[datetime] = set()
        for folder in self.root.glob("date=*/hour=*"):
            try:
                if folder.stat().st_mtime_ns < since_ns:
                    continue
                hour = datetime.strptime(
                    f"{folder.parent.name[5:]} {folder.name[5:]}", "%Y-%m-%d %H"
                ).replace(tzinfo=timezone.utc)
            except (OSError, ValueError):  # removed meanwhile, or not a folder of ours
                continue
            for path in folder.glob("*.ndjson"):  # temp files start with "." and are skipped
                try:
                    if since_ns <= path.stat().st_mtime_ns < until_ns:
                        hours.add(hour)
                        break
                except FileNotFoundError:
                    continue
        return hours

    def _next_name(self) -> str:
        # Sortable and unique per writer, also across restarts of the same writer id.
        with self._lock:
            self._seq = max(self._seq + 1, time.time_ns())
            return f"{self.writer_id}-{self._seq:020d}.ndjson"

    def write_events(
        self,
        payloads: Iterable[Any],
        received_at: float | None = None,
        header_map: Mapping[str, str] | None = None,
    ) -> WriteResult:
        """Land a batch: valid events by event hour, invalid ones to quarantine with the reason."""
        return self.write_batch(project_batch(payloads, received_at, header_map))

    def write_batch(self, batch: LandingBatch) -> WriteResult:
        """Publish a projected batch durably: one file per event hour, one for the rejects."""
        result = WriteResult(landed=batch.landed, quarantined=batch.quarantined)
        for hour, records in sorted(batch.by_hour.items()):
            self._publish(hive_dir(self.root, hour), records, result)
        if batch.rejects:
            arrival = datetime.fromtimestamp(batch.received_at, tz=timezone.utc)
            self._publish(hive_dir(self.quarantine_root, arrival), batch.rejects, result)
        return result

    def _publish(self, folder: Path, lines: list[dict[str, Any]], result: WriteResult) -> None:
        path, data = folder / self._next_name(), _ndjson(lines)
        _write_durably(path, data)
        result.files.append(path)
        result.bytes += len(data)

    def hour_bytes(self, hours: Sequence[datetime]) -> list[int]:
        """Bytes landed per hour (what a reader of the hour must parse)."""
        return [sum(f.stat().st_size for f in self.hour_files(h)) for h in hours]

    def hour_files(self, hour: datetime) -> list[Path]:
        folder = hive_dir(self.root, hour)
        return sorted(folder.glob("*.ndjson")) if folder.is_dir() else []

    def scan_hours(self, hours: Sequence[datetime]) -> LandingRead:
        """The landed lines of ``hours``, leaving whole files (the normal case) unread for a
        query to parse in one parallel pass (``LandingRead.unread``). A file with a torn
        last line is parsed here: its complete lines are kept, the torn bytes counted."""
        files = [f for h in hours for f in self.hour_files(h)]
        whole = [f for f in files if _ends_with_newline(f)]
        read = _parse_files([f for f in files if f not in set(whole)])
        return LandingRead(
            read.table, files, read.torn_bytes, read.malformed, LandedFiles(tuple(whole))
        )

    def read_hours(self, hours: Sequence[datetime]) -> LandingRead:
        """Every landed line of ``hours`` as ``LANDING_SCHEMA`` rows.

        Whole files are parsed by DuckDB's JSON reader with the explicit schema. If it
        refuses one, every file goes through :func:`parse_landing_lines`, which keeps the
        good lines and reports each bad one.
        """
        scan = self.scan_hours(hours)
        try:
            whole = _read_whole_files(scan.unread.files)
        except duckdb.Error:
            read = _parse_files(scan.files)
            return LandingRead(read.table, scan.files, read.torn_bytes, read.malformed)
        table = pa.concat_tables([whole, scan.table])
        return LandingRead(table, scan.files, scan.torn_bytes, scan.malformed)


def _parse_files(files: Sequence[Path]) -> LandingRead:
    """Line by line: complete lines parsed, a torn last line counted, bad lines reported."""
    tables, torn, malformed = [], 0, []
    for path in files:
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        torn += len(data) - len(complete)
        if complete:
            table, bad = parse_landing_lines(complete, path.name)
            tables.append(table)
            malformed.extend(bad)
    table = pa.concat_tables(tables) if tables else LANDING_SCHEMA.empty_table()
    return LandingRead(table=table, files=list(files), torn_bytes=torn, malformed=malformed)


def _ends_with_newline(path: Path) -> bool:
    """True for an empty file or one whose last byte is a newline (no torn last line)."""
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


@functools.cache
def _duckdb_columns() -> dict[str, str]:
    """``LANDING_SCHEMA`` in DuckDB's type names, for ``read_json(columns=...)``."""
    with connection() as con:
        con.register("landing", LANDING_SCHEMA.empty_table())
        return {name: kind for name, kind, *_ in con.sql("DESCRIBE landing").fetchall()}


def _read_whole_files(files: Sequence[Path]) -> pa.Table:
    if not files:
        return LANDING_SCHEMA.empty_table()
    with connection() as con:
        table = con.sql(f"SELECT * FROM {LandedFiles(tuple(files)).sql()}").to_arrow_table()
    return table.cast(LANDING_SCHEMA)


_PARSE = pa_json.ParseOptions(explicit_schema=LANDING_SCHEMA, unexpected_field_behavior="ignore")


def parse_landing_lines(data: bytes, source: str) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Parse complete NDJSON lines; a bad line is reported (file, line, reason), not fatal."""
    try:
        return pa_json.read_json(io.BytesIO(data), parse_options=_PARSE), []
    except pa.ArrowInvalid:
        pass  # slow path below finds the bad lines and keeps the good ones
    good, bad = [], []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pa_json.read_json(io.BytesIO(line + b"\n"), parse_options=_PARSE)
        except (ValueError, pa.ArrowInvalid) as exc:
            bad.append({"file": source, "line": number, "reason": str(exc).splitlines()[0][:200]})
            continue
        good.append(record)
    table = (
        pa.Table.from_pylist(good, schema=LANDING_SCHEMA) if good else LANDING_SCHEMA.empty_table()
    )
    return table, bad


class LandingZoneResource(dg.ConfigurableResource):
    """The landing zone under ``<data_dir>/landing`` as the pipeline reads it."""

    data_dir: str = "./data"

    def zone(self) -> LandingZone:
        return LandingZone(self.data_dir)
