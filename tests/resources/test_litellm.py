from datetime import datetime, timezone

import dagster as dg
import pytest

from assets.schemas import RAW_SPEND_SCHEMA
from resources.litellm import LiteLLMSpendLogsResource

START = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
END = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def test_no_source_configured_is_an_empty_hour_that_says_so():
    logs = LiteLLMSpendLogsResource().fetch_spend_logs(START, END)
    assert logs.source == "none"
    assert logs.table.num_rows == 0 and logs.table.schema == RAW_SPEND_SCHEMA
    assert "set LITELLM_DATABASE_URL" in logs.note


@pytest.mark.parametrize(
    ("settings", "source"),
    [
        ({"database_url": "postgresql://127.0.0.1/litellm"}, "database"),
        ({"proxy_url": "http://127.0.0.1:4000", "master_key": "sk-x"}, "api"),
        (
            {
                "database_url": "postgresql://127.0.0.1/l",
                "proxy_url": "http://127.0.0.1:4000",
                "master_key": "k",
            },
            "database",
        ),
    ],
)
def test_a_configured_source_is_never_silently_ignored(settings, source):
    resource = LiteLLMSpendLogsResource(**settings)
    assert resource.source == source
    with pytest.raises(dg.Failure, match=f"LiteLLM {source} source is configured"):
        resource.fetch_spend_logs(START, END)


def test_a_proxy_url_without_master_key_is_not_a_source():
    assert LiteLLMSpendLogsResource(proxy_url="http://127.0.0.1:4000").source == "none"
