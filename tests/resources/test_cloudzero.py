import hashlib
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from assets.cbf import CBF_COLUMNS, format_hour
from resources.cloudzero import (
    DEFAULT_MAX_BODY_BYTES,
    EMPTY_HOUR_RESOURCE_ID,
    MAX_BODY_BYTES,
    REASON_DRY_RUN_SET,
    REASON_NO_CREDENTIALS,
    REASON_NOT_AVAILABLE,
    Body,
    CloudZeroResource,
    empty_hour_row,
    pack_bodies,
)

JAN31_23 = datetime(2025, 1, 31, 23, tzinfo=timezone.utc)
FEB01_00 = datetime(2025, 2, 1, 0, tzinfo=timezone.utc)


def row(hour: datetime, agent: str, cost: str = "0.25") -> dict[str, str]:
    values = [
        format_hour(hour),
        "Usage",
        "LiteLLM spend: 1 request",
        "LiteLLM",
        f"litellm/finance/ap/{agent}",
        "10",
        "tokens",
        cost,
        "finance",
        "ap",
        agent,
    ]
    return dict(zip(CBF_COLUMNS, values, strict=True))


def hour_rows(hour: datetime, n: int, prefix: str = "agent") -> list[dict[str, str]]:
    return [row(hour, f"{prefix}-{i:04d}", cost=f"0.{i + 1:03d}") for i in range(n)]


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
    payload = {"month": "2025-02", "operation": "replace_hourly", "data": rows}
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


# --- the resource (dry run) --------------------------------------------------------------

SECRET = "cz-secret-api-key-DO-NOT-WRITE-0123456789"


def test_mode_and_reason_are_honest():
    assert CloudZeroResource().mode == "dry_run"
    assert CloudZeroResource().reason == REASON_NO_CREDENTIALS
    assert CloudZeroResource(api_key=SECRET).reason == REASON_NO_CREDENTIALS
    with_creds = CloudZeroResource(api_key=SECRET, connection_id="conn-1")
    assert with_creds.reason == REASON_DRY_RUN_SET and with_creds.mode == "dry_run"
    live_asked = CloudZeroResource(api_key=SECRET, connection_id="conn-1", dry_run=False)
    assert live_asked.mode == "dry_run" and live_asked.reason == REASON_NOT_AVAILABLE


def test_url_uses_a_placeholder_without_a_connection_id():
    assert CloudZeroResource().billing_drops_url == (
        "https://api.cloudzero.com/v2/connections/billing/anycost/"
        "<CLOUDZERO_CONNECTION_ID>/billing_drops"
    )
    local = CloudZeroResource(api_url="http://127.0.0.1:9/", connection_id="c/1")
    assert local.billing_drops_url == (
        "http://127.0.0.1:9/v2/connections/billing/anycost/c%2F1/billing_drops"
    )


def test_dry_run_writes_exact_bodies_and_a_manifest(tmp_path: Path):
    start = datetime(2025, 1, 31, 20, tzinfo=timezone.utc)
    big = start + timedelta(hours=1)
    hours = {
        start: hour_rows(start, 3),
        big: hour_rows(big, 30, "big"),
        start + timedelta(hours=2): [],
        FEB01_00: hour_rows(FEB01_00, 2),
    }
    limit = pack_bodies({big: hour_rows(big, 10, "big")})[0].size
    bodies = pack_bodies(hours, max_body_bytes=limit)
    resource = CloudZeroResource(api_key=SECRET, connection_id="conn-42", data_dir=str(tmp_path))
    report = resource.submit(bodies, run_id="run-abc")

    assert report.mode == "dry_run" and not report.submitted
    assert report.reason == REASON_DRY_RUN_SET
    out = tmp_path / "cloudzero" / "dry_run" / "run-abc"
    assert report.directory == out
    files = sorted(out.glob("body-*.json"))
    assert [f.name for f in files] == [f"body-{i:04d}.json" for i in range(1, len(bodies) + 1)]
    for f, body in zip(files, bodies, strict=True):
        assert f.read_bytes() == body.to_bytes()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "dry_run" and manifest["submitted"] is False
    assert len(manifest["bodies"]) == len(bodies)
    for entry, body in zip(manifest["bodies"], bodies, strict=True):
        assert entry["month"] == body.month and entry["operation"] == body.operation
        assert entry["hours"] == [format_hour(h) for h in body.hours]
        assert entry["rows"] == len(body.rows) and entry["bytes"] == len(body.to_bytes())
        assert entry["idempotency_key"] == hashlib.sha256(body.to_bytes()).hexdigest()
        assert Decimal(entry["cost_total"]) == sum(Decimal(r["cost/cost"]) for r in body.rows)
        assert entry["url"] == (
            "https://api.cloudzero.com/v2/connections/billing/anycost/conn-42/billing_drops"
        )

    by_hour = {h.hour: h for h in report.hours}
    assert set(by_hour) == set(hours)
    assert by_hour[big].operations[0] == "replace_hourly"
    assert set(by_hour[big].operations[1:]) == {"sum"}
    assert by_hour[big].rows == 30
    assert by_hour[big].cost_total == sum(Decimal(r["cost/cost"]) for r in hours[big])
    empty = by_hour[start + timedelta(hours=2)]
    assert empty.cleared and empty.rows == 1 and empty.cost_total == 0
    assert report.total_bytes == sum(b.size for b in bodies)
    assert json.loads(json.dumps(report.as_dict()))["mode"] == "dry_run"

    # the API key is written nowhere
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_dry_run_rerun_replaces_stale_bodies(tmp_path: Path):
    resource = CloudZeroResource(data_dir=str(tmp_path))
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    hours = {start + timedelta(hours=h): hour_rows(start + timedelta(hours=h), 5) for h in range(4)}
    many = pack_bodies(hours, max_body_bytes=pack_bodies({start: hours[start]})[0].size)
    assert len(many) == 4
    resource.submit(many, run_id="r1")
    report = resource.submit(pack_bodies(hours), run_id="r1")
    assert report.reason == REASON_NO_CREDENTIALS
    assert sorted(p.name for p in report.directory.iterdir()) == ["body-0001.json", "manifest.json"]
    manifest = json.loads(report.manifest.read_text())
    assert manifest["connection_id"] is None
    assert "<CLOUDZERO_CONNECTION_ID>" in manifest["bodies"][0]["url"]


def test_dry_run_refuses_unsafe_run_ids(tmp_path: Path):
    with pytest.raises(ValueError):
        CloudZeroResource(data_dir=str(tmp_path)).submit([], run_id="../escape")


def test_report_metadata_says_it_is_a_dry_run(tmp_path: Path):
    report = CloudZeroResource(data_dir=str(tmp_path)).submit(
        pack_bodies({FEB01_00: hour_rows(FEB01_00, 2)}), run_id="r2"
    )
    meta = report.metadata()
    assert meta["mode"] == "dry_run" and meta["submitted"] is False
    assert meta["reason"] == REASON_NO_CREDENTIALS
    assert meta["dagster/row_count"] == 2 and meta["bodies"] == 1
    assert "2025-02-01T00:00:00Z" in meta["hours"].value
