"""The blocking rules, hour by hour, applied by an asset to what it has just computed (nothing
is read back): which hours must be held back from CloudZero, and why.

A range run is many hours and each stands alone: an hour that breaks a rule is *held* (its
CBF file is not rewritten, so nothing of it reaches CloudZero) while every other hour of the
run goes on. The asset reports one check result per rule over the whole range, naming each
held hour and the reason, and records the holds in the lake (``LakeResource.set_holds``) for
``cloudzero_cbf`` to respect. Pure functions over Arrow tables, no Dagster but the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import dagster as dg
import pyarrow as pa

from assets.checks import hour_text, money_text, query_records, schema_outcome
from assets.metadata import markdown_preview
from resources.duck import Rows

MAX_HOURS_SHOWN = 24


@dataclass
class HourChecks:
    """What each rule found wrong, per hour, added up over the chunks of a range."""

    rules: Mapping[str, str]  # rule name -> what it checks (the passing description)
    hours: list[datetime] = field(default_factory=list)
    faults: dict[str, dict[datetime, str]] = field(default_factory=dict)

    def add(self, hours: Sequence[datetime], found: Mapping[str, Mapping[datetime, str]]) -> None:
        """The chunk ``hours`` were checked; ``found`` has each rule's faulty hours."""
        self.hours.extend(hours)
        for rule, faults in found.items():
            self.faults.setdefault(rule, {}).update(faults)

    def held(self) -> dict[datetime, list[str]]:
        """Every faulty hour with the rules it breaks (``"rule: reason"``)."""
        held: dict[datetime, list[str]] = {}
        for rule, faults in self.faults.items():
            for hour, reason in faults.items():
                held.setdefault(hour, []).append(f"{rule}: {reason}")
        return dict(sorted(held.items()))

    def results(self, asset_key: dg.AssetKey) -> list[dg.AssetCheckResult]:
        """One result per rule over the range; a failure names the hours it holds back."""
        results = []
        for rule, checks in self.rules.items():
            faults = dict(sorted(self.faults.get(rule, {}).items()))
            if faults:
                first = next(iter(faults))
                description = (
                    f"{len(faults)} of {len(self.hours)} hours held back from CloudZero, "
                    f"first {hour_text(first)}: {faults[first]}"
                )
            else:
                description = f"all {len(self.hours)} hours pass: {checks}"
            shown = pa.table(
                {
                    "hour": [hour_text(h) for h in list(faults)[:MAX_HOURS_SHOWN]],
                    "reason": list(faults.values())[:MAX_HOURS_SHOWN],
                }
            )
            metadata = {"hours_checked": len(self.hours), "hours_held": len(faults)}
            if faults:
                metadata["held_hours"] = dg.MetadataValue.md(
                    markdown_preview(shown, MAX_HOURS_SHOWN)
                )
            results.append(
                dg.AssetCheckResult(
                    asset_key=asset_key,
                    check_name=rule,
                    passed=not faults,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=description,
                    metadata=metadata,
                )
            )
        return results


def schema_faults(
    table: pa.Table, expected: pa.Schema, hours: Sequence[datetime]
) -> dict[datetime, str]:
    """Every hour of the chunk, when the table's columns are not ``expected``'s."""
    outcome = schema_outcome(table, expected)
    return {} if outcome.passed else dict.fromkeys(hours, outcome.summary)


def key_faults(events: Rows, key: str = "request_key") -> dict[datetime, str]:
    """Hours with a row without ``key``, or rows sharing one with another row of the chunk
    (one row per request), in the same hour or another."""
    rows = query_records(
        f"""
        WITH keyed AS (SELECT usage_hour, nullif({key}, '') AS k FROM events),
        repeated AS (SELECT k FROM keyed WHERE k IS NOT NULL GROUP BY k HAVING count(*) > 1)
        SELECT usage_hour, count(*) FILTER (WHERE k IS NULL) AS missing,
               count(r.k) AS repeated, min(r.k) AS first_key
        FROM keyed LEFT JOIN repeated AS r USING (k)
        GROUP BY usage_hour
        HAVING count(*) FILTER (WHERE k IS NULL) > 0 OR count(r.k) > 0
        """,
        events=events,
    )
    faults = {}
    for row in rows:
        problems = []
        if row["repeated"]:
            problems.append(
                f"{row['repeated']} rows share their {key} with another row "
                f"(first {row['first_key']})"
            )
        if row["missing"]:
            problems.append(f"{row['missing']} rows have no {key}")
        faults[row["usage_hour"]] = "; ".join(problems)
    return faults


def cost_faults(table: Rows) -> dict[datetime, str]:
    """Hours with a missing or negative ``cost``."""
    rows = query_records(
        """
        SELECT usage_hour, count(*) FILTER (WHERE cost < 0) AS negative,
               count(*) FILTER (WHERE cost IS NULL) AS missing, min(cost) AS lowest
        FROM spend GROUP BY usage_hour
        HAVING count(*) FILTER (WHERE cost < 0 OR cost IS NULL) > 0
        """,
        spend=table,
    )
    faults = {}
    for row in rows:
        problems = []
        if row["negative"]:
            problems.append(
                f"{row['negative']} negative costs (lowest {money_text(row['lowest'])})"
            )
        if row["missing"]:
            problems.append(f"{row['missing']} rows without a cost")
        faults[row["usage_hour"]] = "; ".join(problems)
    return faults


def hourly_totals(table: Rows, failed_only: bool = False) -> dict[datetime, tuple[Decimal, int]]:
    """Exact cost and rows per hour of a table of requests (the failed ones, with
    ``failed_only``); for an aggregate, its cost and summed ``requests``."""
    count = "sum(requests)" if "requests" in table.column_names else "count(*)"
    where = "WHERE failed" if failed_only else ""
    rows = query_records(
        f"SELECT usage_hour, sum(cost) AS cost, {count} AS requests FROM t {where} "
        "GROUP BY usage_hour",
        t=table,
    )
    return {r["usage_hour"]: (r["cost"] or Decimal(0), int(r["requests"])) for r in rows}


def reconcile_faults(
    aggregate: Mapping[datetime, tuple[Decimal, int]],
    events: Mapping[datetime, tuple[Decimal, int]],
    hours: Sequence[datetime],
) -> dict[datetime, str]:
    """Hours whose aggregate cost or request count is not exactly ``spend_events``'."""
    faults = {}
    for hour in hours:
        mine, theirs = aggregate.get(hour, (Decimal(0), 0)), events.get(hour, (Decimal(0), 0))
        if mine[0] != theirs[0] or mine[1] != theirs[1]:
            faults[hour] = (
                f"cost {money_text(mine[0])} vs spend_events {money_text(theirs[0])}, "
                f"requests {mine[1]} vs {theirs[1]}"
            )
    return faults
