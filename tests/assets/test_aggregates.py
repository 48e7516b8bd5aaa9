from datetime import timedelta
from decimal import Decimal

from assets.aggregates import aggregate_spend
from assets.events import build_spend_events
from assets.schemas import AGGREGATES
from resources.attribution import load_mapping
from tests.samples import EMPTY, HOUR0, raw_row, raw_table

H1 = HOUR0 + timedelta(hours=1)


def events():
    rows = [
        raw_row("a", cost="0.1", header_department="fin", header_team="ap"),
        raw_row("b", cost="0.2", header_department="fin", header_team="ap", status="failure"),
        raw_row("c", cost="0.000179999999999999", header_department="fin", header_team="ar"),
        raw_row("d", cost="1", header_department="eng", header_team="ap", hour=H1),
    ]
    return build_spend_events(EMPTY, raw_table(*rows), load_mapping(None))


def test_team_is_named_within_its_department_and_hours_stay_apart():
    table = aggregate_spend(events(), AGGREGATES["spend_by_team"])
    assert table.schema == AGGREGATES["spend_by_team"].schema
    got = [
        (
            r["usage_hour"],
            r["department"],
            r["team"],
            r["cost"],
            r["requests"],
            r["failed_requests"],
        )
        for r in table.to_pylist()
    ]
    assert got == [
        (HOUR0, "fin", "ap", Decimal("0.3"), 2, 1),
        (HOUR0, "fin", "ar", Decimal("0.000179999999999999"), 1, 0),
        (H1, "eng", "ap", Decimal("1"), 1, 0),
    ]


def test_every_grain_carries_the_same_money_and_tokens():
    ev = events()
    for spec in (spec for spec in AGGREGATES.values() if "total_tokens" in spec.measures):
        table = aggregate_spend(ev, spec)
        assert sum(r["cost"] for r in table.to_pylist()) == Decimal("1.300179999999999999")
        assert sum(table["total_tokens"].to_pylist()) == 120
        assert sum(table["requests"].to_pylist()) == 4


def test_latency_percentiles():
    rows = [
        raw_row(str(i), end_time=HOUR0 + timedelta(minutes=5, milliseconds=ms))
        for i, ms in enumerate(range(0, 1000, 10))
    ]
    rows = [r | {"header_department": "d"} for r in rows]
    ev = build_spend_events(EMPTY, raw_table(*rows), load_mapping(None))
    (row,) = aggregate_spend(ev, AGGREGATES["spend_by_department"]).to_pylist()
    assert row["latency_p50_ms"] == 495.0
    assert row["latency_p95_ms"] == 940.5


def model_events():
    rows = [
        raw_row("a", cost="0.1", model="openai/gpt-4o", cache_read_tokens=6, cache_hit=False),
        raw_row("b", cost="0.2", model="openai/gpt-4o", cache_read_tokens=4, cache_hit=True),
        raw_row("c", cost="0.3", model="anthropic/claude-sonnet", custom_llm_provider="anthropic"),
        raw_row(
            "d",
            cost="0",
            model="anthropic/claude-sonnet",
            custom_llm_provider="anthropic",
            status="failure",
            error_class="RateLimitError",
            error_code="429",
            header_department="fin",
        ),
        raw_row("e", cost="0.01", status="failure", error_class="Timeout", header_department="fin"),
    ]
    return build_spend_events(EMPTY, raw_table(*rows), load_mapping(None))


def test_spend_by_model_sums_cache_tokens_and_counts_hits_and_failures():
    table = aggregate_spend(model_events(), AGGREGATES["spend_by_model"])
    assert table.schema == AGGREGATES["spend_by_model"].schema
    fields = ("provider", "model", "cost", "requests", "failed_requests", "cache_hits")
    got = {(r["provider"], r["model"]): r for r in table.to_pylist()}
    assert [tuple(r[f] for f in fields) for r in got.values()] == [
        ("anthropic", "claude-sonnet", Decimal("0.3"), 2, 1, 0),
        ("openai", "gpt-4o", Decimal("0.31"), 3, 1, 1),
    ]
    assert got[("openai", "gpt-4o")]["cache_read_tokens"] == 10
    # No request of the group reported cached tokens: null, not zero.
    assert got[("anthropic", "claude-sonnet")]["cache_read_tokens"] is None
    assert got[("openai", "gpt-4o")]["cache_creation_tokens"] is None


def test_request_errors_group_the_failed_requests_by_owner_model_and_error():
    table = aggregate_spend(model_events(), AGGREGATES["request_errors"])
    assert table.schema == AGGREGATES["request_errors"].schema
    got = [
        (r["department"], r["provider"], r["model"], r["error_class"], r["error_code"])
        + (r["requests"], r["cost"])
        for r in table.to_pylist()
    ]
    assert got == [
        ("fin", "anthropic", "claude-sonnet", "RateLimitError", "429", 1, Decimal("0")),
        ("fin", "openai", "gpt-4o", "Timeout", None, 1, Decimal("0.01")),
    ]
