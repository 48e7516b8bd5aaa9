from datetime import datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pytest

from resources.litellm import LiteLLMSpendLogsResource
from resources.raw_spend import RAW_SPEND_SCHEMA
from tests.fake_litellm import MASTER_KEY, FakeLiteLLM, spend_log_row

START = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
END = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
CLOSED_DB = "postgresql://spend:secret-pw@127.0.0.1:9/litellm"


def test_no_source_configured_is_an_empty_hour_that_says_so():
    logs = LiteLLMSpendLogsResource().fetch_spend_logs(START, END)
    assert logs.source == "none"
    assert logs.table.num_rows == 0 and logs.table.schema == RAW_SPEND_SCHEMA
    assert "set LITELLM_DATABASE_URL" in logs.note


@pytest.mark.parametrize(
    ("settings", "source"),
    [
        ({"database_url": CLOSED_DB}, "database"),
        ({"proxy_url": "http://127.0.0.1:9", "master_key": "sk-x"}, "api"),
        (
            {"database_url": CLOSED_DB, "proxy_url": "http://127.0.0.1:9", "master_key": "k"},
            "database",
        ),
        ({"proxy_url": "http://127.0.0.1:9"}, "none"),  # no key: not a usable source
    ],
)
def test_the_database_wins_and_a_proxy_needs_its_key(settings, source):
    assert LiteLLMSpendLogsResource(**settings).source == source


def test_an_unreachable_database_fails_the_run_without_showing_the_password():
    with pytest.raises(dg.Failure) as failed:
        LiteLLMSpendLogsResource(database_url=CLOSED_DB).fetch_spend_logs(START, END)
    assert "127.0.0.1:9" in failed.value.description
    assert "secret-pw" not in failed.value.description


def test_the_api_source_reads_the_window_into_raw_rows():
    rows = [
        spend_log_row("r1", START + timedelta(minutes=5), spend=0.25, call_id="c1"),
        spend_log_row("r2", END - timedelta(milliseconds=1), spend=0.5, call_id="c2"),
        spend_log_row("late", END, spend=9.0, call_id="c3"),  # the next window's
    ]
    with FakeLiteLLM(rows) as fake:
        resource = LiteLLMSpendLogsResource(proxy_url=fake.url, master_key=MASTER_KEY)
        logs = resource.fetch_spend_logs(START, END)
    assert logs.source == "api" and logs.table.schema == RAW_SPEND_SCHEMA
    assert sorted(logs.table["litellm_call_id"].to_pylist()) == ["c1", "c2"]
    assert sum(logs.table["cost"].to_pylist()) == Decimal("0.75")
    assert logs.details["api_windows"] == 2  # one request window per hour


def test_a_rejected_master_key_fails_the_run_without_showing_it():
    with FakeLiteLLM([]) as fake:
        resource = LiteLLMSpendLogsResource(proxy_url=fake.url, master_key="sk-wrong-key-1234")
        with pytest.raises(dg.Failure) as failed:
            resource.fetch_spend_logs(START, END)
    assert "401" in failed.value.description
    assert "sk-wrong-key-1234" not in failed.value.description
