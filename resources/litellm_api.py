"""Read LiteLLM's spend logs through its REST API, ``GET /spend/logs/v2`` (LiteLLM 1.106.2).

What the endpoint does, and what this reader does about it:

- ``start_date`` / ``end_date`` are ``'YYYY-MM-DD HH:MM:SS'`` in UTC and both *inclusive*
  on ``"startTime"`` (a millisecond timestamp). A window ``[start, end)`` is asked for as
  ``[start, end]`` in whole seconds, and the rows are filtered to ``start <= startTime <
  end`` here, so a row at exactly ``end`` goes to the next window only.
- Paging is ``LIMIT page_size OFFSET (page - 1) * page_size``, ``page_size`` at most 1000,
  ordered by ``"startTime"`` alone. ``total`` counts at most 10,000 rows (``SELECT count(*)
  FROM (… LIMIT 10001)``; above that it says 10,000 and ``total_is_capped`` is true), so pages
  are read until ``data`` is empty, never until ``total``. Equal ``startTime`` values have no
  fixed order between two page queries, and a row written while the pages are read shifts
  the offsets: a row may come twice (dropped here, counted) or not at all. When ``total`` is
  exact, fewer distinct rows than ``total`` means one was skipped, and the window is read
  again.
- So every window is narrowed until its ``total`` is exact: a window whose ``total`` is
  capped is split at a whole second near its middle and each half is read the same way,
  recursively. The API's resolution is one second, so a one-second window is the narrowest
  there is; more than 10,000 rows in one second cannot be proved complete through this
  API, and the read fails naming that second (the database source has no such limit).
- ``metadata`` arrives as an object (or, unhydrated, as JSON text) holding the key hash,
  model price maps and, with some settings, request bodies. Only three values are taken
  from it, while decoding: fields not named in ``Row`` / ``RowMetadata`` are skipped by the
  decoder without ever being built. ``request_tags`` is JSONB that ``query_raw`` leaves as
  JSON text; it is normalised to the JSON text of a list of strings either way.
- One request, its retries and its error messages are ``resources.litellm_api_client``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pyarrow as pa

from resources.litellm_api_client import (
    DEFAULT_TIMEOUT,
    SPEND_LOGS_PATH,
    LiteLLMApiError,
    RetryPolicy,
    SpendLogsClient,
    spend_logs_endpoint,
)
from resources.litellm_api_rows import Page, Row, spend_log_table

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000  # fastapi.Query(le=1000): larger is a 422
TOTAL_COUNT_CAP = 10_000  # SPEND_LOGS_PAGINATION_COUNT_CAP
API_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Offset paging over one UTC hour (see _windows), narrowed while its total is capped.
DEFAULT_WINDOW = timedelta(hours=1)
# A narrowed window holds at most 10,000 rows (11 pages of 1000, the last one empty) unless
# rows keep arriving while it is paged; this stops a proxy that never sends an empty page.
DEFAULT_MAX_PAGES_PER_WINDOW = 1000
# start_date / end_date are whole seconds: no window is asked for narrower than this.
MIN_WINDOW = timedelta(seconds=1)
# Reads of one window while fewer distinct rows than its exact total have arrived.
DEFAULT_MAX_READS_PER_WINDOW = 3
# The whole fetch: a 30-day backfill is ~750 windows, minutes to an hour or two.
DEFAULT_TIME_LIMIT_S = 6 * 3600.0

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


@dataclass(frozen=True)
class ApiSpendLogs:
    """``SPEND_LOG_SCHEMA`` rows with ``start <= start_time < end``, and how they were read."""

    table: pa.Table
    windows: int
    pages: int
    rows_received: int  # every row of every page, repeats included
    rows_outside_window: int  # the API's inclusive end, and sub-second edges
    duplicate_rows: int  # same (request_id, litellm_call_id) again: paging shifts, re-reads
    retries: int
    window_rereads: int  # a window read again because a row was skipped
    windows_split: int  # windows over 10,000 rows, read again as two narrower ones
    narrowed_windows: int  # windows narrower than the caller's, read because of a split

    def metadata(self) -> dict[str, Any]:
        """Plain values for the asset's metadata; ``rows_received`` is the sum of the rest."""
        return {
            "api_endpoint": SPEND_LOGS_PATH,
            "api_rows": self.table.num_rows,
            "api_windows": self.windows,
            "api_pages": self.pages,
            "api_rows_received": self.rows_received,
            "api_rows_outside_window": self.rows_outside_window,
            "api_duplicate_rows": self.duplicate_rows,
            "api_retries": self.retries,
            "api_window_rereads": self.window_rereads,
            "api_windows_split": self.windows_split,
            "api_narrowed_windows": self.narrowed_windows,
        }


# --- public entry point --------------------------------------------------------------


def fetch_spend_logs_api(
    proxy_url: str,
    master_key: str,
    start: datetime,
    end: datetime,
    *,
    client: httpx.Client | None = None,
    page_size: int = MAX_PAGE_SIZE,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    window: timedelta = DEFAULT_WINDOW,
    max_pages_per_window: int = DEFAULT_MAX_PAGES_PER_WINDOW,
    max_reads_per_window: int = DEFAULT_MAX_READS_PER_WINDOW,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S,
) -> ApiSpendLogs:
    """Every spend-log row with ``start <= "startTime" < end`` from ``proxy_url``.

    Naive datetimes are UTC, as in LiteLLM's database. ``client`` (e.g. one with custom
    TLS settings) is used as given, with ``timeout`` applied per request; otherwise a
    client is made and closed here. The master key travels in the ``Authorization`` header
    only. Raises ``LiteLLMApiError``.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
    if window <= timedelta(0) or max_pages_per_window < 1 or max_reads_per_window < 1:
        raise ValueError("window, max_pages_per_window and max_reads_per_window must be positive")
    start, end = _as_utc(start), _as_utc(end)
    endpoint = spend_logs_endpoint(proxy_url)
    owned = client is None
    api = SpendLogsClient(
        client=client or httpx.Client(timeout=timeout, follow_redirects=False),
        endpoint=endpoint,
        master_key=master_key,
        timeout=timeout,
        retry=retry or RetryPolicy(),
        deadline=time.monotonic() + time_limit_s,
    )
    reader = _Reader(
        api=api,
        page_size=page_size,
        max_pages_per_window=max_pages_per_window,
        max_reads_per_window=max_reads_per_window,
    )
    try:
        for window_start, window_end in _windows(start, end, window):
            reader.read_window(window_start, window_end)
    finally:
        if owned:
            api.client.close()
    return reader.result()


# --- windows and times ---------------------------------------------------------------


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=_UTC) if moment.tzinfo is None else moment.astimezone(_UTC)


def _windows(
    start: datetime, end: datetime, width: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """``[start, end)`` cut at multiples of ``width`` since the epoch (whole UTC hours).

    One request window per hour rather than one for the whole range, because offset
    paging gets worse with the window's size: PostgreSQL reads and discards every skipped
    row, so page k costs k pages (a 30-day window would be quadratic); the longer the
    paging takes, the likelier rows shift under it; an hour usually stays under the
    10,000-row count cap, so its exact ``total`` proves nothing was skipped (a busier hour
    is narrowed, see ``_split_point``); and a retry or re-read repeats one hour, not the
    range. It is also the pipeline's partition.
    """
    cursor = start
    while cursor < end:
        boundary = _EPOCH + ((cursor - _EPOCH) // width + 1) * width
        window_end = min(boundary, end)
        yield cursor, window_end
        cursor = window_end


def _split_point(start: datetime, end: datetime) -> datetime | None:
    """A whole second strictly inside ``(start, end)``, near the middle; ``None`` when the
    window is asked for as one second already (``_api_time``) and cannot be narrowed.

    Whole seconds, because that is what ``start_date`` / ``end_date`` carry: each half is
    then asked for as exactly its own seconds, plus the rows at its end's ``.000`` (the
    inclusive end, filtered out here).
    """
    second = (start + (end - start) / 2).replace(microsecond=0)
    if second <= start:
        second += MIN_WINDOW
    return second if second < end else None


def _api_time(moment: datetime, *, round_up: bool) -> str:
    """``moment`` at the API's one-second resolution, widened so the window is covered."""
    whole = moment.replace(microsecond=0)
    if round_up and whole < moment:
        whole += timedelta(seconds=1)
    return whole.strftime(API_TIME_FORMAT)


# --- the reader ----------------------------------------------------------------------


@dataclass
class _Counters:
    windows: int = 0
    pages: int = 0
    rows_received: int = 0
    rows_outside_window: int = 0
    duplicate_rows: int = 0
    window_rereads: int = 0
    windows_split: int = 0
    narrowed_windows: int = 0


class _Reader:
    """Reads windows page by page into one list of kept rows; owns retries and counters."""

    def __init__(
        self,
        *,
        api: SpendLogsClient,
        page_size: int,
        max_pages_per_window: int,
        max_reads_per_window: int,
    ) -> None:
        self.api = api
        self.page_size = page_size
        self.max_pages_per_window = max_pages_per_window
        self.max_reads_per_window = max_reads_per_window
        self.counters = _Counters()
        self.kept: list[Row] = []
        self.seen: set[tuple[str, str | None]] = set()

    def read_window(self, start: datetime, end: datetime) -> None:
        """Keep every row of ``[start, end)``, narrowing the window while its total is capped."""
        self.counters.windows += 1
        self._read_complete(start, end)

    def _read_complete(self, start: datetime, end: datetime) -> None:
        """Read the window until its distinct rows reach its exact total; split it if capped."""
        window_keys: set[tuple[str, str | None]] = set()  # its inclusive API range
        for read in range(1, self.max_reads_per_window + 1):
            if read > 1:
                self.counters.window_rereads += 1
            total, capped = self._read_window_once(start, end, window_keys)
            if capped:
                self._split(start, end)
                return
            if total is None or len(window_keys) >= total:
                return
            log.warning(
                "LiteLLM %s: %d distinct rows for %s..%s but total says %d; reading it again",
                SPEND_LOGS_PATH,
                len(window_keys),
                _api_time(start, round_up=False),
                _api_time(end, round_up=True),
                total,
            )
        raise LiteLLMApiError(
            f"LiteLLM {self.api.display_url} skipped rows of {_api_time(start, round_up=False)}.."
            f"{_api_time(end, round_up=True)}: it counted {total} rows but {len(window_keys)} "
            f"distinct rows arrived in {self.max_reads_per_window} reads (rows changing while "
            "paged?); rerun the partition"
        )

    def _split(self, start: datetime, end: datetime) -> None:
        """Read a window over the count cap as two narrower ones (rows already kept stay)."""
        middle = _split_point(start, end)
        if middle is None:
            second = _api_time(start, round_up=False)
            raise LiteLLMApiError(
                f"LiteLLM {self.api.display_url} holds more than {TOTAL_COUNT_CAP:,} spend-log "
                f'rows with "startTime" in the second {second} UTC: {SPEND_LOGS_PATH} filters '
                f"to the second and counts at most {TOTAL_COUNT_CAP:,} rows, so that second "
                "cannot be read and proved complete through the API; read this range from "
                "LiteLLM's database instead (set LITELLM_DATABASE_URL)"
            )
        self.counters.windows_split += 1
        for half_start, half_end in ((start, middle), (middle, end)):
            self.counters.narrowed_windows += 1
            self._read_complete(half_start, half_end)

    def _read_window_once(
        self, start: datetime, end: datetime, window_keys: set[tuple[str, str | None]]
    ) -> tuple[int | None, bool]:
        """One pass over the window's pages: the last ``total`` and whether it is capped.

        A first page whose total is capped ends the pass: the window is narrowed rather
        than paged (its rows are kept; the narrower reads find them again as duplicates).
        """
        params = {
            "start_date": _api_time(start, round_up=False),
            "end_date": _api_time(end, round_up=True),  # inclusive: rows at `end` filtered out
            "page_size": str(self.page_size),
            "sort_by": "startTime",
            "sort_order": "asc",  # with offsets, new rows land after the read part, mostly
        }
        for page in range(1, self.max_pages_per_window + 1):
            response = self.api.get_page({**params, "page": str(page)})
            self.counters.pages += 1
            self._keep(response.data, start, end, window_keys)
            if not response.data or (page == 1 and _is_capped(response)):
                return response.total, _is_capped(response)
        raise LiteLLMApiError(
            f"LiteLLM {self.api.display_url} still returned rows for {params['start_date']}.."
            f"{params['end_date']} after {self.max_pages_per_window} pages of {self.page_size}; "
            "refusing to page further (raise max_pages_per_window or shorten the window)"
        )

    def _keep(
        self,
        rows: list[Row],
        start: datetime,
        end: datetime,
        window_keys: set[tuple[str, str | None]],
    ) -> None:
        counters = self.counters
        counters.rows_received += len(rows)
        for row in rows:
            key = (row.request_id, row.litellm_call_id)
            window_keys.add(key)
            moment = row.start_time
            if moment.tzinfo is None:  # "startTime" is UTC without a zone
                moment = row.start_time = moment.replace(tzinfo=_UTC)
            if not start <= moment < end:
                counters.rows_outside_window += 1
            elif key in self.seen:
                counters.duplicate_rows += 1
            else:
                self.seen.add(key)
                self.kept.append(row)

    def result(self) -> ApiSpendLogs:
        c = self.counters
        return ApiSpendLogs(
            table=spend_log_table(self.kept),
            windows=c.windows,
            pages=c.pages,
            rows_received=c.rows_received,
            rows_outside_window=c.rows_outside_window,
            duplicate_rows=c.duplicate_rows,
            retries=self.api.retries,
            window_rereads=c.window_rereads,
            windows_split=c.windows_split,
            narrowed_windows=c.narrowed_windows,
        )


def _is_capped(page: Page) -> bool:
    """Whether ``total`` is the count cap rather than the count (``total_is_capped`` is new)."""
    if page.total_is_capped is not None:
        return page.total_is_capped
    return (page.total or 0) >= TOTAL_COUNT_CAP
