"""The hourly Parquet lake: Hive paths, atomic per-hour writes, range reads.

Layout: ``<data_dir>/lake/<asset>/date=YYYY-MM-DD/hour=HH/part-0.parquet``. Every hour of a
materialised range gets a file, even an empty one, so a restated hour that lost its rows
really is emptied and readers can tell "no spend" from "never materialised".
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

HOUR = timedelta(hours=1)
PART_FILE = "part-0.parquet"


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """The UTC hour starts in ``[start, end)``; both ends must be hour-aligned."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    if start.minute or start.second or start.microsecond or end.minute or end.second:
        raise ValueError(f"hour range must be hour-aligned, got {start} .. {end}")
    count = int((end - start) / HOUR)
    return [start + i * HOUR for i in range(count)]


def hive_dir(root: Path, hour: datetime) -> Path:
    """``root/date=YYYY-MM-DD/hour=HH`` for a UTC hour."""
    hour = hour.astimezone(timezone.utc)
    return root / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via ``write(tmp_path)`` then rename over ``path``: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    files: tuple[Path, ...]
    schemas: tuple[pa.Schema, ...]  # the distinct schemas of the files, in file order
    num_rows: int

    @classmethod
    def of(cls, files: Sequence[Path]) -> ParquetScan:
        metas = [pq.read_metadata(f) for f in files]
        schemas: list[pa.Schema] = []
        for meta in metas:
            schema = meta.schema.to_arrow_schema()
            if schema not in schemas:
                schemas.append(schema)
        return cls(tuple(files), tuple(schemas), sum(m.num_rows for m in metas))

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
        if self.files:
            con.read_parquet([str(f) for f in self.files]).create_view(name, replace=True)
        else:
            con.register(name, self.schema.empty_table())


class LakeResource(dg.ConfigurableResource):
    """Reads and writes the hourly Parquet tables under ``<data_dir>/lake``."""

    data_dir: str = "./data"
    chunk_rows: int = Field(
        default=CHUNK_ROWS,
        description="Rows a step holds at once while it works through a range: memory "
        "against per-chunk overhead. An hour is never split.",
    )

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / "lake"

    def hour_file(self, asset: str, hour: datetime) -> Path:
        return hive_dir(self.root / asset, hour) / PART_FILE

    def write_hours(
        self,
        asset: str,
        table: pa.Table,
        hours: Sequence[datetime],
        hour_column: str = "usage_hour",
    ) -> list[Path]:
        """Atomically (re)write one file per hour of the range; returns the files written."""
        written = []
        for hour, part in sorted(split_by_hour(table, hours, hour_column).items()):
            path = self.hour_file(asset, hour)
            atomic_write(path, lambda tmp, part=part: pq.write_table(part, tmp, compression="zstd"))
            written.append(path)
        return written

    def hour_files(self, asset: str, hours: Iterable[datetime]) -> list[Path]:
        """The files of ``asset`` for ``hours``; a missing hour is an error naming it."""
        files = [self.hour_file(asset, h) for h in hours]
        missing = [f for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(
                f"{asset} has no data for {len(missing)} hour(s), first {missing[0].parent}; "
                f"materialise {asset} for these hours first"
            )
        return files

    def read_hours(self, asset: str, hours: Sequence[datetime]) -> pa.Table:
        files = self.hour_files(asset, hours)
        return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})

    def scan(self, asset: str, hours: Sequence[datetime]) -> ParquetScan:
        return ParquetScan.of(self.hour_files(asset, hours))

    def row_counts(self, asset: str, hours: Sequence[datetime]) -> list[int]:
        """Rows per hour, from the Parquet footers (no data is read)."""
        return [pq.read_metadata(f).num_rows for f in self.hour_files(asset, hours)]

    def chunks(self, assets: Sequence[str], hours: Sequence[datetime]) -> list[list[datetime]]:
        """``hours`` in chunks of about ``chunk_rows`` rows of ``assets`` together."""
        per_asset = [self.row_counts(asset, hours) for asset in assets]
        sizes = [sum(counts) for counts in zip(*per_asset, strict=True)]
        return chunk_hours(hours, sizes, self.chunk_rows)
