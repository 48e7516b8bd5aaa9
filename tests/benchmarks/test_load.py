"""The load generator's pure parts; a phase against a server is timed, so it is not run here."""

import math
import time

import pytest

from benchmarks.load import PhaseResult, RequestBudget, percentile


def test_percentile_interpolates_between_ranks():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 99) == pytest.approx(4.96)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_request_budget_stops_at_its_count_and_at_its_deadline():
    counted = RequestBudget(limit=3, deadline=time.perf_counter() + 60)
    assert [counted.take() for _ in range(5)] == [0, 1, 2, None, None]
    expired = RequestBudget(limit=100, deadline=time.perf_counter() - 1)
    assert expired.take() is None


def test_phase_rates_are_per_second_of_the_phase_and_nan_without_one():
    phase = PhaseResult(elapsed=2.0, ok_requests=10, events=5120, bytes_sent=64_000_000)
    assert (phase.requests_per_second, phase.events_per_second) == (5.0, 2560.0)
    assert phase.megabytes_per_second == 32.0
    assert math.isnan(PhaseResult().events_per_second)
