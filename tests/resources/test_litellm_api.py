"""``fetch_spend_logs_api`` against a fake LiteLLM proxy over real HTTP on 127.0.0.1."""

import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from resources.litellm_api import _api_time, _windows, fetch_spend_logs_api
from resources.litellm_api_client import LiteLLMApiError, RetryPolicy
from resources.spend_logs import SPEND_LOG_SCHEMA, raw_spend_from_logs
from tests.fake_litellm import (
    CONTENT_MARKERS,
    MASTER_KEY,
    SPEND_LOGS_PATH,
    FakeLiteLLM,
    spend_log_row,
)

UTC = timezone.utc
HOUR_10 = datetime(2026, 3, 1, 10, tzinfo=UTC)
HOUR_11 = HOUR_10 + timedelta(hours=1)
HOUR_12 = HOUR_10 + timedelta(hours=2)
# Backoff in milliseconds, so retry tests take a fraction of a second.
FAST = RetryPolicy(
    max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, retry_after_max_s=0.3, max_elapsed_s=5
)


def rows_in_hour(count: int, hour: datetime = HOUR_10, prefix: str = "req") -> list[dict]:
    step_ms = 3_600_000 / count
    return [
        spend_log_row(f"{prefix}-{i:05d}", hour + timedelta(milliseconds=int(i * step_ms)))
        for i in range(count)
    ]


def fetch(fake: FakeLiteLLM, start=HOUR_10, end=HOUR_11, **options):
    options.setdefault("retry", FAST)
    return fetch_spend_logs_api(fake.url, MASTER_KEY, start, end, **options)


def counters_add_up(result) -> bool:
    return result.rows_received == (
        result.table.num_rows + result.rows_outside_window + result.duplicate_rows
    )


# --- paging ---------------------------------------------------------------------------


def windows_asked(fake: FakeLiteLLM) -> dict[tuple[str, str], list[int]]:
    """The pages asked for each ``(start_date, end_date)``, in order of first request."""
    asked: dict[tuple[str, str], list[int]] = {}
    for request in fake.spend_log_requests():
        window = (request.params["start_date"], request.params["end_date"])
        asked.setdefault(window, []).append(int(request.params["page"]))
    return asked


def test_an_hour_over_the_count_cap_is_read_as_two_halves_with_exact_totals():
    rows = rows_in_hour(12_345)
    with FakeLiteLLM(rows) as fake:
        result = fetch(fake)
        asked = windows_asked(fake)
        served = fake.spend_log_requests()

    assert result.table.num_rows == 12_345
    assert sorted(result.table["request_id"].to_pylist()) == [r["request_id"] for r in rows]
    # The hour's first page says the total is capped: no further page of it is asked for.
    assert asked == {
        ("2026-03-01 10:00:00", "2026-03-01 11:00:00"): [1],
        ("2026-03-01 10:00:00", "2026-03-01 10:30:00"): list(range(1, 9)),  # 6,172 rows
        ("2026-03-01 10:30:00", "2026-03-01 11:00:00"): list(range(1, 9)),  # 6,173 rows
    }
    assert (result.windows, result.windows_split, result.narrowed_windows) == (1, 1, 2)
    assert result.pages == 17 and result.window_rereads == 0
    # The first page's 1,000 rows are kept, and found again by the first half.
    assert result.duplicate_rows == 1_000 and counters_add_up(result)
    assert {
        (r.params["page_size"], r.params["sort_by"], r.params["sort_order"]) for r in served
    } == {("1000", "startTime", "asc")}


def test_a_burst_is_narrowed_recursively_until_every_window_total_is_exact():
    # 25,000 rows: 5,000 spread over the hour, 11,000 in four seconds, 9,000 in 90 seconds.
    burst_at = HOUR_10 + timedelta(minutes=20, seconds=7)
    rows = (
        rows_in_hour(5_000, prefix="quiet")
        + [
            spend_log_row(f"burst-{i:05d}", burst_at + timedelta(microseconds=i * 360))
            for i in range(11_000)
        ]
        + [
            spend_log_row(f"wave-{i:05d}", HOUR_10 + timedelta(minutes=41, milliseconds=i * 10))
            for i in range(9_000)
        ]
    )
    with FakeLiteLLM(rows) as fake:
        result = fetch(fake)
        asked = windows_asked(fake)
        counted = {window: fake.rows_counted(*window) for window in asked}

    assert result.table.num_rows == 25_000 and counters_add_up(result)
    assert len(set(result.table["request_id"].to_pylist())) == 25_000
    paged = {window for window, pages in asked.items() if pages != [1] or counted[window] == 0}
    capped = set(asked) - paged
    # Every window read to its end had an exact total; every capped one was split, not paged.
    assert all(counted[window] <= 10_000 for window in paged)
    assert all(counted[window] > 10_000 for window in capped)
    assert result.windows_split == len(capped) and result.narrowed_windows == 2 * len(capped)
    # The windows read to their end tile the hour: each starts where another ends.
    starts, ends = sorted(w[0] for w in paged), sorted(w[1] for w in paged)
    assert starts[0] == "2026-03-01 10:00:00" and ends[-1] == "2026-03-01 11:00:00"
    assert starts[1:] == ends[:-1]


def test_more_rows_than_the_cap_in_one_second_is_an_error_naming_that_second():
    second = HOUR_10 + timedelta(minutes=15, seconds=7)
    rows = [
        spend_log_row(f"same-second-{i:05d}", second + timedelta(microseconds=i * 99))
        for i in range(10_001)
    ]
    with FakeLiteLLM(rows) as fake:
        with pytest.raises(LiteLLMApiError) as failed:
            fetch(fake)
        asked = windows_asked(fake)
        capped = [pages for window, pages in asked.items() if fake.rows_counted(*window) > 10_000]

    message = str(failed.value)
    assert "more than 10,000" in message and "2026-03-01 10:15:07 UTC" in message
    assert "LITELLM_DATABASE_URL" in message and MASTER_KEY not in message
    # Narrowed to that one second, each capped window asked for its first page only.
    assert ("2026-03-01 10:15:07", "2026-03-01 10:15:08") in asked
    assert capped and all(pages == [1] for pages in capped)


def test_rows_written_while_paging_that_pass_the_cap_narrow_the_window():
    rows = rows_in_hour(9_990)
    more = [
        spend_log_row(f"more-{n:02d}", HOUR_10 + timedelta(minutes=50, seconds=n))
        for n in range(20)
    ]

    def write_more_rows(fake: FakeLiteLLM) -> None:
        fake.add_rows(more)

    with FakeLiteLLM(rows) as fake:
        fake.inject("ok", write_more_rows)  # page 2 onwards: 10,010 rows, total capped
        result = fetch(fake)

    assert result.table.num_rows == 10_010
    assert result.windows_split == 1 and result.narrowed_windows == 2
    assert counters_add_up(result)


def test_one_request_window_per_utc_hour_with_the_api_inclusive_end():
    with FakeLiteLLM(rows_in_hour(10) + rows_in_hour(10, HOUR_11, "b")) as fake:
        result = fetch(fake, HOUR_10, HOUR_12)
        windows = {
            (r.params["start_date"], r.params["end_date"]) for r in fake.spend_log_requests()
        }

    assert windows == {
        ("2026-03-01 10:00:00", "2026-03-01 11:00:00"),
        ("2026-03-01 11:00:00", "2026-03-01 12:00:00"),
    }
    assert result.windows == 2 and result.table.num_rows == 20


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (HOUR_10, HOUR_11, ["10:00:00.000", "10:59:59.999"]),
        (HOUR_11, HOUR_12, ["11:00:00.000", "11:59:59.999"]),
        (HOUR_10, HOUR_12, ["10:00:00.000", "10:59:59.999", "11:00:00.000", "11:59:59.999"]),
    ],
)
def test_rows_on_hour_boundaries_go_to_their_own_window(start, end, expected):
    moments = ["09:59:59.999", "10:00:00.000", "10:59:59.999", "11:00:00.000", "11:59:59.999"]
    moments.append("12:00:00.000")
    rows = [
        spend_log_row(moment, datetime.fromisoformat(f"2026-03-01T{moment}+00:00"))
        for moment in moments
    ]
    with FakeLiteLLM(rows) as fake:
        result = fetch(fake, start, end)

    assert result.table["request_id"].to_pylist() == expected
    # The API's end_date is inclusive, so each window also got the row at its end: dropped.
    assert result.rows_outside_window == result.windows
    assert counters_add_up(result)


def test_a_window_not_on_whole_seconds_is_asked_for_wide_and_cut_exactly():
    start = HOUR_10 + timedelta(minutes=30, milliseconds=500)
    end = HOUR_10 + timedelta(minutes=45, milliseconds=250)
    rows = [
        spend_log_row(str(i), start + timedelta(milliseconds=offset))
        for i, offset in enumerate((-1, 0, 900_000 - 251, 900_000 - 250))
    ]
    with FakeLiteLLM(rows) as fake:
        result = fetch(fake, start, end)
        (request, *_) = fake.spend_log_requests()

    assert (request.params["start_date"], request.params["end_date"]) == (
        "2026-03-01 10:30:00",
        "2026-03-01 10:45:01",
    )
    assert result.table["request_id"].to_pylist() == ["1", "2"]
    assert result.rows_outside_window == 2


def test_windows_and_api_times():
    assert list(_windows(HOUR_10 + timedelta(minutes=20), HOUR_12, timedelta(hours=1))) == [
        (HOUR_10 + timedelta(minutes=20), HOUR_11),
        (HOUR_11, HOUR_12),
    ]
    assert list(_windows(HOUR_10, HOUR_10, timedelta(hours=1))) == []
    assert _api_time(HOUR_10, round_up=True) == "2026-03-01 10:00:00"
    assert _api_time(HOUR_10 + timedelta(microseconds=1), round_up=True) == "2026-03-01 10:00:01"


def test_a_row_written_while_paging_is_found_by_reading_the_window_again():
    rows = rows_in_hour(2_500)
    late = spend_log_row("late-row", HOUR_10 + timedelta(minutes=1))  # inside page 1

    def write_late_row(fake: FakeLiteLLM) -> None:
        fake.add_rows([late])

    with FakeLiteLLM(rows) as fake:
        fake.inject("ok", write_late_row)  # after page 1 was served: offsets shift by one
        result = fetch(fake)

    assert result.table.num_rows == 2_501
    assert "late-row" in result.table["request_id"].to_pylist()
    assert result.window_rereads == 1 and result.duplicate_rows >= 1
    assert counters_add_up(result)


def test_a_window_that_stays_short_of_its_total_is_an_error():
    rows = rows_in_hour(1_500)
    late = [spend_log_row(f"late-{n}", HOUR_10 + timedelta(seconds=n)) for n in range(3)]

    def write_late_row(fake: FakeLiteLLM) -> None:
        fake.add_rows([late.pop()])

    with FakeLiteLLM(rows) as fake:
        # Each read's page 2 comes after yet another row was written before its offset.
        fake.inject("ok", write_late_row, "ok", "ok", write_late_row, "ok", "ok", write_late_row)
        with pytest.raises(LiteLLMApiError, match="skipped rows of 2026-03-01 10:00:00"):
            fetch(fake, max_reads_per_window=3)


def test_an_endless_window_stops_at_the_page_limit():
    with FakeLiteLLM(rows_in_hour(30)) as fake:
        with pytest.raises(LiteLLMApiError, match="after 2 pages of 10"):
            fetch(fake, page_size=10, max_pages_per_window=2)


# --- retries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "timeout"),
    [
        (("500", "500", "503"), 5.0),
        (("429",), 5.0),
        (("hang",), 0.3),
    ],
    ids=["5xx", "429", "timeout"],
)
def test_retries_then_succeeds(faults, timeout):
    with FakeLiteLLM(rows_in_hour(1_200), hang_s=3.0) as fake:
        fake.inject(*faults)
        result = fetch(fake, timeout=timeout)
        served = fake.spend_log_requests()

    assert result.retries == len(faults)
    assert result.table.num_rows == 1_200 and result.pages == 3
    assert len(served) == 3 + len(faults)


def test_retry_after_is_honoured_up_to_its_cap():
    with FakeLiteLLM(rows_in_hour(5), retry_after="30") as fake:
        fake.inject("429")
        result = fetch(fake)
        refused, retried, *_ = fake.spend_log_requests()

    assert result.retries == 1 and result.table.num_rows == 5
    assert retried.at - refused.at >= FAST.retry_after_max_s  # 30 s asked, capped at 0.3 s


def test_gives_up_after_bounded_attempts_with_the_last_error():
    with FakeLiteLLM(rows_in_hour(5)) as fake:
        fake.inject(*["500"] * 10)
        began = time.monotonic()
        with pytest.raises(LiteLLMApiError) as caught:
            fetch(fake)
        served = fake.spend_log_requests()
        endpoint = f"{fake.url}{SPEND_LOGS_PATH}"

    assert len(served) == FAST.max_attempts
    assert time.monotonic() - began < 2
    message = str(caught.value)
    assert f"{endpoint} still failing after 4 attempts" in message
    assert "HTTP 500: injected failure" in message


def test_gives_up_on_a_proxy_that_does_not_listen():
    with FakeLiteLLM() as fake:
        url = fake.url  # a port nobody listens on once the fake has stopped
    with pytest.raises(LiteLLMApiError, match="ConnectError"):
        fetch_spend_logs_api(url, MASTER_KEY, HOUR_10, HOUR_11, retry=FAST)


def test_retry_total_time_is_bounded():
    slow = RetryPolicy(max_attempts=50, backoff_base_s=0.05, backoff_max_s=0.05, max_elapsed_s=0.3)
    with FakeLiteLLM(rows_in_hour(5)) as fake:
        fake.inject(*["503"] * 50)
        began = time.monotonic()
        with pytest.raises(LiteLLMApiError, match="still failing after"):
            fetch(fake, retry=slow)
    assert time.monotonic() - began < 1.0


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status", "reason"),
    [
        ("sk-wrong-key-0123456789-qrst", 401, "Invalid proxy server token passed"),
        ("sk-team-member-key-wxyz", 403, "user not allowed to access this route"),
    ],
)
def test_a_rejected_key_is_a_clear_error_without_the_key(key, status, reason):
    with FakeLiteLLM(rows_in_hour(5), forbidden_keys=["sk-team-member-key-wxyz"]) as fake:
        with pytest.raises(LiteLLMApiError) as caught:
            fetch_spend_logs_api(fake.url, key, HOUR_10, HOUR_11, retry=FAST)
        served = fake.spend_log_requests()
        endpoint = f"{fake.url}{SPEND_LOGS_PATH}"

    message = str(caught.value)
    assert message.startswith(f"LiteLLM rejected LITELLM_MASTER_KEY ({status}) at {endpoint}: ")
    assert reason in message
    assert key not in message and key[-4:] not in message  # LiteLLM echoes the last four
    assert hashlib.sha256(key.encode()).hexdigest() not in message  # and the hash
    assert len(served) == 1  # not retried


def test_a_proxy_without_database_says_so():
    with FakeLiteLLM(has_database=False) as fake:
        with pytest.raises(LiteLLMApiError, match="has no database, so no spend logs to read"):
            fetch(fake)


def test_another_client_error_names_status_and_body():
    with FakeLiteLLM(rows_in_hour(5)) as fake:
        with pytest.raises(LiteLLMApiError, match=r"answered HTTP 404 .*Not Found"):
            fetch_spend_logs_api(f"{fake.url}/wrong-prefix", MASTER_KEY, HOUR_10, HOUR_11)


def test_the_key_travels_in_the_authorization_header_only():
    with FakeLiteLLM(rows_in_hour(5)) as fake:
        fetch(fake)
        served = fake.spend_log_requests()
    assert served and all(r.has_authorization for r in served)
    assert all(MASTER_KEY not in r.query for r in served)


def test_bad_arguments_are_refused_before_any_request():
    with pytest.raises(ValueError, match="page_size"):
        fetch_spend_logs_api("http://127.0.0.1:9", MASTER_KEY, HOUR_10, HOUR_11, page_size=1001)
    with pytest.raises(LiteLLMApiError, match="http:// or https://"):
        fetch_spend_logs_api("ftp://user:pw@host", MASTER_KEY, HOUR_10, HOUR_11)


# --- what reaches the table -----------------------------------------------------------


def test_only_allow_listed_values_reach_the_table():
    rows = [
        spend_log_row("a", HOUR_10 + timedelta(minutes=1)),
        spend_log_row("b", HOUR_10 + timedelta(minutes=2), metadata_as_text=True, status="failure"),
        spend_log_row("c", HOUR_10 + timedelta(minutes=3), user="end-user-9", tags_as_text=False),
    ]
    with FakeLiteLLM(rows) as fake:
        result = fetch(fake)

    table = result.table
    assert table.schema == SPEND_LOG_SCHEMA
    text = json.dumps(table.to_pylist(), default=str)
    for marker in CONTENT_MARKERS:
        assert marker not in text
    by_id = {row["request_id"]: row for row in table.to_pylist()}
    assert by_id["a"]["key_alias"] == "billing-service-key"
    assert by_id["b"]["team_alias"] == "billing"  # from metadata sent as JSON text
    assert by_id["a"]["user_id"] == "user-7"  # "user" empty: the key's user
    assert by_id["c"]["user_id"] == "end-user-9"
    assert {row["request_tags"] for row in by_id.values()} == {'["x-department: finance"]'}


@pytest.mark.parametrize("time_format", ["fastapi", "z", "naive"])
def test_start_times_in_any_iso_form_are_utc_microseconds(time_format):
    moment = HOUR_10 + timedelta(minutes=59, seconds=59, milliseconds=999)
    row = spend_log_row("t", moment, duration_ms=1, time_format=time_format)
    with FakeLiteLLM([row]) as fake:
        table = fetch(fake).table

    assert table["start_time"].to_pylist() == [moment]
    assert table["end_time"].to_pylist() == [moment + timedelta(milliseconds=1)]


def test_an_empty_range_is_an_empty_table_of_the_schema():
    with FakeLiteLLM() as fake:
        result = fetch(fake)
    assert result.table.schema == SPEND_LOG_SCHEMA and result.table.num_rows == 0
    assert result.pages == 1 and result.metadata()["api_rows"] == 0


def test_raw_spend_rows_carry_exact_costs_and_tags():
    spends = [0.1, 0.2, 0.00017999999999999998]
    rows = [
        spend_log_row(f"r{i}", HOUR_10 + timedelta(minutes=i), spend=spend, tags=tags)
        for i, (spend, tags) in enumerate(
            zip(
                spends,
                [("x-team: billing",), (), ("department:research", "x-agent: bot")],
                strict=True,
            )
        )
    ]
    with FakeLiteLLM(rows) as fake:
        raw = raw_spend_from_logs(fetch(fake).table)

    by_id = {row["request_id"]: row for row in raw.to_pylist()}
    assert by_id["r0"]["cost"] + by_id["r1"]["cost"] == Decimal("0.3")
    assert by_id["r2"]["cost"] == Decimal("0.000180000000000000")
    assert by_id["r2"]["request_tags"] == ["department:research", "x-agent: bot"]
    assert by_id["r1"]["request_tags"] == []
    assert by_id["r0"]["usage_hour"] == HOUR_10


# --- the fake itself answers as LiteLLM does ------------------------------------------


def test_fake_refuses_what_litellm_refuses():
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    window = {"start_date": "2026-03-01 10:00:00", "end_date": "2026-03-01 11:00:00"}
    with FakeLiteLLM(rows_in_hour(3)) as fake:
        url = f"{fake.url}{SPEND_LOGS_PATH}"
        too_big = httpx.get(url, params={**window, "page_size": "1001"}, headers=auth)
        bad_date = httpx.get(url, params={**window, "start_date": "2026-03-01T10:00"}, headers=auth)
        no_key = httpx.get(url, params=window)
        newest_first = httpx.get(url, params={**window, "sort_order": "desc"}, headers=auth)

    assert too_big.status_code == 422 and too_big.json()["detail"][0]["loc"] == [
        "query",
        "page_size",
    ]
    assert (
        bad_date.status_code == 400 and "Invalid date format" in bad_date.json()["error"]["message"]
    )
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "auth_error"
    ids = [row["request_id"] for row in newest_first.json()["data"]]
    assert ids == ["req-00002", "req-00001", "req-00000"]


@pytest.mark.parametrize(("count", "capped"), [(10_000, False), (10_001, True)])
def test_fake_counts_to_the_cap_and_serves_every_row_as_litellm_does(count, capped):
    # LiteLLM 1.106.2: SELECT count(*) FROM (… LIMIT 10001); capped when that finds 10,001,
    # and the listing's OFFSET is not limited by the cap.
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    window = {"start_date": "2026-03-01 10:00:00", "end_date": "2026-03-01 11:00:00"}
    with FakeLiteLLM(rows_in_hour(count)) as fake:
        url = f"{fake.url}{SPEND_LOGS_PATH}"
        last = httpx.get(
            url,
            params={**window, "page": "11", "page_size": "1000", "sort_order": "asc"},
            headers=auth,
        ).json()

    assert (last["total"], last["total_is_capped"], last["total_pages"]) == (10_000, capped, 10)
    assert len(last["data"]) == count - 10_000
