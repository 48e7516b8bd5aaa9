from decimal import Decimal

import pyarrow.compute as pc

from assets.events import build_spend_events
from assets.schemas import SPEND_EVENTS_SCHEMA
from resources.attribution import load_mapping
from tests.samples import EMPTY, raw_row, raw_table

MAPPING = load_mapping(None)


def by_key(table) -> dict[str, dict]:
    return {r["request_key"]: r for r in table.to_pylist()}


def test_duplicate_deliveries_collapse_to_one_request():
    webhook = raw_table(raw_row("a"), raw_row("a"), raw_row("b", cost="0.5"))
    events = build_spend_events(EMPTY, webhook, MAPPING)
    assert events.schema == SPEND_EVENTS_SCHEMA
    rows = by_key(events)
    assert sorted(rows) == ["a", "b"]
    assert rows["a"]["deliveries"] == 2
    assert pc.sum(events["cost"]).as_py() == Decimal("0.501")


def test_request_id_is_the_key_when_there_is_no_call_id():
    webhook = raw_table(
        raw_row("x", litellm_call_id=None, request_id="r1"),
        raw_row("y", litellm_call_id="", request_id="r1"),
    )
    assert list(by_key(build_spend_events(EMPTY, webhook, MAPPING))) == ["r1"]


def test_database_numbers_and_webhook_headers_across_sources():
    db = raw_table(raw_row("a", cost="0.002", total_tokens=99), raw_row("db-only", cost="0.1"))
    webhook = raw_table(
        raw_row("a", cost="0.001", header_department="finance"), raw_row("wh-only", cost="0.01")
    )
    rows = by_key(build_spend_events(db, webhook, MAPPING))
    assert rows["a"]["cost"] == Decimal("0.002")
    assert rows["a"]["total_tokens"] == 99
    assert rows["a"]["department"] == "finance"
    assert (rows["a"]["source"], rows["a"]["deliveries"]) == ("both", 2)
    assert (rows["db-only"]["source"], rows["wh-only"]["source"]) == ("database", "webhook")
    assert sum(r["cost"] for r in rows.values()) == Decimal("0.112")


def test_model_and_provider_are_normalised():
    webhook = raw_table(
        raw_row("a", model="openai/gpt-4o", custom_llm_provider="openai"),
        raw_row("b", model="bedrock/anthropic.claude-3", custom_llm_provider=None),
        raw_row("c", model="gpt-4o-mini", custom_llm_provider="azure", model_group="gpt-mini"),
    )
    rows = by_key(build_spend_events(EMPTY, webhook, MAPPING))
    assert [(rows[k]["provider"], rows[k]["model"]) for k in "abc"] == [
        ("openai", "gpt-4o"),
        ("bedrock", "anthropic.claude-3"),
        ("azure", "gpt-4o-mini"),
    ]
    assert rows["c"]["model_group"] == "gpt-mini"


def test_failures_and_latency():
    webhook = raw_table(raw_row("a", status="failure", cost="0"), raw_row("b"))
    rows = by_key(build_spend_events(EMPTY, webhook, MAPPING))
    assert (rows["a"]["failed"], rows["b"]["failed"]) == (True, False)
    assert rows["b"]["latency_ms"] == 250.0


def test_empty_inputs_give_an_empty_table_of_the_schema():
    events = build_spend_events(EMPTY, EMPTY, MAPPING)
    assert events.num_rows == 0 and events.schema == SPEND_EVENTS_SCHEMA


def test_a_database_row_without_call_id_meets_its_webhook_delivery_by_request_id():
    db = raw_table(raw_row("ignored", litellm_call_id=None, request_id="chatcmpl-1", cost="0.3"))
    webhook = raw_table(raw_row("call-1", request_id="chatcmpl-1", header_department="finance"))
    rows = by_key(build_spend_events(db, webhook, MAPPING))
    assert list(rows) == ["call-1"]
    assert rows["call-1"]["source"] == "both" and rows["call-1"]["cost"] == Decimal("0.3")
    assert rows["call-1"]["department"] == "finance"


def test_a_request_id_naming_two_calls_is_not_used_to_join():
    # Two requests share a request id (a LiteLLM defect); a database row without call id
    # cannot be told apart, so it stays its own request rather than be merged with either.
    db = raw_table(raw_row("ignored", litellm_call_id=None, request_id="dup", cost="0.3"))
    webhook = raw_table(raw_row("c1", request_id="dup"), raw_row("c2", request_id="dup"))
    assert sorted(by_key(build_spend_events(db, webhook, MAPPING))) == ["c1", "c2", "dup"]


def test_errors_and_caching_come_from_the_database_when_it_says_else_the_webhook():
    db = raw_table(
        raw_row("both", error_class="RateLimitError", error_code="429", cache_read_tokens=40),
        raw_row("db-silent"),
    )
    webhook = raw_table(
        raw_row("both", error_class="APIError", error_code="500", cache_hit=False),
        raw_row("db-silent", error_class="Timeout", cache_hit=True, cache_creation_tokens=7),
        raw_row("wh-only"),
    )
    rows = by_key(build_spend_events(db, webhook, MAPPING))
    fields = (
        "error_class",
        "error_code",
        "cache_hit",
        "cache_read_tokens",
        "cache_creation_tokens",
    )
    got = {key: tuple(rows[key][f] for f in fields) for key in rows}
    assert got == {
        "both": ("RateLimitError", "429", False, 40, None),
        "db-silent": ("Timeout", None, True, None, 7),
        "wh-only": (None, None, None, None, None),  # nobody said: null, never zero
    }
