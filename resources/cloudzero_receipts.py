"""Receipts: what CloudZero holds for each hour, as far as this pipeline knows.

One JSON file per hour, ``<root>/cloudzero/receipts/date=YYYY-MM-DD/hour=HH/receipt.json``,
rewritten whole after every live submission that touched the hour. A receipt names
the destination (URL with the connection id, never the key) so that pointing the pipeline
at another connection starts from "nothing sent". It records the SHA-256 of the CBF file
that was sent, which is how unchanged hours are skipped and emptied hours are found.

States:

* ``submitted``: CloudZero holds exactly the CBF file ``cbf_sha256``.
* ``cleared``: the hour was emptied and CloudZero holds only the zero-cost row.
* ``uncertain``: a delivery touching the hour failed part-way (an ambiguous timeout, or an
  oversize hour whose continuation was refused), so CloudZero may hold anything; the hour
  is always sent again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from os import PathLike
from typing import Any

from resources.cbf import format_hour
from resources.lake import hive_prefix
from resources.storage import storage_at

RECEIPTS_FOLDER = "cloudzero/receipts"
RECEIPT_FILE = "receipt.json"
HISTORY_LIMIT = 20  # earlier submissions kept in each receipt, newest first

SUBMITTED, CLEARED, UNCERTAIN = "submitted", "cleared", "uncertain"


class Action(str, Enum):
    """What a submission does with one hour."""

    SEND = "send"  # rows CloudZero does not hold yet
    CLEAR = "clear"  # no rows now, rows sent before: replace them with one zero-cost row
    UNCHANGED = "unchanged"  # CloudZero already holds this exact file
    NOTHING = "nothing"  # no rows, and nothing was ever sent


@dataclass(frozen=True)
class Receipt:
    hour: str
    state: str
    cbf_sha256: str | None
    destination: str
    run_id: str
    submitted_at: str
    operations: list[str] = field(default_factory=list)
    bodies: int = 0
    rows: int = 0
    bytes: int = 0
    cost_total: str = "0"
    attempts: int = 0
    drop_ids: list[str | None] = field(default_factory=list)
    idempotency_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The part of a receipt kept in the next receipt's history."""
        keys = ("state", "cbf_sha256", "run_id", "submitted_at", "rows", "cost_total", "drop_ids")
        return {k: getattr(self, k) for k in keys}


def plan_action(has_rows: bool, cbf_sha256: str, receipt: Receipt | None, force: bool) -> Action:
    """Decide one hour from its CBF file (rows? content hash) and its receipt."""
    if receipt is None or receipt.state == UNCERTAIN:
        return Action.SEND if has_rows else (Action.CLEAR if receipt else Action.NOTHING)
    if receipt.cbf_sha256 == cbf_sha256 and not force:
        return Action.UNCHANGED
    if has_rows:
        return Action.SEND
    return Action.CLEAR if receipt.state == SUBMITTED or force else Action.UNCHANGED


class ReceiptStore:
    """Receipts of one destination under ``<root>/cloudzero/receipts/``."""

    def __init__(self, root: str | PathLike[str], destination: str) -> None:
        self.storage = storage_at(str(root))
        self.destination = destination

    def key(self, hour: datetime) -> str:
        format_hour(hour)  # rejects naive and non-hour-aligned datetimes
        return f"{hive_prefix(RECEIPTS_FOLDER, hour)}/{RECEIPT_FILE}"

    def url(self, hour: datetime) -> str:
        return self.storage.url(self.key(hour))

    def read(self, hour: datetime) -> Receipt | None:
        """The hour's receipt for this destination; None when nothing was sent there."""
        return self._load(self.key(hour))

    def month(self, month: str) -> dict[str, Receipt]:
        """This destination's receipts for the hours of ``month`` (YYYY-MM), by hour text:
        one listing per day of the month."""
        first = datetime.strptime(month, "%Y-%m")
        days = [first + timedelta(days=d) for d in range(31)]
        prefixes = [f"{RECEIPTS_FOLDER}/date={d:%Y-%m-%d}" for d in days if d.month == first.month]
        keys = [
            e.key
            for entries in self.storage.list_many(prefixes)
            for e in entries
            if e.key.endswith(f"/{RECEIPT_FILE}")
        ]
        receipts = (self._load(k) for k in keys)
        return {r.hour: r for r in receipts if r is not None}

    def _load(self, key: str) -> Receipt | None:
        try:
            data = json.loads(self.storage.read(key).decode("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise ValueError(
                f"receipt {self.storage.url(key)} is not valid JSON ({error}); remove it to resend"
            ) from None
        if data.get("destination") != self.destination:
            return None
        return Receipt(**data)

    def write(self, hour: datetime, receipt: Receipt) -> str:
        """Replace the hour's receipt whole, keeping earlier ones in its history."""
        previous = self.read(hour)
        if previous is not None:
            history = [previous.summary(), *previous.history][:HISTORY_LIMIT]
            receipt = replace(receipt, history=history)
        text = json.dumps(asdict(receipt), indent=2, ensure_ascii=False) + "\n"
        self.storage.write(self.key(hour), text.encode("utf-8"))
        return self.url(hour)
