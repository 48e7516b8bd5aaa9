"""CloudZero AnyCost Stream: the resource that submits hours of CBF rows, and its report.

A submission plans every hour against its receipt (:mod:`resources.cloudzero_receipts`):
new or changed rows are sent, emptied hours are cleared with one zero-cost row, unchanged
hours are skipped. The hours to send are packed (:mod:`resources.cloudzero_bodies`) and
delivered one request at a time (:mod:`resources.cloudzero_api`).

Live mode needs ``CLOUDZERO_API_KEY`` and ``CLOUDZERO_CONNECTION_ID`` and no
``CLOUDZERO_DRY_RUN``. Otherwise it is a dry run: the exact bodies and a manifest are
written under ``<data_dir>/cloudzero/dry_run/<run_id>/``, no receipt is written, and the
report says ``dry_run``. The API key is never written anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from urllib.parse import quote

import dagster as dg

from resources.cbf import CbfFile, format_cost, format_hour
from resources.cloudzero_api import (
    AnyCostSender,
    AnyCostTransport,
    CloudZeroError,
    Delivery,
    RetryPolicy,
)
from resources.cloudzero_bodies import (
    DEFAULT_MAX_BODY_BYTES,
    Body,
    delivery_units,
    pack_bodies,
    row_bytes,
)
from resources.cloudzero_dry_run import write_dry_run
from resources.cloudzero_grain import DEFAULT_RESOURCE_DIMENSIONS, parse_dimensions, widest_tag
from resources.cloudzero_receipts import (
    CLEARED,
    SUBMITTED,
    UNCERTAIN,
    Action,
    Receipt,
    ReceiptStore,
    plan_action,
)
from resources.cloudzero_report import (
    DRY_RUN,
    LIVE,
    MONTH_BYTE_LIMIT,
    MONTH_ROW_LIMIT,
    OVER_MONTHLY_LIMIT,
    HourReport,
    MonthUsage,
    SubmissionReport,
    hour_reports,
)
from resources.storage import Storage, storage_at

CONNECTION_PLACEHOLDER = "<CLOUDZERO_CONNECTION_ID>"
DRY_RUN_FOLDER = "cloudzero/dry_run"

REASON_NO_CREDENTIALS = "no credentials (set CLOUDZERO_API_KEY and CLOUDZERO_CONNECTION_ID)"
REASON_DRY_RUN_SET = "CLOUDZERO_DRY_RUN is set"
REASON_LIVE = "credentials configured"

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class CloudZeroResource(dg.ConfigurableResource):
    """A CloudZero AnyCost Stream connection (see the module docstring)."""

    api_key: str | None = None
    connection_id: str | None = None
    api_url: str = "https://api.cloudzero.com"
    timezone: str = "UTC"
    dry_run: bool = False
    data_dir: str = "./data"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    timeout_seconds: float = 60.0
    max_attempts: int = 8
    retry_budget_seconds: float = 600.0
    retry_base_delay_seconds: float = 1.0
    resource_dimensions: str = DEFAULT_RESOURCE_DIMENSIONS
    month_row_limit: int = MONTH_ROW_LIMIT
    month_byte_limit: int = MONTH_BYTE_LIMIT

    def dimensions(self) -> list[str]:
        """What each CBF resource is made of (``CLOUDZERO_RESOURCE_DIMENSIONS``)."""
        return parse_dimensions(self.resource_dimensions)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key) and bool(self.connection_id)

    @property
    def mode(self) -> str:
        return LIVE if self.has_credentials and not self.dry_run else DRY_RUN

    @property
    def reason(self) -> str:
        if not self.has_credentials:
            return REASON_NO_CREDENTIALS
        return REASON_DRY_RUN_SET if self.dry_run else REASON_LIVE

    @property
    def billing_drops_url(self) -> str:
        """Where bodies are POSTed (the connection id is a placeholder until configured)."""
        connection = quote(self.connection_id, safe="") if self.connection_id else None
        base = self.api_url.rstrip("/")
        return (
            f"{base}/v2/connections/billing/anycost/"
            f"{connection or CONNECTION_PLACEHOLDER}/billing_drops"
        )

    def receipts(self) -> ReceiptStore:
        return ReceiptStore(self.data_dir, self.billing_drops_url)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            budget_seconds=self.retry_budget_seconds,
            base_delay_seconds=self.retry_base_delay_seconds,
        )

    @property
    def storage(self) -> Storage:
        return storage_at(self.data_dir)

    def dry_run_folder(self, run_id: str) -> str:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} is not a safe directory name")
        return f"{DRY_RUN_FOLDER}/{run_id}"

    def plan(
        self, files: Mapping[datetime, CbfFile], force: bool = False
    ) -> dict[datetime, Action]:
        """Each hour's action from its CBF file and receipt (see ``plan_action``)."""
        store = self.receipts()
        return {
            hour: plan_action(bool(f.rows), f.sha256, store.read(hour), force)
            for hour, f in sorted(files.items())
        }

    def month_usage(
        self,
        hours: Sequence[HourReport],
        rows: Mapping[datetime, Sequence[Mapping[str, str]]] | None = None,
    ) -> tuple[MonthUsage, ...]:
        """What each month of ``hours`` holds once they land: the hours sent (or, in a dry
        run, to be sent) plus what the receipts say the month's other hours hold. ``rows``
        (the hours' CBF rows) name the month's widest tag."""
        usage = []
        for month in sorted({f"{h.hour:%Y-%m}" for h in hours}):
            held = {
                stamp: (r.rows, r.bytes)
                for stamp, r in self.receipts().month(month).items()
                if r.state != UNCERTAIN
            }
            for h in hours:
                if f"{h.hour:%Y-%m}" == month and h.operations:
                    held[format_hour(h.hour)] = (h.rows, h.bytes)
            seen = [
                r
                for h, hour_rows in (rows or {}).items()
                if f"{h:%Y-%m}" == month
                for r in hour_rows
            ]
            usage.append(
                MonthUsage(
                    month,
                    sum(n for n, _ in held.values()),
                    sum(size for _, size in held.values()),
                    self.month_row_limit,
                    self.month_byte_limit,
                    widest_tag(seen),
                )
            )
        return tuple(usage)

    def month_outlook(self, files: Mapping[datetime, CbfFile]) -> tuple[MonthUsage, ...]:
        """What each month would hold with ``files`` sent as they are: the whole month's CBF
        files in, the month's usage against CloudZero's limits out (nothing is sent)."""
        usage = []
        for month in sorted({f"{h:%Y-%m}" for h in files}):
            rows = [r for h, f in files.items() if f"{h:%Y-%m}" == month for r in f.rows]
            usage.append(
                MonthUsage(
                    month,
                    len(rows),
                    row_bytes(rows),
                    self.month_row_limit,
                    self.month_byte_limit,
                    widest_tag(rows),
                )
            )
        return tuple(usage)

    def submit(
        self,
        files: Mapping[datetime, CbfFile],
        run_id: str,
        invalid: Mapping[datetime, Sequence[str]] | None = None,
        force: bool = False,
        log: Callable[[str], None] = lambda _: None,
    ) -> SubmissionReport:
        """Send (or dry-run) what changed among ``files``; ``invalid`` hours are never sent.

        Hours are delivered in order; the first failure stops the submission (the hours it
        touched become ``uncertain``, later ones stay as they were) and is reported in
        ``SubmissionReport.error``.
        """
        invalid = invalid or {}
        actions = self.plan({h: f for h, f in files.items() if h not in invalid}, force)
        outbound = {h: files[h].rows for h, a in actions.items() if a is Action.SEND}
        outbound |= {h: [] for h, a in actions.items() if a is Action.CLEAR}
        bodies = pack_bodies(outbound, self.max_body_bytes)
        # CloudZero's monthly limits are checked before anything is sent: a month that
        # would break them sends nothing (a partly sent month is worse than none).
        planned = self.month_usage(hour_reports(bodies, lambda _: "planned"), outbound)
        refused = {m.month: m.error for m in planned if m.over}
        bodies = [b for b in bodies if b.month not in refused]
        skipped = (
            [HourReport(hour, "invalid", note="; ".join(invalid[hour])) for hour in invalid]
            + [
                HourReport(hour, "unchanged" if a is Action.UNCHANGED else "nothing to send")
                for hour, a in actions.items()
                if a in (Action.UNCHANGED, Action.NOTHING)
            ]
            + [
                HourReport(hour, OVER_MONTHLY_LIMIT, note=refused[f"{hour:%Y-%m}"] or "")
                for hour in outbound
                if f"{hour:%Y-%m}" in refused
            ]
        )
        for month, error in refused.items():
            log(f"{month} not sent: {error}")
        log(
            f"{self.mode}: {len(outbound)} of {len(files)} hours to send in {len(bodies)} "
            f"bodies ({self.reason})"
        )
        if self.mode == DRY_RUN:
            report = write_dry_run(
                self.storage,
                self.dry_run_folder(run_id),
                bodies,
                actions,
                run_id,
                self.reason,
                self.billing_drops_url,
                self.timezone,
            )
        else:
            report = self._deliver(bodies, run_id, actions, files, log)
        hours = tuple(sorted((*report.hours, *skipped), key=lambda h: h.hour))
        months = tuple(m for m in planned if m.over) + tuple(
            m for m in self.month_usage(hours, outbound) if m.month not in refused
        )
        return SubmissionReport(**{**report.__dict__, "hours": hours, "months": months})

    def _deliver(
        self,
        bodies: list[Body],
        run_id: str,
        actions: Mapping[datetime, Action],
        files: Mapping[datetime, CbfFile],
        log: Callable[[str], None],
    ) -> SubmissionReport:
        assert self.api_key is not None
        stamp = _now()
        transport = AnyCostTransport(self.billing_drops_url, self.api_key, self.timeout_seconds)
        sender = AnyCostSender(transport, self.retry_policy())
        reports: list[HourReport] = []
        sent_bytes, error = 0, None
        units = delivery_units(bodies)
        try:
            for n, unit in enumerate(units, start=1):
                try:
                    deliveries = sender.deliver(unit)
                except CloudZeroError as failure:
                    error = str(failure)
                    reports += self._record_failure(unit, units[n:], failure, run_id, stamp)
                    break
                for delivery in deliveries:
                    sent_bytes += sum(b.size for b in delivery.bodies)
                    reports += self._record_delivery(delivery, actions, files, run_id, stamp)
                log(f"unit {n}/{len(units)} accepted ({sender.posts} requests so far)")
        finally:
            transport.close()
        return SubmissionReport(
            mode=LIVE,
            reason=self.reason,
            run_id=run_id,
            requests=sender.posts,
            total_bytes=sent_bytes,
            hours=tuple(reports),
            error=error,
        )

    def _record_delivery(
        self,
        delivery: Delivery,
        actions: Mapping[datetime, Action],
        files: Mapping[datetime, CbfFile],
        run_id: str,
        stamp: str,
    ) -> list[HourReport]:
        reports = hour_reports(
            delivery.bodies,
            lambda hour: "cleared" if actions[hour] is Action.CLEAR else "sent",
            attempts=delivery.attempts,
            drop_ids=tuple(delivery.drop_ids),
            note="; ".join(delivery.failures),
        )
        for report in reports:
            hour = report.hour
            mine = [b for b in delivery.bodies if hour in b.hours]
            receipt = Receipt(
                hour=format_hour(hour),
                state=CLEARED if report.status == "cleared" else SUBMITTED,
                cbf_sha256=files[hour].sha256,
                destination=self.billing_drops_url,
                run_id=run_id,
                submitted_at=stamp,
                operations=list(report.operations),
                bodies=report.bodies,
                rows=report.rows,
                bytes=report.bytes,
                cost_total=format_cost(report.cost_total),
                attempts=report.attempts,
                drop_ids=list(delivery.drop_ids),
                idempotency_keys=[b.idempotency_key for b in mine],
                notes=list(delivery.failures),
            )
            self.receipts().write(hour, receipt)
        return reports

    def _record_failure(
        self,
        unit: list[Body],
        later: Sequence[list[Body]],
        failure: CloudZeroError,
        run_id: str,
        stamp: str,
    ) -> list[HourReport]:
        """The failed unit's hours become ``uncertain``; later units were never sent."""
        reports = hour_reports(unit, lambda _: "failed", note=str(failure))
        for hour in sorted({h for b in unit for h in b.hours}):
            self.receipts().write(
                hour,
                Receipt(
                    hour=format_hour(hour),
                    state=UNCERTAIN,
                    cbf_sha256=None,
                    destination=self.billing_drops_url,
                    run_id=run_id,
                    submitted_at=stamp,
                    error=str(failure),
                ),
            )
        for other in later:
            for hour in sorted({h for b in other for h in b.hours}):
                reports.append(HourReport(hour, "not sent", note="an earlier hour failed"))
        return reports


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
