"""Checks on CBF rows before they go to CloudZero: pure functions, no Dagster, no I/O.

Rows are what ``read_cbf_csv`` returns (dicts keyed by CBF column); an hour is an aware
UTC datetime at the start of an hour. Every problem names the 1-based data row, the
column and the offending value (its ``repr``, cut to 60 characters). Whatever
``cbf_rows`` produces always validates clean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from resources.cbf import CONTROL_CHARACTERS, MAX_TAG_VALUE, TAG_PREFIX, format_hour

REQUIRED_COLUMNS = (
    "time/usage_start",
    "lineitem/type",
    "resource/service",
    "resource/id",
    "cost/cost",
)
# The line item types CloudZero documents for CBF; only "Usage" is produced here.
LINEITEM_TYPES = frozenset(
    "Usage Tax Support Purchase CommittedUsePurchase Discount Credit Fee Refund".split()
)
MAX_PROBLEMS = 10
MAX_SHOWN = 60
_ABSENT = object()
# fullmatch + ASCII: "$" would accept a trailing newline and "\d" non-ASCII digits.
_COST = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?", re.ASCII)
_AMOUNT = re.compile(r"(0|[1-9]\d*)(\.\d+)?", re.ASCII)
# CloudZero documents no charset for tag keys, so stay conservative.
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"… and {len(problems) - MAX_PROBLEMS} more"]


def _tag_value_faults(value: str) -> list[str]:
    faults = []
    if not value:
        faults.append("is empty")
    if CONTROL_CHARACTERS.search(value):
        faults.append("has control characters")
    if value != value.strip():
        faults.append("has leading or trailing whitespace")
    if len(value) > MAX_TAG_VALUE:
        faults.append(f"is longer than {MAX_TAG_VALUE} characters ({len(value)})")
    return faults


def _value_fault(column: str, value: str, hour_text: str) -> str | None:
    """Why a string value is wrong for its column, or None."""
    if column == "cost/cost" and not _COST.fullmatch(value):
        return "is not fixed-point decimal text (no exponent, '+', leading zeros, NaN or spaces)"
    if column == "usage/amount" and value and not _AMOUNT.fullmatch(value):
        return "is not a fixed-point non-negative number"
    if column == "time/usage_start" and value != hour_text:
        return f"is not this file's hour {hour_text!r}"
    if column == "lineitem/type" and value not in LINEITEM_TYPES:
        return f"is not a CBF line item type ({', '.join(sorted(LINEITEM_TYPES))})"
    if column.startswith(TAG_PREFIX) and (faults := _tag_value_faults(value)):
        return "is not a valid tag value: it " + ", ".join(faults)
    return None


def _hour_problems(hour: datetime, rows: Sequence[Mapping[str, object]]) -> list[str]:
    hour_text = format_hour(hour)  # raises on naive or unaligned hours: a caller bug
    problems = [
        f"column {column!r}: tag key {_show(column[len(TAG_PREFIX) :])} is not 1-128 "
        "characters of A-Z a-z 0-9 _ . : -"
        for column in dict.fromkeys(c for row in rows for c in row)
        if column.startswith(TAG_PREFIX) and not _TAG_KEY.fullmatch(column[len(TAG_PREFIX) :])
    ]
    first_row_of: dict[str, int] = {}
    for n, row in enumerate(rows, start=1):
        problems += [
            f"row {n}: required column {c!r} is missing" for c in REQUIRED_COLUMNS if c not in row
        ]
        for column, value in row.items():
            where = f"row {n}, column {column!r}: {_show(value)}"
            if not isinstance(value, str):
                problems.append(f"{where} is a {type(value).__name__}, not a string")
            elif column in REQUIRED_COLUMNS and not value.strip():
                problems.append(f"{where} is empty, but the column is required")
            elif fault := _value_fault(column, value, hour_text):
                problems.append(f"{where} {fault}")
        rid = row.get("resource/id")
        if isinstance(rid, str) and rid.strip():
            first = first_row_of.setdefault(rid, n)
            if first != n:
                problems.append(
                    f"row {n}, column 'resource/id': {_show(rid)} duplicates row {first} "
                    "(one row per resource per hour; CloudZero would sum them)"
                )
    return problems


def hour_problems(hour: datetime, rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Everything wrong with one hour's rows; [] when it can be sent."""
    return _capped(_hour_problems(hour, rows))


def _tags(row: Mapping[str, object]) -> dict[str, object]:
    return {k[len(TAG_PREFIX) :]: v for k, v in sorted(row.items()) if k.startswith(TAG_PREFIX)}


def tag_conflicts(
    hours: Mapping[datetime, Sequence[Mapping[str, object]]],
) -> dict[datetime, list[str]]:
    """resource/id values whose tag values differ between rows (within or across hours).

    CloudZero keeps only a resource's latest tags and applies them to all its history,
    so every row of an id must carry the first-seen (hour order, then row order) tags.
    Each differing row is reported on its hour, showing the tags that differ.
    """
    first_seen: dict[str, tuple[datetime, int, dict[str, object]]] = {}
    conflicts: dict[datetime, list[str]] = {}
    for hour in sorted(hours):
        for n, row in enumerate(hours[hour], start=1):
            rid = row.get("resource/id")
            if not isinstance(rid, str):
                continue  # hour_problems reports it
            tags = _tags(row)
            first_hour, first_n, first_tags = first_seen.setdefault(rid, (hour, n, tags))
            if tags != first_tags:
                here = {k: v for k, v in tags.items() if first_tags.get(k, _ABSENT) != v}
                there = {k: v for k, v in first_tags.items() if tags.get(k, _ABSENT) != v}
                conflicts.setdefault(hour, []).append(
                    f"row {n}, column 'resource/id': {_show(rid)} has tags {_show(here)} but "
                    f"{_show(there)} in {format_hour(first_hour)} row {first_n} "
                    "(CloudZero keeps one tag set per resource)"
                )
    return conflicts


def validate_cbf_hours(
    hours: Mapping[datetime, Sequence[Mapping[str, object]]],
) -> dict[datetime, list[str]]:
    """hour -> problems, only for hours with problems (hour_problems + tag_conflicts merged)."""
    conflicts = tag_conflicts(hours)
    merged = {
        hour: _capped(_hour_problems(hour, hours[hour]) + conflicts.get(hour, []))
        for hour in sorted(hours)
    }
    return {hour: problems for hour, problems in merged.items() if problems}
