"""LiteLLM's own spend logs as a Dagster resource: its Postgres table or its REST API.

With both configured the database wins: it is the complete record and the cheaper read.
With neither, the hour is empty and the asset's metadata says why: spend then comes from
webhook landings only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from resources.litellm_api import fetch_spend_logs_api
from resources.litellm_api_client import LiteLLMApiError
from resources.litellm_db import SessionLimits, SpendLogsDatabaseError, read_spend_logs
from resources.raw_spend import RAW_SPEND_SCHEMA
from resources.spend_log_fingerprints import HourFingerprint, database_fingerprints
from resources.spend_logs import raw_spend_from_logs

NOT_CONFIGURED = (
    "no LiteLLM spend-log source configured: set LITELLM_DATABASE_URL, or LITELLM_PROXY_URL "
    "and LITELLM_MASTER_KEY; spend comes from webhook landings only"
)
BOTH_CONFIGURED = "LITELLM_DATABASE_URL and LITELLM_PROXY_URL are both set: the database wins"
# The fingerprint query runs in a sensor tick, which Dagster cuts off after 60 s.
FINGERPRINT_STATEMENT_TIMEOUT_S = 40


@dataclass(frozen=True)
class SpendLogs:
    """Rows of ``RAW_SPEND_SCHEMA`` for ``[start, end)``, where they came from, and how."""

    table: pa.Table
    source: str
    note: str
    details: dict[str, Any] = field(default_factory=dict)


class LiteLLMSpendLogsResource(dg.ConfigurableResource):
    """Reads ``LiteLLM_SpendLogs`` for a time window from the database or the proxy API."""

    database_url: str | None = None
    proxy_url: str | None = None
    master_key: str | None = None
    statement_timeout_seconds: int = 300

    @property
    def source(self) -> str:
        if self.database_url:
            return "database"
        if self.proxy_url and self.master_key:
            return "api"
        return "none"

    def fetch_spend_logs(self, start: datetime, end: datetime) -> SpendLogs:
        if self.source == "none":
            return SpendLogs(RAW_SPEND_SCHEMA.empty_table(), "none", NOT_CONFIGURED)
        try:
            if self.source == "database":
                limits = SessionLimits(statement_timeout_s=self.statement_timeout_seconds)
                logs = read_spend_logs(self.database_url, start, end, limits)
                note = BOTH_CONFIGURED if self.proxy_url else "read from LITELLM_DATABASE_URL"
                return SpendLogs(raw_spend_from_logs(logs), "database", note)
            fetched = fetch_spend_logs_api(self.proxy_url, self.master_key, start, end)
        except (SpendLogsDatabaseError, LiteLLMApiError) as exc:
            raise dg.Failure(description=str(exc)) from None
        return SpendLogs(
            raw_spend_from_logs(fetched.table),
            "api",
            "read from LITELLM_PROXY_URL /spend/logs/v2",
            fetched.metadata(),
        )

    def hour_fingerprints(self, start: datetime, end: datetime) -> dict[datetime, HourFingerprint]:
        """Row count, exact spend and latest end time per hour of ``[start, end)`` with rows,
        from LiteLLM's database (the only source that can be asked cheaply for them)."""
        if self.source != "database":
            raise ValueError(
                "hour fingerprints are read from LITELLM_DATABASE_URL, which is not set"
            )
        timeout_s = min(self.statement_timeout_seconds, FINGERPRINT_STATEMENT_TIMEOUT_S)
        limits = SessionLimits(statement_timeout_s=timeout_s, jit=False)
        return database_fingerprints(self.database_url, start, end, limits)
