"""A real LiteLLM proxy for tests, run from its cached virtualenv on 127.0.0.1.

``tests.litellm_install`` builds the virtualenv of each tested version; this module writes a
proxy config (mock models priced per token, models in front of a fake upstream, callbacks)
and runs ``litellm --config`` on a free loopback port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.litellm_install import OFFLINE_ENV, OUTPUT_TAIL_CHARS
from tests.receiving import free_port

# A proxy must not pick up a database, cache or key from the machine running the tests.
INHERITED_ENV_TO_DROP = (
    "DATABASE_URL",
    "DIRECT_URL",
    "REDIS_HOST",
    "REDIS_URL",
    "LITELLM_MASTER_KEY",
    "LITELLM_SALT_KEY",
    "GENERIC_LOGGER_ENDPOINT",
    "GENERIC_LOGGER_HEADERS",
)


@dataclass(frozen=True)
class MockModel:
    """A proxy model answering with a canned completion, priced per token."""

    name: str
    completion: str
    input_cost_per_token: float
    output_cost_per_token: float

    def model_list_entry(self) -> dict[str, Any]:
        return {
            "model_name": self.name,
            "litellm_params": {
                "model": f"openai/{self.name}",
                "api_key": "sk-fake-not-used",
                # Never called (mock_response answers); should it be, nothing listens there.
                "api_base": "http://127.0.0.1:9/v1",
                "mock_response": self.completion,
                "input_cost_per_token": self.input_cost_per_token,
                "output_cost_per_token": self.output_cost_per_token,
            },
            "model_info": {"id": f"{self.name}-deployment"},
        }


@dataclass(frozen=True)
class UpstreamModel:
    """A proxy model in front of a provider API on 127.0.0.1 (a fake one), priced per token."""

    name: str
    provider: str  # LiteLLM's provider prefix, which picks the wire format: openai, anthropic
    api_base: str
    input_cost_per_token: float
    output_cost_per_token: float
    cache_read_input_token_cost: float | None = None
    cache_creation_input_token_cost: float | None = None

    def model_list_entry(self) -> dict[str, Any]:
        prompt_cache_costs = {
            "cache_read_input_token_cost": self.cache_read_input_token_cost,
            "cache_creation_input_token_cost": self.cache_creation_input_token_cost,
        }
        return {
            "model_name": self.name,
            "litellm_params": {
                "model": f"{self.provider}/{self.name}",
                "api_key": "sk-fake-not-used",
                "api_base": self.api_base,
                # The provider SDK's own retries would hide an upstream error for seconds.
                "max_retries": 0,
                "input_cost_per_token": self.input_cost_per_token,
                "output_cost_per_token": self.output_cost_per_token,
                **{name: cost for name, cost in prompt_cache_costs.items() if cost is not None},
            },
            "model_info": {"id": f"{self.name}-deployment"},
        }


def env_reference(variable: str) -> str:
    """A config value LiteLLM reads from the environment, so the secret is never in the file."""
    return f"os.environ/{variable}"


def proxy_config(
    models: Sequence[MockModel | UpstreamModel],
    callbacks: Mapping[str, Mapping[str, Any]],
    master_key_env: str,
    extra_spend_tag_headers: Sequence[str] = ("x-department", "x-team"),
    response_cache: bool = False,
) -> dict[str, Any]:
    """A proxy config: the models, ``callbacks`` by name (their ``callback_settings``).

    ``response_cache`` turns on LiteLLM's in-memory response cache: a request repeated
    verbatim is answered from it (``cache_hit``) without reaching the model.
    """
    litellm_settings: dict[str, Any] = {
        "callbacks": list(callbacks),
        "extra_spend_tag_headers": list(extra_spend_tag_headers),
    }
    if response_cache:
        litellm_settings |= {"cache": True, "cache_params": {"type": "local"}}
    return {
        "model_list": [model.model_list_entry() for model in models],
        "litellm_settings": litellm_settings,
        "callback_settings": {name: dict(settings) for name, settings in callbacks.items()},
        # A failing request fails once, and is logged once, instead of being retried.
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": env_reference(master_key_env)},
    }


@dataclass
class RunningProxy:
    url: str
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = OUTPUT_TAIL_CHARS) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]


def _wait_until_live(proxy: RunningProxy, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(
                f"litellm proxy exited with {proxy.process.returncode} during start-up; "
                f"log {proxy.log_path}:\n{proxy.log_tail()}"
            )
        try:
            # The liveness probe needs neither a key nor a database.
            if httpx.get(f"{proxy.url}/health/liveliness", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(
        f"litellm proxy not live within {timeout:.0f}s; log {proxy.log_path}:\n{proxy.log_tail()}"
    )


def _stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def litellm_proxy(
    venv: Path,
    config: Mapping[str, Any],
    workdir: Path,
    env: Mapping[str, str],
    startup_timeout: float = 180.0,
) -> Iterator[RunningProxy]:
    """Run ``litellm --config`` on a free loopback port until the block ends.

    ``env`` adds to the proxy's environment (secrets the config refers to, batching
    settings). The config, the proxy's log and its working directory are all in ``workdir``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "litellm_config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    port = free_port()
    log_path = workdir / f"litellm-{port}.log"
    proxy_env = {k: v for k, v in os.environ.items() if k not in INHERITED_ENV_TO_DROP}
    proxy_env |= OFFLINE_ENV | dict(env)
    command = [
        str(venv / "bin" / "litellm"),
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=proxy_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy = RunningProxy(url=f"http://127.0.0.1:{port}", log_path=log_path, process=process)
    try:
        _wait_until_live(proxy, startup_timeout)
        yield proxy
    finally:
        _stop(process)
