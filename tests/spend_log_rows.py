"""Rows of LiteLLM's ``"LiteLLM_SpendLogs"`` as LiteLLM 1.106.2 writes them, and a fast loader.

* ``spend_log_row(**overrides)``: one realistic row, every column filled the way LiteLLM's
  ``get_logging_payload`` fills it, heavy content included;
* ``rows_from_traffic(traffic)``: the rows LiteLLM's database gets for the requests of the
  demo's sample traffic (``demo.traffic``), so the webhook and the database tell one story;
* ``with_defects(rows)``: those rows plus the data defects LiteLLM really produces;
* ``load_rows(dsn, rows)``: creates the table from ``tests/fixtures/litellm`` if missing and
  streams rows in with ``COPY``, a bounded chunk at a time (fit for a million rows).

Every row carries content that must never leave the database: prompts and completions
(``messages``, ``response``, ``proxy_server_request``), the request's headers with a bearer
key (inside ``metadata.proxy_server_request``) and the model price map. Each holds one of
``SECRET_MARKERS``, so a test can grep everything the pipeline wrote for them.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import psycopg2

from demo.payloads import SECRET_MARKERS as TRAFFIC_SECRET_MARKERS
from demo.traffic import Traffic
from tests.samples import LITELLM_FIXTURES

LITELLM_VERSION = "1.106.2"
DDL_PATH = LITELLM_FIXTURES / f"spend_logs_{LITELLM_VERSION}.sql"
TABLE = "LiteLLM_SpendLogs"

CONTENT_MARKER = "CONTENT-MARKER-"
KEY_MARKER = "sk-live-SECRET-"  # the prefix of every fake virtual key, as in demo.payloads
SECRET_MARKERS = (CONTENT_MARKER, *TRAFFIC_SECRET_MARKERS)

# Every column in the DDL's order, with how COPY receives it.
COLUMNS: dict[str, str] = {
    "request_id": "text",
    "call_type": "text",
    "api_key": "text",
    "spend": "float",
    "total_tokens": "int",
    "prompt_tokens": "int",
    "completion_tokens": "int",
    "startTime": "timestamp",
    "endTime": "timestamp",
    "request_duration_ms": "int",
    "completionStartTime": "timestamp",
    "model": "text",
    "model_id": "text",
    "model_group": "text",
    "custom_llm_provider": "text",
    "api_base": "text",
    "user": "text",
    "metadata": "json",
    "cache_hit": "text",
    "cache_key": "text",
    "request_tags": "json",
    "team_id": "text",
    "organization_id": "text",
    "end_user": "text",
    "requester_ip_address": "text",
    "messages": "json",
    "response": "json",
    "session_id": "text",
    "status": "text",
    "mcp_namespaced_tool_name": "text",
    "billing_agent_id": "text",
    "agent_id": "text",
    "proxy_server_request": "json",
    "litellm_call_id": "text",
    "created_at": "timestamp",
    "updated_at": "timestamp",
}

UTC = timezone.utc
PROXY_URL = "http://llm-proxy.internal:4000/v1/chat/completions"
# LiteLLM's DB writer flushes queued spend rows every few seconds: created_at trails endTime.
WRITE_DELAY = timedelta(seconds=4)


def _digest(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def _ms(moment: datetime) -> datetime:
    """``moment`` in UTC, cut to the milliseconds ``TIMESTAMP(3)`` keeps."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _from_epoch(seconds: float) -> datetime:
    # Whole milliseconds first: the float's own error must not move the stored value.
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=round(seconds * 1000))


def _duration_ms(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() * 1000)  # as LiteLLM computes it


def _model_map_information(model: str, provider: str, input_price: float, output_price: float):
    """LiteLLM's price-map entry for the model: bulky, and never something to copy."""
    return {
        "model_map_key": model,
        "model_map_value": {
            "key": model,
            "max_input_tokens": 128000,
            "max_output_tokens": 16384,
            "input_cost_per_token": input_price,
            "output_cost_per_token": output_price,
            "litellm_provider": provider,
            "mode": "chat",
            "supports_function_calling": True,
            "supports_vision": True,
            "source": f"https://prices.example.invalid/{CONTENT_MARKER}price-map",
        },
    }


def _error_information(failed: bool) -> dict[str, Any]:
    return {
        "error_code": "429" if failed else "",
        "error_class": "RateLimitError" if failed else "",
        "llm_provider": "openai" if failed else "",
        "traceback": "",
        "error_message": "Rate limit reached for requests" if failed else "",
    }


def _request_record(headers: dict[str, str], body: dict[str, Any]) -> str:
    """``metadata.proxy_server_request``: the whole HTTP request, as a JSON string."""
    return json.dumps({"url": PROXY_URL, "method": "POST", "headers": headers, "body": body})


@dataclass(frozen=True)
class _Caller:
    key_hash: str  # LiteLLM's api_key: sha256 of the raw virtual key (hash_token)
    key_alias: str | None
    team_alias: str | None
    team_id: str | None
    user_id: str


DEFAULT_KEY = KEY_MARKER + "0f3c9a2b7d4e41c8a6b5e9d2c1f0a7b3"  # the fake raw virtual key
DEFAULT_CALLER = _Caller(
    key_hash=_digest(DEFAULT_KEY),
    key_alias="billing-service-key",
    team_alias="finance-ops",
    team_id="6c1f7a52-3b8e-4d0a-9f61-2e7d5c4b3a19",
    user_id="svc-billing",
)
DEFAULT_START = datetime(2026, 1, 15, 10, 15, 30, 123000, tzinfo=UTC)
DEFAULT_MODEL = ("openai/gpt-4o-mini", "gpt-4o-mini", "openai", 1.5e-07, 6e-07)
DEFAULT_TAGS = [
    "x-department: finance",
    "x-team: billing",
    "User-Agent: python-httpx",
    "User-Agent: python-httpx/0.28.1",
]


def _metadata(
    caller: _Caller,
    call_id: str | None,
    usage: dict[str, int],
    failed: bool,
    model_map: dict[str, Any],
    request_record: str,
    cost_breakdown: dict[str, float] | None,
    error_information: dict[str, Any] | None = None,
    ip_address: str = "10.0.12.7",
    user_agent: str = "python-httpx/0.28.1",
    spend_logs_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON LiteLLM keeps in ``metadata`` (its ``SpendLogsMetadata``), hashed key included."""
    return {
        "user_api_key": caller.key_hash,
        "user_api_key_alias": caller.key_alias,
        "user_api_key_team_id": caller.team_id,
        "user_api_key_project_id": None,
        "user_api_key_project_alias": None,
        "user_api_key_org_id": None,
        "user_api_key_user_id": caller.user_id,
        "user_api_key_team_alias": caller.team_alias,
        "spend_logs_metadata": spend_logs_metadata,
        "requester_ip_address": ip_address,
        "user_agent": user_agent,
        "litellm_call_id": call_id,
        "applied_guardrails": [],
        "mcp_tool_call_metadata": None,
        "vector_store_request_metadata": None,
        "routing_decision": None,
        "guardrail_information": None,
        "status": "failure" if failed else "success",
        "proxy_server_request": request_record,
        "batch_models": None,
        "error_information": error_information or _error_information(failed),
        "usage_object": {} if failed else usage,
        "model_map_information": model_map,
        "cold_storage_object_key": None,
        "litellm_overhead_time_ms": 3.2,
        "attempted_retries": 0,
        "max_retries": 0,
        "cost_breakdown": cost_breakdown,
        "additional_usage_values": {"completion_tokens_details": None},
    }


def spend_log_row(**overrides: Any) -> dict[str, Any]:
    """One successful chat completion's row; ``overrides`` replace columns by name.

    Ids are fresh UUIDs unless given, so rows never collide on the primary key. Times,
    duration, token total and spend follow ``startTime`` and the token counts you pass,
    unless you pass those columns too. Times are UTC-aware, to the millisecond.
    """
    unknown = sorted(set(overrides) - set(COLUMNS))
    if unknown:
        raise TypeError(f"not columns of {TABLE}: {', '.join(unknown)}")
    model, group, provider, input_price, output_price = DEFAULT_MODEL
    caller = DEFAULT_CALLER
    call_id = overrides.get("litellm_call_id", str(uuid.uuid4()))
    request_id = overrides.get("request_id", f"chatcmpl-{uuid.uuid4()}")
    start = _ms(overrides.get("startTime", DEFAULT_START))
    end = _ms(overrides.get("endTime", start + timedelta(milliseconds=2468)))
    prompt = overrides.get("prompt_tokens", 1200)
    completion = overrides.get("completion_tokens", 350)
    input_cost, output_cost = prompt * input_price, completion * output_price
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    marker = f"{CONTENT_MARKER}{call_id}"
    messages = [
        {"role": "system", "content": "You reconcile invoices for the finance team."},
        # Prompts carry whatever users paste, credentials included.
        {
            "role": "user",
            "content": f"{marker}: why does `curl -H 'Authorization: Bearer {DEFAULT_KEY}'`"
            " return 401 when I fetch invoice INV-2291?",
        },
    ]
    body = {"model": group, "messages": messages, "temperature": 0.2, "metadata": {}}
    headers = {
        "host": "llm-proxy.internal:4000",
        "authorization": f"Bearer {DEFAULT_KEY}",
        "content-type": "application/json",
        "user-agent": "python-httpx/0.28.1",
        "x-department": "finance",
        "x-team": "billing",
    }
    row = {
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": caller.key_hash,
        "spend": input_cost + output_cost,
        "total_tokens": usage["total_tokens"],
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "startTime": start,
        "endTime": end,
        "request_duration_ms": _duration_ms(start, end),
        "completionStartTime": end,  # not streamed: LiteLLM uses the end time
        "model": model,
        "model_id": _digest("deployment", model),
        "model_group": group,
        "custom_llm_provider": provider,
        "api_base": "https://api.openai.com/v1",
        "user": caller.user_id,
        "metadata": _metadata(
            caller,
            call_id,
            usage,
            False,
            _model_map_information(model, provider, input_price, output_price),
            _request_record(headers, body),
            {"input_cost": input_cost, "output_cost": output_cost},
            spend_logs_metadata={"cost_center": "CC-4411"},
        ),
        "cache_hit": "False",
        "cache_key": "Cache OFF",
        "request_tags": list(DEFAULT_TAGS),
        "team_id": caller.team_id,
        "organization_id": "",
        "end_user": "",
        "requester_ip_address": "10.0.12.7",
        # 1.106.2 keeps messages only for realtime calls ("{}" otherwise), earlier versions
        # for every call: rows here always carry them, the allow-list's worst case.
        "messages": messages,
        "response": _completion(request_id, start, group, usage, marker),
        "session_id": str(uuid.uuid4()),
        "status": "success",
        "mcp_namespaced_tool_name": None,
        "billing_agent_id": None,
        "agent_id": None,
        "proxy_server_request": body,
        "litellm_call_id": call_id,
        "created_at": end + WRITE_DELAY,
        "updated_at": end + WRITE_DELAY,
    }
    row.update(overrides)
    row["startTime"], row["endTime"] = start, end  # the overrides, cut to milliseconds
    return row


def _completion(
    response_id: str | None, start: datetime, group: str, usage: dict[str, int], marker: str
) -> dict[str, Any]:
    return {
        "id": response_id,
        "created": int(start.timestamp()),
        "model": group,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": f"{marker}: matched to PO-7781."},
            }
        ],
        "usage": dict(usage),
    }


# -- the sample traffic's requests, as LiteLLM's database holds them ---------------------------


def rows_from_traffic(traffic: Traffic) -> list[dict[str, Any]]:
    """One row per unique request of ``traffic`` (first delivery wins), in delivery order.

    LiteLLM builds its spend row from the same StandardLoggingPayload it POSTs to the
    webhook, so ids, times, model, cost, tokens, aliases and ``request_tags`` (with the
    ``x-department: …`` / ``x-team: …`` tags ``extra_spend_tag_headers`` adds) agree;
    the row keeps what the webhook drops (prompts, completion, the request with its key).
    """
    seen: set[str] = set()
    rows = []
    for payload in traffic.payloads():
        if payload["litellm_call_id"] not in seen:
            seen.add(payload["litellm_call_id"])
            rows.append(row_from_payload(payload))
    return rows


def row_from_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The spend row LiteLLM's ``get_logging_payload`` writes for one logged request."""
    meta = payload["metadata"]
    requester = meta.get("requester_metadata") or {}
    call_id = payload["litellm_call_id"]
    start, end = _from_epoch(payload["startTime"]), _from_epoch(payload["endTime"])
    failed = payload["status"] == "failure"
    caller = _Caller(
        key_hash=meta.get("user_api_key_hash") or "",
        key_alias=meta.get("user_api_key_alias"),
        team_alias=meta.get("user_api_key_team_alias"),
        team_id=meta.get("user_api_key_team_id"),
        user_id=meta.get("user_api_key_user_id") or "",
    )
    body = {
        "model": payload["model_group"],
        "messages": payload["messages"],
        **(payload.get("model_parameters") or {}),
        "metadata": {"tags": requester["tags"]} if requester.get("tags") else {},
    }
    model_value = (payload.get("model_map_information") or {}).get("model_map_value") or {}
    usage = {  # the provider's usage as LiteLLM kept it, prompt-cache counts included
        **(meta.get("usage_object") or {}),
        "prompt_tokens": payload["prompt_tokens"],
        "completion_tokens": payload["completion_tokens"],
        "total_tokens": payload["total_tokens"],
    }
    breakdown = payload.get("cost_breakdown")
    return {
        # get_spend_logs_id(): the response's id, else the payload's, else the call id.
        "request_id": payload["id"] or call_id,
        "call_type": payload["call_type"],
        "api_key": caller.key_hash,
        "spend": float(payload["response_cost"] or 0.0),
        "total_tokens": usage["total_tokens"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "startTime": start,
        "endTime": end,
        "request_duration_ms": _duration_ms(start, end),
        "completionStartTime": _from_epoch(
            payload.get("completionStartTime") or payload["endTime"]
        ),
        "model": payload["model"],
        "model_id": payload.get("model_id") or "",
        "model_group": payload.get("model_group") or "",
        "custom_llm_provider": payload.get("custom_llm_provider") or "",
        "api_base": payload.get("api_base") or "",
        "user": caller.user_id,
        "metadata": _metadata(
            caller,
            call_id,
            usage,
            failed,
            _model_map_information(
                payload["model"],
                payload.get("custom_llm_provider") or "",
                model_value.get("input_cost_per_token"),
                model_value.get("output_cost_per_token"),
            ),
            _request_record(requester.get("headers") or {}, body),
            {k: breakdown[k] for k in ("input_cost", "output_cost")} if breakdown else None,
            error_information=payload.get("error_information"),
            ip_address=payload.get("requester_ip_address") or "",
            user_agent=payload.get("user_agent") or "",
            spend_logs_metadata=meta.get("spend_logs_metadata"),
        ),
        "cache_hit": str(bool(payload.get("cache_hit"))),
        "cache_key": "Cache OFF",
        "request_tags": list(payload.get("request_tags") or []),
        "team_id": caller.team_id or "",
        "organization_id": meta.get("user_api_key_org_id") or "",
        "end_user": payload.get("end_user") or "",
        "requester_ip_address": payload.get("requester_ip_address"),
        "messages": payload["messages"],
        "response": payload.get("response") or {},
        "session_id": payload.get("trace_id"),
        "status": payload["status"],
        "mcp_namespaced_tool_name": None,
        "billing_agent_id": None,
        "agent_id": None,
        "proxy_server_request": body,
        "litellm_call_id": call_id,
        "created_at": end + WRITE_DELAY,
        "updated_at": end + WRITE_DELAY,
    }


# -- LiteLLM's data defects -----------------------------------------------------------------

CACHE_HIT_ID = "cache_hit_id"
CALL_ID_AS_REQUEST_ID = "call_id_as_request_id"
COLLIDING_REQUEST_ID = "colliding_request_id"
ZERO_SPEND = "zero_spend"
MISSING_CALL_ID = "missing_call_id"
DEFECT_KINDS = (
    CACHE_HIT_ID,
    CALL_ID_AS_REQUEST_ID,
    COLLIDING_REQUEST_ID,
    ZERO_SPEND,
    MISSING_CALL_ID,
)


@dataclass(frozen=True)
class Defect:
    """One planted defect: the row LiteLLM built, and whether its insert kept it."""

    kind: str
    row: dict[str, Any]
    in_database: bool = True  # False: skipped by LiteLLM's insert, seen by the webhook only
    shares_request_id_with: str | None = None  # the litellm_call_id already holding the id

    @property
    def request_id(self) -> str:
        return self.row["request_id"]

    @property
    def litellm_call_id(self) -> str | None:
        return self.row["litellm_call_id"]


@dataclass(frozen=True)
class PlantedDefects:
    """What ``with_defects`` added, so tests can assert on counts and ids."""

    defects: tuple[Defect, ...]

    def of_kind(self, kind: str) -> list[Defect]:
        return [d for d in self.defects if d.kind == kind]

    def counts(self) -> Counter[str]:
        return Counter(d.kind for d in self.defects)

    @property
    def rows_added(self) -> int:
        return sum(d.in_database for d in self.defects)

    @property
    def cost(self) -> Decimal:
        """Exact spend of every planted request, stored or webhook-only (float reprs)."""
        return sum((Decimal(repr(d.row["spend"])) for d in self.defects), Decimal(0))

    @property
    def webhook_only_rows(self) -> list[dict[str, Any]]:
        """Requests LiteLLM dropped from its table; build their webhook events from these."""
        return [d.row for d in self.defects if not d.in_database]


def _derived_uuid(*parts: str) -> str:
    """A UUID fixed by ``parts``: planted defects are the same on every run."""
    return str(uuid.UUID(_digest(*parts)[:32], version=4))


def _another_request(
    template: dict[str, Any], kind: str, seconds_later: float, **changes: Any
) -> dict[str, Any]:
    """A new request by the same caller shortly after ``template``: own ids, same content."""
    row = copy.deepcopy(template)
    seed = f"{template['request_id']}:{kind}"
    call_id = _derived_uuid("call", seed)
    shift = timedelta(seconds=seconds_later)
    for column in ("startTime", "endTime", "completionStartTime", "created_at", "updated_at"):
        if row[column] is not None:
            row[column] = row[column] + shift
    row.update(
        request_id=f"chatcmpl-{_derived_uuid('response', seed)}",
        litellm_call_id=call_id,
        session_id=_derived_uuid("session", seed),
        metadata={**row["metadata"], "litellm_call_id": call_id},
    )
    row.update(changes)
    return row


def _template(rows: list[dict[str, Any]]) -> dict[str, Any]:
    for row in rows:
        if row["status"] == "success" and row["total_tokens"] > 0 and row["spend"] > 0:
            return row
    raise ValueError("with_defects needs at least one successful, priced row to imitate")


def _cache_hit(template: dict[str, Any]) -> dict[str, Any]:
    """A repeat of ``template`` answered from LiteLLM's cache, 15 ms after it started."""
    row = _another_request(
        template, CACHE_HIT_ID, 1.0, cache_hit="True", spend=0.0, request_duration_ms=15
    )
    end = row["startTime"] + timedelta(milliseconds=15)
    logged_at = end + timedelta(milliseconds=4.2)  # time.time() when the row is built
    row.update(
        request_id=f"{template['request_id']}_cache_hit{logged_at.timestamp()!r}",
        endTime=end,
        completionStartTime=end,
        created_at=end + WRITE_DELAY,
        updated_at=end + WRITE_DELAY,
        cache_key=_digest("cache", template["request_id"]),
        response=copy.deepcopy(template["response"]),  # the cached response, its id included
        metadata={**row["metadata"], "cost_breakdown": None},
    )
    return row


def with_defects(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], PlantedDefects]:
    """``rows`` plus one of each of LiteLLM's known spend-log defects, and what was planted.

    Every planted request imitates the first successful priced row (same caller, model and
    hour, a few seconds later) and has its own ``litellm_call_id``, derived from that row's
    ids, so the same rows get the same defects; none of ``rows`` changes.

    * ``cache_hit_id``: a cache hit. LiteLLM answers with the cached response, whose id is
      the original request's, and since the primary key forbids a second row under that id
      ``get_logging_payload`` writes ``"<id>_cache_hit<time.time()>"``. ``spend`` is 0.0
      (the cost calculator charges nothing for a hit) while the tokens are the cached
      response's: zero spend with tokens > 0 that is correct. Its webhook event carries the
      *unsuffixed* id, already used by the original request's row.
    * ``call_id_as_request_id``: a successful response without an id (some
      OpenAI-compatible servers and pass-through routes send none). ``get_spend_logs_id``
      falls back from the response's id to the payload's to ``litellm_call_id``, so
      ``request_id == litellm_call_id``. (With no call id either, ``str(None)`` would
      store the text ``"None"``; the proxy always has a call id, so that is not planted.)
    * ``colliding_request_id``: two requests, two call ids, one response id (a provider
      reusing ids). LiteLLM inserts with ``skip_duplicates`` (``ON CONFLICT DO NOTHING``),
      so the later one is silently not stored: the table keeps the id under the first call
      id while the webhook delivered it under both. Planted as a defect that is *not* in the
      returned rows (``in_database=False``; ``webhook_only_rows``), sharing the template's
      ``request_id``.
    * ``zero_spend``: a success on the priced model with tokens > 0 but ``spend`` 0.0, as
      LiteLLM logs a response its cost calculator failed on (``response_cost`` falls back to
      0); not a cache hit.
    * ``missing_call_id``: ``litellm_call_id`` NULL, in the table and in ``metadata``, as in
      every row written before LiteLLM added the column: only ``request_id`` identifies it.
    """
    rows = list(rows)
    template = _template(rows)
    cache_hit = _cache_hit(template)
    no_id = _another_request(template, CALL_ID_AS_REQUEST_ID, 2.0)
    no_id["request_id"] = no_id["litellm_call_id"]
    no_id["response"] = {**no_id["response"], "id": None}
    colliding = _another_request(
        template, COLLIDING_REQUEST_ID, 3.0, request_id=template["request_id"]
    )
    zero = _another_request(template, ZERO_SPEND, 4.0, spend=0.0)
    zero["metadata"] = {**zero["metadata"], "cost_breakdown": None}
    legacy = _another_request(template, MISSING_CALL_ID, 5.0, litellm_call_id=None)
    legacy["metadata"] = {**legacy["metadata"], "litellm_call_id": None}
    planted = PlantedDefects(
        (
            Defect(CACHE_HIT_ID, cache_hit),
            Defect(CALL_ID_AS_REQUEST_ID, no_id),
            Defect(
                COLLIDING_REQUEST_ID,
                colliding,
                in_database=False,
                shares_request_id_with=template["litellm_call_id"],
            ),
            Defect(ZERO_SPEND, zero),
            Defect(MISSING_CALL_ID, legacy),
        )
    )
    return rows + [d.row for d in planted.defects if d.in_database], planted


# -- loading --------------------------------------------------------------------------------


def ensure_table(conn) -> bool:
    """Create ``"LiteLLM_SpendLogs"`` from the DDL file unless it exists; True if created."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (f'"{TABLE}"',))
        if cursor.fetchone()[0] is not None:
            return False
        cursor.execute(DDL_PATH.read_text())
    return True


def _escape(text: str) -> str:
    # COPY's text format: backslash, tab, newline and carriage return are escaped.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _timestamp(moment: datetime) -> str:
    # timestamp without time zone holds UTC; an offset in the text would be ignored, not applied.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ")


_ENCODERS: dict[str, Callable[[Any], str]] = {
    "text": _escape,
    "float": lambda v: repr(float(v)),  # shortest round-trip text: the same float8 comes back
    "int": lambda v: str(int(v)),
    "timestamp": _timestamp,
    "json": lambda v: _escape(msgspec.json.encode(v).decode()),
}
_COLUMN_ENCODERS = [(name, _ENCODERS[kind]) for name, kind in COLUMNS.items()]
NULL = "\\N"


def copy_line(row: dict[str, Any]) -> str:
    """One row in COPY's text format; SQL NULL for ``None`` (JSON columns too)."""
    if len(row) != len(COLUMNS) or not all(name in row for name in COLUMNS):
        missing, extra = set(COLUMNS) - set(row), set(row) - set(COLUMNS)
        raise ValueError(f"row columns differ from {TABLE}: missing {missing}, unknown {extra}")
    cells = [NULL if row[name] is None else encode(row[name]) for name, encode in _COLUMN_ENCODERS]
    return "\t".join(cells) + "\n"


COPY_SQL = 'COPY "{table}" ({columns}) FROM STDIN'.format(
    table=TABLE, columns=", ".join(f'"{name}"' for name in COLUMNS)
)
CHUNK_ROWS = 500  # rows encoded per read: about 2 MB of COPY text with heavy content


class CopyStream(io.TextIOBase):
    """COPY text of ``rows``, encoded ``chunk_rows`` at a time as the driver reads it.

    One COPY statement streams everything: the server parses and indexes one chunk while
    Python encodes the next, and only one chunk is ever held in memory.
    """

    def __init__(self, rows: Iterable[dict[str, Any]], chunk_rows: int = CHUNK_ROWS) -> None:
        self._rows = iter(rows)
        self._chunk_rows = chunk_rows
        self._pending = ""
        self.rows_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        while size is None or size < 0 or len(self._pending) < size:
            chunk = list(itertools.islice(self._rows, self._chunk_rows))
            if not chunk:
                break
            self.rows_read += len(chunk)
            self._pending += "".join(map(copy_line, chunk))
        if size is None or size < 0:
            size = len(self._pending)
        text, self._pending = self._pending[:size], self._pending[size:]
        return text


def load_rows(dsn: str, rows: Iterable[dict[str, Any]], chunk_rows: int = CHUNK_ROWS) -> int:
    """Insert ``rows`` (any iterable, consumed lazily) into ``"LiteLLM_SpendLogs"``.

    Creates the table if missing, then one ``COPY … FROM STDIN`` fed by ``CopyStream``:
    memory stays bounded however many rows there are, and it is all one transaction, so a
    bad row leaves nothing behind. Returns the number of rows loaded.
    """
    stream = CopyStream(rows, chunk_rows)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cursor:
            ensure_table(conn)
            cursor.copy_expert(COPY_SQL, stream, size=1 << 20)
    finally:
        conn.close()
    return stream.rows_read
