import hashlib
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from resources.cbf import BASE_COLUMNS, format_hour
from resources.cloudzero_bodies import (
    DEFAULT_MAX_BODY_BYTES,
    EMPTY_HOUR_RESOURCE_ID,
    MAX_BODY_BYTES,
    Body,
    delivery_units,
    empty_hour_row,
    pack_bodies,
    rows_by_hour,
)
from tests.cbf_rows import hour_rows, row

JAN31_23 = datetime(2025, 1, 31, 23, tzinfo=timezone.utc)
FEB01_00 = datetime(2025, 2, 1, 0, tzinfo=timezone.utc)


def row_keys(rows) -> Counter:
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


def test_default_limit_leaves_a_margin():
    assert DEFAULT_MAX_BODY_BYTES < MAX_BODY_BYTES == 5_000_000


def test_body_bytes_payload_and_idempotency_key():
    rows = hour_rows(FEB01_00, 3)
    body = Body("2025-02", "replace_hourly", (FEB01_00,), tuple(rows))
    data = body.to_bytes()
    assert json.loads(data) == {"month": "2025-02", "operation": "replace_hourly", "data": rows}
    assert body.payload() == {"month": "2025-02", "operation": "replace_hourly", "data": rows}
    assert data.startswith(b'{"month":"2025-02","operation":"replace_hourly","data":[{')
    # Base columns in CBF order, then the tags by name: one row, one byte string.
    tags = sorted(k for k in rows[0] if k not in BASE_COLUMNS)
    canonical = [{k: r[k] for k in (*BASE_COLUMNS, *tags)} for r in rows]
    payload = {"month": "2025-02", "operation": "replace_hourly", "data": canonical}
    assert data == json.dumps(payload, separators=(",", ":")).encode("ascii")
    assert body.idempotency_key == hashlib.sha256(data).hexdigest()
    same = Body("2025-02", "replace_hourly", (FEB01_00,), tuple(dict(r) for r in rows))
    assert same.to_bytes() == data and same.idempotency_key == body.idempotency_key
    assert body.cost_total == Decimal("0.006")


def test_body_bytes_do_not_depend_on_row_key_order():
    rows = hour_rows(FEB01_00, 2)
    shuffled = [dict(reversed(list(r.items()))) for r in rows]
    a = Body("2025-02", "replace_hourly", (FEB01_00,), tuple(rows))
    b = Body("2025-02", "replace_hourly", (FEB01_00,), tuple(shuffled))
    assert a.to_bytes() == b.to_bytes()


def test_body_validates_its_month_and_hours():
    with pytest.raises(ValueError):
        Body("2025-01", "replace_hourly", (FEB01_00,), tuple(hour_rows(FEB01_00, 1)))
    with pytest.raises(ValueError):
        Body("2025-02", "upsert", (FEB01_00,), tuple(hour_rows(FEB01_00, 1)))
    with pytest.raises(ValueError):
        Body("2025-02", "replace_hourly", (FEB01_00,), ())
    other = FEB01_00 + timedelta(hours=1)
    with pytest.raises(ValueError):  # a row for an hour the body does not declare
        Body("2025-02", "replace_hourly", (FEB01_00,), tuple(hour_rows(other, 1)))


def test_months_are_split_and_ordered():
    hours = {FEB01_00: hour_rows(FEB01_00, 2), JAN31_23: hour_rows(JAN31_23, 2)}
    bodies = pack_bodies(hours)
    assert [(b.month, b.operation, b.hours) for b in bodies] == [
        ("2025-01", "replace_hourly", (JAN31_23,)),
        ("2025-02", "replace_hourly", (FEB01_00,)),
    ]
    for body in bodies:
        assert {r["time/usage_start"][:7] for r in body.rows} == {body.month}


def test_months_follow_utc_not_the_given_offset():
    local = FEB01_00.astimezone(timezone(timedelta(hours=-5)))  # 2025-01-31T19:00-05:00
    (body,) = pack_bodies({local: hour_rows(FEB01_00, 1)})
    assert body.month == "2025-02" and body.hours == (FEB01_00,)


def test_whole_hours_are_packed_together_and_never_split():
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    starts = [start + timedelta(hours=h) for h in range(12)]
    hours = {h: hour_rows(h, 5 + i) for i, h in enumerate(starts)}
    largest = max(pack_bodies({h: rows})[0].size for h, rows in hours.items())
    limit = int(largest * 2.5)  # every hour fits alone; a body takes two or three of them
    bodies = pack_bodies(hours, max_body_bytes=limit)
    assert len(bodies) > 1
    assert all(b.operation == "replace_hourly" for b in bodies)
    assert any(len(b.hours) > 1 for b in bodies)
    seen = Counter(h for b in bodies for h in b.hours)
    assert set(seen) == set(hours) and set(seen.values()) == {1}  # each hour in exactly one body
    for body in bodies:
        assert len(body.to_bytes()) <= limit
        for h in body.hours:  # an hour's rows are all in the body that names it
            stamp = format_hour(h)
            assert [r for r in body.rows if r["time/usage_start"] == stamp] == hours[h]
    sent = row_keys(r for b in bodies for r in b.rows)
    assert sent == row_keys(r for rs in hours.values() for r in rs)
    # greedy packing: no body could have taken the next hour
    for a, b in zip(bodies, bodies[1:], strict=False):
        merged = Body(
            a.month, "replace_hourly", a.hours + b.hours[:1], a.rows + tuple(hours[b.hours[0]])
        )
        assert merged.size > limit


def test_body_size_is_measured_on_bytes_with_multibyte_text():
    rows = [dict(r, **{"resource/tag:agent": "ägent-☃"}) for r in hour_rows(FEB01_00, 40)]
    next_hour = FEB01_00 + timedelta(hours=1)
    hours = {FEB01_00: rows, next_hour: hour_rows(next_hour, 40)}
    total = pack_bodies(hours, max_body_bytes=10**9)
    assert len(total) == 1
    limit = total[0].size - 1
    bodies = pack_bodies(hours, max_body_bytes=limit)
    assert len(bodies) == 2
    assert all(len(b.to_bytes()) <= limit for b in bodies)
    assert json.loads(bodies[0].to_bytes())["data"][0]["resource/tag:agent"] == "ägent-☃"


def test_oversize_hour_becomes_replace_then_sum_continuations():
    big = datetime(2025, 3, 1, 5, tzinfo=timezone.utc)
    before, after = big - timedelta(hours=1), big + timedelta(hours=1)
    hours = {
        before: hour_rows(before, 2),
        big: hour_rows(big, 50, "big"),
        after: hour_rows(after, 2),
    }
    limit = pack_bodies({big: hour_rows(big, 12, "big")})[0].size  # ~12 rows per body
    bodies = pack_bodies(hours, max_body_bytes=limit)
    assert all(len(b.to_bytes()) <= limit for b in bodies)
    big_bodies = [b for b in bodies if big in b.hours]
    assert [b.operation for b in big_bodies][0] == "replace_hourly"
    assert {b.operation for b in big_bodies[1:]} == {"sum"} and len(big_bodies) >= 4
    assert all(b.hours == (big,) for b in big_bodies)  # continuations carry only that hour
    # the replace_hourly comes first and its continuations follow it directly
    first = bodies.index(big_bodies[0])
    assert bodies[first : first + len(big_bodies)] == big_bodies
    assert bodies[0].hours == (before,) and bodies[-1].hours == (after,)
    # every row of the hour exactly once, in order
    assert [r for b in big_bodies for r in b.rows] == hours[big]
    # only oversize hours ever use sum
    assert all(b.operation == "replace_hourly" for b in bodies if big not in b.hours)


def test_a_row_larger_than_a_body_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        pack_bodies({FEB01_00: hour_rows(FEB01_00, 1)}, max_body_bytes=100)


def test_empty_hour_is_sent_as_one_zero_cost_row():
    other = FEB01_00 + timedelta(hours=1)
    bodies = pack_bodies({FEB01_00: [], other: hour_rows(other, 1)})
    (body,) = bodies
    assert body.operation == "replace_hourly" and body.hours == (FEB01_00, other)
    assert body.rows[0] == empty_hour_row(FEB01_00)
    empty = empty_hour_row(FEB01_00)
    assert empty["cost/cost"] == "0" and empty["resource/id"] == EMPTY_HOUR_RESOURCE_ID
    assert empty["time/usage_start"] == "2025-02-01T00:00:00Z"
    assert all(isinstance(v, str) and v for v in empty.values())
    assert not any(k.startswith("resource/tag:") for k in empty)


def test_pack_rejects_rows_filed_under_the_wrong_hour_and_duplicates():
    with pytest.raises(ValueError, match="time/usage_start"):
        pack_bodies({FEB01_00: hour_rows(JAN31_23, 1)})
    with pytest.raises(ValueError):
        pack_bodies({FEB01_00.replace(minute=30): []})
    with pytest.raises(TypeError):
        pack_bodies({FEB01_00: [dict(row(FEB01_00, "a"), **{"usage/amount": 10})]})


def test_packing_is_deterministic():
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    hours = {start + timedelta(hours=h): hour_rows(start + timedelta(hours=h), 7) for h in range(6)}
    a = pack_bodies(hours, max_body_bytes=8_000)
    b = pack_bodies(dict(reversed(list(hours.items()))), max_body_bytes=8_000)
    assert [x.to_bytes() for x in a] == [y.to_bytes() for y in b]


def test_delivery_units_keep_an_oversize_hour_with_its_continuations():
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    big = start + timedelta(hours=1)
    hours = {start: hour_rows(start, 3), big: hour_rows(big, 40, "big")}
    hours[start + timedelta(hours=2)] = hour_rows(start + timedelta(hours=2), 3)
    limit = pack_bodies({big: hour_rows(big, 12, "big")})[0].size
    bodies = pack_bodies(hours, max_body_bytes=limit)
    units = delivery_units(bodies)
    assert [b for unit in units for b in unit] == bodies
    oversize = [u for u in units if len(u) > 1]
    assert len(oversize) == 1 and oversize[0][0].operation == "replace_hourly"
    assert {b.operation for b in oversize[0][1:]} == {"sum"}
    assert all(b.hours == (big,) for b in oversize[0])
    assert rows_by_hour(oversize[0]) == {big: hours[big]}
    with pytest.raises(ValueError, match="must follow"):
        delivery_units(oversize[0][1:])
