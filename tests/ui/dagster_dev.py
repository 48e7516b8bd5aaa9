"""A real ``dagster dev`` on 127.0.0.1 and a headless Debian Chromium to look at it with."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
LOCATION = "litellm_spend"
WINDOW = (1600, 1000)
WAIT_SECONDS = 60

# Our own packages: a warning or error that names one of them (as a module or a file) is ours.
OUR_PACKAGES = ("pipelines", "assets", "resources", "receiver")

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation {
            repositories { assetNodes { assetKey { path } groupName isPartitioned } }
          }
        }
      }
    }
  }
}
"""


def artifacts_dir() -> Path:
    """Where the UI tests leave screenshots and the dagster dev log: $SPEND_TEST_ARTIFACTS,
    else test-artifacts/ui/ in the checkout."""
    path = Path(os.environ.get("SPEND_TEST_ARTIFACTS") or REPO / "test-artifacts" / "ui")
    path.mkdir(parents=True, exist_ok=True)
    return path


class DagsterDev:
    """``dagster dev -w workspace.yaml`` from the repository root on a free loopback port, with a
    throwaway instance in ``home``; ready once the webserver answers and the code location has
    loaded. Its output is kept in ``log_path``."""

    def __init__(self, home: Path, data_dir: Path, log_path: Path, port: int, start_date: str):
        self.home, self.log_path, self.port = home, log_path, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.env = os.environ | {
            "DAGSTER_HOME": str(home),
            "SPEND_DATA_DIR": str(data_dir),
            "SPEND_START_DATE": start_date,
        }
        self.command = [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1"]
        self.command += ["-p", str(port)]

    def start(self, timeout: float = 120.0) -> "DagsterDev":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for stop()
            )
        deadline = time.monotonic() + timeout
        state = "not started"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({self.process.returncode}):\n{self.log()}")
            try:
                entry = self.location_entry()
                state = entry["loadStatus"] if entry else "no location entry"
                if state == "LOADED":
                    return self
            except (httpx.TransportError, httpx.HTTPStatusError) as error:
                state = repr(error)
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"dagster dev not ready within {timeout}s ({state}):\n{self.log()}")

    def graphql(self, query: str) -> dict:
        response = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def location_entry(self) -> dict | None:
        # /server_info first: it answers as soon as the webserver is up, without GraphQL.
        httpx.get(f"{self.url}/server_info", timeout=2).raise_for_status()
        workspace = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", workspace
        entries = {entry["name"]: entry for entry in workspace["locationEntries"]}
        return entries.get(LOCATION)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to ``dagster dev``, which then shuts its webserver, daemon and code servers
        down; whatever of its process group is still there after ``timeout`` is killed.
        (SIGTERM to the whole group at once can leave dagster dev waiting forever.)"""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)


def chromium_paths() -> tuple[str, str]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail(
            "the UI tests need Debian's chromium and chromium-driver (chromium and chromedriver"
            " on PATH): run `make chromium` (scripts/ensure-chromium.sh) to install them",
            pytrace=False,
        )
    return chromium, chromedriver


def headless_chromium(profile_dir: Path) -> webdriver.Chrome:
    """Debian's Chromium, headless, through Debian's ChromeDriver (no Selenium Manager, no
    downloads), with a viewport of exactly ``WINDOW``."""
    chromium, chromedriver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # needed as root, harmless otherwise
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile_dir}",
        "--no-first-run",
        # Nothing but loopback is reachable here: no background calls to Google's hosts.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    width, height = WINDOW
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.set_page_load_timeout(WAIT_SECONDS)
    return browser


def wait_for(browser: webdriver.Chrome, condition, what: str, timeout: float = WAIT_SECONDS):
    """``condition(browser)``'s first truthy value within ``timeout``; else fail, saying what
    was awaited and what the page showed."""
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        text = browser.execute_script("return document.body ? document.body.innerText : ''")
        raise AssertionError(
            f"{what}: not shown within {timeout}s on {browser.current_url}; the page shows:\n"
            f"{text[:3000]}"
        ) from None


def save_screenshot(browser: webdriver.Chrome, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, (path, len(data))
    return path


def shows_name(name: str, labels: list[str]) -> bool:
    """Whether a label is ``name``, or the graph's middle-truncation of it ("cloudz…_submission")."""
    for label in labels:
        if label == name:
            return True
        head, ellipsis, tail = label.partition("…")
        if ellipsis and len(head) + len(tail) < len(name):
            if name.startswith(head) and name.endswith(tail):
                return True
    return False


ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
# A log level, a warning category, a traceback or an exception's name: not "no errors found".
PROBLEM = re.compile(r"\b(?:WARNING|ERROR|CRITICAL)\b|\w*(?:Warning|Error|Exception)\b|Traceback")


def log_records(text: str) -> list[str]:
    """The log split into records: a record starts at a timestamped line and takes the lines
    after it (a traceback, a warning's source line); what comes before the first is one more."""
    records: list[list[str]] = [[]]
    for line in ANSI.sub("", text).splitlines():
        if RECORD_START.match(line):
            records.append([])
        records[-1].append(line)
    return ["\n".join(lines) for lines in records if any(line.strip() for line in lines)]


def problems(text: str) -> list[str]:
    """Records of warnings and errors (Python warnings printed straight to stderr too)."""
    return [record for record in log_records(text) if PROBLEM.search(record)]


def names_our_code(record: str) -> bool:
    packages = "|".join(OUR_PACKAGES)
    our_paths = re.compile(rf"{re.escape(str(REPO))}/(?:{packages})/")
    our_modules = re.compile(rf"(?<![\w./-])(?:{packages})\.[a-z_]\w*")
    return bool(our_paths.search(record) or our_modules.search(record))
