"""The rules behind the asset checks, on real-shaped tables, without running Dagster."""

from datetime import timedelta
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets.checks import (
    Outcome,
    not_checked,
    schema_outcome,
    share_setting,
    unless_columns_missing,
)
from assets.events import build_spend_events
from assets.ingest import spend_log_defects
from assets.quality_checks import (
    DEFAULT_UNATTRIBUTED_SHARE,
    UNATTRIBUTED_SHARE_ENV,
    source_divergence_outcome,
    unattributed_share_outcome,
    zero_cost_outcome,
)
from assets.schemas import AGGREGATES, SPEND_EVENTS_SCHEMA
from resources.attribution import load_mapping
from tests.samples import EMPTY, HOUR0, events_of, raw_row, raw_table, sample_events

H1 = HOUR0 + timedelta(hours=1)
HOURS = [HOUR0, H1]
TEAM = AGGREGATES["spend_by_team"]


# --- schema ---------------------------------------------------------------------------------


def test_spend_events_as_built_have_the_contract_schema():
    outcome = schema_outcome(sample_events(), SPEND_EVENTS_SCHEMA)
    assert outcome.passed and outcome.metadata == {
        "columns": len(SPEND_EVENTS_SCHEMA),
        "problems": 0,
    }


def test_schema_names_missing_extra_retyped_and_reordered_columns():
    events = sample_events()
    drifted = events.drop_columns(["deliveries"]).append_column(
        "prompt", pa.array(["x"] * events.num_rows)
    )
    drifted = drifted.set_column(
        drifted.schema.get_field_index("cost"), "cost", pc.cast(events["cost"], pa.float64())
    )
    outcome = schema_outcome(drifted, SPEND_EVENTS_SCHEMA)
    assert not outcome.passed
    assert outcome.summary == (
        "missing column deliveries (int64); unexpected column prompt (string); "
        "column cost is double, expected decimal128(38, 18)"
    )
    reordered = events.select(["request_key", "usage_hour", *events.column_names[2:]])
    outcome = schema_outcome(reordered, SPEND_EVENTS_SCHEMA)
    assert not outcome.passed and outcome.summary.startswith("columns are out of order")


def test_rules_needing_a_missing_column_are_reported_not_checked():
    events = sample_events()
    thin = events.drop_columns(["request_key", "deliveries"])
    rule = unless_columns_missing(thin, SPEND_EVENTS_SCHEMA, lambda: pytest.fail("must not run"))
    outcome = rule()
    assert not outcome.passed
    assert outcome.summary == "not checked: the table lacks column(s) request_key, deliveries"
    # Another type is schema_matches' business: the rule still runs.
    retyped = events.set_column(
        events.schema.get_field_index("cost"), "cost", pc.cast(events["cost"], pa.float64())
    )
    ran = unless_columns_missing(retyped, SPEND_EVENTS_SCHEMA, lambda: not_checked("ran"))
    assert ran().summary == "not checked: ran"


# --- share of unattributed spend ------------------------------------------------------------


def attribution_sample() -> pa.Table:
    return events_of(
        raw_row("a", cost="0.6", header_department="fin"),
        raw_row("b", cost="0.3", key_alias="personal-key", user_id="u1"),
        raw_row("c", cost="0.1", user_id="u2", hour=H1),
    )


def test_unattributed_share_is_the_share_of_cost_without_a_department():
    outcome = unattributed_share_outcome(attribution_sample(), Decimal("0.5"))
    assert outcome.passed
    assert outcome.summary == "40.0% of the spend is unattributed (within the 50.0% threshold)"
    meta = outcome.metadata
    assert meta["unattributed_share"] == pytest.approx(0.4)
    assert (meta["unattributed_requests"], meta["requests"]) == (2, 3)
    assert (meta["worst_hour"], meta["worst_hour_share"]) == ("2026-03-01T11:00Z", 1.0)
    callers = outcome.tables["top_unattributed_callers"].to_pylist()
    assert [(c["key_alias"], c["user_id"]) for c in callers] == [
        ("personal-key", "u1"),
        (None, "u2"),
    ]


def test_unattributed_share_above_the_threshold_warns():
    outcome = unattributed_share_outcome(attribution_sample(), DEFAULT_UNATTRIBUTED_SHARE)
    assert not outcome.passed
    assert outcome.summary.endswith("(above the 20.0% threshold)")
    result = outcome.result(dg.AssetKey("spend_events"), "unattributed_share", warn=True)
    assert result.severity == dg.AssetCheckSeverity.WARN and not result.passed
    assert "| personal-key |" in result.metadata["top_unattributed_callers"].value


def test_no_spend_means_no_unattributed_share():
    outcome = unattributed_share_outcome(SPEND_EVENTS_SCHEMA.empty_table(), Decimal("0"))
    assert outcome.passed and outcome.metadata["unattributed_share"] == 0.0


def test_thresholds_are_read_from_the_environment_and_validated(monkeypatch):
    monkeypatch.delenv(UNATTRIBUTED_SHARE_ENV, raising=False)
    assert share_setting(UNATTRIBUTED_SHARE_ENV, Decimal("0.2")) == Decimal("0.2")
    monkeypatch.setenv(UNATTRIBUTED_SHARE_ENV, " 0.35 ")
    assert share_setting(UNATTRIBUTED_SHARE_ENV, Decimal("0.2")) == Decimal("0.35")
    for bad in ("20%", "1.5", "-0.1", "nan", "inf"):
        monkeypatch.setenv(UNATTRIBUTED_SHARE_ENV, bad)
        with pytest.raises(ValueError, match=rf"{UNATTRIBUTED_SHARE_ENV} must be a share between"):
            share_setting(UNATTRIBUTED_SHARE_ENV, Decimal("0.2"))


# --- priced models reporting zero cost ------------------------------------------------------


def zero_cost_rows() -> list[dict]:
    return [
        raw_row("a", cost="0.5", model="openai/gpt-4o-mini"),
        raw_row("b", cost="0", total_tokens=40, model="openai/gpt-4o-mini"),
        raw_row("c", cost="0", total_tokens=40, model="openai/gpt-4o-mini"),
        raw_row(
            "d",
            cost="0",
            total_tokens=25,
            model="vertex_ai/gemini-flash",
            custom_llm_provider="vertex_ai",
        ),
        raw_row("e", cost="0", total_tokens=40, status="failure"),  # failures may be free
        raw_row("f", cost="0", total_tokens=0),  # no tokens, nothing to price
    ]


def test_successful_requests_with_tokens_and_no_cost_warn_with_their_models():
    rows = zero_cost_rows()
    outcome = zero_cost_outcome(events_of(*rows))
    assert not outcome.passed
    assert outcome.metadata["zero_cost_requests"] == 3
    assert outcome.metadata["models"] == "openai/gpt-4o-mini, vertex_ai/gemini-flash"
    assert [
        (m["model"], m["zero_cost_requests"], m["zero_cost_tokens"], m["priced_requests"])
        for m in outcome.tables["models"].to_pylist()
    ] == [("gpt-4o-mini", 2, 80, 1), ("gemini-flash", 1, 25, 0)]
    # The same rule as litellm_spend_logs' defects/zero_cost_with_tokens.
    assert spend_log_defects(raw_table(*rows))["zero_cost_with_tokens"] == 3


def test_priced_requests_pass_the_zero_cost_check():
    outcome = zero_cost_outcome(events_of(*zero_cost_rows()[:1], *zero_cost_rows()[4:]))
    assert outcome.passed and outcome.metadata["zero_cost_requests"] == 0


# --- webhook vs. database -------------------------------------------------------------------


def test_divergence_does_not_apply_with_one_source():
    webhook_only = events_of(raw_row("a"), raw_row("b"))
    outcome = source_divergence_outcome(webhook_only, Decimal("0.05"))
    assert outcome.passed and outcome.metadata["applies"] is False
    assert outcome.metadata["sources_on"] == "webhook"
    assert outcome.summary.startswith("does not apply")
    database_only = build_spend_events(raw_table(raw_row("a")), EMPTY, load_mapping(None))
    outcome = source_divergence_outcome(database_only, Decimal("0.05"))
    assert outcome.passed and outcome.metadata["sources_on"] == "database"


def test_divergence_flags_the_hours_where_one_source_missed_requests():
    both = [raw_row(k) for k in "abcdefghij"]
    later = [raw_row(f"{k}1", hour=H1, cost="0.002") for k in "abcd"]
    database = (*both, *later[:3])  # the database has not written d1 yet
    webhook = [*both, later[0], later[1], later[3]]  # the webhook lost c1
    events = events_of(*webhook, spend_logs=database)
    outcome = source_divergence_outcome(events, Decimal("0.05"))
    assert not outcome.passed
    meta = outcome.metadata
    assert meta["applies"] is True
    assert (meta["webhook_only"], meta["database_only"], meta["both_sources"]) == (1, 1, 12)
    assert meta["hours_flagged"] == 1 and meta["one_source_share"] == pytest.approx(2 / 14)
    [hour] = outcome.tables["diverging_hours"].to_pylist()
    assert hour == {
        "hour": "2026-03-01T11:00Z",
        "requests": 4,
        "webhook_only": 1,
        "database_only": 1,
        "one_source_share": 0.5,
        "webhook_only_cost": "0.002",
        "database_only_cost": "0.002",
    }
    assert source_divergence_outcome(events, Decimal("0.5")).passed  # at most half: fine


# --- results in Dagster's terms -------------------------------------------------------------


def test_outcomes_become_error_or_warn_results_with_markdown_tables():
    table = pa.table({"model": ["gpt-4o"], "requests": [3]})
    outcome = Outcome(False, "bad", {"count": 3}, {"models": table})
    error = outcome.result(dg.AssetKey("spend_events"), "zero_cost_with_tokens")
    assert error.severity == dg.AssetCheckSeverity.ERROR
    assert (error.asset_key, error.check_name, error.description) == (
        dg.AssetKey("spend_events"),
        "zero_cost_with_tokens",
        "bad",
    )
    assert error.metadata["count"].value == 3
    assert error.metadata["models"].value.splitlines()[2] == "| gpt-4o | 3 |"
