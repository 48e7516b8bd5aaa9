from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pyarrow as pa

from assets.ingest import (
    MAX_FETCH_HOURS,
    litellm_webhook_events,
    next_fetch_hours,
    spend_log_defects,
    webhook_events_table,
)
from resources.lake import LakeResource
from resources.landing import LandingZone, LandingZoneResource
from resources.landing_record import LANDING_SCHEMA, event_hour, landing_record
from tests.samples import EMPTY, raw_row, raw_table


def test_known_litellm_defects_are_counted():
    logs = raw_table(
        raw_row("a"),
        raw_row("a"),  # the same request logged twice
        raw_row("b", request_id=None),
        raw_row("c", request_id="shared"),
        raw_row("d", request_id="shared"),  # two calls under one request id
        raw_row("e", cost="0", total_tokens=40, model="openai/gpt-4o-mini"),
        raw_row("f", cost="0", total_tokens=40, status="failure"),  # failures may be free
        raw_row("g", litellm_call_id=None),
    )
    assert spend_log_defects(logs) == {
        "missing_request_id": 1,
        "missing_call_id": 1,
        "duplicate_rows": 1,
        "colliding_request_ids": 1,
        "zero_cost_with_tokens": 1,
        "zero_cost_models": ["openai/gpt-4o-mini"],
    }


def test_clean_or_empty_logs_have_no_defects():
    assert not any(spend_log_defects(EMPTY).values())
    assert not any(spend_log_defects(raw_table(raw_row("a"), raw_row("b"))).values())


def test_webhook_times_are_kept_to_the_millisecond_like_litellms_database(payloads):
    start = datetime(2026, 3, 1, 11, 59, 59, 999600, tzinfo=timezone.utc).timestamp()
    record = landing_record(payloads[0] | {"startTime": start}, 0.0)
    row = webhook_events_table(pa.Table.from_pylist([record], schema=LANDING_SCHEMA)).to_pylist()[0]
    assert row["usage_hour"] == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    assert row["start_time"] == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def test_the_webhook_asset_keeps_good_lines_beside_torn_and_malformed_ones(tmp_path, payloads):
    zone = LandingZone(tmp_path)
    written = zone.write_events(payloads)
    hours = sorted({event_hour(landing_record(p, 0.0)) for p in payloads})
    folder = Path(written.files[0]).parent
    good_line = Path(written.files[0]).read_bytes().splitlines()[0]
    (folder / "writer-bad.ndjson").write_bytes(good_line + b"\nnot json\n" + good_line + b"\n")
    (folder / "writer-torn.ndjson").write_bytes(good_line + b'\n{"request_id": "to')

    result = dg.materialize(
        [litellm_webhook_events],
        partition_key=f"{hours[0]:%Y-%m-%d-%H:%M}",
        resources={
            "lake": LakeResource(data_dir=str(tmp_path)),
            "landing": LandingZoneResource(data_dir=str(tmp_path)),
        },
    )
    metadata = result.asset_materializations_for_node("litellm_webhook_events")[0].metadata
    in_hour = sum(event_hour(landing_record(p, 0.0)) == hours[0] for p in payloads)
    assert metadata["dagster/row_count"].value == in_hour + 3  # 2 from the bad file, 1 torn
    assert metadata["malformed_lines"].value == 1
    assert metadata["torn_bytes"].value == len(b'{"request_id": "to')
    assert metadata["landing_files"].value == len(zone.hour_entries(hours[:1])[0])


def test_spend_logs_are_fetched_one_hour_first_then_sized_by_the_rate_seen():
    assert next_fetch_hours(rows=100_000, hours=1, budget=200_000) == 2
    assert next_fetch_hours(rows=1_000_000, hours=1, budget=200_000) == 1  # never below an hour
    assert next_fetch_hours(rows=10, hours=1, budget=200_000) == MAX_FETCH_HOURS
    assert next_fetch_hours(rows=0, hours=3, budget=200_000) == MAX_FETCH_HOURS
    assert next_fetch_hours(rows=30_000, hours=6, budget=10_000) == 2
