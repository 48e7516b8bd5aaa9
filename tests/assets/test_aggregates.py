from datetime import timedelta
from decimal import Decimal

from assets.aggregates import aggregate_spend
from assets.events import build_spend_events
from assets.schemas import AGGREGATE_DIMENSIONS, aggregate_schema
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
    table = aggregate_spend(events(), AGGREGATE_DIMENSIONS["spend_by_team"])
    assert table.schema == aggregate_schema(["department", "team"])
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
    for dims in AGGREGATE_DIMENSIONS.values():
        table = aggregate_spend(ev, dims)
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
    (row,) = aggregate_spend(ev, ["department"]).to_pylist()
    assert row["latency_p50_ms"] == 495.0
    assert row["latency_p95_ms"] == 940.5
