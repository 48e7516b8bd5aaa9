"""The webhook landing zone: where landed lines are written and how they are read back.

Files: ``<root>/landing/litellm_webhook/date=YYYY-MM-DD/hour=HH/<writer-id>-<seq>.ndjson``,
filed by the event's own hour (``startTime``, UTC), not the arrival hour, so late events
reach their hour. The root is a local folder or object storage (``resources.storage``). A
writer publishes each file whole (locally temp file, fsync, rename; on object storage one
PUT); the reader still ignores a torn last line so that a future appending writer cannot
break it.
What a line holds is ``resources.landing_record``'s.

Each writer also keeps a heartbeat, ``<root>/landing/_heartbeat/<writer-id>.json`` (the time it
last wrote one): a receiver that is up and can write refreshes it every minute, so an hour
without landing files but with a fresh heartbeat was quiet, not lost.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import msgspec
import pyarrow as pa
import pyarrow.json as pa_json
from pydantic import Field

from resources.duck import connection
from resources.lake import hive_prefix
from resources.landing_record import LANDING_SCHEMA, LandingBatch, project_batch
from resources.storage import Entry, Storage, StorageError, storage_at

log = logging.getLogger(__name__)

# A landed line of real LiteLLM traffic is about 800 bytes (787 on the sample traffic):
# readers size their chunks of hours with it.
LANDED_LINE_BYTES = 800
LANDING_FOLDER = "landing/litellm_webhook"
QUARANTINE_FOLDER = "landing/_quarantine"
HEARTBEAT_FOLDER = "landing/_heartbeat"
LANDED_SUFFIX = ".ndjson"
_WRITER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Landed objects of object storage are parsed in groups of about this many bytes: the
# group's reads overlap, and memory holds one group's bytes at a time.
REMOTE_READ_GROUP_BYTES = 64 * 1024 * 1024


@dataclass
class WriteResult:
    landed: int = 0
    quarantined: int = 0
    files: list[str] = field(default_factory=list)  # where each object went (URLs)
    bytes: int = 0


@dataclass(frozen=True)
class LandedFiles:
    """Whole local landing files left for DuckDB's JSON reader to parse inside a query."""

    files: tuple[str, ...] = ()

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
    """What the reader found for a set of hours: parsed rows, plus (from ``scan_hours`` on a
    local disk) whole files a query is still to read."""

    table: pa.Table
    files: list[str]  # every landed file of the hours (URLs)
    torn_bytes: int = 0
    malformed: list[dict[str, Any]] = field(default_factory=list)
    unread: LandedFiles = LandedFiles()


@dataclass(frozen=True)
class Heartbeat:
    """A writer's word that it was up and could write at ``at`` (its own clock, UTC)."""

    writer: str
    at: datetime
    started_at: datetime

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "writer": self.writer,
                "at": _utc_text(self.at),
                "started_at": _utc_text(self.started_at),
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Heartbeat:
        fields = json.loads(data)
        return cls(
            str(fields["writer"]),
            _utc(datetime.fromisoformat(fields["at"])),
            _utc(datetime.fromisoformat(fields["started_at"])),
        )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _utc_text(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


# Keys in the record's order (the landing schema's), as compact as JSON goes, text as UTF-8
# (landed text is always encodable).
_LINES = msgspec.json.Encoder()


def _ndjson(lines: Iterable[Mapping[str, Any]]) -> bytes:
    return _LINES.encode_lines(lines)


class LandingZone:
    """Writer and reader of ``<root>/landing`` (a local folder or object storage)."""

    def __init__(self, root: str | PathLike[str], writer_id: str = "writer") -> None:
        if not _WRITER_ID.match(writer_id):
            raise ValueError(f"writer id must match {_WRITER_ID.pattern}: {writer_id!r}")
        self.storage = storage_at(str(root))
        self.writer_id = writer_id
        self._seq = 0
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        return self.storage.url(LANDING_FOLDER)

    def hours_landed_between(
        self, hours: Sequence[datetime], since_ns: int, until_ns: int
    ) -> set[datetime]:
        """Those of ``hours`` that received a landed file with ``since_ns <= modified <
        until_ns``: one listing per hour watched, whatever the history holds."""
        listings = self.hour_entries(hours)
        return {
            hour
            for hour, entries in zip(hours, listings, strict=True)
            if any(since_ns <= e.modified_ns < until_ns for e in entries)
        }

    def write_heartbeat(self, started_at: datetime, now: datetime | None = None) -> Heartbeat:
        """Replace this writer's heartbeat with one saying it is up at ``now``; raises
        ``StorageError`` when the root refuses the write (then the heartbeat goes stale)."""
        beat = Heartbeat(self.writer_id, now or datetime.now(timezone.utc), started_at)
        self.storage.write(f"{HEARTBEAT_FOLDER}/{self.writer_id}.json", beat.to_json())
        return beat

    def heartbeats(self) -> list[Heartbeat]:
        """Every writer's last heartbeat, newest first; an unreadable one is skipped."""
        entries = [e for e in self.storage.list(HEARTBEAT_FOLDER) if e.key.endswith(".json")]
        beats = []
        for entry, data in zip(
            entries, self.storage.read_many([e.key for e in entries]), strict=True
        ):
            try:
                beats.append(Heartbeat.from_json(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("skipping heartbeat %s: %s", self.storage.url(entry.key), exc)
        return sorted(beats, key=lambda beat: beat.at, reverse=True)

    def _next_name(self) -> str:
        # Sortable and unique per writer, also across restarts of the same writer id.
        with self._lock:
            self._seq = max(self._seq + 1, time.time_ns())
            return f"{self.writer_id}-{self._seq:020d}{LANDED_SUFFIX}"

    def write_events(
        self,
        payloads: Iterable[Any],
        received_at: float | None = None,
        header_map: Mapping[str, str] | None = None,
    ) -> WriteResult:
        """Land a batch: valid events by event hour, invalid ones to quarantine with the reason."""
        return self.write_batch(project_batch(payloads, received_at, header_map))

    def write_batch(self, batch: LandingBatch) -> WriteResult:
        """Publish a projected batch durably: one file per event hour, one for the rejects.

        Returns once every object exists (on a local disk: fsync'd); raises
        ``StorageError`` when one could not be written."""
        result = WriteResult(landed=batch.landed, quarantined=batch.quarantined)
        written: list[str] = []
        try:
            for hour, records in sorted(batch.by_hour.items()):
                written.append(self._publish(hive_prefix(LANDING_FOLDER, hour), records, result))
            if batch.rejects:
                arrival = datetime.fromtimestamp(batch.received_at, tz=timezone.utc)
                written.append(
                    self._publish(hive_prefix(QUARANTINE_FOLDER, arrival), batch.rejects, result)
                )
        except StorageError:
            # Not acknowledged, so the sender retries all of it: take back what did land, or
            # those events would land twice (the pipeline would still count them once).
            for key in written:
                try:
                    self.storage.delete(key)
                except StorageError:
                    log.warning("could not take back %s after a failed write", key)
            raise
        return result

    def _publish(self, prefix: str, lines: list[dict[str, Any]], result: WriteResult) -> str:
        key, data = f"{prefix}/{self._next_name()}", _ndjson(lines)
        self.storage.write(key, data, durable=True)
        result.files.append(self.storage.url(key))
        result.bytes += len(data)
        return key

    def hour_entries(self, hours: Sequence[datetime]) -> list[list[Entry]]:
        listings = self.storage.list_many([hive_prefix(LANDING_FOLDER, h) for h in hours])
        return [[e for e in entries if e.key.endswith(LANDED_SUFFIX)] for entries in listings]

    def hour_bytes(self, hours: Sequence[datetime]) -> list[int]:
        """Bytes landed per hour (what a reader of the hour must parse)."""
        return [sum(e.size for e in entries) for entries in self.hour_entries(hours)]

    def scan_hours(self, hours: Sequence[datetime]) -> LandingRead:
        """The landed lines of ``hours``. On a local disk whole files (the normal case) are
        left unread for a query to parse in one parallel pass (``LandingRead.unread``), and
        a file with a torn last line is parsed here: its complete lines are kept, the torn
        bytes counted. On object storage every object is read here, in overlapping groups."""
        entries = [e for listing in self.hour_entries(hours) for e in listing]
        urls = [self.storage.url(e.key) for e in entries]
        if not self.storage.local:
            read = _parse_remote(self.storage, entries)
            return LandingRead(read.table, urls, read.torn_bytes, read.malformed)
        paths = [self.storage.path(e.key) for e in entries]
        whole = [p for p in paths if _ends_with_newline(p)]
        torn = [p for p in paths if p not in set(whole)]
        read = _parse_blobs(torn, [Path(p).read_bytes() for p in torn])
        return LandingRead(
            read.table, urls, read.torn_bytes, read.malformed, LandedFiles(tuple(whole))
        )

    def read_hours(self, hours: Sequence[datetime]) -> LandingRead:
        """Every landed line of ``hours`` as ``LANDING_SCHEMA`` rows.

        Whole local files are parsed by DuckDB's JSON reader with the explicit schema. If it
        refuses one, every file goes through :func:`parse_landing_lines`, which keeps the
        good lines and reports each bad one.
        """
        scan = self.scan_hours(hours)
        if not scan.unread.files:
            return scan
        try:
            whole = _read_whole_files(scan.unread.files)
        except duckdb.Error:
            files = list(scan.unread.files)
            read = _parse_blobs(files, [Path(p).read_bytes() for p in files])
            table = pa.concat_tables([read.table, scan.table])
            return LandingRead(table, scan.files, scan.torn_bytes, scan.malformed + read.malformed)
        table = pa.concat_tables([whole, scan.table])
        return LandingRead(table, scan.files, scan.torn_bytes, scan.malformed)


def _parse_blobs(names: Sequence[str], blobs: Sequence[bytes]) -> LandingRead:
    """Line by line: complete lines parsed, a torn last line counted, bad lines reported."""
    tables, torn, malformed = [], 0, []
    for name, data in zip(names, blobs, strict=True):
        complete = data[: data.rfind(b"\n") + 1]
        torn += len(data) - len(complete)
        if complete:
            table, bad = parse_landing_lines(complete, name.rsplit("/", 1)[-1])
            tables.append(table)
            malformed.extend(bad)
    table = pa.concat_tables(tables) if tables else LANDING_SCHEMA.empty_table()
    return LandingRead(table=table, files=list(names), torn_bytes=torn, malformed=malformed)


def _parse_remote(storage: Storage, entries: Sequence[Entry]) -> LandingRead:
    """Landed objects read in groups of about ``REMOTE_READ_GROUP_BYTES`` (each group's reads
    side by side), every group parsed in one pass of pyarrow's JSON reader, and a group it
    refuses parsed object by object, so a bad line costs only itself."""
    groups: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        if groups[-1] and size + entry.size > REMOTE_READ_GROUP_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += entry.size
    reads = []
    for group in groups:
        keys = [e.key for e in group]
        blobs = storage.read_many(keys)
        if all(b.endswith(b"\n") or not b for b in blobs):
            try:
                table = pa_json.read_json(io.BytesIO(b"".join(blobs)), parse_options=_PARSE)
                reads.append(LandingRead(table, keys))
                continue
            except pa.ArrowInvalid:
                pass  # a bad line: find it object by object below
        reads.append(_parse_blobs(keys, blobs))
    tables = [r.table for r in reads] or [LANDING_SCHEMA.empty_table()]
    return LandingRead(
        pa.concat_tables(tables),
        [e.key for e in entries],
        sum(r.torn_bytes for r in reads),
        [m for r in reads for m in r.malformed],
    )


def _ends_with_newline(path: str) -> bool:
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


def _read_whole_files(files: Sequence[str]) -> pa.Table:
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

    data_dir: str = Field(
        default="./data",
        description="The storage root (SPEND_DATA_DIR): a local folder or an s3://, gs:// or "
        "az:// URL.",
    )

    def zone(self) -> LandingZone:
        return LandingZone(self.data_dir)
