"""Live submission against the fake AnyCost server: whatever the faults, CloudZero's ledger
ends equal to the CBF files, hour by hour, row by row, cost to the last digit."""

import json
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from resources.cbf import cost_total, format_hour
from resources.cloudzero import CloudZeroResource
from resources.cloudzero_report import MonthUsage
from tests.cbf_rows import ledger_differences, row, write_cbf_files
from tests.fake_cloudzero import API_KEY, CONNECTION_ID, FakeAnyCost, Fault

# Hours around a month boundary, so bodies must also split by month.
HOURS = [datetime(2026, 1, 31, 21, tzinfo=timezone.utc) + timedelta(hours=h) for h in range(6)]
CLIENT_MAX_BODY = 5_000  # about 14 rows: an hour of 15+ rows needs sum continuations
READ_TIMEOUT = 0.2

FAULTS = st.sampled_from(
    [
        Fault.status(429, retry_after=0),
        Fault.status(500),
        Fault.status(503, applied=True),  # applied, then an error: ambiguous
        Fault.status(502),
        Fault.drop(),
        Fault.drop(applied=True),
        Fault.hang(READ_TIMEOUT * 2),  # applied, answer never arrives: a timeout
        Fault.slow(0.01),
    ]
)


def hour_version(hour: datetime, version: int, count: int) -> list[dict[str, str]]:
    """Rows of one hour; another ``version`` is a restatement (other resources, costs)."""
    return [row(hour, f"v{version}-agent-{i:03d}", cost=f"{version}.{i:06d}") for i in range(count)]


CONTENTS = st.dictionaries(
    st.sampled_from(HOURS),
    st.tuples(st.integers(0, 3), st.integers(0, 40)),  # (version, rows): 0 rows = empty hour
    min_size=1,
    max_size=len(HOURS),
)


@pytest.fixture(scope="module")
def fakes():
    with FakeAnyCost() as roomy, FakeAnyCost(max_body_bytes=3_000) as strict:
        yield {"roomy": roomy, "strict": strict}  # strict answers 413 to our full bodies


def resource(fake: FakeAnyCost, data_dir: Path) -> CloudZeroResource:
    return CloudZeroResource(
        api_key=API_KEY,
        connection_id=CONNECTION_ID,
        api_url=fake.url,
        data_dir=str(data_dir),
        max_body_bytes=CLIENT_MAX_BODY,
        timeout_seconds=READ_TIMEOUT,
        max_attempts=40,
        retry_budget_seconds=60,
        retry_base_delay_seconds=0.001,
    )


def submit(fake, data_dir, contents, faults, run_id):
    files = write_cbf_files(data_dir, {h: hour_version(h, v, n) for h, (v, n) in contents.items()})
    fake.inject(*faults)
    report = resource(fake, data_dir).submit(files, run_id=run_id)
    assert report.error is None and report.failed_hours == ()
    return files, report


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    first=CONTENTS,
    second=CONTENTS,
    faults=st.lists(FAULTS, max_size=8),
    later_faults=st.lists(FAULTS, max_size=4),
    server=st.sampled_from(["roomy", "strict"]),
)
def test_ledger_equals_the_cbf_files_after_any_faults(
    fakes, first, second, faults, later_faults, server
):
    fake = fakes[server]
    fake.reset()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        files, _ = submit(fake, data_dir, first, faults, "run-1")
        assert ledger_differences(fake.ledger, files) == []

        # Restate, empty or keep each hour, then submit every hour again.
        contents = first | second
        before = len(fake.requests)
        files, report = submit(fake, data_dir, contents, later_faults, "run-2")
        assert ledger_differences(fake.ledger, files) == []
        touched = {h for r in fake.requests[before:] for h in r.hours}
        unchanged = {h for h in contents if contents[h] == first.get(h)}
        never_rows = {h for h in contents if contents[h][1] == 0 and first.get(h, (0, 0))[1] == 0}
        assert touched.isdisjoint({format_hour(h) for h in unchanged | never_rows})
        statuses = {r.hour: r.status for r in report.hours}
        assert {h for h, s in statuses.items() if s in ("unchanged", "nothing to send")} == (
            unchanged | never_rows
        ) & set(statuses)
        requests = fake.requests
        event(f"413 splits: {min(sum(r.status == 413 for r in requests), 3)}+")
        event(f"sum continuations: {min(sum(r.operation == 'sum' for r in requests), 3)}+")
        event(f"faults taken: {min(sum(r.fault is not None for r in requests), 5)}+")
    assert fake.violations == []


def test_an_oversize_hour_whose_continuation_fails_arrives_whole(fakes, tmp_path):
    fake = fakes["roomy"]
    fake.reset()
    hour = HOURS[0]
    contents = {hour: (1, 60)}  # about four bodies: replace_hourly then sums
    fake.inject(Fault.slow(0), Fault.drop(applied=True))  # second body: applied, no answer
    files, report = submit(fake, tmp_path, contents, [], "run-1")
    operations = [r.operation for r in fake.requests]
    restart = operations.index("replace_hourly", 1)
    assert operations[:2] == ["replace_hourly", "sum"] and restart == 2
    assert ledger_differences(fake.ledger, files) == []
    assert fake.hour_totals() == {format_hour(hour): cost_total(files[hour].rows)}
    [hour_report] = report.hours
    assert hour_report.operations[0] == "replace_hourly" and "hour restarted" in hour_report.note


def test_receipts_record_what_cloudzero_holds(fakes, tmp_path):
    fake = fakes["roomy"]
    fake.reset()
    fake.inject(Fault.status(429, retry_after=0))
    files, report = submit(fake, tmp_path, {HOURS[0]: (1, 3), HOURS[1]: (1, 2)}, [], "run-1")
    receipt = resource(fake, tmp_path).receipts().read(HOURS[0])
    assert receipt.state == "submitted" and receipt.cbf_sha256 == files[HOURS[0]].sha256
    assert receipt.operations == ["replace_hourly"] and receipt.rows == 3
    assert receipt.attempts == 2 and receipt.run_id == "run-1"
    assert receipt.drop_ids == [r.drop_id for r in fake.requests if r.status == 200]
    assert receipt.cost_total == "3.000003"  # 1.000000 + 1.000001 + 1.000002
    assert API_KEY not in Path(resource(fake, tmp_path).receipts().url(HOURS[0])).read_text()
    meta = report.metadata()
    assert report.submitted and meta["mode"] == "live"
    row_bytes = sum(
        len(json.dumps(r, separators=(",", ":"))) for f in files.values() for r in f.rows
    )
    [month] = report.months
    assert (month.month, month.rows, month.bytes, month.over) == ("2026-01", 5, row_bytes, False)
    assert meta["month/2026-01/rows"] == 5 and "month_limit_errors" not in meta

    # Another submission of one more hour: the month also counts the hours sent before.
    later = write_cbf_files(tmp_path, {HOURS[2]: hour_version(HOURS[2], 1, 4)})
    report = resource(fake, tmp_path).submit(later, run_id="run-2")
    assert report.months[0].rows == 9


def test_month_usage_is_over_cloudzero_s_monthly_limits_past_either_limit():
    at_limit = MonthUsage("2026-04", 1_000_000, 70_000_000)
    assert not at_limit.over and at_limit.error is None and at_limit.share == 1
    rows = MonthUsage("2026-04", 1_000_001, 10, widest_tag=("model", 412))
    assert rows.over and "1,000,001 rows" in rows.error and "model (412)" in rows.error
    assert "70,000,001 bytes" in MonthUsage("2026-04", 10, 70_000_001).error
    assert MonthUsage("2026-04", 800, 10, row_limit=1000).share == Decimal("0.8")


def test_a_refused_key_stops_at_once_with_cloudzero_s_message(fakes, tmp_path):
    fake = fakes["roomy"]
    fake.reset()
    files = write_cbf_files(tmp_path, {h: hour_version(h, 1, 20) for h in HOURS[:3]})
    wrong = resource(fake, tmp_path).model_copy(update={"api_key": "cz-wrong-key-0000"})
    report = wrong.submit(files, run_id="run-1")
    assert len(fake.requests) == 1  # no retry
    assert "HTTP 403" in report.error and fake.requests[0].message in report.error
    assert "cz-wrong-key-0000" not in report.error
    statuses = [h.status for h in report.hours]
    assert statuses[0] == "failed" and set(statuses[1:]) == {"not sent"}
    store = wrong.receipts()
    failed = [h.hour for h in report.hours if h.status == "failed"]
    assert {store.read(h).state for h in failed} == {"uncertain"}
    assert all(store.read(h.hour) is None for h in report.hours if h.status == "not sent")
    assert fake.ledger == {}


def test_a_month_over_its_limits_sends_nothing_and_says_why(fakes, tmp_path):
    fake = fakes["roomy"]
    fake.reset()
    # HOURS[:3] are January (3 x 4 rows), HOURS[3:] February (3 x 2 rows).
    files = write_cbf_files(
        tmp_path, {h: hour_version(h, 1, 4 if h.month == 1 else 2) for h in HOURS}
    )
    lowered = resource(fake, tmp_path).model_copy(update={"month_row_limit": 10})
    report = lowered.submit(files, run_id="run-1")
    january = {format_hour(h) for h in HOURS[:3]}
    assert not set(fake.ledger) & january  # nothing of January reached CloudZero
    assert ledger_differences(fake.ledger, {h: files[h] for h in HOURS[3:]}) == []
    refused = {h.hour for h in report.failed_hours}
    assert refused == set(HOURS[:3])
    [error] = {h.note for h in report.failed_hours}
    assert error.startswith("2026-01 would hold 12 rows and ")
    assert "the limit is 10 rows" in error and "agent (4)" in error
    assert "month_limit_errors" in report.metadata()
    assert all(lowered.receipts().read(h) is None for h in HOURS[:3])  # not sent, no receipt

    # A byte limit the same way; under both limits everything goes.
    tight = resource(fake, tmp_path).model_copy(update={"month_byte_limit": 100})
    assert {h.status for h in tight.submit(files, run_id="run-2").failed_hours} == {
        "over monthly limit"
    }
    assert resource(fake, tmp_path).submit(files, run_id="run-3").failed_hours == ()
    assert ledger_differences(fake.ledger, files) == []
