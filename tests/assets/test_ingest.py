from assets.ingest import spend_log_defects
from tests.samples import EMPTY, raw_row, raw_table


def test_known_litellm_defects_are_counted():
    logs = raw_table(
        raw_row("a"),
        raw_row("a"),  # the same request logged twice
        raw_row("b", request_id=None),
        raw_row("c", request_id="shared"),
        raw_row("d", request_id="shared"),  # two calls under one request id
        raw_row("e", cost="0", total_tokens=40, model="openai/gpt-4o-mini"),
        raw_row("f", cost="0", total_tokens=40, status="failure"),  # failures may be free
        raw_row("g", litellm_call_id=None),
    )
    assert spend_log_defects(logs) == {
        "missing_request_id": 1,
        "missing_call_id": 1,
        "duplicate_rows": 1,
        "colliding_request_ids": 1,
        "zero_cost_with_tokens": 1,
        "zero_cost_models": ["openai/gpt-4o-mini"],
    }


def test_clean_or_empty_logs_have_no_defects():
    assert not any(spend_log_defects(EMPTY).values())
    assert not any(spend_log_defects(raw_table(raw_row("a"), raw_row("b"))).values())
