"""The hourly Parquet lake: Hive paths, whole per-hour writes, range reads.

Layout: ``<root>/lake/<asset>/date=YYYY-MM-DD/hour=HH/part-0.parquet`` under the storage root
(a local folder or object storage, ``resources.storage``). Every hour of a
materialised range gets a file, even an empty one, so a restated hour that lost its rows
really is emptied and readers can tell "no spend" from "never materialised".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from resources.storage import Storage, storage_at

HOUR = timedelta(hours=1)
PART_FILE = "part-0.parquet"
LAKE_FOLDER = "lake"
# Hours an asset holds back from CloudZero, one small JSON object per hour and asset.
HOLDS_FOLDER = "lake/_holds"


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """The UTC hour starts in ``[start, end)``; both ends must be hour-aligned."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    if start.minute or start.second or start.microsecond or end.minute or end.second:
        raise ValueError(f"hour range must be hour-aligned, got {start} .. {end}")
    count = int((end - start) / HOUR)
    return [start + i * HOUR for i in range(count)]


def hive_prefix(folder: str, hour: datetime) -> str:
    """``folder/date=YYYY-MM-DD/hour=HH`` for a UTC hour (a storage key prefix)."""
    hour = hour.astimezone(timezone.utc)
    return f"{folder}/date={hour:%Y-%m-%d}/hour={hour:%H}"


def split_by_hour(
    table: pa.Table, hours: Sequence[datetime], hour_column: str
) -> dict[datetime, pa.Table]:
    """One slice per requested hour (empty where the hour has no rows).

    Rows outside ``hours`` are a caller bug (they would silently vanish), so they raise.
    """
    wanted = {h.astimezone(timezone.utc) for h in hours}
    column = table[hour_column]
    if table.num_rows > 1 and not pc.all(pc.less_equal(column[:-1], column[1:])).as_py():
        table = table.sort_by(hour_column)  # queries mostly hand over sorted rows: no copy
    slices: dict[datetime, pa.Table] = {h: table.schema.empty_table() for h in wanted}
    if table.num_rows:
        counts = pc.value_counts(table[hour_column]).to_pylist()
        offset = 0
        for item in sorted(counts, key=lambda c: c["values"]):
            hour = item["values"].astimezone(timezone.utc)
            if hour not in wanted:
                raise ValueError(f"row for hour {hour:%Y-%m-%dT%H}Z outside the materialised range")
            slices[hour] = table.slice(offset, item["counts"])
            offset += item["counts"]
    return slices


# By default a step works through a range in chunks of consecutive hours of about this
# many input rows, so its memory depends on the busiest hours, not on the range's length.
# 200,000 rows of spend_events are about 150 MB in Arrow; one hour is never split.
CHUNK_ROWS = 200_000


def chunk_hours(
    hours: Sequence[datetime], sizes: Sequence[int], budget: int
) -> list[list[datetime]]:
    """Consecutive runs of ``hours`` whose ``sizes`` add up to at most ``budget``.

    An hour bigger than the budget is a chunk of its own; no hour is ever left out.
    """
    if len(hours) != len(sizes):
        raise ValueError(f"{len(hours)} hours but {len(sizes)} sizes")
    if budget <= 0:
        raise ValueError(f"a chunk must hold at least one row (SPEND_CHUNK_ROWS), got {budget}")
    chunks: list[list[datetime]] = []
    total = 0
    for hour, size in zip(hours, sizes, strict=True):
        if not chunks or total + size > budget:
            chunks.append([])
            total = 0
        chunks[-1].append(hour)
        total += size
    return chunks


@dataclass(frozen=True)
class ParquetScan:
    """A range of one asset's hourly files, for DuckDB to stream instead of loading it.

    Quacks like the ``pa.Table`` it stands for where rules look: ``schema``,
    ``column_names``, ``num_columns``, ``num_rows``; all read from the files' footers.
    """

    storage: Storage
    keys: tuple[str, ...]
    schemas: tuple[pa.Schema, ...]  # the distinct schemas of the files, in file order
    num_rows: int

    @classmethod
    def of(cls, storage: Storage, keys: Sequence[str]) -> ParquetScan:
        metas = storage.parquet_metadata(keys)
        schemas: list[pa.Schema] = []
        for meta in metas:
            schema = meta.schema.to_arrow_schema()
            if schema not in schemas:
                schemas.append(schema)
        return cls(storage, tuple(keys), tuple(schemas), sum(m.num_rows for m in metas))

    @property
    def schema(self) -> pa.Schema:
        """The first file's schema (``schemas`` has the others, if any differ)."""
        return self.schemas[0] if self.schemas else pa.schema([])

    @property
    def column_names(self) -> list[str]:
        return self.schema.names

    @property
    def num_columns(self) -> int:
        return len(self.schema)

    def create_view(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        if not self.keys:
            con.register(name, self.schema.empty_table())
        elif self.storage.local:  # DuckDB's own reader: parallel, only the columns used
            paths = [self.storage.path(k) for k in self.keys]
            con.read_parquet(paths).create_view(name, replace=True)
        else:  # whole objects fetched side by side, decoded in memory (a chunk's worth)
            con.register(name, self.storage.parquet_table(self.keys, self.schema))


class LakeResource(dg.ConfigurableResource):
    """Reads and writes the hourly Parquet tables under ``<data_dir>/lake``."""

    data_dir: str = Field(
        default="./data",
        description="The storage root (SPEND_DATA_DIR): a local folder or an s3://, gs:// or "
        "az:// URL.",
    )
    chunk_rows: int = Field(
        default=CHUNK_ROWS,
        description="Rows a step holds at once while it works through a range: memory "
        "against per-chunk overhead. An hour is never split.",
    )

    @property
    def storage(self) -> Storage:
        return storage_at(self.data_dir)

    def hour_key(self, asset: str, hour: datetime) -> str:
        return f"{hive_prefix(f'{LAKE_FOLDER}/{asset}', hour)}/{PART_FILE}"

    def write_hours(
        self,
        asset: str,
        table: pa.Table,
        hours: Sequence[datetime],
        hour_column: str = "usage_hour",
    ) -> list[str]:
        """(Re)write one whole file per hour of the range; returns their URLs."""
        written = []
        for hour, part in sorted(split_by_hour(table, hours, hour_column).items()):
            key = self.hour_key(asset, hour)
            sink = pa.BufferOutputStream()
            pq.write_table(part, sink, compression="zstd")
            self.storage.write(key, sink.getvalue().to_pybytes())
            written.append(self.storage.url(key))
        return written

    def present_hours(self, asset: str, hours: Sequence[datetime]) -> list[datetime]:
        """Those of ``hours`` that ``asset`` has a file for: one listing per day of the
        range, not one request per hour."""
        keys = {hour: self.hour_key(asset, hour) for hour in hours}
        days = sorted({key.rsplit("/hour=", 1)[0] for key in keys.values()})
        present = {e.key for entries in self.storage.list_many(days) for e in entries}
        return [hour for hour in hours if keys[hour] in present]

    def hour_keys(self, asset: str, hours: Sequence[datetime]) -> list[str]:
        """The files of ``asset`` for ``hours``; a missing hour is an error naming it."""
        present = set(self.present_hours(asset, hours))
        missing = [hour for hour in hours if hour not in present]
        if missing:
            raise FileNotFoundError(
                f"{asset} has no data for {len(missing)} hour(s), first "
                f"{self.storage.url(self.hour_key(asset, missing[0]))}; materialise {asset} "
                "for these hours first"
            )
        return [self.hour_key(asset, hour) for hour in hours]

    def read_hours(self, asset: str, hours: Sequence[datetime]) -> pa.Table:
        scan = self.scan(asset, hours)
        if not scan.keys:
            return pa.table({})
        return scan.storage.parquet_table(scan.keys, scan.schema)

    def scan(self, asset: str, hours: Sequence[datetime]) -> ParquetScan:
        return ParquetScan.of(self.storage, self.hour_keys(asset, hours))

    def row_counts(self, asset: str, hours: Sequence[datetime]) -> list[int]:
        """Rows per hour, from the Parquet footers (no data is read)."""
        return [m.num_rows for m in self.storage.parquet_metadata(self.hour_keys(asset, hours))]

    def chunks(self, assets: Sequence[str], hours: Sequence[datetime]) -> list[list[datetime]]:
        """``hours`` in chunks of about ``chunk_rows`` rows of ``assets`` together."""
        per_asset = [self.row_counts(asset, hours) for asset in assets]
        sizes = [sum(counts) for counts in zip(*per_asset, strict=True)]
        return chunk_hours(hours, sizes, self.chunk_rows)

    def set_holds(
        self, asset: str, hours: Sequence[datetime], held: Mapping[datetime, Sequence[str]]
    ) -> None:
        """Record which of ``hours`` ``asset`` holds back and why; the others it releases."""
        existing = self._holds_present(hours)
        for hour in hours:
            key = f"{hive_prefix(HOLDS_FOLDER, hour)}/{asset}.json"
            if hour in held:
                document = {
                    "asset": asset,
                    "hour": f"{hour:%Y-%m-%dT%H}:00Z",
                    "reasons": held[hour],
                }
                self.storage.write(key, json.dumps(document, indent=2).encode())
            elif key in existing:
                self.storage.delete(key)

    def holds(self, hours: Sequence[datetime]) -> dict[datetime, dict[str, list[str]]]:
        """The hours among ``hours`` that some asset holds back: asset → reasons."""
        wanted = {hive_prefix(HOLDS_FOLDER, hour): hour for hour in hours}
        keys = sorted(self._holds_present(hours))
        holds: dict[datetime, dict[str, list[str]]] = {}
        for key, data in zip(keys, self.storage.read_many(keys), strict=True):
            hour = wanted.get(key.rsplit("/", 1)[0])
            if hour is not None:
                document = json.loads(data)
                holds.setdefault(hour, {})[document["asset"]] = document["reasons"]
        return holds

    def _holds_present(self, hours: Sequence[datetime]) -> set[str]:
        days = sorted({hive_prefix(HOLDS_FOLDER, h).rsplit("/hour=", 1)[0] for h in hours})
        return {e.key for entries in self.storage.list_many(days) for e in entries}
