"""Rows that reach LiteLLM's database after the schedule's look-back window reach CloudZero:
spend_logs_reconciliation_sensor → hourly_spend_job over that hour → cloudzero_cbf_sensor →
a resubmission of exactly that hour. On a real PostgreSQL server."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pytest

from assets.partitions import partition_key
from demo.traffic import generate_traffic
from pipelines.sensors import (
    NO_DATABASE,
    late_data_hours,
    reconcile_days,
    reconciliation_requests,
    spend_logs_reconciliation_sensor,
)
from resources.cbf import format_hour
from resources.lake import LakeResource
from resources.litellm import LiteLLMSpendLogsResource
from resources.spend_log_fingerprints import EMPTY, HourDifference, HourFingerprint
from tests.cbf_rows import ledger_differences
from tests.fake_cloudzero import FakeAnyCost
from tests.spend_log_rows import load_rows, rows_from_traffic, spend_log_row
from tests.spend_pipeline import Pipeline, sample_environment

UTC = timezone.utc
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def span(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[RANGE_START], request.tags[RANGE_END]


def test_rows_written_after_the_look_back_window_reach_cloudzero(tmp_path, postgres_server):
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    late_hour = this_hour - timedelta(days=2)
    hours = [late_hour + timedelta(hours=h) for h in range(-2, 2)]
    traffic = generate_traffic(hours[0], len(hours), events_per_hour=40, seed=5)
    dsn = postgres_server.create_database("reconciliation")
    load_rows(dsn, rows_from_traffic(traffic))

    with sample_environment(tmp_path, traffic) as (_, instance, env), FakeAnyCost() as fake:
        env.setenv("LITELLM_DATABASE_URL", dsn)
        pipeline = Pipeline(tmp_path, instance, fake, traffic, hours)
        pipeline.materialise()
        [submission] = pipeline.tick()
        assert pipeline.submit(submission).success
        assert pipeline.tick(spend_logs_reconciliation_sensor) == []  # the lake matches
        sent_before = fake.hour_totals()

        # A proxy replays its queue two days later: rows straight into LiteLLM's table.
        late = [
            spend_log_row(startTime=late_hour + timedelta(minutes=m), spend=0.0125 * m)
            for m in (7, 31, 59)
        ]
        load_rows(dsn, late)
        [restate] = pipeline.tick(spend_logs_reconciliation_sensor)
        assert span(restate) == (partition_key(late_hour), partition_key(late_hour))
        # The same difference again is the same run key: Dagster requests it once.
        [again] = pipeline.tick(spend_logs_reconciliation_sensor)
        assert again.run_key == restate.run_key and restate.run_key.startswith("reconcile:")

        job = pipeline.defs.resolve_job_def("hourly_spend_job")
        assert job.execute_in_process(instance=instance, tags=restate.tags).success
        [resubmit] = pipeline.tick()
        assert span(resubmit) == span(restate)
        assert pipeline.submit(resubmit).success
        assert ledger_differences(fake.ledger, pipeline.files()) == []
        added = sum((Decimal(repr(r["spend"])) for r in late), Decimal(0))
        totals = fake.hour_totals()
        assert totals[format_hour(late_hour)] == sent_before[format_hour(late_hour)] + added
        assert {h: t for h, t in totals.items() if h != format_hour(late_hour)} == {
            h: t for h, t in sent_before.items() if h != format_hour(late_hour)
        }
        assert pipeline.tick(spend_logs_reconciliation_sensor) == []

        # A new difference in the same hour is a new request.
        load_rows(dsn, [spend_log_row(startTime=late_hour + timedelta(minutes=44))])
        [newer] = pipeline.tick(spend_logs_reconciliation_sensor)
        assert span(newer) == span(restate) and newer.run_key != restate.run_key


def test_without_the_database_source_the_sensor_says_why_it_skips(tmp_path):
    for litellm in (
        LiteLLMSpendLogsResource(),
        LiteLLMSpendLogsResource(proxy_url="http://127.0.0.1:9", master_key="sk-x"),
    ):
        resources = {"lake": LakeResource(data_dir=str(tmp_path)), "litellm": litellm}
        with dg.build_sensor_context(resources=resources) as context:
            result = spend_logs_reconciliation_sensor(context)
        assert not result.run_requests
        assert result.skip_reason.skip_message == NO_DATABASE
        assert "LITELLM_DATABASE_URL is not set" in NO_DATABASE


def test_late_data_hours_end_where_the_schedule_look_back_begins():
    now = datetime(2026, 3, 8, 12, 30, tzinfo=UTC)  # look-back 3: 09:00..11:00 restated
    first = datetime(2026, 1, 1, tzinfo=UTC)
    hours = late_data_hours(now, days=7, lookback=3, first=first)
    assert (hours[0], hours[-1]) == (
        datetime(2026, 3, 1, 12, tzinfo=UTC),
        datetime(2026, 3, 8, 8, tzinfo=UTC),
    )
    assert len(hours) == 7 * 24 - 3
    # Never before the first partition; nothing while the look-back covers everything.
    assert late_data_hours(now, 7, 3, datetime(2026, 3, 8, 6, tzinfo=UTC)) == [
        datetime(2026, 3, 8, 6, tzinfo=UTC),
        datetime(2026, 3, 8, 7, tzinfo=UTC),
        datetime(2026, 3, 8, 8, tzinfo=UTC),
    ]
    assert late_data_hours(now, 7, 3, datetime(2026, 3, 8, 9, tzinfo=UTC)) == []


def test_one_run_per_contiguous_range_keyed_by_the_fingerprints():
    base = datetime(2026, 3, 1, 0, tzinfo=UTC)
    a, b = HourFingerprint(2, Decimal("0.5"), base), HourFingerprint(3, Decimal("0.5"), base)

    def differences(*offsets: int, database: HourFingerprint = a) -> list[HourDifference]:
        return [HourDifference(base + timedelta(hours=h), database, EMPTY) for h in offsets]

    requests = reconciliation_requests(differences(1, 2, 3, 7))
    assert [span(r) for r in requests] == [
        ("2026-03-01-01:00", "2026-03-01-03:00"),
        ("2026-03-01-07:00", "2026-03-01-07:00"),
    ]
    assert requests[0].run_key.startswith("reconcile:2026-03-01-01:00..2026-03-01-03:00:")
    keys = [r.run_key for r in requests]
    assert [r.run_key for r in reconciliation_requests(differences(1, 2, 3, 7))] == keys
    changed = [r.run_key for r in reconciliation_requests(differences(1, 2, 3, 7, database=b))]
    assert changed[0] != keys[0] and changed[1] != keys[1]


def test_reconcile_days_is_a_positive_integer(monkeypatch):
    monkeypatch.delenv("SPEND_RECONCILE_DAYS", raising=False)
    assert reconcile_days() == 7
    monkeypatch.setenv("SPEND_RECONCILE_DAYS", "3")
    assert reconcile_days() == 3
    for value in ("0", "-1", "week"):
        monkeypatch.setenv("SPEND_RECONCILE_DAYS", value)
        with pytest.raises(ValueError, match="SPEND_RECONCILE_DAYS"):
            reconcile_days()
