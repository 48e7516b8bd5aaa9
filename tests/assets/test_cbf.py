import csv
import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from assets.cbf_rows import cbf_rows
from assets.schemas import aggregate_schema
from resources.cbf import (
    CBF_COLUMNS,
    cbf_hour_path,
    format_cost,
    format_hour,
    read_cbf_csv,
    resource_id,
    tag_value,
    write_cbf_csv,
)

H0 = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
H1 = H0 + timedelta(hours=1)


def spend_table(rows: list[dict]) -> pa.Table:
    schema = aggregate_schema(["department", "team", "agent"])  # spend_by_agent
    defaults = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "requests": 1,
        "failed_requests": 0,
        "latency_p50_ms": 1.0,
        "latency_p95_ms": 2.0,
    }
    full = [{**defaults, **r} for r in rows]
    return pa.Table.from_pylist(full, schema=schema)


# --- format_cost -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0"), "0"),
        (Decimal("0E-18"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("-0.000000000000000000"), "0"),
        (Decimal("1.500000000000000000"), "1.5"),
        (Decimal("2E+3"), "2000"),
        (Decimal("0.000000000000000001"), "0.000000000000000001"),
        (Decimal("1E-18"), "0.000000000000000001"),
        *[
            (Decimal(text), text)
            for text in [
                "12345678901234567890.123456789012345678",
                "99999999999999999999.999999999999999999",
            ]
        ],
        (Decimal("-3.25"), "-3.25"),
        (7, "7"),
    ],
)
def test_format_cost_fixed_point(value, text):
    assert format_cost(value) == text
    assert "e" not in text.lower()
    assert Decimal(text) == value


def test_format_cost_tiny_float_derived_value_has_no_exponent():
    # LiteLLM spend of 1.9999999999999998e-05 (float repr): 21 fractional digits.
    text = format_cost(Decimal(repr(1.9999999999999998e-05)))
    assert text == "0.00002"
    assert "e" not in text.lower()
    # At the lake's scale (18) the value is exactly what DECIMAL(38, 18) would hold.
    at_scale = Decimal("0.000019999999999999998").quantize(Decimal("1E-18"))
    assert Decimal(text) == at_scale
    # A value already at scale 18 round-trips exactly.
    exact = Decimal("0.000019999999999999")
    assert format_cost(exact) == "0.000019999999999999"


def test_format_cost_round_trips_every_scale_18_value():
    for digits in ["1", "123456789", "100000000000000000000000000000000000"]:
        for scale in range(0, 19):
            value = Decimal(digits).scaleb(-scale)
            assert Decimal(format_cost(value)) == value


@pytest.mark.parametrize("bad", [1.5, "1.5", None, True])
def test_format_cost_refuses_non_decimals(bad):
    with pytest.raises(TypeError):
        format_cost(bad)


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_format_cost_refuses_non_finite(bad):
    with pytest.raises(ValueError):
        format_cost(bad)


# --- format_hour -------------------------------------------------------------------------


def test_format_hour():
    assert format_hour(H0) == "2025-03-01T10:00:00Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_hour(datetime(2025, 3, 1, 12, tzinfo=plus_two)) == "2025-03-01T10:00:00Z"


@pytest.mark.parametrize(
    "bad",
    [
        datetime(2025, 3, 1, 10, 30, tzinfo=timezone.utc),
        datetime(2025, 3, 1, 10, 0, 1, tzinfo=timezone.utc),
        datetime(2025, 3, 1, 10, 0, 0, 1, tzinfo=timezone.utc),
        datetime(2025, 3, 1, 10, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2025, 3, 1, 10),  # naive
    ],
)
def test_format_hour_rejects_unaligned_or_naive(bad):
    with pytest.raises(ValueError):
        format_hour(bad)


# --- resource ids and tags ---------------------------------------------------------------


def test_resource_id_is_readable():
    assert resource_id("finance", "ap", "invoice-bot") == "litellm/finance/ap/invoice-bot"


def test_resource_id_never_collides():
    atoms = ["a", "b", "a/b", "a%2Fb", "%", "%25", "/", "", "a b", "a%20b", "é", "%C3%A9"]
    triples = list(itertools.product(atoms, repeat=3))
    ids = {resource_id(*t) for t in triples}
    assert len(ids) == len(triples)
    # ids always have exactly four "/"-separated parts, so they cannot be the empty-hour id
    assert all(len(i.split("/")) == 4 for i in ids)


def test_tag_value_cleaning():
    assert tag_value(None) == "unattributed"
    assert tag_value("") == "unattributed"
    assert tag_value("  \t\n ") == "unattributed"
    assert tag_value(" Finance\r\nOps\x00 ") == "Finance Ops"
    assert tag_value("x" * 300) == "x" * 256
    assert tag_value("ünïcode ok") == "ünïcode ok"


# --- cbf_rows ----------------------------------------------------------------------------


def test_cbf_rows_strings_sums_and_order():
    table = spend_table(
        [
            # deliberately unsorted input
            {
                "usage_hour": H1,
                "department": "finance",
                "team": "ap",
                "agent": "bot",
                "cost": Decimal("0.000019999999999999"),
                "total_tokens": 10,
                "requests": 2,
            },
            {
                "usage_hour": H0,
                "department": "sales",
                "team": "emea",
                "agent": "mailer",
                "cost": Decimal("1.25"),
                "total_tokens": 1000,
                "requests": 1,
            },
            {
                "usage_hour": H0,
                "department": "finance",
                "team": "ap",
                "agent": "bot",
                "cost": Decimal("0"),
                "total_tokens": 5,
                "requests": 1,
            },
            # values that clean to the same tags as the row above are summed into it
            {
                "usage_hour": H0,
                "department": " finance ",
                "team": "ap",
                "agent": "bot\n",
                "cost": Decimal("0.5"),
                "total_tokens": 7,
                "requests": 3,
            },
            {
                "usage_hour": H0,
                "department": None,
                "team": "",
                "agent": None,
                "cost": Decimal("123456789012345678.000000000000000001"),
                "total_tokens": 1,
                "requests": 1,
            },
        ]
    )
    out = cbf_rows(table)
    assert out.column_names == CBF_COLUMNS
    assert all(pa.types.is_string(t) for t in out.schema.types)
    rows = out.to_pylist()
    assert [(r["time/usage_start"], r["resource/id"]) for r in rows] == [
        ("2025-03-01T10:00:00Z", "litellm/finance/ap/bot"),
        ("2025-03-01T10:00:00Z", "litellm/sales/emea/mailer"),
        ("2025-03-01T10:00:00Z", "litellm/unattributed/unattributed/unattributed"),
        ("2025-03-01T11:00:00Z", "litellm/finance/ap/bot"),
    ]
    first = rows[0]
    assert first == {
        "time/usage_start": "2025-03-01T10:00:00Z",
        "lineitem/type": "Usage",
        "lineitem/description": "LiteLLM spend: 4 requests",
        "resource/service": "LiteLLM",
        "resource/id": "litellm/finance/ap/bot",
        "usage/amount": "12",
        "usage/units": "tokens",
        "cost/cost": "0.5",
        "resource/tag:department": "finance",
        "resource/tag:team": "ap",
        "resource/tag:agent": "bot",
    }
    assert rows[1]["lineitem/description"] == "LiteLLM spend: 1 request"
    assert rows[2]["cost/cost"] == "123456789012345678.000000000000000001"
    assert rows[3]["cost/cost"] == "0.000019999999999999"
    assert sum(Decimal(r["cost/cost"]) for r in rows) == sum(table["cost"].to_pylist())
    assert sum(int(r["usage/amount"]) for r in rows) == sum(table["total_tokens"].to_pylist())


def test_cbf_rows_keeps_zero_cost_rows():
    out = cbf_rows(
        spend_table(
            [
                {
                    "usage_hour": H0,
                    "department": "d",
                    "team": "t",
                    "agent": "a",
                    "cost": Decimal(0),
                    "total_tokens": 0,
                    "requests": 1,
                }
            ]
        )
    ).to_pylist()
    assert len(out) == 1 and out[0]["cost/cost"] == "0"


def test_cbf_rows_tags_are_constant_per_resource_id():
    names = ["x", "x/y", "x%2Fy", " x", "x\t", "", None]
    table = spend_table(
        [
            {
                "usage_hour": H0 + timedelta(hours=i % 3),
                "department": d,
                "team": t,
                "agent": "a",
                "cost": Decimal(1),
                "total_tokens": 1,
            }
            for i, (d, t) in enumerate(itertools.product(names, repeat=2))
        ]
    )
    rows = cbf_rows(table).to_pylist()
    tags_by_id: dict[str, set] = {}
    for r in rows:
        tags = (r["resource/tag:department"], r["resource/tag:team"], r["resource/tag:agent"])
        tags_by_id.setdefault(r["resource/id"], set()).add(tags)
        assert "" not in tags
    assert all(len(v) == 1 for v in tags_by_id.values())
    keys = [(r["time/usage_start"], r["resource/id"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_cbf_rows_is_deterministic_whatever_the_input_order():
    rows = [
        {
            "usage_hour": H0 + timedelta(hours=i % 2),
            "department": f"d{i % 3}",
            "team": "t",
            "agent": f"a{i}",
            "cost": Decimal(i) / 7,
            "total_tokens": i,
        }
        for i in range(20)
    ]
    for r in rows:
        r["cost"] = r["cost"].quantize(Decimal("1E-18"))
    a = cbf_rows(spend_table(rows))
    b = cbf_rows(spend_table(list(reversed(rows))))
    assert a.equals(b)


def test_cbf_rows_empty_table():
    out = cbf_rows(spend_table([]))
    assert out.num_rows == 0 and out.column_names == CBF_COLUMNS


def test_cbf_rows_names_missing_columns():
    with pytest.raises(ValueError, match="usage_hour"):
        cbf_rows(pa.table({"department": ["d"]}))


# --- CSV ---------------------------------------------------------------------------------


def test_csv_is_byte_deterministic_and_round_trips(tmp_path: Path):
    rows = cbf_rows(
        spend_table(
            [
                {
                    "usage_hour": H0,
                    "department": 'fin,"ance"',
                    "team": "ap",
                    "agent": "bot",
                    "cost": Decimal("0.1"),
                    "total_tokens": 3,
                },
                {
                    "usage_hour": H0,
                    "department": "sales",
                    "team": "émea",
                    "agent": "m",
                    "cost": Decimal("2"),
                    "total_tokens": 4,
                },
            ]
        )
    )
    first, second = tmp_path / "a" / "cbf.csv", tmp_path / "b" / "cbf.csv"
    write_cbf_csv(rows, first)
    write_cbf_csv(rows, second)
    assert first.read_bytes() == second.read_bytes()
    data = first.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    assert data.decode("utf-8").splitlines()[0] == ",".join(CBF_COLUMNS)
    assert read_cbf_csv(first) == rows.to_pylist()
    # rewriting the same rows leaves the file byte-identical (and leaves no temp files)
    write_cbf_csv(rows, first)
    assert first.read_bytes() == data
    assert sorted(p.name for p in first.parent.iterdir()) == ["cbf.csv"]


def test_csv_of_an_empty_hour_is_header_only(tmp_path: Path):
    path = tmp_path / "cbf.csv"
    write_cbf_csv(cbf_rows(spend_table([])), path)
    assert path.read_bytes() == (",".join(CBF_COLUMNS) + "\n").encode()
    assert read_cbf_csv(path) == []


def test_read_rejects_foreign_csv(tmp_path: Path):
    path = tmp_path / "x.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(["a", "b"])
    with pytest.raises(ValueError, match="not a CBF file"):
        read_cbf_csv(path)


def test_cbf_hour_path(tmp_path: Path):
    expected = tmp_path / "cbf" / "date=2025-03-01" / "hour=10" / "cbf.csv"
    assert cbf_hour_path(tmp_path, H0) == expected
    assert cbf_hour_path(str(tmp_path), H1).parent.name == "hour=11"
    with pytest.raises(ValueError):
        cbf_hour_path(tmp_path, H0.replace(minute=5))
