from datetime import datetime, timezone
from pathlib import Path

import pytest

from resources.cloudzero_receipts import (
    CLEARED,
    HISTORY_LIMIT,
    SUBMITTED,
    UNCERTAIN,
    Action,
    Receipt,
    ReceiptStore,
    plan_action,
)

HOUR = datetime(2026, 4, 30, 23, tzinfo=timezone.utc)
DEST = "http://127.0.0.1:9/v2/connections/billing/anycost/conn-1/billing_drops"


def receipt(state: str = SUBMITTED, sha: str | None = "aaa", run_id: str = "r1") -> Receipt:
    return Receipt(
        hour="2026-04-30T23:00:00Z",
        state=state,
        cbf_sha256=sha,
        destination=DEST,
        run_id=run_id,
        submitted_at="2026-05-01T00:10:00Z",
        rows=3,
        cost_total="1.5",
    )


@pytest.mark.parametrize(
    ("has_rows", "sha", "previous", "force", "action"),
    [
        (True, "aaa", None, False, Action.SEND),  # never sent
        (False, "empty", None, False, Action.NOTHING),  # empty and never sent
        (True, "aaa", receipt(), False, Action.UNCHANGED),  # CloudZero holds this file
        (True, "aaa", receipt(), True, Action.SEND),  # forced
        (True, "bbb", receipt(), False, Action.SEND),  # restated
        (False, "empty", receipt(), False, Action.CLEAR),  # emptied after a submission
        (False, "empty", receipt(CLEARED, "empty"), False, Action.UNCHANGED),  # cleared already
        (False, "empty", receipt(CLEARED, "empty"), True, Action.CLEAR),
        (True, "aaa", receipt(UNCERTAIN, None), False, Action.SEND),  # a delivery failed
        (False, "empty", receipt(UNCERTAIN, None), False, Action.CLEAR),
    ],
)
def test_plan_action(has_rows, sha, previous, force, action):
    assert plan_action(has_rows, sha, previous, force) is action


def test_store_round_trip_keeps_history_and_ignores_other_destinations(tmp_path: Path):
    store = ReceiptStore(tmp_path, DEST)
    assert store.read(HOUR) is None
    path = store.write(HOUR, receipt(run_id="r1"))
    assert path == str(tmp_path / "cloudzero/receipts/date=2026-04-30/hour=23/receipt.json")
    assert store.read(HOUR) == receipt(run_id="r1")
    for n in range(2, HISTORY_LIMIT + 5):
        store.write(HOUR, receipt(sha=f"sha-{n}", run_id=f"r{n}"))
    latest = store.read(HOUR)
    assert latest.run_id == f"r{HISTORY_LIMIT + 4}"
    assert len(latest.history) == HISTORY_LIMIT
    assert [h["run_id"] for h in latest.history[:2]] == [
        f"r{HISTORY_LIMIT + 3}",
        f"r{HISTORY_LIMIT + 2}",
    ]
    assert "history" not in latest.history[0]  # summaries do not nest
    assert ReceiptStore(tmp_path, DEST.replace("conn-1", "conn-2")).read(HOUR) is None


def test_a_corrupt_receipt_is_a_clear_error(tmp_path: Path):
    store = ReceiptStore(tmp_path, DEST)
    path = Path(store.url(HOUR))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="remove it to resend"):
        store.read(HOUR)
