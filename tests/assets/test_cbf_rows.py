"""Spend → CBF rows (``assets.cbf_rows``), and the files those rows make."""

import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from assets.cbf_rows import cbf_rows
from resources.cbf import (
    cbf_columns,
    read_cbf_csv,
    write_cbf_csv,
)
from resources.storage import storage_at
from tests.cbf_rows import AGENT_DIMENSIONS, spend_table

H0 = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
H1 = H0 + timedelta(hours=1)


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
    out = cbf_rows(table, AGENT_DIMENSIONS)
    assert out.column_names == cbf_columns(AGENT_DIMENSIONS)
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
        ),
        AGENT_DIMENSIONS,
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
    rows = cbf_rows(table, AGENT_DIMENSIONS).to_pylist()
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
    a = cbf_rows(spend_table(rows), AGENT_DIMENSIONS)
    b = cbf_rows(spend_table(list(reversed(rows))), AGENT_DIMENSIONS)
    assert a.equals(b)


def test_cbf_rows_empty_table():
    out = cbf_rows(spend_table([]), AGENT_DIMENSIONS)
    assert out.num_rows == 0 and out.column_names == cbf_columns(AGENT_DIMENSIONS)


def test_cbf_rows_names_missing_columns():
    with pytest.raises(ValueError, match="usage_hour"):
        cbf_rows(pa.table({"department": ["d"]}), AGENT_DIMENSIONS)


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
        ),
        AGENT_DIMENSIONS,
    )
    storage = storage_at(str(tmp_path))
    first, second = tmp_path / "a" / "cbf.csv", tmp_path / "b" / "cbf.csv"
    write_cbf_csv(rows, storage, "a/cbf.csv")
    write_cbf_csv(rows, storage, "b/cbf.csv")
    assert first.read_bytes() == second.read_bytes()
    data = first.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    assert data.decode("utf-8").splitlines()[0] == ",".join(cbf_columns(AGENT_DIMENSIONS))
    assert read_cbf_csv(storage, "a/cbf.csv") == rows.to_pylist()
    # rewriting the same rows leaves the file byte-identical (and leaves no temp files)
    write_cbf_csv(rows, storage, "a/cbf.csv")
    assert first.read_bytes() == data
    assert sorted(p.name for p in first.parent.iterdir()) == ["cbf.csv"]


def test_csv_of_an_empty_hour_is_header_only(tmp_path: Path):
    storage = storage_at(str(tmp_path))
    write_cbf_csv(cbf_rows(spend_table([]), AGENT_DIMENSIONS), storage, "cbf.csv")
    expected = (",".join(cbf_columns(AGENT_DIMENSIONS)) + "\n").encode()
    assert (tmp_path / "cbf.csv").read_bytes() == expected
    assert read_cbf_csv(storage, "cbf.csv") == []
