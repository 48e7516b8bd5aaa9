"""Quiet or silent, from timestamps alone: the pure part of ``sources_answering``."""

from datetime import datetime, timedelta, timezone

import pytest

from assets.freshness import (
    QUIET,
    LatestCbf,
    SpendLogRead,
    judge,
    receiver_status,
    silence_threshold,
    spend_log_status,
)
from resources.landing import Heartbeat

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
THRESHOLD = timedelta(minutes=30)
QUIET_RUN = LatestCbf(rows=0, hours="2026-03-01T09:00Z..2026-03-01T11:00Z")


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def beat(writer: str, minutes_ago: float) -> Heartbeat:
    return Heartbeat(writer, ago(minutes_ago), ago(600))


def read(minutes_ago: float, answered: bool, source: str = "database") -> SpendLogRead:
    error = "" if answered else "could not connect to 127.0.0.1:1: Connection refused"
    return SpendLogRead(ago(minutes_ago), source, answered, error)


def test_sources_answering_and_no_rows_to_send_is_quiet():
    verdict = judge(
        [receiver_status([beat("rx-a", 0.5)]), spend_log_status("database", [read(50, True)])],
        NOW,
        THRESHOLD,
        QUIET_RUN,
    )
    assert verdict.passed
    assert verdict.description.startswith(f"{QUIET} (nothing to send in 2026-03-01T09:00Z..")
    assert "webhook receiver 2026-03-01T11:59Z" in verdict.description
    assert "LiteLLM database 2026-03-01T11:10Z" in verdict.description
    assert verdict.metadata["silent_sources"] == "none"


def test_sources_answering_with_rows_is_not_called_quiet():
    verdict = judge([receiver_status([beat("rx-a", 1)])], NOW, THRESHOLD, LatestCbf(42, "h"))
    assert verdict.passed and verdict.description.startswith("sources answering (42 CBF rows in h)")
    assert QUIET not in verdict.description


def test_a_stale_heartbeat_is_a_silent_receiver_named_with_its_last_word():
    verdict = judge([receiver_status([beat("rx-a", 45)])], NOW, THRESHOLD, QUIET_RUN)
    assert not verdict.passed
    assert verdict.description == (
        "silent: webhook receiver since 2026-03-01T11:15Z (45 min, threshold 30): "
        "newest heartbeat of 1 receiver writer(s): rx-a"
    )
    assert verdict.metadata["silent_sources"] == "webhook receiver"
    assert "| webhook receiver | 2026-03-01T11:15Z | 45 min | silent |" in str(
        verdict.metadata["sources"].value
    )


def test_the_newest_of_several_receivers_heartbeats_counts():
    """Receivers come and go (a pod's writer id is its host name and pid): the files of
    replaced ones go stale, and one fresh heartbeat means the webhook is heard."""
    status = receiver_status([beat("old-pod-1", 900), beat("pod-7", 0.5), beat("old-pod-2", 60)])
    assert status.heard_at == ago(0.5) and "pod-7" in status.note
    assert judge([status], NOW, THRESHOLD).passed


def test_a_heartbeat_exactly_at_the_threshold_still_answers():
    assert judge([receiver_status([beat("rx", 30)])], NOW, THRESHOLD).passed
    assert not judge([receiver_status([beat("rx", 30.02)])], NOW, THRESHOLD).passed


def test_no_heartbeat_ever_and_no_spend_log_source_watch_nothing():
    assert receiver_status([]) is None
    assert spend_log_status("none", [read(5, False)]) is None
    verdict = judge([None, None], NOW, THRESHOLD, QUIET_RUN)
    assert verdict.passed and verdict.description.startswith("no source to watch")


def test_a_database_that_keeps_failing_is_silent_since_its_first_failed_read():
    reads = [read(10, False), read(70, False), read(110, True), read(170, True)]
    status = spend_log_status("database", reads)
    assert (status.heard_at, status.unheard_since) == (ago(110), ago(70))
    verdict = judge([status], NOW, THRESHOLD, QUIET_RUN)
    assert not verdict.passed
    assert verdict.description == (
        "silent: LiteLLM database since 2026-03-01T10:50Z (70 min, threshold 30; last answered "
        "2026-03-01T10:10Z): could not connect to 127.0.0.1:1: Connection refused"
    )


def test_one_failed_hourly_read_is_failing_but_not_yet_silent():
    """The spend logs are read at minute 10 of each hour: the first failed read comes an hour
    after the last answer, and the source has half an hour to answer again (a re-executed run,
    a late-data run) before the check fails."""
    status = spend_log_status("database", [read(5, False), read(65, True)])
    verdict = judge([status], NOW, THRESHOLD, QUIET_RUN)
    assert verdict.passed
    assert verdict.description.startswith(
        "LiteLLM database failing since 2026-03-01T11:55Z (5 of 30 min, not yet silent; last "
        "answered 2026-03-01T10:55Z): could "
    )
    assert QUIET not in verdict.description
    assert "| failing |" in str(verdict.metadata["sources"].value)
    assert not judge([status], NOW + timedelta(minutes=26), THRESHOLD).passed


def test_a_source_that_never_answered_is_silent_from_its_first_failure_on_record():
    status = spend_log_status("api", [read(5, False, "api"), read(65, False, "api")])
    assert (status.heard_at, status.unheard_since) == (None, ago(65))
    verdict = judge([status], NOW, THRESHOLD)
    assert not verdict.passed
    assert verdict.description.startswith(
        "silent: LiteLLM API since 2026-03-01T10:55Z (65 min, threshold 30; no answer on record): "
    )


def test_a_read_that_answered_last_answers_however_old():
    """The spend logs are read by the runs: with no run there is no word, and the staleness of
    the pipeline itself is cloudzero_cbf's freshness policy, not a silent source."""
    status = spend_log_status("database", [read(600, True), read(660, False)])
    assert status.unheard_since is None and judge([status], NOW, THRESHOLD).passed


def test_only_the_configured_sources_reads_count():
    """Moving from the API to the database: the API's failures say nothing of the database."""
    reads = [read(5, False, "api"), read(65, False, "api"), read(300, True, "database")]
    assert spend_log_status("database", reads).unheard_since is None
    status = spend_log_status("database", [read(5, False, "api")])
    assert status.note == "not read yet" and status.unheard_since is None


def test_every_silent_source_is_named():
    statuses = [
        receiver_status([beat("rx", 40)]),
        spend_log_status("database", [read(1, False), read(61, False), read(121, True)]),
    ]
    verdict = judge(statuses, NOW, THRESHOLD)
    assert not verdict.passed
    assert verdict.metadata["silent_sources"] == "webhook receiver, LiteLLM database"
    assert verdict.description.startswith("silent: webhook receiver since ")
    assert (
        "; LiteLLM database since 2026-03-01T10:59Z (61 min, threshold 30; last answered "
        "2026-03-01T09:59Z): could not connect" in verdict.description
    )


def test_the_threshold_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("SPEND_SOURCE_SILENCE_MINUTES", raising=False)
    assert silence_threshold() == timedelta(minutes=30)
    monkeypatch.setenv("SPEND_SOURCE_SILENCE_MINUTES", "90")
    assert silence_threshold() == timedelta(minutes=90)
    for bad in ("0", "-5", "half an hour"):
        monkeypatch.setenv("SPEND_SOURCE_SILENCE_MINUTES", bad)
        with pytest.raises(ValueError, match="SPEND_SOURCE_SILENCE_MINUTES"):
            silence_threshold()
