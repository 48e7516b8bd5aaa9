"""The rules that hold back a bad hour, hour by hour: what each finds, and the check result
a range gets (the held hours named, the others passing)."""

from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.aggregates import aggregate_faults, aggregate_spend
from assets.billing import reconcile_fault
from assets.events import SPEND_EVENTS_RULES, spend_events_faults
from assets.hour_rules import HourChecks, cost_faults, hourly_totals, key_faults, reconcile_faults
from assets.schemas import AGGREGATES, SPEND_EVENTS_SCHEMA
from tests.samples import HOUR, HOUR0, events_of, raw_row, replace_value, sample_events

H1 = HOUR0 + HOUR
HOURS = [HOUR0, H1]
TEAM = AGGREGATES["spend_by_team"]


def test_deduplicated_events_break_no_rule():
    # The same request delivered twice by the webhook and once by the database: one row.
    events = events_of(raw_row("a"), raw_row("a"), raw_row("b"), spend_logs=(raw_row("a"),))
    assert spend_events_faults(events, HOURS) == {
        "one_row_per_request": {},
        "cost_non_negative": {},
    }


def test_a_repeated_or_missing_key_holds_the_hours_it_is_in_only():
    events = sample_events()  # a, b, c at 10:00; d at 11:00
    doubled = pa.concat_tables([events, events.slice(3, 1), events.slice(3, 1)])
    assert key_faults(doubled) == {H1: "3 rows share their request_key with another row (first d)"}
    keyless = replace_value(events, "request_key", 0, None)
    assert key_faults(keyless) == {HOUR0: "1 rows have no request_key"}
    # A key in two hours holds both.
    moved = replace_value(events, "request_key", 3, "a")
    assert set(key_faults(moved)) == {HOUR0, H1}


def test_missing_or_negative_costs_hold_their_hour():
    events = replace_value(sample_events(), "cost", 1, Decimal("-0.25"))
    events = replace_value(events, "cost", 3, None)
    assert cost_faults(events) == {
        HOUR0: "1 negative costs (lowest -0.25)",
        H1: "1 rows without a cost",
    }


def test_a_wrong_schema_holds_every_hour_of_the_chunk_and_skips_the_other_rules():
    events = sample_events()
    as_float = events.set_column(
        events.schema.get_field_index("cost"), "cost", pc.cast(events["cost"], pa.float64())
    )
    faults = spend_events_faults(as_float, HOURS)
    assert list(faults) == ["schema_matches"]
    assert faults["schema_matches"] == dict.fromkeys(
        HOURS, "column cost is double, expected decimal128(38, 18)"
    )


def test_every_aggregate_reconciles_exactly_with_its_events():
    events = replace_value(sample_events(), "failed", 0, True)
    for spec in AGGREGATES.values():
        table = aggregate_spend(events, spec)
        assert aggregate_faults(table, events, spec, HOURS) == {
            "cost_non_negative": {},
            "reconciles_with_spend_events": {},
        }


def test_a_lost_group_or_a_cost_moved_to_another_hour_holds_the_hours_it_touches():
    events = sample_events()
    teams = aggregate_spend(events, TEAM)
    lost = teams.slice(1)  # 10:00's first group is gone: cost and requests short
    faults = aggregate_faults(lost, events, TEAM, HOURS)["reconciles_with_spend_events"]
    assert list(faults) == [HOUR0] and "requests 2 vs 3" in faults[HOUR0]
    moved = replace_value(teams, "usage_hour", 0, H1)  # the range total still matches
    faults = aggregate_faults(moved, events, TEAM, HOURS)["reconciles_with_spend_events"]
    assert set(faults) == {HOUR0, H1}
    nudged = replace_value(teams, "cost", 0, teams["cost"][0].as_py() + Decimal("1e-18"))
    faults = aggregate_faults(nudged, events, TEAM, HOURS)["reconciles_with_spend_events"]
    assert list(faults) == [HOUR0]  # exact: one unit of the 18th decimal is a difference


def test_request_errors_reconcile_with_the_failed_requests_only():
    events = replace_value(sample_events(), "failed", 0, True)
    errors = AGGREGATES["request_errors"]
    table = aggregate_spend(events, errors)
    assert hourly_totals(events, failed_only=True) == hourly_totals(table)
    assert reconcile_faults(hourly_totals(table), hourly_totals(events), HOURS)  # not all


def test_hours_without_spend_reconcile_at_zero():
    empty = SPEND_EVENTS_SCHEMA.empty_table()
    assert reconcile_faults(hourly_totals(aggregate_spend(empty, TEAM)), {}, HOURS) == {}


def test_a_range_reports_one_result_per_rule_naming_the_held_hours():
    checks = HourChecks(SPEND_EVENTS_RULES)
    checks.add([HOUR0], {"one_row_per_request": {}, "cost_non_negative": {}})
    checks.add([H1], {"one_row_per_request": {H1: "2 rows share ..."}, "cost_non_negative": {}})
    assert checks.held() == {H1: ["one_row_per_request: 2 rows share ..."]}
    results = {r.check_name: r for r in checks.results(dg.AssetKey("spend_events"))}
    assert set(results) == set(SPEND_EVENTS_RULES)
    held = results["one_row_per_request"]
    assert not held.passed and held.severity == dg.AssetCheckSeverity.ERROR
    assert held.description == (
        "1 of 2 hours held back from CloudZero, first 2026-03-01T11:00Z: 2 rows share ..."
    )
    assert held.metadata["hours_held"].value == 1
    assert "| 2026-03-01T11:00Z | 2 rows share ... |" in held.metadata["held_hours"].value
    assert results["cost_non_negative"].passed
    assert results["cost_non_negative"].description.startswith("all 2 hours pass: ")


def test_the_cbf_asset_names_the_stages_that_do_not_reconcile():
    assert (
        reconcile_fault({"spend_events": Decimal("1.50"), "cloudzero_cbf": Decimal("1.5")}) is None
    )
    assert reconcile_fault({"spend_events": Decimal("1.5"), "spend_by_team": Decimal("1.4")}) == (
        "cost differs across stages: spend_events 1.5, spend_by_team 1.4"
    )
