from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.cbf_rows import cbf_rows
from resources.cbf import MAX_TAG_VALUE, format_hour, tag_value
from resources.cbf_validation import hour_problems, tag_conflicts, validate_cbf_hours
from tests.cbf_rows import AGENT_DIMENSIONS, row, spend_table

H0 = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
H1 = H0 + timedelta(hours=1)


@pytest.fixture
def rows() -> list[dict]:
    """Two valid rows of hour H0; tests mutate one value."""
    return [row(H0, "bot"), row(H0, "mailer")]


def only_problem(rows, *fragments: str) -> str:
    problems = hour_problems(H0, rows)
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], problems[0]
    return problems[0]


# --- cbf_rows always produces valid rows --------------------------------------------------

MONTH_END = datetime(2025, 1, 31, 22, tzinfo=timezone.utc)  # hours cross into February
SPECIAL_NAMES = ["", " \t", "a/b", "%2F", "x\n", "x", "y" * 300, "z" * 255 + " \x00tail"]
names = st.none() | st.text(max_size=300) | st.sampled_from(SPECIAL_NAMES)
spend_rows = st.fixed_dictionaries(
    {
        "usage_hour": st.integers(0, 3).map(lambda i: MONTH_END + timedelta(hours=i)),
        "department": names,
        "team": names,
        "agent": names,
        "cost": st.decimals(
            min_value=0,
            max_value=Decimal("99999999999999999999.999999999999999999"),
            places=18,
            allow_nan=False,
        ),
        "total_tokens": st.integers(0, 2**62),
        "requests": st.integers(1, 2**40),
    }
)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(spend_rows, max_size=30))
def test_cbf_rows_output_always_validates(spend):
    out = cbf_rows(spend_table(spend), AGENT_DIMENSIONS).to_pylist()
    hours = {
        h: [r for r in out if r["time/usage_start"] == format_hour(h)]
        for h in {s["usage_hour"] for s in spend}
    }
    assert sum(map(len, hours.values())) == len(out)
    assert validate_cbf_hours(hours) == {}


# --- one rule at a time -------------------------------------------------------------------


def test_baseline_rows_are_clean(rows):
    assert hour_problems(H0, rows) == []
    assert validate_cbf_hours({H0: rows, H1: [row(H1, "bot")]}) == {}
    assert hour_problems(H0, []) == []


@pytest.mark.parametrize(
    "column", ["time/usage_start", "lineitem/type", "resource/service", "resource/id", "cost/cost"]
)
def test_required_column_missing_or_empty(rows, column):
    del rows[1][column]
    only_problem(rows, "row 2", f"required column {column!r} is missing")
    rows[1][column] = " "
    only_problem(rows, "row 2", repr(column), "is empty")


@pytest.mark.parametrize("value", [None, 5, 1.5, Decimal("0.25")])
@pytest.mark.parametrize("column", ["cost/cost", "resource/tag:team", "lineitem/description"])
def test_values_must_be_strings(rows, column, value):
    rows[0][column] = value
    only_problem(rows, "row 1", repr(column), type(value).__name__, "not a string")


@pytest.mark.parametrize(
    "cost",
    ["1e-5", "1E+3", "+1", "01", "-01.5", "NaN", "Infinity", " 1", "1.", ".5", "1,5", "1\n", "١"],
)
def test_cost_must_be_fixed_point(rows, cost):
    rows[1]["cost/cost"] = cost
    only_problem(rows, "row 2", "'cost/cost'", repr(cost), "fixed-point")


@pytest.mark.parametrize("cost", ["0", "-3.25", "123456789012345678.000000000000000001", "0.5"])
def test_cost_accepts_fixed_point(rows, cost):
    rows[1]["cost/cost"] = cost
    assert hour_problems(H0, rows) == []


@pytest.mark.parametrize(
    ("amount", "ok"),
    [("", True), ("0", True), ("12.5", True), ("-1", False), ("1e3", False), ("007", False)],
)
def test_usage_amount_when_present(rows, amount, ok):
    rows[0]["usage/amount"] = amount
    if ok:
        assert hour_problems(H0, rows) == []
    else:
        only_problem(rows, "row 1", "'usage/amount'", repr(amount), "non-negative")


@pytest.mark.parametrize(
    "start", [format_hour(H1), "2025-03-01T10:00:00+00:00", "2025-03-01T10:30:00Z"]
)
def test_usage_start_is_the_hour(rows, start):
    rows[1]["time/usage_start"] = start
    only_problem(rows, "row 2", "'time/usage_start'", repr(start), repr(format_hour(H0)))


def test_lineitem_type(rows):
    rows[0]["lineitem/type"], rows[0]["cost/cost"] = "Credit", "-1.5"
    assert hour_problems(H0, rows) == []
    rows[1]["lineitem/type"] = "usage"
    only_problem(rows, "row 2", "'lineitem/type'", "'usage'", "line item type")


@pytest.mark.parametrize("key", ["bad key", "", "k" * 129, "é", "a/b"])
def test_tag_keys_checked_once_per_hour(rows, key):
    for r in rows:
        r[f"resource/tag:{key}"] = "v"
    only_problem(rows, f"column {f'resource/tag:{key}'!r}", "tag key")


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        ("", "empty"),
        ("a\nb", "control"),
        ("a\x85", "control"),
        (" a", "whitespace"),
        ("a ", "whitespace"),
        ("x" * (MAX_TAG_VALUE + 1), "longer than 256"),
    ],
)
def test_tag_values(rows, value, fault):
    rows[1]["resource/tag:agent"] = value
    problem = only_problem(rows, "row 2", "'resource/tag:agent'", fault)
    assert repr(value)[:20] in problem


def test_whatever_tag_value_produces_is_a_valid_tag_value(rows):
    for value in ["x" * 300, " a\t\x00b ", "a  b", None, "ünï"]:
        rows[0]["resource/tag:agent"] = tag_value(value)
        assert hour_problems(H0, rows) == []


def test_duplicate_resource_id_in_an_hour(rows):
    rows.append(row(H0, "bot", cost="1"))
    only_problem(rows, "row 3", "'resource/id'", "'litellm/finance/ap/bot'", "duplicates row 1")


def test_problems_are_capped_and_values_shortened(rows):
    many = [row(H0, f"a{i}", cost="1e" + "9" * 100) for i in range(15)]
    problems = hour_problems(H0, many)
    assert len(problems) == 11 and problems[-1] == "… and 5 more"
    assert problems[0].startswith("row 1, column 'cost/cost': '1e999")
    assert "…" in problems[0] and len(problems[0]) < 200
    assert validate_cbf_hours({H0: many})[H0] == problems


# --- tag conflicts ------------------------------------------------------------------------


def test_tag_conflicts_across_hours():
    renamed = {**row(H1, "bot"), "resource/tag:team": "ar"}
    untagged = {
        k: v for k, v in row(H1 + timedelta(hours=1), "bot").items() if k != "resource/tag:team"
    }
    hours = {  # not in hour order: first-seen follows hour order
        H1: [row(H1, "mailer"), renamed],
        H1 + timedelta(hours=1): [untagged],
        H0: [row(H0, "bot")],
    }
    conflicts = tag_conflicts(hours)
    assert list(conflicts) == [H1, H1 + timedelta(hours=1)]
    [problem] = conflicts[H1]
    for fragment in [
        "row 2",
        "'litellm/finance/ap/bot'",
        "{'team': 'ar'}",
        "{'team': 'ap'}",
        "2025-03-01T10:00:00Z row 1",
    ]:
        assert fragment in problem, problem
    assert "has tags {} but {'team': 'ap'}" in conflicts[H1 + timedelta(hours=1)][0]
    assert validate_cbf_hours(hours) == conflicts


def test_tag_conflict_within_an_hour_is_also_a_duplicate(rows):
    rows.append({**row(H0, "bot"), "resource/tag:department": "sales"})
    conflicts = tag_conflicts({H0: rows})[H0]
    assert len(conflicts) == 1 and "row 3" in conflicts[0]
    merged = validate_cbf_hours({H0: rows})[H0]
    assert merged == [*hour_problems(H0, rows), *conflicts] and "duplicates row 1" in merged[0]
