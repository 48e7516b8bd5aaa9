"""A CloudZero dry run: the exact request bodies a submission would send, and a manifest, under
``<data_dir>/cloudzero/dry_run/<run_id>/``. Nothing is sent and no receipt is written, and the
report says ``dry_run``, never ``submitted``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from resources.cbf import format_cost, format_hour
from resources.cloudzero_bodies import Body
from resources.cloudzero_receipts import Action
from resources.cloudzero_report import DRY_RUN, SubmissionReport, hour_reports
from resources.lake import atomic_write

MANIFEST_FILE = "manifest.json"


def write_dry_run(
    directory: Path,
    bodies: Sequence[Body],
    actions: Mapping[datetime, Action],
    run_id: str,
    reason: str,
    url: str,
    timezone: str,
) -> SubmissionReport:
    """Write each body's exact bytes and a manifest; nothing is sent, nothing receipted."""
    files, entries = [], []
    for n, body in enumerate(bodies, start=1):
        path = directory / f"body-{n:04d}.json"
        data = body.to_bytes()
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
        files.append(path)
        entries.append(
            {
                "file": path.name,
                "month": body.month,
                "operation": body.operation,
                "hours": [format_hour(h) for h in body.hours],
                "rows": len(body.rows),
                "bytes": body.size,
                "cost_total": format_cost(body.cost_total),
                "idempotency_key": body.idempotency_key,
            }
        )
    if directory.exists():  # a re-run of the same run id with fewer bodies
        for stale in directory.glob("body-*.json"):
            if stale not in files:
                stale.unlink()
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
    manifest_path = directory / MANIFEST_FILE
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    atomic_write(manifest_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return SubmissionReport(
        mode=DRY_RUN,
        reason=reason,
        run_id=run_id,
        requests=0,
        total_bytes=sum(b.size for b in bodies),
        hours=hours,
        directory=directory,
        manifest=manifest_path,
        files=tuple(files),
    )
