from datetime import datetime, timezone

import pyarrow as pa

from assets.ingest import spend_log_defects, webhook_events_table
from resources.landing import LANDING_SCHEMA, landing_record
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
