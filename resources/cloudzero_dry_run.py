"""A CloudZero dry run: the exact request bodies a submission would send, and a manifest, under
``<root>/cloudzero/dry_run/<run_id>/``. Nothing is sent and no receipt is written, and the
report says ``dry_run``, never ``submitted``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from resources.cbf import format_cost, format_hour
from resources.cloudzero_bodies import Body
from resources.cloudzero_receipts import Action
from resources.cloudzero_report import DRY_RUN, SubmissionReport, hour_reports
from resources.storage import Storage

MANIFEST_FILE = "manifest.json"


def write_dry_run(
    storage: Storage,
    folder: str,
    bodies: Sequence[Body],
    actions: Mapping[datetime, Action],
    run_id: str,
    reason: str,
    url: str,
    timezone: str,
) -> SubmissionReport:
    """Write each body's exact bytes and a manifest; nothing is sent, nothing receipted."""
    keys, entries = [], []
    for n, body in enumerate(bodies, start=1):
        key = f"{folder}/body-{n:04d}.json"
        storage.write(key, body.to_bytes())
        keys.append(key)
        entries.append(
            {
                "file": key.rsplit("/", 1)[-1],
                "month": body.month,
                "operation": body.operation,
                "hours": [format_hour(h) for h in body.hours],
                "rows": len(body.rows),
                "bytes": body.size,
                "cost_total": format_cost(body.cost_total),
                "idempotency_key": body.idempotency_key,
            }
        )
    for stale in storage.list(folder):  # a re-run of the same run id with fewer bodies
        name = stale.key.rsplit("/", 1)[-1]
        if name.startswith("body-") and stale.key not in keys:
            storage.delete(stale.key)
    hours = tuple(
        hour_reports(
            bodies,
            lambda hour: "dry run: would clear" if actions[hour] is Action.CLEAR else "dry run",
        )
    )
    manifest: dict[str, Any] = {
        "mode": DRY_RUN,
        "reason": reason,
        "submitted": False,
        "run_id": run_id,
        "url": url,
        "timezone": timezone,
        "bodies": entries,
        "hours": [h.as_dict() for h in hours],
    }
    manifest_key = f"{folder}/{MANIFEST_FILE}"
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    storage.write(manifest_key, text.encode("utf-8"))
    return SubmissionReport(
        mode=DRY_RUN,
        reason=reason,
        run_id=run_id,
        requests=0,
        total_bytes=sum(b.size for b in bodies),
        hours=hours,
        directory=storage.url(folder),
        manifest=storage.url(manifest_key),
        files=tuple(storage.url(k) for k in keys),
    )
