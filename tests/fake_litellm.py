"""A fake LiteLLM proxy on 127.0.0.1: ``GET /spend/logs/v2`` as LiteLLM 1.106.2 serves it.

What it reproduces of ``ui_view_spend_logs`` (``proxy/spend_tracking/
spend_management_endpoints.py``): bearer master-key auth with LiteLLM's 401/403 bodies;
``start_date`` / ``end_date`` as ``'YYYY-MM-DD HH:MM:SS'`` or ``'YYYY-MM-DD'`` in UTC, both
inclusive on ``"startTime"``; ``sort_by`` / ``sort_order``; ``LIMIT``/``OFFSET`` pages with
``page_size`` ≤ 1000 (FastAPI's 422 above); ``total`` counted as LiteLLM counts it,
``SELECT count(*) FROM (… LIMIT 10001)``, so above 10,000 rows it says 10,000 with
``total_is_capped`` true, while the pages still serve every row (the listing's ``OFFSET`` is not
bounded by the cap); rows carrying the list columns only (no ``messages`` / ``response``), with
``metadata`` hydrated to an object and ``request_tags`` left as JSON text, as ``query_raw``
leaves it. Datetimes are serialised as FastAPI serialises the aware datetimes Prisma returns:
``2026-03-01T10:59:59.999000+00:00``, or ``…T11:00:00+00:00`` on a whole second.

Faults are queued with ``inject``: each of the next requests to the endpoint takes one
action, ``"500"``, ``"503"``, ``"429"`` (with ``Retry-After``), ``"hang"`` (no answer for
``hang_s``), ``"ok"``, or a callable run before the request is served (to change the rows
between two pages). Every request is recorded.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fake_server import FakeHandler, FakeServer

MASTER_KEY = "sk-fake-master-4f7a19c2d0"
SPEND_LOGS_PATH = "/spend/logs/v2"
COUNT_CAP = 10_000
MAX_PAGE_SIZE = 1000
VALID_SORT_FIELDS = (
    "spend",
    "total_tokens",
    "startTime",
    "endTime",
    "request_duration_ms",
    "model",
    "ttft_ms",
)
# Content that must never reach the lake: found anywhere in a result, it leaked.
PROMPT_MARKER = "PROMPT-MARKER-3b9d"
RESPONSE_MARKER = "RESPONSE-MARKER-77e1"
CONTENT_MARKERS = (PROMPT_MARKER, RESPONSE_MARKER, "KEYHASH-MARKER", "10.9.8.7", "CACHEKEY-MARKER")

Action = str | Callable[["FakeLiteLLM"], None]
UTC = timezone.utc


def litellm_time(moment: datetime, time_format: str = "fastapi") -> str:
    """``moment`` as LiteLLM's JSON carries it; other formats for tolerance tests."""
    moment = moment.astimezone(UTC)
    if time_format == "fastapi":  # datetime.isoformat() of Prisma's aware datetime
        return moment.isoformat()
    if time_format == "z":  # Prisma's own RFC 3339 text, milliseconds and Z
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if time_format == "naive":  # a naive UTC datetime
        return moment.replace(tzinfo=None).isoformat()
    raise ValueError(time_format)


def spend_log_row(
    request_id: str,
    start_time: datetime,
    *,
    spend: float = 0.00042,
    duration_ms: int = 850,
    call_id: str | None = "",
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    tags: Sequence[str] = ("x-department: finance",),
    tags_as_text: bool = True,
    key_alias: str | None = "billing-service-key",
    team_alias: str | None = "billing",
    team_id: str | None = "team-billing",
    user: str | None = "",
    key_user_id: str | None = "user-7",
    status: str = "success",
    metadata_as_text: bool = False,
    time_format: str = "fastapi",
) -> dict[str, Any]:
    """One ``data`` row of ``/spend/logs/v2``: ``_SPEND_LOG_LIST_COLUMNS`` with real-shaped
    metadata, including the key hash, price map and request body the reader must drop."""
    end_time = start_time + timedelta(milliseconds=duration_ms)
    metadata = {
        "user_api_key": "KEYHASH-MARKER" + hashlib.sha256(request_id.encode()).hexdigest()[:20],
        "user_api_key_alias": key_alias,
        "user_api_key_team_id": team_id,
        "user_api_key_org_id": None,
        "user_api_key_user_id": key_user_id,
        "user_api_key_team_alias": team_alias,
        "user_api_key_project_id": None,
        "spend_logs_metadata": {"ticket": PROMPT_MARKER},
        "requester_ip_address": "10.9.8.7",
        "applied_guardrails": [],
        "status": status,
        "proxy_server_request": json.dumps(
            {"model": model, "messages": [{"role": "user", "content": PROMPT_MARKER}]}
        ),
        "error_information": (
            None
            if status == "success"
            else {"error_code": "500", "error_message": RESPONSE_MARKER, "traceback": "…"}
        ),
        "usage_object": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30},
        "model_map_information": {
            "model_map_key": model,
            "model_map_value": {
                "input_cost_per_token": 1.5e-07,
                "output_cost_per_token": 6e-07,
                "litellm_provider": provider,
                "supports_vision": True,
            },
        },
        "additional_usage_values": {
            "completion_tokens_details": None,
            "reasoning": RESPONSE_MARKER,
        },
        "cost_breakdown": {
            "input_cost": spend / 3,
            "output_cost": spend * 2 / 3,
            "total_cost": spend,
        },
        "litellm_overhead_time_ms": 3.2,
        "attempted_retries": 0,
    }
    return {
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": "KEYHASH-MARKER" + hashlib.sha256(b"virtual-key").hexdigest()[:30],
        "spend": spend,
        "total_tokens": 30,
        "prompt_tokens": 21,
        "completion_tokens": 9,
        "startTime": litellm_time(start_time, time_format),
        "endTime": litellm_time(end_time, time_format),
        "completionStartTime": litellm_time(end_time, time_format),
        "model": model,
        "model_id": "deployment-1",
        "model_group": model,
        "custom_llm_provider": provider,
        "api_base": "https://api.example.invalid/v1",
        "user": user,
        "metadata": json.dumps(metadata) if metadata_as_text else metadata,
        "cache_hit": "False",
        "cache_key": "CACHEKEY-MARKER",
        "request_tags": json.dumps(list(tags)) if tags_as_text else list(tags),
        "team_id": team_id,
        "organization_id": None,
        "end_user": None,
        "requester_ip_address": "10.9.8.7",
        "session_id": f"session-{request_id}",
        "status": status,
        "mcp_namespaced_tool_name": None,
        "agent_id": None,
        "litellm_call_id": request_id if call_id == "" else call_id,
        "request_duration_ms": duration_ms,
    }


@dataclass
class ServedRequest:
    """A request, recorded as it arrives (a hanging one too); ``status`` once answered."""

    path: str
    query: str
    params: dict[str, str]
    has_authorization: bool
    at: float  # time.monotonic() when the request arrived
    status: int | None = None  # None: not answered (yet, or ever: a hang cut by shutdown)


@dataclass(frozen=True)
class _StoredRow:
    start: datetime
    encoded: bytes  # the row's JSON, encoded once
    row: dict[str, Any]


class FakeLiteLLM(FakeServer):
    """The fake proxy; a context manager that serves on ``url`` until it exits."""

    def __init__(
        self,
        rows: Iterable[dict[str, Any]] = (),
        *,
        master_key: str = MASTER_KEY,
        forbidden_keys: Iterable[str] = (),
        retry_after: str | None = "1",
        hang_s: float = 5.0,
        has_database: bool = True,
    ) -> None:
        self.master_key = master_key
        self.forbidden_keys = frozenset(forbidden_keys)
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.has_database = has_database
        super().__init__(_Handler)
        self._rows: list[_StoredRow] = []
        self._starts: list[datetime] = []
        self._actions: deque[Action] = deque()
        self._requests: list[ServedRequest] = []
        self.add_rows(rows)

    # --- setup ---

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        stored = [
            _StoredRow(_parse_row_time(r["startTime"]), json.dumps(r).encode(), r) for r in rows
        ]
        with self._lock:
            # Stable sort: rows with one startTime keep their insertion order.
            self._rows = sorted([*self._rows, *stored], key=lambda s: s.start)
            self._starts = [s.start for s in self._rows]

    def inject(self, *actions: Action) -> None:
        """Queue one action for each of the next requests to ``/spend/logs/v2``."""
        with self._lock:
            self._actions.extend(actions)

    @property
    def requests(self) -> list[ServedRequest]:
        with self._lock:
            return list(self._requests)

    def spend_log_requests(self) -> list[ServedRequest]:
        return [r for r in self.requests if r.path == SPEND_LOGS_PATH]

    def rows_counted(self, start_date: str, end_date: str) -> int:
        """The rows a request for ``start_date..end_date`` matches, before the count cap."""
        return len(self._select(_parse_date(start_date), _parse_date(end_date), "startTime", False))

    # --- what a request gets ---

    def _next_action(self) -> Action:
        with self._lock:
            return self._actions.popleft() if self._actions else "ok"

    def _record(self, request: ServedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _select(self, start: datetime, end: datetime, sort_by: str, descending: bool) -> list:
        with self._lock:
            first = bisect.bisect_left(self._starts, start)
            last = bisect.bisect_right(self._starts, end)  # end_date is inclusive
            rows = self._rows[first:last]
        if sort_by == "startTime":
            return rows[::-1] if descending else rows
        # Other fields as PostgreSQL orders them: NULLs sort last ascending, first descending.
        return sorted(rows, key=lambda s: _sort_key(s.row.get(sort_by)), reverse=descending)


class _Handler(FakeHandler[FakeLiteLLM]):
    """The proxy's routes, on keep-alive connections as a real proxy behind uvicorn serves them."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        fake = self.server.fake
        split = urlsplit(self.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        has_authorization = "authorization" in {k.lower() for k in self.headers.keys()}
        request = ServedRequest(
            split.path, split.query, params, has_authorization, time.monotonic()
        )
        fake._record(request)
        if split.path != SPEND_LOGS_PATH:
            request.status = self._send_json(404, {"detail": "Not Found"})
        else:
            request.status = self._serve_spend_logs(fake, params)

    # --- /spend/logs/v2 ---

    def _serve_spend_logs(self, fake: FakeLiteLLM, params: dict[str, str]) -> int | None:
        action = fake._next_action()
        if callable(action):
            action(fake)
        elif action == "hang":
            if fake._stopping.wait(fake.hang_s):
                self.close_connection = True
                return None
        elif action in ("500", "503"):
            return self._send_error(int(action), "injected failure", "internal_server_error")
        elif action == "429":
            headers = {"Retry-After": fake.retry_after} if fake.retry_after is not None else {}
            return self._send_error(
                429, "Rate limit exceeded (injected)", "throttling_error", headers
            )
        elif action != "ok":
            raise ValueError(f"unknown action {action!r}")
        if (refused := self._check_auth(fake)) is not None:
            return refused
        if not fake.has_database:  # the endpoint's own check, after auth, with code 401
            return self._send_error(401, "Prisma Client is not initialized", "internal_error")
        return self._answer_page(fake, params)

    def _check_auth(self, fake: FakeLiteLLM) -> int | None:
        header = self.headers.get("Authorization")
        if header is None:
            return self._send_error(
                401, "Authentication Error, No api key passed in.", "auth_error"
            )
        if not header.startswith("Bearer "):
            message = "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix."
            return self._send_error(401, message, "auth_error")
        key = header.removeprefix("Bearer ").strip()
        if key in fake.forbidden_keys:
            message = (
                "user not allowed to access this route, role= internal_user. "
                f"Trying to access: {SPEND_LOGS_PATH}"
            )
            return self._send_error(403, message, "auth_error")
        if key != fake.master_key:
            # LiteLLM's own text: the key's last four characters and its SHA-256.
            abbreviated = f"sk-...{key[-4:]}" if len(key) >= 8 else "sk-..."
            message = (
                "Authentication Error, Invalid proxy server token passed. Received API Key = "
                f"{abbreviated}, Key Hash (Token) ={hashlib.sha256(key.encode()).hexdigest()}. "
                "Unable to find token in cache or `LiteLLM_VerificationTokenTable`"
            )
            return self._send_error(401, message, "auth_error")
        return None

    def _answer_page(self, fake: FakeLiteLLM, params: dict[str, str]) -> int:
        page = _int_param(params, "page", 1, minimum=1)
        page_size = _int_param(params, "page_size", 50, minimum=1, maximum=MAX_PAGE_SIZE)
        for problem in (page, page_size):
            if isinstance(problem, dict):
                return self._send_json(422, {"detail": [problem]})
        sort_by = params.get("sort_by", "startTime")
        sort_order = params.get("sort_order", "desc")
        if sort_by not in VALID_SORT_FIELDS:
            message = f"Invalid sort_by: {sort_by}. Must be one of: {', '.join(sorted(VALID_SORT_FIELDS))}"
            return self._send_error(400, message, "bad_request")
        if sort_order.lower() not in ("asc", "desc"):
            message = f"Invalid sort_order: {sort_order}. Must be one of: asc, desc"
            return self._send_error(400, message, "bad_request")
        if "start_date" not in params or "end_date" not in params:
            return self._send_error(400, "Start date and end date are required", "bad_request")
        try:
            start, end = _parse_date(params["start_date"]), _parse_date(params["end_date"])
        except ValueError as exc:
            return self._send_error(400, str(exc), "internal_server_error")

        rows = fake._select(start, end, sort_by, sort_order.lower() == "desc")
        offset = (page - 1) * page_size
        shown = rows[offset : offset + page_size]
        total = min(len(rows), COUNT_CAP)
        tail = {
            "total": total,
            "page": page,
            "page_size": page_size,
            "total_pages": (total + page_size - 1) // page_size,
            "total_is_capped": len(rows) > COUNT_CAP,
        }
        body = (
            b'{"data":['
            + b",".join(s.encoded for s in shown)
            + b"],"
            + json.dumps(tail)[1:].encode()
        )
        return self._send(200, body)

    # --- answers ---

    def _send_error(
        self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None
    ) -> int:
        # ProxyException.to_dict() under "error", as LiteLLM's exception handler answers.
        error = {"message": message, "type": error_type, "param": "None", "code": str(status)}
        return self._send_json(status, {"error": error}, headers)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        return self._send(status, json.dumps(body).encode(), headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> int:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (its timeout) and closed the connection
            self.close_connection = True
        return status


def _parse_row_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_date(text: str) -> datetime:
    """LiteLLM's ``parse_date`` for the v2 route: two formats, UTC."""
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(
        f"Invalid date format: {text}. Expected: 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"
    )


def _int_param(
    params: dict[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int | dict[str, Any]:
    """The parameter, or FastAPI's validation error entry for it."""
    raw = params.get(name)
    if raw is None:
        return default
    loc = ["query", name]
    try:
        value = int(raw)
    except ValueError:
        return {
            "type": "int_parsing",
            "loc": loc,
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": raw,
        }
    if value < minimum:
        return {
            "type": "greater_than_equal",
            "loc": loc,
            "msg": f"Input should be greater than or equal to {minimum}",
            "input": raw,
            "ctx": {"ge": minimum},
        }
    if maximum is not None and value > maximum:
        return {
            "type": "less_than_equal",
            "loc": loc,
            "msg": f"Input should be less than or equal to {maximum}",
            "input": raw,
            "ctx": {"le": maximum},
        }
    return value


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


# _SPEND_LOG_LIST_COLUMNS of LiteLLM 1.106.2, what /spend/logs/v2 selects: never messages,
# response or proxy_server_request, but all of metadata.
API_LIST_COLUMNS = (
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "endTime",
    "completionStartTime",
    "model",
    "model_id",
    "model_group",
    "custom_llm_provider",
    "api_base",
    "user",
    "metadata",
    "cache_hit",
    "cache_key",
    "request_tags",
    "team_id",
    "organization_id",
    "end_user",
    "requester_ip_address",
    "session_id",
    "status",
    "mcp_namespaced_tool_name",
    "agent_id",
    "litellm_call_id",
    "request_duration_ms",
)


def api_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``"LiteLLM_SpendLogs"`` row as one ``data`` entry of ``/spend/logs/v2``.

    The endpoint reads the list columns with Prisma's ``query_raw``, which leaves JSONB as
    JSON text; ``_hydrate_spend_log_metadata`` parses ``metadata`` back into an object while
    ``request_tags`` stays text. FastAPI writes Prisma's aware UTC datetimes with
    ``isoformat()``.
    """
    served = {name: row[name] for name in API_LIST_COLUMNS}
    for name in ("startTime", "endTime", "completionStartTime"):
        if served[name] is not None:
            served[name] = litellm_time(served[name])
    if served["metadata"] is not None:
        served["metadata"] = json.loads(json.dumps(served["metadata"]))  # a JSONB round trip
    if served["request_tags"] is not None:
        served["request_tags"] = json.dumps(served["request_tags"])
    return served
