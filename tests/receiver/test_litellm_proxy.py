"""A real LiteLLM proxy as the client of ``spend-receiver``, through to ``spend_events``.

Every test runs once per tested LiteLLM version (``tests.litellm_install.TESTED_VERSIONS``:
the pinned 1.106.2 and the newest this package registry can install), each with its own
proxy, receiver and lake.

The proxy has three ``generic_api`` callbacks, one per ``log_format`` (``json_array``,
``ndjson``, ``single``), all pointing at one receiver: every request is delivered three
times, in three encodings, and must still become exactly one attributed, correctly priced
row of ``spend_events``.

LiteLLM's batch logger clears its whole queue after each POST, so an event queued while a
POST is in flight is lost. The test is deterministic because the batch size is small, the
periodic flush never fires, and requests go out in bursts of exactly one batch, each burst
waiting until the receiver has landed all of the previous one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import dagster as dg
import httpx
import pyarrow.parquet as pq
import pytest

from assets.events import spend_events
from assets.ingest import litellm_spend_logs, litellm_webhook_events
from assets.partitions import partition_key
from pipelines.definitions import resources_from_env
from pipelines.jobs import partition_range_tags
from resources.lake import LakeResource, hours_between
from resources.landing import LandingRead, LandingZone
from tests.litellm_install import TESTED_VERSIONS, LiteLLMInstallError, ensure_litellm_venv
from tests.litellm_proxy import (
    MockModel,
    RunningProxy,
    env_reference,
    litellm_proxy,
    proxy_config,
)
from tests.receiving import TOKENS, ReceiverProcess

LOG_FORMATS = ("json_array", "ndjson", "single")
BATCH_SIZE = 4
LANDING_TIMEOUT_S = 60.0
HOUR = timedelta(hours=1)
LAKE_COST_QUANTUM = Decimal("1e-18")  # spend_events.cost is DECIMAL(38, 18)

# Secrets and content that must never reach the landing zone, the lake or the receiver log.
MASTER_KEY = f"sk-spend-test-{secrets.token_hex(12)}"
PROMPT_CANARY = f"prompt-canary-{secrets.token_hex(8)}"
MODELS = {
    model.name: model
    for model in (
        MockModel("mock-small", f"completion-canary-small-{secrets.token_hex(6)}", 2e-6, 8e-6),
        MockModel("mock-medium", f"completion-canary-medium-{secrets.token_hex(6)}", 3e-6, 1.5e-5),
        MockModel("mock-large", f"completion-canary-large-{secrets.token_hex(6)}", 1.5e-5, 7.5e-5),
    )
}
MASTER_KEY_ENV = "SPEND_TEST_LITELLM_MASTER_KEY"
RECEIVER_AUTH_ENV = "SPEND_TEST_RECEIVER_AUTHORIZATION"


@dataclass(frozen=True)
class PlannedRequest:
    """One chat completion to send; a ``None`` attribution header is not sent at all."""

    model: str
    department: str | None = None
    team: str | None = None
    agent: str | None = None

    def attribution_headers(self) -> dict[str, str]:
        sent = {"X-Department": self.department, "X-Team": self.team, "X-Agent": self.agent}
        return {name: value for name, value in sent.items() if value is not None}


# Mixed-case values: the landing zone keeps them as sent, spend_events lower-cases them.
PLAN = (
    PlannedRequest("mock-small", "Finance", "Billing", "invoice-bot"),
    PlannedRequest("mock-medium", "Finance", "Billing", "Reconciler"),
    PlannedRequest("mock-large", "Research", "Data-Science", "notebook-helper"),
    PlannedRequest("mock-small"),  # no attribution headers at all
    PlannedRequest("mock-medium", "Research", "Data-Science", "paper-summariser"),
    PlannedRequest("mock-large", "Support", "Tier-1", "triage-bot"),
    PlannedRequest("mock-small", "Support", "Tier-1", "triage-bot"),
    PlannedRequest("mock-medium", "Support", "Tier-2", "escalation-bot"),
    PlannedRequest("mock-large", "Finance", "Payroll", "payslip-checker"),
    PlannedRequest("mock-small", "Research", "ML-Platform", "eval-runner"),
    PlannedRequest("mock-medium", "Finance", "Payroll", "payslip-checker"),
    PlannedRequest("mock-large", "Support", "Tier-2", "escalation-bot"),
)


@dataclass(frozen=True)
class SentRequest:
    planned: PlannedRequest
    call_id: str  # x-litellm-call-id
    response_cost: str  # x-litellm-response-cost, as LiteLLM wrote it


@dataclass(frozen=True)
class Delivery:
    """What the proxy was sent and what the receiver kept of it."""

    root: Path
    data_dir: Path
    receiver_log: Path
    sent: tuple[SentRequest, ...]
    hours: list[datetime]
    metrics: dict[str, float]

    def by_call_id(self) -> dict[str, SentRequest]:
        return {request.call_id: request for request in self.sent}


def receiver_callbacks(callback_url: str) -> dict[str, dict]:
    """One ``generic_api`` callback per log format, all to the receiver."""
    return {
        f"spend_receiver_{log_format}": {
            "callback_type": "generic_api",
            "endpoint": callback_url,
            "log_format": log_format,
            # Resolved by LiteLLM from its environment: the token is not in the config file.
            "headers": {"Authorization": env_reference(RECEIVER_AUTH_ENV)},
        }
        for log_format in LOG_FORMATS
    }


def proxy_env() -> dict[str, str]:
    return {
        MASTER_KEY_ENV: MASTER_KEY,
        RECEIVER_AUTH_ENV: f"Bearer {TOKENS[0]}",
        # Send exactly when a burst's last event is queued, never on a timer.
        "DEFAULT_BATCH_SIZE": str(BATCH_SIZE),
        "DEFAULT_FLUSH_INTERVAL_SECONDS": "3600",
    }


def diagnostics(proxy: RunningProxy, receiver: ReceiverProcess) -> str:
    receiver_log = receiver.log_path.read_text(errors="replace")[-4000:]
    return (
        f"\n--- litellm proxy log ({proxy.log_path}) ---\n{proxy.log_tail()}"
        f"\n--- receiver log ({receiver.log_path}) ---\n{receiver_log}"
    )


async def send_burst(
    proxy: RunningProxy, burst: tuple[PlannedRequest, ...]
) -> list[httpx.Response]:
    """Send the burst's requests concurrently: together they fill one batch."""
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with httpx.AsyncClient(base_url=proxy.url, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v1/chat/completions",
                    headers=auth | planned.attribution_headers(),
                    json={
                        "model": planned.model,
                        "messages": [{"role": "user", "content": f"{PROMPT_CANARY} #{index}"}],
                    },
                )
                for index, planned in enumerate(burst)
            )
        )


def sent_request(planned: PlannedRequest, response: httpx.Response) -> SentRequest:
    completion = response.json()["choices"][0]["message"]["content"]
    assert completion == MODELS[planned.model].completion  # the canary really went through
    return SentRequest(
        planned=planned,
        call_id=response.headers["x-litellm-call-id"],
        response_cost=response.headers["x-litellm-response-cost"],
    )


def wait_for_accepted(proxy: RunningProxy, receiver: ReceiverProcess, expected: int) -> None:
    """Wait (bounded) until the receiver has landed ``expected`` events in total."""
    deadline = time.monotonic() + LANDING_TIMEOUT_S
    accepted = 0.0
    while time.monotonic() < deadline:
        accepted = receiver.metrics()["spend_receiver_events_accepted_total"]
        if accepted >= expected:
            assert accepted == expected, f"landed {accepted:.0f} events, expected {expected}"
            return
        time.sleep(0.1)
    raise AssertionError(
        f"the receiver landed {accepted:.0f} of {expected} events within "
        f"{LANDING_TIMEOUT_S:.0f}s{diagnostics(proxy, receiver)}"
    )


def send_in_bursts(proxy: RunningProxy, receiver: ReceiverProcess) -> tuple[SentRequest, ...]:
    sent: list[SentRequest] = []
    for start in range(0, len(PLAN), BATCH_SIZE):
        burst = PLAN[start : start + BATCH_SIZE]
        responses = asyncio.run(send_burst(proxy, burst))
        refused = [r for r in responses if r.status_code != 200]
        assert not refused, (
            f"the proxy answered {refused[0].status_code}: {refused[0].text}"
            f"{diagnostics(proxy, receiver)}"
        )
        sent.extend(sent_request(p, r) for p, r in zip(burst, responses, strict=True))
        # Each event arrives once per callback, i.e. once per log format.
        wait_for_accepted(proxy, receiver, len(sent) * len(LOG_FORMATS))
    return tuple(sent)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module", params=TESTED_VERSIONS, ids=lambda version: f"litellm-{version}")
def litellm_venv(request) -> Path:
    try:
        return ensure_litellm_venv(request.param)
    except LiteLLMInstallError as exc:
        reason = str(exc)
    # Never a skip: without the proxy this test has proven nothing.
    pytest.fail(f"cannot install LiteLLM {request.param}'s proxy: {reason}", pytrace=False)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory, litellm_venv) -> Delivery:
    assert len(PLAN) % BATCH_SIZE == 0, "every burst must fill exactly one batch"
    root = tmp_path_factory.mktemp("litellm_proxy")
    data_dir = root / "data"
    started = datetime.now(timezone.utc)
    with ReceiverProcess(data_dir) as receiver:
        config = proxy_config(
            list(MODELS.values()), receiver_callbacks(receiver.callback_url), MASTER_KEY_ENV
        )
        with litellm_proxy(litellm_venv, config, root / "proxy", proxy_env()) as proxy:
            sent = send_in_bursts(proxy, receiver)
        # Read after the proxy stopped: nothing it might still send is missed.
        metrics = receiver.metrics()
    finished = datetime.now(timezone.utc)
    # Events are filed by their own hour; the run may straddle an hour boundary.
    hours = hours_between(floor_hour(started), floor_hour(finished) + HOUR)
    return Delivery(root, data_dir, receiver.log_path, sent, hours, metrics)


@pytest.fixture(scope="module")
def landed(delivery) -> LandingRead:
    return LandingZone(delivery.data_dir).read_hours(delivery.hours)


@pytest.fixture(scope="module")
def spend_event_rows(delivery) -> list[dict]:
    """``litellm_webhook_events`` and ``spend_events`` materialised for the hours touched."""
    first, last = delivery.hours[0], delivery.hours[-1]
    dagster_home = delivery.root / "dagster_home"
    dagster_home.mkdir()
    with (
        pytest.MonkeyPatch.context() as env,
        dg.instance_for_test(temp_dir=str(dagster_home)) as instance,
        # The partitions of the hours just sent only exist once those hours have closed; run
        # as the hourly schedule would, just after the last of them.
        dg.partition_loading_context(effective_dt=last + HOUR),
    ):
        env.setenv("SPEND_DATA_DIR", str(delivery.data_dir))
        # No spend-log source and no mapping file: the webhook alone decides.
        for name in (
            "LITELLM_DATABASE_URL",
            "LITELLM_PROXY_URL",
            "LITELLM_MASTER_KEY",
            "SPEND_ATTRIBUTION_FILE",
        ):
            env.delenv(name, raising=False)
        result = dg.materialize(
            [litellm_spend_logs, litellm_webhook_events, spend_events],
            resources=resources_from_env(),
            instance=instance,
            tags=partition_range_tags(partition_key(first), partition_key(last)),
        )
    assert result.success
    materialised = {
        (event.asset_key.to_user_string(), event.partition)
        for event in result.get_asset_materialization_events()
    }
    assert materialised == {
        (asset, partition_key(hour))
        for asset in ("litellm_spend_logs", "litellm_webhook_events", "spend_events")
        for hour in delivery.hours
    }
    lake = LakeResource(data_dir=str(delivery.data_dir))
    return lake.read_hours("spend_events", delivery.hours).to_pylist()


def test_proxy_posts_each_batch_once_per_format(delivery):
    bursts = len(PLAN) // BATCH_SIZE
    # Per burst: one json_array POST, one ndjson POST, one single POST per event.
    posts_per_burst = 2 + BATCH_SIZE
    requests_by_status = {
        name: value
        for name, value in delivery.metrics.items()
        if name.startswith("spend_receiver_requests_total")
    }
    assert requests_by_status == {
        'spend_receiver_requests_total{code="200"}': bursts * posts_per_burst
    }
    assert delivery.metrics["spend_receiver_events_accepted_total"] == len(PLAN) * len(LOG_FORMATS)
    assert delivery.metrics["spend_receiver_events_quarantined_total"] == 0


def test_every_request_lands_once_per_format_and_every_line_reads(delivery, landed):
    assert landed.malformed == []
    assert landed.torn_bytes == 0
    landed_call_ids = Counter(landed.table["litellm_call_id"].to_pylist())
    assert landed_call_ids == {request.call_id: len(LOG_FORMATS) for request in delivery.sent}
    assert len(set(landed.table["request_id"].to_pylist())) == len(PLAN)


def test_landed_headers_are_the_attribution_sent(delivery, landed):
    sent = delivery.by_call_id()
    for row in landed.table.to_pylist():
        planned = sent[row["litellm_call_id"]].planned
        # Header names arrive lower-cased; values exactly as the client sent them.
        assert row["headers"] == {
            "x-department": planned.department,
            "x-team": planned.team,
            "x-agent": planned.agent,
            "x-litellm-tags": None,
        }
        # extra_spend_tag_headers lists x-department and x-team (not x-agent): LiteLLM
        # turns just those two into request tags, "<header>: <value>".
        header_tags = {t for t in row["request_tags"] if t.startswith("x-")}
        assert header_tags == {
            f"{name}: {value}"
            for name, value in (("x-department", planned.department), ("x-team", planned.team))
            if value is not None
        }


def test_landed_cost_is_the_response_cost_header(delivery, landed):
    sent = delivery.by_call_id()
    for row in landed.table.to_pylist():
        request = sent[row["litellm_call_id"]]
        # Both are Python's shortest round-trip text of one float (LiteLLM's header is
        # str(cost), the receiver keeps repr(cost)), so they agree exactly, digit for digit.
        assert Decimal(row["response_cost"]) == Decimal(request.response_cost)
        assert row["response_cost"] == request.response_cost
        model = MODELS[request.planned.model]
        priced = (
            row["prompt_tokens"] * model.input_cost_per_token
            + row["completion_tokens"] * model.output_cost_per_token
        )
        assert float(request.response_cost) == pytest.approx(priced, rel=1e-12)
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    # Each model has one cost per request, and the three models' costs differ.
    model_costs = {(r.planned.model, r.response_cost) for r in delivery.sent}
    assert len(model_costs) == len({cost for _, cost in model_costs}) == len(MODELS)


def test_spend_events_hold_one_attributed_row_per_request(delivery, spend_event_rows):
    sent = delivery.by_call_id()
    assert sorted(row["request_key"] for row in spend_event_rows) == sorted(sent)
    for row in spend_event_rows:
        request = sent[row["request_key"]]
        planned = request.planned
        assert row["deliveries"] == len(LOG_FORMATS)
        assert row["source"] == "webhook"
        assert (row["provider"], row["model"]) == ("openai", planned.model)
        attribution = (row["department"], row["team"], row["agent"])
        sources = (row["attribution_source"], row["team_source"], row["agent_source"])
        if planned.department is None:
            assert attribution == sources == ("unattributed",) * 3
        else:
            sent_values = (planned.department, planned.team, planned.agent)
            assert attribution == tuple(value.lower() for value in sent_values)
            assert sources == ("header",) * 3
        # The lake stores DECIMAL(38, 18): the header's exact value, rounded half away from
        # zero at the 18th decimal (a float like 0.00017999999999999998 has 20 decimals).
        header_cost = Decimal(request.response_cost)
        assert row["cost"] == header_cost.quantize(LAKE_COST_QUANTUM, rounding=ROUND_HALF_UP)
        assert abs(row["cost"] - header_cost) <= LAKE_COST_QUANTUM / 2


def readable_text(path: Path) -> str:
    # Parquet pages are compressed: search the decoded values, not the bytes.
    if path.suffix == ".parquet":
        return str(pq.read_table(path).to_pylist())
    return path.read_bytes().decode("latin-1")


def test_no_secret_or_content_reaches_disk(delivery, spend_event_rows):
    secrets_and_content = [
        MASTER_KEY,
        *TOKENS,
        PROMPT_CANARY,
        *(model.completion for model in MODELS.values()),
    ]
    files = [p for p in delivery.data_dir.rglob("*") if p.is_file()] + [delivery.receiver_log]
    assert any(p.suffix == ".ndjson" for p in files)
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        text = readable_text(path)
        for marker in secrets_and_content:
            assert marker not in text, (marker, path)
