"""A real LiteLLM proxy for tests: installed once into a cached virtualenv, run on 127.0.0.1.

The proxy is not a dependency of this project and brings its own pinned dependency tree, so
it lives in its own virtualenv, ``<cache>/litellm-<version>``, where ``<cache>`` is
``$SPEND_TEST_CACHE`` or ``~/.cache/litellm-spend``. A marker file written after a
successful install and import check makes an interrupted install start over; a file lock
keeps two test runs from installing into the same directory at once.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.receiving import free_port

LITELLM_VERSION = "1.106.2"
LITELLM_REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
CACHE_ENV = "SPEND_TEST_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "litellm-spend"
VENV_TIMEOUT_S = 5 * 60
INSTALL_TIMEOUT_S = 15 * 60
MARKER_NAME = ".spend-tests-installed"
# Importing the proxy server pulls in every [proxy] extra: a partial install fails here.
IMPORT_CHECK = (
    "import importlib.metadata as m, litellm.proxy.proxy_server; print(m.version('litellm'))"
)
IMPORT_CHECK_TIMEOUT_S = 180
# Another run's install holds the lock for at most its own time limits.
LOCK_WAIT_S = VENV_TIMEOUT_S + INSTALL_TIMEOUT_S + 2 * IMPORT_CHECK_TIMEOUT_S
OUTPUT_TAIL_CHARS = 6000

# Without it LiteLLM downloads its price list from GitHub at import time; the bundled copy
# is enough because every test model carries its own prices.
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true"}
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


class LiteLLMInstallError(RuntimeError):
    """The proxy's virtualenv could not be built; the message carries pip's output tail."""


def litellm_venv_dir() -> Path:
    cache = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(cache).expanduser() / f"litellm-{LITELLM_VERSION}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _tail(text: str) -> str:
    return text[-OUTPUT_TAIL_CHARS:]


def _text(output: str | bytes | None) -> str:
    # A timed-out run hands back whatever it had read so far, possibly still as bytes.
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _run_logged(command: Sequence[str], log_path: Path, timeout: float, what: str) -> str:
    """Run ``command``, append its output to ``log_path``; raise with the output tail on failure."""
    with log_path.open("a") as log:
        log.write(f"$ {shlex.join(command)}\n")
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **OFFLINE_ENV},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it
        output = _text(exc.stdout) + _text(exc.stderr)
        with log_path.open("a") as log:
            log.write(f"{output}\n[timed out after {timeout:.0f}s]\n")
        raise LiteLLMInstallError(
            f"{what} did not finish within {timeout:.0f}s ({log_path}); output tail:\n"
            f"{_tail(output)}"
        ) from None
    output = done.stdout + done.stderr
    with log_path.open("a") as log:
        log.write(f"{output}\n")
    if done.returncode != 0:
        raise LiteLLMInstallError(
            f"{what} failed with exit code {done.returncode} ({log_path}); output tail:\n"
            f"{_tail(output)}"
        )
    return done.stdout


def _installed_version(venv: Path, log_path: Path) -> str | None:
    """The litellm version the venv imports with its proxy extras, or None if it cannot."""
    if not venv_python(venv).exists():
        return None
    try:
        out = _run_logged(
            [str(venv_python(venv)), "-c", IMPORT_CHECK],
            log_path,
            IMPORT_CHECK_TIMEOUT_S,
            "import check",
        )
    except LiteLLMInstallError:
        return None
    lines = out.strip().splitlines()
    return lines[-1].strip() if lines else None


def _write_marker(venv: Path) -> None:
    tmp = venv / f"{MARKER_NAME}.tmp"
    tmp.write_text(f"{LITELLM_REQUIREMENT}\n")
    os.replace(tmp, venv / MARKER_NAME)


def _install(venv: Path, log_path: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)  # a half-built venv: start again from nothing
    _run_logged([sys.executable, "-m", "venv", str(venv)], log_path, VENV_TIMEOUT_S, "venv")
    _run_logged(
        [
            str(venv_python(venv)),
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            LITELLM_REQUIREMENT,
        ],
        log_path,
        INSTALL_TIMEOUT_S,
        f"pip install {LITELLM_REQUIREMENT}",
    )
    version = _installed_version(venv, log_path)
    if version != LITELLM_VERSION:
        raise LiteLLMInstallError(
            f"after installing, the venv imports litellm {version!r}, not {LITELLM_VERSION} "
            f"(see {log_path})"
        )


@contextmanager
def _exclusive_lock(lock_path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``, waiting at most ``timeout`` seconds."""
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LiteLLMInstallError(
                        f"another run held {lock_path} for more than {timeout:.0f}s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_litellm_venv() -> Path:
    """The virtualenv holding ``litellm[proxy]==LITELLM_VERSION``, installed if needed."""
    venv = litellm_venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    log_path = venv.parent / f"litellm-{LITELLM_VERSION}-install.log"
    with _exclusive_lock(venv.parent / f"litellm-{LITELLM_VERSION}.lock", LOCK_WAIT_S):
        if (venv / MARKER_NAME).is_file() and venv_python(venv).exists():
            return venv
        # A venv built without this helper (no marker) is kept if it imports the right version.
        if _installed_version(venv, log_path) != LITELLM_VERSION:
            _install(venv, log_path)
        _write_marker(venv)
    return venv


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


def env_reference(variable: str) -> str:
    """A config value LiteLLM reads from the environment, so the secret is never in the file."""
    return f"os.environ/{variable}"


def proxy_config(
    models: Sequence[MockModel],
    callbacks: Mapping[str, Mapping[str, Any]],
    master_key_env: str,
    extra_spend_tag_headers: Sequence[str] = ("x-department", "x-team"),
) -> dict[str, Any]:
    """A proxy config: the mock models, ``callbacks`` by name (their ``callback_settings``)."""
    return {
        "model_list": [model.model_list_entry() for model in models],
        "litellm_settings": {
            "callbacks": list(callbacks),
            "extra_spend_tag_headers": list(extra_spend_tag_headers),
        },
        "callback_settings": {name: dict(settings) for name, settings in callbacks.items()},
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
