"""The rules behind the lake's asset checks: pure functions over Arrow tables, no I/O.

Each rule takes the rows of the hours a run checks and returns an :class:`Outcome`: whether
the rule holds, one line saying why, plain metadata (counts, shares, thresholds) and small
tables of the worst offenders. The checks next to the assets (``events.py``,
``aggregates.py``) read the lake and call these; the two helpers at the end build their
hourly specs and turn outcomes into ``AssetCheckResult``s.

The rules that hold back a bad hour from CloudZero, hour by hour, are in
:mod:`assets.hour_rules` (they build on :func:`schema_outcome`); the warnings are in
:mod:`assets.quality_checks`. Shares are exact ``Decimal`` ratios; metadata shows them as
floats.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.metadata import markdown_preview
from assets.partitions import hourly_partitions
from resources.cbf import format_cost
from resources.duck import Rows, connection, register

TOP_OFFENDERS = 10


@dataclass(frozen=True)
class Outcome:
    """What a rule found: pass or not, why, numbers, and tables of offending rows."""

    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)  # int, float, str, bool values
    tables: dict[str, pa.Table] = field(default_factory=dict)  # shown as markdown

    def result(
        self, asset_key: dg.AssetKey, check_name: str, warn: bool = False
    ) -> dg.AssetCheckResult:
        """This outcome as Dagster's check result; ``warn`` gives WARN severity."""
        metadata: dict[str, Any] = dict(self.metadata)
        metadata |= {
            name: dg.MetadataValue.md(markdown_preview(table, TOP_OFFENDERS))
            for name, table in self.tables.items()
        }
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=check_name,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR,
            description=self.summary,
            metadata=metadata,
        )


def not_checked(reason: str) -> Outcome:
    """A rule that could not be evaluated counts as failed, so a blocking check still blocks."""
    return Outcome(False, f"not checked: {reason}")


def unless_columns_missing(
    table: Rows, expected: pa.Schema, rule: Callable[[], Outcome]
) -> Callable[[], Outcome]:
    """``rule``, or a failed "not checked" outcome when ``table`` lacks columns it reads.

    A column of another type does not stop the rule: ``schema_matches`` reports that.
    """
    missing = [name for name in expected.names if name not in table.column_names]
    if not missing:
        return rule
    return lambda: not_checked(f"the table lacks column(s) {', '.join(missing)}")


def share_setting(name: str, default: Decimal) -> Decimal:
    """A warning threshold from the environment: a share in [0, 1], read when a check runs."""
    text = os.getenv(name, "").strip()
    if not text:
        return default
    try:
        share = Decimal(text)
    except InvalidOperation:
        share = None
    if share is None or not share.is_finite() or not 0 <= share <= 1:
        raise ValueError(
            f"{name} must be a share between 0 and 1 (e.g. 0.2 for 20%), got {text!r}; "
            f"unset it to use the default {default}"
        )
    return share


def query_table(sql: str, params: Sequence[Any] = (), **tables: Rows) -> pa.Table:
    with connection() as con:
        for name, table in tables.items():
            register(con, name, table)
        return con.sql(sql, params=list(params) or None).to_arrow_table()


def query_records(sql: str, params: Sequence[Any] = (), **tables: Rows) -> list[dict[str, Any]]:
    return query_table(sql, params, **tables).to_pylist()


def hour_text(value: datetime) -> str:
    return f"{value.astimezone(timezone.utc):%Y-%m-%dT%H}:00Z"


def exact_decimal(value: Decimal | float | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def share_of(part: Decimal | float | int, whole: Decimal | float | int) -> Decimal:
    return exact_decimal(part) / exact_decimal(whole) if whole else Decimal(0)


def percent_text(share: Decimal) -> str:
    return f"{float(share):.1%}"


def money_text(value: Decimal | float | int) -> str:
    """Fixed-point text of an amount, trailing zeros trimmed (``0.000000001``, ``0``).

    Exact for the lake's decimals; a float (a table whose schema drifted) shows its repr.
    """
    return format_cost(exact_decimal(value))


# --- blocking rules -------------------------------------------------------------------------


def schema_outcome(table: Rows, expected: pa.Schema) -> Outcome:
    """Column names, order and types equal ``expected`` (nullability aside).

    A scan of files with different schemas is judged by the first one that differs.
    """
    schema = next((s for s in getattr(table, "schemas", ()) if s != expected), table.schema)
    actual = {f.name: f.type for f in schema}
    wanted = {f.name: f.type for f in expected}
    problems = [
        f"missing column {name} ({kind})" for name, kind in wanted.items() if name not in actual
    ]
    problems += [
        f"unexpected column {name} ({kind})" for name, kind in actual.items() if name not in wanted
    ]
    problems += [
        f"column {name} is {actual[name]}, expected {kind}"
        for name, kind in wanted.items()
        if name in actual and actual[name] != kind
    ]
    if not problems and schema.names != expected.names:
        problems.append("columns are out of order: " + ", ".join(schema.names))
    return Outcome(
        passed=not problems,
        summary="; ".join(problems) if problems else f"{len(expected)} columns as expected",
        metadata={"columns": len(schema), "problems": len(problems)},
    )


# --- the Dagster side, kept to two helpers --------------------------------------------------


def hourly_check_spec(
    asset: dg.AssetsDefinition,
    name: str,
    description: str,
    blocking: bool,
    additional_deps: Sequence[str] = (),
) -> dg.AssetCheckSpec:
    """A check on ``asset``, partitioned by hour like it."""
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        description=description,
        blocking=blocking,
        additional_deps=list(additional_deps),
        partitions_def=hourly_partitions,
    )


def hour_rule_specs(asset: str, rules: Mapping[str, str]) -> list[dg.AssetCheckSpec]:
    """The specs of the rules an asset checks as it writes (``assets.hour_rules``): an hour
    that breaks one is held back from CloudZero on its own, so none of them stops the run."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset,
            description=f"Holds back from CloudZero any hour that breaks it: {checks}.",
            blocking=False,
            partitions_def=hourly_partitions,
        )
        for name, checks in rules.items()
    ]


def check_results(
    context: dg.AssetCheckExecutionContext,
    asset_key: dg.AssetKey,
    rules: Mapping[str, Callable[[], Outcome]],
    warn: bool = False,
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the rules of the selected checks (a subset when a user runs just some)."""
    for name, rule in rules.items():
        if dg.AssetCheckKey(asset_key, name) in context.selected_asset_check_keys:
            yield rule().result(asset_key, name, warn=warn)
