"""CloudZero Billing Format (CBF): CloudZero's wire format, the one owner of CBF text.

Pure functions, no Dagster: columns, how a cost, an hour, a tag value and a resource id are
written, and the per-hour ``cbf.csv`` writer and reader. ``assets.cbf_rows`` turns spend into
rows of this format; the CloudZero resource packs and sends them.

Choices that other code and CloudZero rely on:

* **Costs** are fixed-point decimal strings with trailing zeros trimmed and no exponent,
  sign or negative zero: ``Decimal("1.500000000000000000")`` → ``"1.5"``, zero → ``"0"``,
  ``Decimal("2E+3")`` → ``"2000"``. Any value with at most 18 fractional digits (the
  lake's ``DECIMAL(38, 18)`` scale) round-trips exactly: ``Decimal(format_cost(d)) == d``.
  A value with more fractional digits is rounded half-even to 18 first.
* **Resources** are made of configured dimensions (``department, team, agent, provider,
  model`` by default), each written as a ``resource/tag:<dimension>`` column after the
  fixed columns, in the configured order.
* **Resource ids** are ``litellm/<value 1>/<value 2>/…``, one part per dimension, each
  percent-encoded outside the RFC 3986 unreserved set (so ``/`` → ``%2F`` and ``%`` →
  ``%25``). Percent-encoding is injective and no encoded part contains ``/``, so for one set
  of dimensions distinct values never share an id. The id is built from exactly the tag
  values written on the row, so a resource's tags never change (CloudZero keeps only the
  latest tags of a resource and applies them to all history).
* **Tag values**: CloudZero documents no character set for ``resource/tag:<key>`` values,
  so we stay conservative: control characters (including CR, LF, TAB) become spaces,
  runs of whitespace collapse to one space, ends are trimmed, values are cut to 256
  characters (the common cloud tag-value limit), and an empty or missing value becomes
  ``unattributed``.
"""

from __future__ import annotations

import csv
import decimal
import hashlib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import quote

import pyarrow as pa

from resources.lake import hive_prefix
from resources.storage import Storage

# Every CBF file starts with these columns; its resource's tag columns follow.
BASE_COLUMNS: list[str] = [
    "time/usage_start",
    "lineitem/type",
    "lineitem/description",
    "resource/service",
    "resource/id",
    "usage/amount",
    "usage/units",
    "cost/cost",
]
TAG_PREFIX = "resource/tag:"

LINEITEM_TYPE = "Usage"
SERVICE = "LiteLLM"
USAGE_UNITS = "tokens"
RESOURCE_PREFIX = "litellm"
UNATTRIBUTED = "unattributed"
MAX_TAG_VALUE = 256
COST_SCALE = 18
CBF_FOLDER = "cbf"
CBF_FILE = "cbf.csv"

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s+")
# Exact decimal arithmetic for money. Wide enough for 38 integer digits plus 18 fractional ones and sums of many such values.
EXACT = decimal.Context(
    prec=100, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation]
)
_QUANTUM = Decimal(1).scaleb(-COST_SCALE)


def format_cost(value: Decimal | int) -> str:
    """Fixed-point text of an amount: no exponent, no ``-0``, trailing zeros trimmed.

    Exact for every value with at most 18 fractional digits; finer values are rounded
    half-even to 18 digits. Floats are refused: money must arrive exact.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"cost must be a Decimal or int, got {type(value).__name__}")
    value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"cost is not a finite number: {value}")
    if value.as_tuple().exponent < -COST_SCALE:  # type: ignore[operator]
        value = value.quantize(_QUANTUM, context=EXACT)
    if value.is_zero():
        return "0"
    return format(value.normalize(context=EXACT), "f")


def format_hour(hour: datetime) -> str:
    """``YYYY-MM-DDTHH:00:00Z`` for a timezone-aware datetime that starts a UTC hour."""
    if not isinstance(hour, datetime):
        raise TypeError(f"hour must be a datetime, got {type(hour).__name__}")
    if hour.tzinfo is None or hour.utcoffset() is None:
        raise ValueError(f"hour {hour.isoformat()} has no timezone; pass an aware UTC datetime")
    utc = hour.astimezone(timezone.utc)
    if utc.minute or utc.second or utc.microsecond:
        raise ValueError(f"{hour.isoformat()} is not the start of a UTC hour")
    return f"{utc:%Y-%m-%dT%H}:00:00Z"


def tag_value(value: str | None) -> str:
    """A tag value CloudZero will take as-is: printable, trimmed, ≤256 chars, never empty."""
    if value is None:
        return UNATTRIBUTED
    cleaned = (
        _WHITESPACE.sub(" ", CONTROL_CHARACTERS.sub(" ", str(value)))
        .strip()[:MAX_TAG_VALUE]
        .strip()
    )
    return cleaned or UNATTRIBUTED


def cbf_columns(dimensions: Sequence[str]) -> list[str]:
    """The columns of a CBF file whose resources are made of ``dimensions``."""
    return [*BASE_COLUMNS, *(TAG_PREFIX + d for d in dimensions)]


def cbf_schema(dimensions: Sequence[str]) -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in cbf_columns(dimensions)])


def resource_id(values: Sequence[str]) -> str:
    """``litellm/<value>/<value>/…``, each part percent-encoded (collision-free)."""
    parts = (quote(str(part), safe="") for part in values)
    return "/".join((RESOURCE_PREFIX, *parts))


def _check_header(header: Sequence[str] | None, where: object) -> list[str]:
    """The header, if it is the base columns followed by tag columns only."""
    header = list(header or [])
    tags = header[len(BASE_COLUMNS) :]
    if header[: len(BASE_COLUMNS)] != BASE_COLUMNS or not all(
        c.startswith(TAG_PREFIX) and len(c) > len(TAG_PREFIX) for c in tags
    ):
        raise ValueError(
            f"{where} is not a CBF file: header {header} is not {BASE_COLUMNS} followed by "
            f"{TAG_PREFIX}<dimension> columns"
        )
    return header


def cbf_csv_bytes(rows: pa.Table) -> bytes:
    """The exact bytes of ``cbf.csv``: header + rows, ``\\n`` line ends, UTF-8."""
    columns = _check_header(rows.column_names, "the rows to write")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows.to_pylist():
        values = [row[c] for c in columns]
        if any(not isinstance(v, str) for v in values):
            raise ValueError(f"CBF values must be non-null strings, got {row}")
        writer.writerow(values)
    return out.getvalue().encode("utf-8")


def write_cbf_csv(rows: pa.Table, storage: Storage, key: str) -> str:
    """(Re)write a CBF file whole; the same rows always give byte-identical files. Returns
    where it went."""
    storage.write(key, cbf_csv_bytes(rows))
    return storage.url(key)


@dataclass(frozen=True)
class CbfFile:
    """One hour's CBF file as read: its rows and the SHA-256 of its exact bytes."""

    url: str
    rows: list[dict[str, str]]
    sha256: str


def load_cbf_file(storage: Storage, key: str) -> CbfFile:
    """Read a CBF file once: rows for sending, content hash for "has it changed?"."""
    data = storage.read(key)
    url = storage.url(key)
    return CbfFile(url, parse_cbf(data, url), hashlib.sha256(data).hexdigest())


def load_cbf_hours(storage: Storage, hours: Sequence[datetime]) -> dict[datetime, CbfFile]:
    """The CBF files of those ``hours`` that have one (one listing per day, the files read
    side by side)."""
    keys = {hour: cbf_hour_key(hour) for hour in hours}
    days = sorted({key.rsplit("/hour=", 1)[0] for key in keys.values()})
    present = {e.key for entries in storage.list_many(days) for e in entries}
    found = [(hour, key) for hour, key in keys.items() if key in present]
    blobs = storage.read_many([key for _, key in found])
    files = {}
    for (hour, key), data in zip(found, blobs, strict=True):
        url = storage.url(key)
        files[hour] = CbfFile(url, parse_cbf(data, url), hashlib.sha256(data).hexdigest())
    return files


def read_cbf_csv(storage: Storage, key: str) -> list[dict[str, str]]:
    """The rows of a CBF file as dicts keyed by CBF column, in file order."""
    return load_cbf_file(storage, key).rows


def parse_cbf(data: bytes, where: object) -> list[dict[str, str]]:
    """The rows of a CBF file's bytes; ``where`` names it in errors."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = _check_header(next(reader, None), where)
    rows: list[dict[str, str]] = []
    for line_no, values in enumerate(reader, start=2):
        if len(values) != len(header):
            raise ValueError(f"{where}:{line_no} has {len(values)} fields, not {len(header)}")
        rows.append(dict(zip(header, values, strict=True)))
    return rows


def cbf_hour_key(hour: datetime) -> str:
    """``cbf/date=YYYY-MM-DD/hour=HH/cbf.csv`` for a UTC hour (under the storage root)."""
    format_hour(hour)  # rejects naive and non-hour-aligned datetimes
    return f"{hive_prefix(CBF_FOLDER, hour)}/{CBF_FILE}"


def exact_sum(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum of amounts (Python's default context would round to 28 digits)."""
    total = Decimal(0)
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total


def cost_total(rows: list[Mapping[str, str]]) -> Decimal:
    """Exact sum of ``cost/cost`` over CBF rows (dicts, as read from a file)."""
    return exact_sum(Decimal(row["cost/cost"]) for row in rows)
