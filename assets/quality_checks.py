"""The warning rules of the lake's asset checks: pure functions over Arrow tables, no I/O.

:func:`unattributed_share_outcome`, :func:`zero_cost_outcome` and
:func:`source_divergence_outcome` never block: they say how much spend CloudZero will see
without attribution, which priced models reported zero cost, and how far the webhook and
LiteLLM's database disagree. Thresholds come from the environment at run time.
"""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from assets.attribution import UNATTRIBUTED
from assets.checks import (
    TOP_OFFENDERS,
    Outcome,
    Rows,
    exact_decimal,
    hour_text,
    money_text,
    percent_text,
    query_records,
    query_table,
    share_of,
)
from assets.ingest import ZERO_COST_WITH_TOKENS
from resources.cbf import exact_sum

UNATTRIBUTED_SHARE_ENV = "SPEND_UNATTRIBUTED_WARN_SHARE"
DEFAULT_UNATTRIBUTED_SHARE = Decimal("0.2")
DIVERGENCE_SHARE_ENV = "SPEND_SOURCE_DIVERGENCE_WARN_SHARE"
DEFAULT_DIVERGENCE_SHARE = Decimal("0.05")


def unattributed_share_outcome(events: Rows, threshold: Decimal) -> Outcome:
    """Warn when more than ``threshold`` of the cost is attributed to no department."""
    [totals] = query_records(
        """
        SELECT coalesce(sum(cost), 0) AS cost,
               coalesce(sum(cost) FILTER (WHERE department = ?), 0) AS unattributed_cost,
               count(*) AS requests,
               count(*) FILTER (WHERE department = ?) AS unattributed_requests
        FROM events
        """,
        [UNATTRIBUTED, UNATTRIBUTED],
        events=events,
    )
    hours = query_records(
        """
        SELECT usage_hour, coalesce(sum(cost) FILTER (WHERE department = ?), 0) AS unattributed,
               coalesce(sum(cost), 0) AS cost
        FROM events GROUP BY usage_hour ORDER BY usage_hour
        """,
        [UNATTRIBUTED],
        events=events,
    )
    worst = max(hours, key=lambda h: share_of(h["unattributed"], h["cost"]), default=None)
    # Who spends without saying who they are: what to add to the mapping file.
    callers = query_table(
        """
        SELECT key_alias, team_alias, user_id, count(*) AS requests, sum(cost) AS cost
        FROM events WHERE department = ?
        GROUP BY ALL ORDER BY cost DESC NULLS LAST, requests DESC LIMIT ?
        """,
        [UNATTRIBUTED, TOP_OFFENDERS],
        events=events,
    )
    share = share_of(totals["unattributed_cost"], totals["cost"])
    passed = share <= threshold
    return Outcome(
        passed=passed,
        summary=f"{percent_text(share)} of the spend is unattributed "
        f"({'within' if passed else 'above'} the {percent_text(threshold)} threshold)",
        metadata={
            "unattributed_share": float(share),
            "threshold": float(threshold),
            "threshold_setting": UNATTRIBUTED_SHARE_ENV,
            "unattributed_cost": money_text(totals["unattributed_cost"]),
            "cost": money_text(totals["cost"]),
            "unattributed_requests": totals["unattributed_requests"],
            "requests": totals["requests"],
            "unattributed_request_share": float(
                share_of(totals["unattributed_requests"], totals["requests"])
            ),
            "worst_hour": hour_text(worst["usage_hour"]) if worst else "",
            "worst_hour_share": float(share_of(worst["unattributed"], worst["cost"]))
            if worst
            else 0.0,
        },
        tables={"top_unattributed_callers": callers} if callers.num_rows else {},
    )


def zero_cost_outcome(events: Rows) -> Outcome:
    """Warn when successful requests used tokens but cost nothing (ingest's defect rule)."""
    models = query_table(
        f"""
        SELECT provider, model,
               count(*) FILTER (WHERE {ZERO_COST_WITH_TOKENS}) AS zero_cost_requests,
               sum(total_tokens) FILTER (WHERE {ZERO_COST_WITH_TOKENS}) AS zero_cost_tokens,
               count(*) FILTER (WHERE cost > 0) AS priced_requests
        FROM events GROUP BY ALL
        HAVING count(*) FILTER (WHERE {ZERO_COST_WITH_TOKENS}) > 0
        ORDER BY zero_cost_requests DESC, provider, model
        """,
        events=events,
    )
    count = sum(models["zero_cost_requests"].to_pylist())
    names = [f"{r['provider'] or '?'}/{r['model']}" for r in models.to_pylist()]
    return Outcome(
        passed=not count,
        summary=f"{count} successful requests used tokens but cost 0, models: {', '.join(names)}"
        if count
        else "every successful request with tokens has a cost",
        metadata={
            "zero_cost_requests": count,
            "requests": events.num_rows,
            "models": ", ".join(names),
        },
        tables={"models": models} if count else {},
    )


def source_divergence_outcome(events: Rows, threshold: Decimal) -> Outcome:
    """Warn when, in some hour, more than ``threshold`` of the requests were seen by only
    one of the webhook and the LiteLLM database; passes, saying so, with only one source."""
    hours = query_records(
        """
        SELECT usage_hour, count(*) AS requests,
               count(*) FILTER (WHERE source = 'webhook') AS webhook_only,
               count(*) FILTER (WHERE source = 'database') AS database_only,
               count(*) FILTER (WHERE source = 'both') AS both_sources,
               coalesce(sum(cost) FILTER (WHERE source = 'webhook'), 0) AS webhook_only_cost,
               coalesce(sum(cost) FILTER (WHERE source = 'database'), 0) AS database_only_cost,
               coalesce(sum(cost), 0) AS cost
        FROM events GROUP BY usage_hour ORDER BY usage_hour
        """,
        events=events,
    )
    webhook = sum(h["webhook_only"] + h["both_sources"] for h in hours)
    database = sum(h["database_only"] + h["both_sources"] for h in hours)
    counts = {
        "requests": sum(h["requests"] for h in hours),
        "webhook_only": sum(h["webhook_only"] for h in hours),
        "database_only": sum(h["database_only"] for h in hours),
        "both_sources": sum(h["both_sources"] for h in hours),
    }
    if not (webhook and database):
        on = "webhook" if webhook else "database" if database else "none"
        return Outcome(
            passed=True,
            summary="does not apply: only one source delivered requests in these hours "
            f"({on}); the webhook and the LiteLLM database are compared when both are on",
            metadata={"applies": False, "sources_on": on, "threshold": float(threshold), **counts},
        )
    flagged = []
    for h in hours:
        one_sided = h["webhook_only"] + h["database_only"]
        share = share_of(one_sided, h["requests"])
        if share > threshold:
            flagged.append(
                {
                    "hour": hour_text(h["usage_hour"]),
                    "requests": h["requests"],
                    "webhook_only": h["webhook_only"],
                    "database_only": h["database_only"],
                    "one_source_share": round(float(share), 4),
                    "webhook_only_cost": money_text(h["webhook_only_cost"]),
                    "database_only_cost": money_text(h["database_only_cost"]),
                }
            )
    flagged.sort(key=lambda r: (-r["one_source_share"], r["hour"]))
    one_sided_cost = sum(
        exact_decimal(h["webhook_only_cost"]) + exact_decimal(h["database_only_cost"])
        for h in hours
    )
    total_cost = exact_sum(exact_decimal(h["cost"]) for h in hours)
    share = share_of(counts["webhook_only"] + counts["database_only"], counts["requests"])
    return Outcome(
        passed=not flagged,
        summary=f"{len(flagged)} of {len(hours)} hours have more than {percent_text(threshold)} of "
        f"their requests from one source only, worst {flagged[0]['hour']} "
        f"({flagged[0]['one_source_share']:.1%})"
        if flagged
        else f"webhook and database agree within {percent_text(threshold)} in all {len(hours)} hours",
        metadata={
            "applies": True,
            "sources_on": "both",
            "threshold": float(threshold),
            "threshold_setting": DIVERGENCE_SHARE_ENV,
            **counts,
            "one_source_share": float(share),
            "one_source_cost_share": float(share_of(one_sided_cost, total_cost)),
            "hours_checked": len(hours),
            "hours_flagged": len(flagged),
        },
        tables={"diverging_hours": pa.Table.from_pylist(flagged)} if flagged else {},
    )
