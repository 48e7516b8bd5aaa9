"""Small real-shaped inputs for tests: captured LiteLLM bodies and raw-spend rows."""

import copy
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from assets.events import build_spend_events
from resources.attribution import load_mapping
from resources.raw_spend import RAW_SPEND_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures"
LITELLM_FIXTURES = FIXTURES / "litellm"


def captured_payloads() -> list[dict]:
    """The five distinct StandardLoggingPayloads captured from LiteLLM 1.106.2."""
    array = json.loads((LITELLM_FIXTURES / "generic_api_json_array_batch.json").read_text())
    ndjson = [
        json.loads(line)
        for line in (LITELLM_FIXTURES / "generic_api_ndjson_batch.ndjson").read_text().splitlines()
        if line.strip()
    ]
    failure = json.loads((LITELLM_FIXTURES / "generic_api_failure_event.json").read_text())
    return [*array, *ndjson, failure]


def numbered_payloads(
    tag: str, count: int, start_of: Callable[[int], float], seconds: float = 1.0
) -> list[dict]:
    """``count`` copies of the captured payloads, the n-th with its own ids (``<tag>-<n>``),
    starting at ``start_of(n)`` and lasting ``seconds``."""
    templates = captured_payloads()
    events = []
    for n in range(count):
        event = copy.deepcopy(templates[n % len(templates)])
        event["id"] = f"{tag}-{n}"
        event["litellm_call_id"] = f"call-{event['id']}"
        event["startTime"] = start_of(n)
        event["endTime"] = event["startTime"] + seconds
        events.append(event)
    return events


# DESIGN.md's public asset names, in pipeline order.
PUBLIC_ASSETS = (
    "litellm_spend_logs",
    "litellm_webhook_events",
    "spend_events",
    "spend_by_department",
    "spend_by_team",
    "spend_by_agent",
    "spend_by_model",
    "request_errors",
    "cloudzero_cbf",
    "cloudzero_submission",
)
LAKE_ASSETS = PUBLIC_ASSETS[:8]  # the ones stored as hourly Parquet

HOUR0 = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def raw_row(key: str, cost: str = "0.001", hour: datetime = HOUR0, **fields) -> dict:
    start = hour + timedelta(minutes=5)
    row = {name: None for name in RAW_SPEND_SCHEMA.names}
    row |= {
        "usage_hour": hour,
        "request_id": f"req-{key}",
        "litellm_call_id": key,
        "start_time": start,
        "end_time": start + timedelta(milliseconds=250),
        "status": "success",
        "model": "openai/gpt-4o",
        "custom_llm_provider": "openai",
        "cost": Decimal(cost),
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "request_tags": [],
    }
    return row | fields


def raw_table(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=RAW_SPEND_SCHEMA)


EMPTY = RAW_SPEND_SCHEMA.empty_table()


def events_of(*rows: dict, spend_logs: tuple[dict, ...] = ()) -> pa.Table:
    """``spend_events`` as the asset builds it from webhook rows (and database rows), in
    request-key order (the asset leaves row order to DuckDB)."""
    logs = raw_table(*spend_logs) if spend_logs else EMPTY
    return build_spend_events(logs, raw_table(*rows), load_mapping(None)).sort_by("request_key")


def sample_events() -> pa.Table:
    """Four requests over two hours, three departments' teams."""
    return events_of(
        raw_row("a", cost="0.1", header_department="fin", header_team="ap"),
        raw_row("b", cost="0.2", header_department="fin", header_team="ar"),
        raw_row("c", cost="0.000179999999999999", header_department="eng", header_team="sre"),
        raw_row("d", cost="1", header_department="eng", header_team="sre", hour=HOUR0 + HOUR),
    )


def replace_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    """``table`` with one cell changed (keeping the column's type)."""
    values = table[column].to_pylist()
    values[row] = value
    index = table.schema.get_field_index(column)
    return table.set_column(index, column, pa.array(values, table.schema.field(column).type))
