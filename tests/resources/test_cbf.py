"""CloudZero's CBF wire format: costs, hours, tag values, resource ids, the file."""

import csv
import io
import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from resources.cbf import (
    cbf_hour_key,
    format_cost,
    format_hour,
    parse_cbf,
    resource_id,
    tag_value,
)

H0 = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)


H1 = H0 + timedelta(hours=1)


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


def test_resource_id_is_readable():
    assert resource_id(["finance", "ap", "invoice-bot"]) == "litellm/finance/ap/invoice-bot"


def test_resource_id_never_collides():
    atoms = ["a", "b", "a/b", "a%2Fb", "%", "%25", "/", "", "a b", "a%20b", "é", "%C3%A9"]
    triples = list(itertools.product(atoms, repeat=3))
    ids = {resource_id(t) for t in triples}
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


def test_read_rejects_foreign_csv():
    out = io.StringIO()
    csv.writer(out).writerow(["a", "b"])
    with pytest.raises(ValueError, match="not a CBF file"):
        parse_cbf(out.getvalue().encode(), "x.csv")


def test_cbf_hour_key():
    assert cbf_hour_key(H0) == "cbf/date=2025-03-01/hour=10/cbf.csv"
    assert cbf_hour_key(H1.astimezone(timezone(timedelta(hours=-5)))).endswith("/hour=11/cbf.csv")
    with pytest.raises(ValueError):
        cbf_hour_key(H0.replace(minute=5))
