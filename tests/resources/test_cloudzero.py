"""CloudZeroResource: modes, planning against receipts, the dry run and its report."""

import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from resources.cbf import format_hour
from resources.cloudzero import (
    REASON_DRY_RUN_SET,
    REASON_LIVE,
    REASON_NO_CREDENTIALS,
    CloudZeroResource,
)
from resources.cloudzero_bodies import pack_bodies
from resources.cloudzero_receipts import SUBMITTED, Action, Receipt
from tests.cbf_rows import hour_rows, write_cbf_files

SECRET = "cz-secret-api-key-DO-NOT-WRITE-0123456789"
START = datetime(2025, 1, 31, 20, tzinfo=timezone.utc)


def test_mode_and_reason_are_honest():
    assert CloudZeroResource().mode == "dry_run"
    assert CloudZeroResource().reason == REASON_NO_CREDENTIALS
    assert CloudZeroResource(api_key=SECRET).reason == REASON_NO_CREDENTIALS
    forced = CloudZeroResource(api_key=SECRET, connection_id="conn-1", dry_run=True)
    assert forced.reason == REASON_DRY_RUN_SET and forced.mode == "dry_run"
    live = CloudZeroResource(api_key=SECRET, connection_id="conn-1")
    assert live.mode == "live" and live.reason == REASON_LIVE


def test_url_uses_a_placeholder_without_a_connection_id():
    assert CloudZeroResource().billing_drops_url == (
        "https://api.cloudzero.com/v2/connections/billing/anycost/"
        "<CLOUDZERO_CONNECTION_ID>/billing_drops"
    )
    local = CloudZeroResource(api_url="http://127.0.0.1:9/", connection_id="c/1")
    assert local.billing_drops_url == (
        "http://127.0.0.1:9/v2/connections/billing/anycost/c%2F1/billing_drops"
    )


def test_dry_run_writes_exact_bodies_and_a_manifest_and_no_receipt(tmp_path: Path):
    big = START + timedelta(hours=1)
    feb = datetime(2025, 2, 1, tzinfo=timezone.utc)
    rows = {
        START: hour_rows(START, 3),
        big: hour_rows(big, 30, "big"),
        START + timedelta(hours=2): [],  # empty and never sent: nothing to do
        feb: hour_rows(feb, 2),
    }
    files = write_cbf_files(tmp_path, rows)
    limit = pack_bodies({big: hour_rows(big, 10, "big")})[0].size
    resource = CloudZeroResource(
        api_key=SECRET,
        connection_id="conn-42",
        dry_run=True,
        data_dir=str(tmp_path),
        max_body_bytes=limit,
    )
    report = resource.submit(files, run_id="run-abc")
    bodies = pack_bodies({h: r for h, r in rows.items() if r}, max_body_bytes=limit)

    assert report.mode == "dry_run" and not report.submitted and report.requests == 0
    assert report.reason == REASON_DRY_RUN_SET
    out = tmp_path / "cloudzero" / "dry_run" / "run-abc"
    assert report.directory == str(out)
    written = sorted(out.glob("body-*.json"))
    assert [f.read_bytes() for f in written] == [b.to_bytes() for b in bodies]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "dry_run" and manifest["submitted"] is False
    assert manifest["url"].endswith("/anycost/conn-42/billing_drops")
    for entry, body in zip(manifest["bodies"], bodies, strict=True):
        assert entry["operation"] == body.operation and entry["month"] == body.month
        assert entry["hours"] == [format_hour(h) for h in body.hours]
        assert entry["idempotency_key"] == hashlib.sha256(body.to_bytes()).hexdigest()
        assert Decimal(entry["cost_total"]) == sum(Decimal(r["cost/cost"]) for r in body.rows)

    by_hour = {h.hour: h for h in report.hours}
    assert by_hour[big].operations[0] == "replace_hourly"
    assert set(by_hour[big].operations[1:]) == {"sum"}
    assert by_hour[big].rows == 30 and by_hour[big].status == "dry run"
    assert by_hour[START + timedelta(hours=2)].status == "nothing to send"
    assert report.cost_total == sum(Decimal(r["cost/cost"]) for h in rows.values() for r in h)
    assert not (tmp_path / "cloudzero" / "receipts").exists()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_dry_run_clears_an_emptied_hour_and_skips_unchanged_ones(tmp_path: Path):
    hours = [START + timedelta(hours=h) for h in range(3)]
    files = write_cbf_files(tmp_path, {h: hour_rows(h, 2) for h in hours})
    resource = CloudZeroResource(
        api_key=SECRET, connection_id="c", dry_run=True, data_dir=str(tmp_path)
    )
    store = resource.receipts()
    for hour in hours:  # as a live submission would have left them
        store.write(
            hour,
            Receipt(format_hour(hour), SUBMITTED, files[hour].sha256, store.destination, "r0", "t"),
        )
    files |= write_cbf_files(tmp_path, {hours[1]: []})
    assert resource.plan(files) == {
        hours[0]: Action.UNCHANGED,
        hours[1]: Action.CLEAR,
        hours[2]: Action.UNCHANGED,
    }
    report = resource.submit(files, run_id="r1")
    statuses = {h.hour: h.status for h in report.hours}
    assert statuses == {
        hours[0]: "unchanged",
        hours[1]: "dry run: would clear",
        hours[2]: "unchanged",
    }
    [body] = json.loads(Path(report.manifest).read_text())["bodies"]
    sent = json.loads(Path(report.files[0]).read_bytes())
    assert body["hours"] == [format_hour(hours[1])] and sent["operation"] == "replace_hourly"
    assert [r["cost/cost"] for r in sent["data"]] == ["0"]
    forced = resource.submit(files, run_id="r2", force=True)
    assert {h.status for h in forced.hours} == {"dry run", "dry run: would clear"}


def test_invalid_hours_are_never_sent_and_say_why(tmp_path: Path):
    files = write_cbf_files(tmp_path, {START: hour_rows(START, 2)})
    resource = CloudZeroResource(data_dir=str(tmp_path))
    report = resource.submit(files, run_id="r1", invalid={START: ["row 1: cost/cost '1e-5'"]})
    [hour] = report.hours
    assert hour.status == "invalid" and "1e-5" in hour.note and hour.operations == ()
    assert report.failed_hours == (hour,) and report.files == ()


def test_dry_run_refuses_unsafe_run_ids(tmp_path: Path):
    with pytest.raises(ValueError, match="safe directory name"):
        CloudZeroResource(data_dir=str(tmp_path)).submit({}, run_id="../escape")


def test_report_metadata_says_it_is_a_dry_run(tmp_path: Path):
    files = write_cbf_files(tmp_path, {START: hour_rows(START, 2)})
    meta = CloudZeroResource(data_dir=str(tmp_path)).submit(files, run_id="r2").metadata()
    assert meta["mode"] == "dry_run" and meta["submitted"] is False
    assert meta["reason"] == REASON_NO_CREDENTIALS
    assert meta["dagster/row_count"] == 2 and meta["hours/dry run"] == 1
    assert "2025-01-31T20:00:00Z" in meta["hours"].value
