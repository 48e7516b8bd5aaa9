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
* **Resource ids** are ``litellm/<department>/<team>/<agent>``, each part percent-encoded
  outside the RFC 3986 unreserved set (so ``/`` → ``%2F`` and ``%`` → ``%25``). Percent-
  encoding is injective and no encoded part contains ``/``, so distinct triples never
  share an id. The id is built from exactly the tag values written on the row, so a
  resource's tags never change (CloudZero keeps only the latest tags of a resource and
  applies them to all history).
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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from os import PathLike
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa

from resources.lake import atomic_write, hive_dir

CBF_COLUMNS: list[str] = [
    "time/usage_start",
    "lineitem/type",
    "lineitem/description",
    "resource/service",
    "resource/id",
    "usage/amount",
    "usage/units",
    "cost/cost",
    "resource/tag:department",
    "resource/tag:team",
    "resource/tag:agent",
]
CBF_SCHEMA = pa.schema([(name, pa.string()) for name in CBF_COLUMNS])

LINEITEM_TYPE = "Usage"
SERVICE = "LiteLLM"
USAGE_UNITS = "tokens"
RESOURCE_PREFIX = "litellm"
UNATTRIBUTED = "unattributed"
MAX_TAG_VALUE = 256
COST_SCALE = 18
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


def resource_id(department: str, team: str, agent: str) -> str:
    """``litellm/<department>/<team>/<agent>``, each part percent-encoded (collision-free)."""
    parts = (quote(str(part), safe="") for part in (department, team, agent))
    return "/".join((RESOURCE_PREFIX, *parts))


def cbf_csv_bytes(rows: pa.Table) -> bytes:
    """The exact bytes of ``cbf.csv``: header + rows, ``\\n`` line ends, UTF-8."""
    if rows.column_names != CBF_COLUMNS:
        raise ValueError(f"CBF rows must have columns {CBF_COLUMNS}, got {rows.column_names}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CBF_COLUMNS)
    for row in rows.to_pylist():
        values = [row[c] for c in CBF_COLUMNS]
        if any(not isinstance(v, str) for v in values):
            raise ValueError(f"CBF values must be non-null strings, got {row}")
        writer.writerow(values)
    return out.getvalue().encode("utf-8")


def write_cbf_csv(rows: pa.Table, path: str | PathLike[str]) -> Path:
    """Atomically (re)write a CBF file; the same rows always give byte-identical files."""
    data = cbf_csv_bytes(rows)
    target = Path(path)
    atomic_write(target, lambda tmp: tmp.write_bytes(data))
    return target


@dataclass(frozen=True)
class CbfFile:
    """One hour's CBF file as read: its rows and the SHA-256 of its exact bytes."""

    path: Path
    rows: list[dict[str, str]]
    sha256: str


def load_cbf_file(path: str | PathLike[str]) -> CbfFile:
    """Read a CBF file once: rows for sending, content hash for "has it changed?"."""
    data = Path(path).read_bytes()
    rows = _parse_cbf(data.decode("utf-8"), path)
    return CbfFile(Path(path), rows, hashlib.sha256(data).hexdigest())


def read_cbf_csv(path: str | PathLike[str]) -> list[dict[str, str]]:
    """The rows of a CBF file as dicts keyed by CBF column, in file order."""
    return load_cbf_file(path).rows


def _parse_cbf(text: str, path: str | PathLike[str]) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header != CBF_COLUMNS:
        raise ValueError(f"{path} is not a CBF file: header {header} != {CBF_COLUMNS}")
    rows: list[dict[str, str]] = []
    for line_no, values in enumerate(reader, start=2):
        if len(values) != len(CBF_COLUMNS):
            raise ValueError(f"{path}:{line_no} has {len(values)} fields, not {len(CBF_COLUMNS)}")
        rows.append(dict(zip(CBF_COLUMNS, values, strict=True)))
    return rows


def cbf_hour_path(data_dir: str | PathLike[str], hour: datetime) -> Path:
    """``<data_dir>/cbf/date=YYYY-MM-DD/hour=HH/cbf.csv`` for a UTC hour."""
    format_hour(hour)  # rejects naive and non-hour-aligned datetimes
    return hive_dir(Path(data_dir) / "cbf", hour) / CBF_FILE


def cost_total(rows: list[Mapping[str, str]]) -> Decimal:
    """Exact sum of ``cost/cost`` over CBF rows (dicts, as read from a file)."""
    total = Decimal(0)
    for row in rows:
        total = EXACT.add(total, Decimal(row["cost/cost"]))
    return total
