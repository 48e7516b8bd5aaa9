"""The sample traffic generator: every awkward case, inside the range, a correct answer key."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from demo.payloads import SECRET_MARKERS, encode_batch
from demo.population import CHANNEL_SOURCE, CHANNELS, UNATTRIBUTED
from demo.traffic import generate_traffic, land_traffic
from resources.landing import LandingZone

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
HOURS = 24
END = START + timedelta(hours=HOURS)


@pytest.fixture(scope="module")
def traffic():
    return generate_traffic(START, HOURS, events_per_hour=200, seed=7)


@pytest.fixture(scope="module")
def landed(traffic, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("landed")
    result = land_traffic(traffic, data_dir)
    return data_dir, result


def _landed_lines(data_dir: Path) -> dict[str, list[bytes]]:
    """Landed NDJSON per hour folder, file order ignored (file names carry time_ns)."""
    per_hour: dict[str, list[bytes]] = {}
    for path in sorted((data_dir / "landing").rglob("*.ndjson")):
        hour = str(path.parent.relative_to(data_dir))
        per_hour.setdefault(hour, []).extend(path.read_bytes().splitlines())
    return {hour: sorted(lines) for hour, lines in per_hour.items()}


def test_same_seed_same_traffic_and_same_landing(traffic, landed, tmp_path):
    again = generate_traffic(START, HOURS, events_per_hour=200, seed=7)
    assert again.batches == traffic.batches
    assert again.requests == traffic.requests
    land_traffic(again, tmp_path)
    assert _landed_lines(tmp_path) == _landed_lines(landed[0])

    other = generate_traffic(START, HOURS, events_per_hour=200, seed=8)
    assert other.requests != traffic.requests


def test_start_is_floored_to_its_utc_hour_and_must_be_aware():
    late_start = datetime(2026, 1, 5, 9, 42, 17, tzinfo=timezone(timedelta(hours=2)))
    assert generate_traffic(late_start, 1, events_per_hour=3).start == datetime(
        2026, 1, 5, 7, tzinfo=timezone.utc
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_traffic(datetime(2026, 1, 5), 1)


def test_every_channel_occurs_and_decides_as_intended(traffic):
    channels = traffic.count_by("channel")
    assert set(channels) == set(CHANNELS)
    assert all(channels[c] >= 10 for c in CHANNELS), channels
    for request in traffic.requests:
        assert request.attribution_source == CHANNEL_SOURCE[request.channel], request
    sources = traffic.count_by("attribution_source")
    assert set(sources) == {"header", "tag", "mapping", "team_alias", UNATTRIBUTED}


def test_both_tag_forms_occur_without_headers(traffic):
    by_key = {r.request_key: r for r in traffic.requests}
    forms = Counter()
    for payload in traffic.payloads():
        request = by_key[payload["litellm_call_id"]]
        headers = payload["metadata"]["requester_custom_headers"]
        if request.channel in ("tag_x", "tag_colon"):
            assert not {"x-department", "x-team", "x-agent"} & set(headers)
            tags = payload["request_tags"]
            if f"x-department: {request.department}" in tags:
                forms["x-prefixed"] += 1
            if f"department:{request.department}" in tags:
                forms["colon"] += 1
    assert forms["x-prefixed"] > 0 and forms["colon"] > 0


def test_failures_duplicates_and_late_events_occur(traffic):
    assert 0.015 < traffic.failures / len(traffic.requests) < 0.05
    assert traffic.duplicates > 0 and traffic.late_events > 0
    assert traffic.deliveries == len(traffic.requests) + traffic.duplicates
    assert traffic.duplicates == sum(r.deliveries - 1 for r in traffic.requests)

    by_key = {r.request_key: r for r in traffic.requests}
    for payload in traffic.payloads():
        if by_key[payload["litellm_call_id"]].failed:
            assert payload["status"] == "failure"
            assert payload["response_cost"] == 0.0 and payload["total_tokens"] == 0
            assert payload["error_information"]["error_class"]

    delivered = Counter(p["litellm_call_id"] for p in traffic.payloads())
    copies: dict[str, list[str]] = {}
    for payload in traffic.payloads():
        copies.setdefault(payload["litellm_call_id"], []).append(json.dumps(payload))
    for key, request in by_key.items():
        assert delivered[key] == request.deliveries
        assert len(set(copies[key])) == 1  # a duplicate is the identical payload


def test_everything_happens_and_arrives_inside_the_range(traffic):
    received = [at for at, _ in traffic.batches]
    assert received == sorted(received)
    for received_at, payloads in traffic.batches:
        assert START.timestamp() <= received_at < END.timestamp()
        for payload in payloads:
            assert START.timestamp() <= payload["startTime"] <= payload["endTime"] < received_at
    hour_of_batch = {}
    for received_at, payloads in traffic.batches:
        for payload in payloads:
            hour_of_batch.setdefault(payload["litellm_call_id"], received_at)
    for request in traffic.requests:
        first_delivery_hour = int((hour_of_batch[request.request_key] - START.timestamp()) // 3600)
        own_hour = int((request.hour - START) / timedelta(hours=1))
        assert (first_delivery_hour > own_hour) == request.late


def test_expected_totals_match_the_unique_payloads(traffic):
    unique = {p["litellm_call_id"]: p for p in traffic.payloads()}
    assert len(unique) == len(traffic.requests)
    assert traffic.total_cost == sum(
        (Decimal(repr(p["response_cost"])) for p in unique.values()), Decimal(0)
    )
    assert traffic.total_tokens == sum(p["total_tokens"] for p in unique.values())
    by_department = traffic.cost_by("department")
    assert sum(by_department.values(), Decimal(0)) == traffic.total_cost
    assert {hour for hour, _ in by_department} == set(traffic.hours)


def test_landing_keeps_one_row_per_delivery(traffic, landed):
    data_dir, result = landed
    assert result.landed == traffic.deliveries and result.quarantined == 0
    table = LandingZone(data_dir).read_hours(traffic.hours).table
    assert table.num_rows == traffic.deliveries
    rows = table.select(["litellm_call_id", "total_tokens", "response_cost"]).to_pylist()
    assert sum(r["total_tokens"] for r in rows) == sum(
        r.total_tokens * r.deliveries for r in traffic.requests
    )
    unique = {r["litellm_call_id"]: r for r in rows}
    assert len(unique) == len(traffic.requests)
    assert sum(r["total_tokens"] for r in unique.values()) == traffic.total_tokens
    assert sum((Decimal(r["response_cost"]) for r in unique.values()), Decimal(0)) == (
        traffic.total_cost
    )


def test_no_content_or_secret_reaches_disk(traffic, landed):
    data_dir, _ = landed
    forbidden = [m.encode() for m in (*SECRET_MARKERS, "sk-live")]
    forbidden += [p["metadata"]["user_api_key_hash"].encode() for p in traffic.payloads()]
    forbidden = sorted(set(forbidden))
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        leaked = [f.decode() for f in forbidden if f in data]
        assert not leaked, f"{path} contains {leaked[:3]}"
    # ... while the payloads really did carry them.
    body = encode_batch(list(traffic.payloads())[:50])
    assert all(m.encode() in body for m in SECRET_MARKERS)


def test_late_events_land_in_their_own_event_hour(traffic, landed):
    data_dir, _ = landed
    zone = LandingZone(data_dir)
    late = [r for r in traffic.requests if r.late]
    assert late
    for request in late:
        rows = zone.read_hours([request.hour]).table.to_pylist()
        mine = [r for r in rows if r["litellm_call_id"] == request.request_key]
        assert len(mine) == request.deliveries
        hour_end = (request.hour + timedelta(hours=1)).timestamp()
        assert all(r["received_at"] >= hour_end for r in mine)
