"""Small real-shaped inputs for tests: captured LiteLLM bodies and raw-spend rows."""

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

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
