"""The asset checks in real ``hourly_spend_job`` runs over sample traffic.

Three hours of sample traffic go through the real job on a temp instance, with every check
of the code location. A clean run passes every blocking check and the warnings describe the
traffic as its answer key does.

The landing zone refuses malformed events and the transforms are correct, so real input
cannot make a blocking check fail; what can is a regression in a transform. The tests plant
one (monkeypatching the pure function an asset calls: a request counted twice, money as a
float, a negative cost, a team's group lost) in the look-back run that restates the hours
after late traffic changed one of them. The blocking check stops the run before
``cloudzero_cbf``, so that hour's CBF file is neither rewritten nor materialised and
``cloudzero_cbf_sensor`` requests no submission; once the regression is gone, the next run
sends the restated hour.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time

import assets.aggregates
import assets.events
from assets.aggregates import aggregate_rules
from assets.billing import CBF_RULES, cloudzero_cbf
from assets.events import SPEND_EVENTS_RULES
from assets.partitions import partition_key
from assets.quality_checks import (
    UNATTRIBUTED_SHARE_ENV,
)
from assets.schemas import AGGREGATES
from demo.traffic import Traffic, generate_traffic, land_traffic
from pipelines.definitions import ASSETS, CHECKS
from pipelines.jobs import partition_range_tags
from resources.cbf import format_hour
from resources.lake import LakeResource
from resources.raw_spend import UTC_TS
from tests.cbf_rows import ledger_differences
from tests.fake_cloudzero import FakeAnyCost
from tests.fake_litellm import MASTER_KEY, FakeLiteLLM, api_row
from tests.samples import HOUR0
from tests.spend_log_rows import rows_from_traffic
from tests.spend_pipeline import CBF, Pipeline, sample_environment, spend_pipeline

HOURS = [HOUR0 + timedelta(hours=h) for h in range(3)]
RESTATED = HOURS[1]
TOLERANCE = Decimal("1e-9")  # the answer key is exact; the lake keeps 18 decimals


def evaluations(
    result: dg.ExecuteInProcessResult,
) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def check_keys(pipeline) -> set[tuple[str, str]]:
    """The checks an hourly_spend_job run evaluates: the warnings' own steps and the rules the
    assets apply as they write; all but cloudzero_submission's sources_answering, which
    source_freshness_sensor evaluates outside the runs."""
    graph = pipeline.defs.resolve_asset_graph()
    return {
        (key.asset_key.to_user_string(), key.name)
        for key in graph.asset_check_keys
        if key.asset_key != dg.AssetKey("cloudzero_submission")
    }


def holding_keys() -> set[tuple[str, str]]:
    """The rules that hold back a bad hour (checked inside their assets)."""
    rules = {
        "spend_events": SPEND_EVENTS_RULES,
        "cloudzero_cbf": CBF_RULES,
        **{name: aggregate_rules(spec) for name, spec in AGGREGATES.items()},
    }
    return {(asset, rule) for asset, names in rules.items() for rule in names}


@pytest.fixture
def pipeline(tmp_path):
    with spend_pipeline(tmp_path, HOURS) as running:
        yield running


# --- a clean run ----------------------------------------------------------------------------


def test_a_clean_run_passes_every_rule_and_the_warnings_describe_the_traffic(pipeline):
    result = pipeline.run()
    assert result.success
    found = evaluations(result)
    assert set(found) == check_keys(pipeline)
    assert len(holding_keys()) == 20  # 3 on spend_events, 3 on each of 5 aggregates, 2 on CBF
    for key in holding_keys():
        assert found[key].passed, (key, found[key].description)
        assert found[key].severity == dg.AssetCheckSeverity.ERROR
        assert found[key].metadata["hours_checked"].value == len(HOURS)
        assert found[key].metadata["hours_held"].value == 0
    assert LakeResource(data_dir=str(pipeline.data_dir)).holds(HOURS) == {}

    # The warnings, against the traffic's answer key.
    unattributed = found[("spend_events", "unattributed_share")]
    assert unattributed.passed and unattributed.severity == dg.AssetCheckSeverity.WARN
    expected = (
        sum(
            (r.cost for r in pipeline.traffic.requests if r.department == "unattributed"),
            Decimal(0),
        )
        / pipeline.traffic.total_cost
    )
    assert unattributed.metadata["unattributed_share"].value == pytest.approx(float(expected))
    assert unattributed.metadata["threshold"].value == 0.2
    assert "| user-" in unattributed.metadata["top_unattributed_callers"].value
    zero_cost = found[("spend_events", "zero_cost_with_tokens")]
    assert zero_cost.passed and zero_cost.metadata["zero_cost_requests"].value == 0
    divergence = found[("spend_events", "webhook_database_divergence")]
    assert divergence.passed and divergence.metadata["applies"].value is False
    assert divergence.metadata["sources_on"].value == "webhook"


def test_one_check_can_be_run_again_on_its_own_over_a_range(pipeline, monkeypatch):
    assert pipeline.run().success
    monkeypatch.setenv(UNATTRIBUTED_SHARE_ENV, "0.01")  # read when the check runs
    key = dg.AssetCheckKey(dg.AssetKey("spend_events"), "unattributed_share")
    job = dg.define_asset_job("one_check", selection=dg.AssetSelection.checks(key))
    defs = dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[job], resources=pipeline.resources
    )
    tags = partition_range_tags(partition_key(HOURS[0]), partition_key(HOURS[-1]))
    result = defs.resolve_job_def("one_check").execute_in_process(
        instance=pipeline.instance, tags=tags
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == ("unattributed_share", False)
    assert evaluation.metadata["threshold"].value == 0.01
    assert materialized(result) == set()


def test_warnings_report_without_stopping_the_hour(pipeline, monkeypatch):
    monkeypatch.setenv(UNATTRIBUTED_SHARE_ENV, "0.01")
    result = pipeline.run()
    assert result.success and CBF.to_user_string() in materialized(result)
    warning = evaluations(result)[("spend_events", "unattributed_share")]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.description.endswith("(above the 1.0% threshold)")
    assert [r.tags["dagster/asset_partition_range_start"] for r in pipeline.tick()] == [
        partition_key(HOURS[0])
    ]


def test_a_bad_threshold_is_a_clear_error_that_blocks_nothing(pipeline, monkeypatch):
    monkeypatch.setenv(UNATTRIBUTED_SHARE_ENV, "20%")
    result = pipeline.run()
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "spend_events_quality"
    message = failure.step_failure_data.error.message
    assert "SPEND_UNATTRIBUTED_WARN_SHARE must be a share between 0 and 1" in message
    assert CBF.to_user_string() in materialized(result)


# --- a failing blocking check stops that hour's CBF -----------------------------------------


def hour_rows(table: pa.Table, hour: datetime) -> pa.Array:
    return pc.equal(table["usage_hour"], pa.scalar(hour, UTC_TS))


def repeat_one_request(events: pa.Table) -> pa.Table:
    """A dedup regression: one request of the restated hour comes out twice."""
    return pa.concat_tables([events, events.filter(hour_rows(events, RESTATED)).slice(0, 1)])


def negate_one_cost(events: pa.Table) -> pa.Table:
    """A sign error: one request of the restated hour gets a negative cost."""
    index = pc.index(hour_rows(events, RESTATED), True).as_py()
    costs = events["cost"].to_pylist()
    costs[index] = -costs[index] - Decimal("0.01")
    return events.set_column(
        events.schema.get_field_index("cost"),
        "cost",
        pa.array(costs, events.schema.field("cost").type),
    )


def cost_as_float(events: pa.Table) -> pa.Table:
    """Money stored as binary floating point: the schema no longer says DECIMAL(38, 18)."""
    index = events.schema.get_field_index("cost")
    return events.set_column(index, "cost", pc.cast(events["cost"], pa.float64()))


def lose_a_team(table: pa.Table) -> pa.Table:
    """A grouping regression: spend_by_team loses the restated hour's first group."""
    if "team" not in table.column_names or "agent" in table.column_names:
        return table
    first = pc.index(hour_rows(table, RESTATED), True).as_py()
    return pa.concat_tables([table.slice(0, first), table.slice(first + 1)])


@dataclass(frozen=True)
class Regression:
    module: object
    function: str
    corrupt: Callable[[pa.Table], pa.Table]
    check: tuple[str, str]
    whole_chunk: bool = False  # a schema error holds every hour of the chunk, not one

    def plant(self, monkeypatch) -> None:
        real = getattr(self.module, self.function)
        monkeypatch.setattr(self.module, self.function, lambda *args: self.corrupt(real(*args)))


REGRESSIONS = {
    "request counted twice": Regression(
        assets.events,
        "build_spend_events",
        repeat_one_request,
        ("spend_events", "one_row_per_request"),
    ),
    "negative cost": Regression(
        assets.events, "build_spend_events", negate_one_cost, ("spend_events", "cost_non_negative")
    ),
    "cost as float": Regression(
        assets.events,
        "build_spend_events",
        cost_as_float,
        ("spend_events", "schema_matches"),
        whole_chunk=True,
    ),
    "team group lost": Regression(
        assets.aggregates,
        "aggregate_spend",
        lose_a_team,
        ("spend_by_team", "reconciles_with_spend_events"),
    ),
}


@pytest.mark.parametrize("name", REGRESSIONS)
def test_a_broken_rule_holds_back_its_hour_and_the_others_go_on(pipeline, name):
    regression = REGRESSIONS[name]
    assert pipeline.run().success
    [first] = pipeline.tick()
    assert pipeline.submit(first).success
    submitted = pipeline.files()
    assert ledger_differences(pipeline.fake.ledger, submitted) == []

    # Late traffic changes the first hour and the restated one; the look-back run picks it
    # up with a regression in a transform that breaks a rule in the restated hour.
    other = HOURS[0]
    late = generate_traffic(RESTATED, 1, events_per_hour=12, seed=77)
    land_traffic(late, pipeline.data_dir, "late")
    land_traffic(generate_traffic(other, 1, events_per_hour=8, seed=78), pipeline.data_dir, "o")
    with pytest.MonkeyPatch.context() as patch:
        regression.plant(patch)
        result = pipeline.run()

    assert result.success  # no check stops the run: a bad hour holds back itself only
    failed = {k: e for k, e in evaluations(result).items() if not e.passed}
    assert regression.check in failed  # and the checks downstream of it that see the same hours
    held = set(HOURS) if regression.whole_chunk else {RESTATED}
    for check in failed.values():
        assert check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["hours_held"].value == len(held)
        assert f"held back from CloudZero, first {min(held):%Y-%m-%dT%H}:00Z" in check.description
    cbf = [e for e in result.get_asset_materialization_events() if e.asset_key == CBF]
    assert cbf[0].materialization.metadata["hours_held"].value == len(held)

    # Held hours keep the file CloudZero has; the others were rewritten and go out.
    files = pipeline.files()
    for hour in held:
        assert files[hour].sha256 == submitted[hour].sha256
    requests = pipeline.tick()
    if regression.whole_chunk:
        assert requests == []
    else:
        [request] = requests
        assert request.tags["dagster/asset_partition_range_start"] == partition_key(other)
        assert request.tags["dagster/asset_partition_range_end"] == partition_key(other)
        assert pipeline.submit(request).success
        assert files[other].sha256 != submitted[other].sha256
    assert ledger_differences(pipeline.fake.ledger, files) == []

    # With the regression gone, the next run releases the held hours and they are sent.
    assert pipeline.run().success
    for request in pipeline.tick():
        assert pipeline.submit(request).success
    assert ledger_differences(pipeline.fake.ledger, pipeline.files()) == []
    expected = pipeline.traffic.cost_by()[(RESTATED,)] + late.total_cost
    assert abs(pipeline.fake.hour_totals()[format_hour(RESTATED)] - expected) <= TOLERANCE


def test_the_cbf_asset_holds_back_each_hour_that_does_not_reconcile(pipeline):
    """A cost moved between two hours keeps the range total; the CBF asset still holds both
    hours back, and rewrites the one that reconciles."""
    assert pipeline.run().success
    before = {h: f.sha256 for h, f in pipeline.files().items()}
    lake = LakeResource(data_dir=str(pipeline.data_dir))
    agents = lake.read_hours("spend_by_agent", HOURS)
    costs, hours = agents["cost"].to_pylist(), agents["usage_hour"].to_pylist()
    a = hours.index(HOURS[0])
    b = hours.index(HOURS[1])
    costs[a] += Decimal("0.5")
    costs[b] -= Decimal("0.5")
    moved = agents.set_column(
        agents.schema.get_field_index("cost"),
        "cost",
        pa.array(costs, agents.schema.field("cost").type),
    )
    lake.write_hours("spend_by_agent", moved, HOURS)

    result = dg.materialize(
        [cloudzero_cbf],
        instance=pipeline.instance,
        resources={"lake": lake, "cloudzero": pipeline.resources["cloudzero"]},
        tags=partition_range_tags(partition_key(HOURS[0]), partition_key(HOURS[-1])),
        raise_on_error=False,
    )
    assert result.success
    [check] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "reconciles_across_stages"
    ]
    assert not check.passed and check.metadata["hours_held"].value == 2
    assert f"first {HOURS[0]:%Y-%m-%dT%H}:00Z: cost differs across stages: " in check.description
    assert {h: f.sha256 for h, f in pipeline.files().items()} == before
    assert set(lake.holds(HOURS)) == set(HOURS[:2])  # the third hour reconciles: not held


# --- webhook and database both on -----------------------------------------------------------


def test_divergence_between_webhook_and_database_warns_for_the_hour_it_happens(tmp_path):
    traffic = generate_traffic(HOUR0, len(HOURS), events_per_hour=40, seed=5)
    # LiteLLM's webhook lost a third of the last hour's events (it drops queued events on
    # shutdown); its database has every request.
    lost = {r.request_key for r in traffic.requests if r.hour == HOURS[2] and not r.late}
    lost = set(sorted(lost)[: len(lost) // 3])
    kept = [
        (at, [p for p in payloads if p["litellm_call_id"] not in lost])
        for at, payloads in traffic.batches
    ]
    landed = Traffic(traffic.start, traffic.hour_count, kept, traffic.requests)
    with (
        sample_environment(tmp_path, landed) as (_, instance, env),
        FakeLiteLLM([api_row(r) for r in rows_from_traffic(traffic)]) as litellm,
        FakeAnyCost() as fake,
    ):
        env.setenv("LITELLM_PROXY_URL", litellm.url)
        env.setenv("LITELLM_MASTER_KEY", MASTER_KEY)
        pipeline = Pipeline(tmp_path, instance, fake, traffic, HOURS)
        result = pipeline.run()

    assert result.success  # a warning never stops the hour
    found = evaluations(result)
    assert all(found[key].passed for key in holding_keys())
    divergence = found[("spend_events", "webhook_database_divergence")]
    assert not divergence.passed and divergence.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in divergence.metadata.items()}
    assert meta["applies"] is True and meta["sources_on"] == "both"
    assert (meta["database_only"], meta["webhook_only"]) == (len(lost), 0)
    assert meta["both_sources"] == len(traffic.requests) - len(lost)
    assert meta["hours_flagged"] == 1
    assert f"| {HOURS[2]:%Y-%m-%dT%H}:00Z | 40 | 0 | {len(lost)} |" in meta["diverging_hours"]
    assert pipeline.spend_events().num_rows == len(traffic.requests)


# --- freshness of the pipeline ---------------------------------------------------------------


def test_cloudzero_cbf_must_be_fresh_within_two_hours(pipeline):
    """Every hourly run writes cloudzero_cbf (an empty file for an hour without traffic), so its
    staleness means the pipeline stopped or failed; cloudzero_submission, sent only when a file
    changed, carries no policy (a quiet hour is not stale: sources_answering says why)."""
    graph = pipeline.defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("cloudzero_submission")).freshness_policy is None
    node = graph.get(dg.AssetKey("cloudzero_cbf"))
    assert node.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=2), warn_window=timedelta(minutes=90)
    )
    assert pipeline.run().success
    written_at = (
        pipeline.instance.fetch_materializations(
            dg.AssetKey("cloudzero_cbf"), limit=1, ascending=False
        )
        .records[0]
        .timestamp
    )

    def state_after(elapsed: timedelta) -> FreshnessState:
        # What Dagster's freshness daemon would conclude that long after the run.
        with freeze_time(written_at + elapsed.total_seconds()):
            context = LoadingContextForTest(pipeline.instance)
            evaluator = TimeWindowFreshnessPolicyEvaluator()
            return asyncio.run(evaluator.evaluate_freshness(context, node))

    assert state_after(timedelta(minutes=70)) == FreshnessState.PASS
    assert state_after(timedelta(minutes=100)) == FreshnessState.WARN
    assert state_after(timedelta(hours=2, minutes=5)) == FreshnessState.FAIL
