"""The receiver benchmark's own pure helpers, and one tiny run of the script (which proves it
still works end to end, on the local disk and on S3; nothing here asserts a speed)."""

import json
import statistics
from datetime import datetime, timezone

import pytest

from benchmarks.receiver_bodies import BenchmarkBodies, build_bodies, last_full_hour, load_templates
from benchmarks.receiver_report import commit_summary, worker_events
from benchmarks.receiver_throughput import LandingMismatch, main, verify_landing
from resources.landing import LandingZone

HOUR = datetime(2026, 11, 23, 17, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def bodies() -> BenchmarkBodies:
    return build_bodies(load_templates(), body_count=2, batch_size=512, hour=HOUR)


def test_bodies_hold_512_real_shaped_events_of_about_12_kb(bodies):
    for body in bodies.bodies:
        events = json.loads(body)
        assert len(events) == 512
        sizes = [len(json.dumps(event)) for event in events]
        assert 10_000 < statistics.fmean(sizes) < 15_000
        assert {"messages", "response", "metadata", "response_cost"} <= set(events[0])


def test_every_event_has_its_own_ids_and_starts_in_the_benchmark_hour(bodies):
    events = [event for body in bodies.bodies for event in json.loads(body)]
    assert len({e["id"] for e in events}) == len(events)
    assert len({e["litellm_call_id"] for e in events}) == len(events)
    assert {e["litellm_call_id"] for e in events} == bodies.call_ids
    assert all(HOUR.timestamp() <= e["startTime"] <= e["endTime"] for e in events)
    assert all(e["endTime"] < HOUR.timestamp() + 3600 for e in events)


def test_bodies_are_the_same_bytes_every_run(bodies):
    again = build_bodies(load_templates(), body_count=2, batch_size=512, hour=HOUR)
    assert again.bodies == bodies.bodies
    assert bodies.bodies[0] != bodies.bodies[1]


def test_last_full_hour_is_the_closed_hour_before_now():
    now = datetime(2026, 11, 23, 18, 27, 5, tzinfo=timezone.utc)
    assert last_full_hour(now) == HOUR


def test_commit_summary_is_the_growth_between_two_scrapes_over_every_worker():
    before = {
        'spend_receiver_commits_total{worker="a"}': 10.0,
        'spend_receiver_commit_seconds_sum{worker="a"}': 0.5,
        'spend_receiver_events_accepted_total{worker="a"}': 5120.0,
        'spend_receiver_requests_total{code="200",worker="a"}': 10.0,
    }
    after = {
        'spend_receiver_commits_total{worker="a"}': 15.0,
        'spend_receiver_commit_seconds_sum{worker="a"}': 0.6,
        'spend_receiver_events_accepted_total{worker="a"}': 10240.0,
        'spend_receiver_requests_total{code="200",worker="a"}': 20.0,
        'spend_receiver_commits_total{worker="b"}': 5.0,
        'spend_receiver_commit_seconds_sum{worker="b"}': 0.1,
        'spend_receiver_events_accepted_total{worker="b"}': 10240.0,
        'spend_receiver_requests_total{code="200",worker="b"}': 20.0,
    }
    summary = commit_summary(before, after)
    assert (summary.commits, summary.events, summary.requests) == (10, 15360, 30)
    assert summary.mean_commit_ms == pytest.approx(20.0)
    assert summary.events_per_commit == 1536
    assert summary.requests_per_commit == 3
    assert worker_events(before, after) == [10240, 5120]


def test_verify_landing_accepts_exactly_the_acknowledged_events(tmp_path):
    small = build_bodies(load_templates(), body_count=1, batch_size=8, hour=HOUR)
    LandingZone(tmp_path, writer_id="bench").write_events(json.loads(small.bodies[0]))
    assert verify_landing(tmp_path, small, acknowledged=8, unanswered=0) == 8
    with pytest.raises(LandingMismatch, match="only 8 of 9"):
        verify_landing(tmp_path, small, acknowledged=9, unanswered=0)
    with pytest.raises(LandingMismatch, match="only 7 were acknowledged"):
        verify_landing(tmp_path, small, acknowledged=7, unanswered=0)
    assert verify_landing(tmp_path, small, acknowledged=7, unanswered=1) == 8


def test_a_tiny_run_reports_every_server_and_its_ratios(tmp_path):
    report = tmp_path / "report.md"
    tiny = ["--rounds", "1", "--max-requests", "6", "--warmup-seconds", "0", "--batch-size", "16"]
    tiny += ["--bodies", "2", "--workers", "1", "--s3", "--work-dir", str(tmp_path)]
    assert main([*tiny, "--output", str(report)]) == 0
    text = report.read_text()
    for server in ("body-only baseline", "parse-only baseline", "receiver", "receiver on S3"):
        assert f"| {server} | 1 |" in text  # its measured run, verified against the landing
    assert "receiver/parse-only" in text and "ratio S3/local disk" in text
