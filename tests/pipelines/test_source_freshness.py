"""Quiet or silent, with the real pieces: hours without traffic go through the real
``hourly_spend_job`` while a real ``spend-receiver`` beats, LiteLLM's spend logs come from a
real PostgreSQL or a fake proxy on 127.0.0.1, and ``source_freshness_sensor`` evaluates
``sources_answering`` as the daemon does (its evaluation recorded in the instance, where the UI
reads it). Quiet passes and never makes anything stale; a crashed receiver, a stopped
database and a failing API fail the check once silent past the threshold, naming the source
and since when.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time

from assets.freshness import QUIET, sources_answering, sources_verdict
from demo.traffic import generate_traffic
from pipelines.definitions import ASSETS, CHECKS
from pipelines.sensors import source_freshness_sensor
from resources.landing import LandingZone
from tests.fake_cloudzero import FakeAnyCost
from tests.fake_litellm import MASTER_KEY, FakeLiteLLM
from tests.receiving import ReceiverProcess, free_port
from tests.samples import HOUR0
from tests.spend_log_rows import load_rows
from tests.spend_pipeline import Pipeline, sample_environment

HOURS = [HOUR0 + timedelta(hours=h) for h in range(2)]
CHECK = dg.AssetCheckKey(dg.AssetKey("cloudzero_submission"), "sources_answering")
PAST_THRESHOLD = timedelta(minutes=31)  # SPEND_SOURCE_SILENCE_MINUTES is 30 by default


@contextmanager
def quiet_pipeline(tmp_path: Path, **env: str) -> Iterator[tuple[Pipeline, pytest.MonkeyPatch]]:
    """The pipeline over HOURS with no traffic at all, ``env`` set (the spend-log source)."""
    traffic = generate_traffic(HOURS[0], len(HOURS), events_per_hour=0)
    with sample_environment(tmp_path, traffic) as (_, instance, environ), FakeAnyCost() as fake:
        environ.delenv("SPEND_SOURCE_SILENCE_MINUTES", raising=False)
        for name, value in env.items():
            environ.setenv(name, value)
        yield Pipeline(tmp_path, instance, fake, traffic, HOURS), environ


def evaluate(pipeline: Pipeline, later: timedelta = timedelta(0)) -> dg.AssetCheckEvaluation:
    """A tick of ``source_freshness_sensor`` (``later`` than now: its verdict at that time),
    recorded as the daemon records it; returns the check's latest evaluation in the instance."""
    with dg.build_sensor_context(
        instance=pipeline.instance, resources=pipeline.resources
    ) as context:
        if later:
            now = datetime.now(timezone.utc) + later
            landing, litellm = context.resources.landing, context.resources.litellm
            events = [sources_verdict(context.instance, landing, litellm, now).evaluation()]
        else:
            events = source_freshness_sensor(context).asset_events
    assert not getattr(events, "run_requests", None)
    for event in events:
        pipeline.instance.report_runless_asset_event(event)
    [stored] = pipeline.instance.event_log_storage.get_asset_check_execution_history(CHECK, 1)
    return stored.event.dagster_event.event_specific_data


def execute_check(pipeline: Pipeline) -> dg.AssetCheckEvaluation:
    """The check run on its own, as the UI's "Execute" button runs it."""
    job = dg.define_asset_job("check_only", selection=dg.AssetSelection.checks(sources_answering))
    defs = dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[job], resources=pipeline.resources
    )
    result = defs.resolve_job_def("check_only").execute_in_process(instance=pipeline.instance)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def spend_log_reads(pipeline: Pipeline) -> list[dict]:
    """The runs' words on their spend-log source, newest first."""
    records = pipeline.instance.fetch_observations(dg.AssetKey("litellm_spend_logs"), 100).records
    return [
        {"at": r.timestamp, **{k: v.value for k, v in r.asset_observation.metadata.items()}}
        for r in records
    ]


def freshness(pipeline: Pipeline, asset: str, elapsed: timedelta) -> FreshnessState | None:
    """What Dagster's freshness daemon concludes ``elapsed`` after now (None: no policy)."""
    node = pipeline.defs.resolve_asset_graph().get(dg.AssetKey(asset))
    if node.freshness_policy is None:
        return None
    with freeze_time(datetime.now(timezone.utc) + elapsed):
        context = LoadingContextForTest(pipeline.instance)
        return asyncio.run(TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(context, node))


def at(moment: datetime | float) -> str:
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%MZ}"


def test_quiet_hours_pass_and_a_crashed_receiver_is_silent_past_the_threshold(tmp_path):
    with (
        FakeLiteLLM() as proxy,
        quiet_pipeline(tmp_path, LITELLM_PROXY_URL=proxy.url, LITELLM_MASTER_KEY=MASTER_KEY) as (
            pipeline,
            _,
        ),
    ):
        with ReceiverProcess(pipeline.data_dir, "--workers", "2") as receiver:
            assert len(LandingZone(pipeline.data_dir).heartbeats()) == 2  # one per worker
            assert pipeline.run().success
            assert all(not cbf.rows for cbf in pipeline.files().values())  # nothing to send
            assert pipeline.tick() == []  # so no submission run
            assert spend_log_reads(pipeline)[0] | {"at": 0} == {
                "at": 0,
                "source": "api",
                "answered": True,
            }

            quiet = evaluate(pipeline)
            assert quiet.passed
            assert quiet.description.startswith(f"{QUIET} (nothing to send in ")
            assert "webhook receiver" in quiet.description
            assert "LiteLLM API" in quiet.description
            executed = execute_check(pipeline)
            assert executed.passed  # the same verdict (its times may be a heartbeat newer)
            assert (
                executed.description.split("; last heard")[0]
                == (quiet.description.split("; last heard")[0])
            )
            # A quiet hour makes nothing look stale: cloudzero_cbf was written (empty files),
            # and cloudzero_submission, rightly not sent, carries no freshness policy.
            assert freshness(pipeline, "cloudzero_cbf", timedelta(0)) == FreshnessState.PASS
            assert freshness(pipeline, "cloudzero_submission", timedelta(hours=5)) is None
            receiver.kill()  # a crash: no goodbye, the heartbeat just stops

        last = LandingZone(pipeline.data_dir).heartbeats()[0]  # the newest
        assert evaluate(pipeline).passed  # just now: not silent yet
        silent = evaluate(pipeline, PAST_THRESHOLD)
        assert not silent.passed
        assert silent.description.startswith(f"silent: webhook receiver since {at(last.at)} (")
        assert f"threshold 30): newest heartbeat of 2 receiver writer(s): {last.writer}" in (
            silent.description
        )
        meta = {k: v.value for k, v in silent.metadata.items()}
        assert meta["silent_sources"] == "webhook receiver"  # the API still answers
        assert meta["threshold_minutes"] == 30


def test_a_database_that_stops_answering_is_silent_since_its_last_answer(tmp_path, postgres_server):
    dsn = postgres_server.create_database("source_freshness")
    load_rows(dsn, [])  # LiteLLM's table, empty: no traffic
    with quiet_pipeline(tmp_path, LITELLM_DATABASE_URL=dsn) as (pipeline, env):
        assert pipeline.run().success
        answered = spend_log_reads(pipeline)[0]
        assert (answered["source"], answered["answered"]) == ("database", True)
        quiet = evaluate(pipeline)
        assert quiet.passed and quiet.description.startswith(QUIET)
        assert "webhook receiver" not in quiet.description  # no receiver ever: not watched

        stopped = f"postgresql://postgres@127.0.0.1:{free_port()}/source_freshness"
        env.setenv("LITELLM_DATABASE_URL", stopped)  # the server is gone
        failed = pipeline.run()
        assert not failed.success
        refused = spend_log_reads(pipeline)[0]
        assert refused["answered"] is False
        assert refused["error"].startswith(f"reading LiteLLM_SpendLogs from {stopped} failed")

        failing = evaluate(pipeline)  # one failed read: not yet silent
        assert failing.passed
        assert failing.description.startswith(
            f"LiteLLM database failing since {at(refused['at'])} (0 of 30 min, not yet silent; "
            f"last answered {at(answered['at'])}): {refused['error']}"
        )

        silent = evaluate(pipeline, PAST_THRESHOLD)  # still failing half an hour later
        assert not silent.passed
        assert silent.description == (
            f"silent: LiteLLM database since {at(refused['at'])} (31 min, threshold 30; "
            f"last answered {at(answered['at'])}): {refused['error']}"
        )


def test_a_failing_api_is_silent_past_the_threshold_and_passes_once_it_answers(tmp_path):
    # LiteLLM's proxy answers, but without its database it refuses /spend/logs/v2.
    with (
        FakeLiteLLM(has_database=False) as proxy,
        quiet_pipeline(tmp_path, LITELLM_PROXY_URL=proxy.url, LITELLM_MASTER_KEY=MASTER_KEY) as (
            pipeline,
            _,
        ),
    ):
        assert not pipeline.run().success
        [refused] = spend_log_reads(pipeline)
        assert (refused["source"], refused["answered"]) == ("api", False)
        assert "Prisma Client is not initialized" in refused["error"]

        failing = evaluate(pipeline)
        assert failing.passed and failing.description.startswith("LiteLLM API failing since")

        silent = evaluate(pipeline, PAST_THRESHOLD)
        assert not silent.passed
        assert silent.description.startswith(
            f"silent: LiteLLM API since {at(refused['at'])} (31 min, threshold 30; "
            "no answer on record): LiteLLM at "
        )
        assert "Prisma Client is not initialized" in silent.description
        assert MASTER_KEY not in silent.description + str(silent.metadata)

        proxy.has_database = True
        assert pipeline.run().success
        recovered = evaluate(pipeline, PAST_THRESHOLD)
        assert recovered.passed and recovered.description.startswith(QUIET)
