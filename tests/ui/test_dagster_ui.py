"""The Dagster UI as a person sees it: a real ``dagster dev -w workspace.yaml``, looked at with
Debian's headless Chromium through Selenium. Screenshots and the dagster dev log are kept in
$SPEND_TEST_ARTIFACTS (else test-artifacts/ui/). Needs `make chromium`; never skipped."""

import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from selenium.webdriver.common.by import By

from tests import samples
from tests.receiving import free_port
from tests.ui.dagster_dev import (
    REPO,
    DagsterDev,
    artifacts_dir,
    headless_chromium,
    names_our_code,
    problems,
    save_screenshot,
    shows_name,
    wait_for,
)

ASSETS = sorted(samples.PUBLIC_ASSETS)
PARTITIONED_ASSET = "spend_events"
# Partitions from two days ago: a short, known range whatever the date.
START_DAY = (datetime.now(timezone.utc) - timedelta(days=2)).date()
KEY_FORMAT = "%Y-%m-%d-%H:%M"


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagster_dev")
    log_path = root / "dagster-dev.log"
    server = DagsterDev(
        home=root / "dagster_home",
        data_dir=root / "data",
        log_path=log_path,
        port=free_port(),
        start_date=START_DAY.isoformat(),
    )
    try:
        server.start(timeout=120)
        # What the community dialog's "Skip" does, so that it covers no screenshot.
        assert server.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
        yield server
    finally:
        server.stop()
        if log_path.exists():
            shutil.copyfile(log_path, artifacts_dir() / "dagster-dev.log")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


def page_text(browser) -> str:
    return browser.execute_script("return document.body ? document.body.innerText : ''")


def page_lines(browser) -> list[str]:
    return [line.strip() for line in page_text(browser).splitlines() if line.strip()]


def test_the_code_location_loads_with_every_partitioned_asset(dagster_dev):
    entry = dagster_dev.location_entry()
    location = entry["locationOrLoadError"]
    assert entry["loadStatus"] == "LOADED"
    assert location["__typename"] == "RepositoryLocation", location
    nodes = [node for repo in location["repositories"] for node in repo["assetNodes"]]
    assert sorted("/".join(node["assetKey"]["path"]) for node in nodes) == ASSETS
    assert all(node["isPartitioned"] for node in nodes)


def test_the_code_locations_page_shows_it_loaded(dagster_dev, browser):
    browser.get(f"{dagster_dev.url}/deployment/locations")
    wait_for(
        browser,
        lambda b: {"litellm_spend", "pipelines.definitions", "Loaded"} <= set(page_lines(b)),
        "code location litellm_spend (pipelines.definitions) Loaded",
    )
    save_screenshot(browser, "code-locations")
    lines = page_lines(browser)
    assert "1 code location" in lines
    assert not {"Failed", "View error", "Error"} & set(lines), lines


def test_the_asset_graph_shows_every_asset(dagster_dev, browser):
    entry = dagster_dev.location_entry()
    members: dict[str, set[str]] = {}
    for repo in entry["locationOrLoadError"]["repositories"]:
        for node in repo["assetNodes"]:
            members.setdefault(node["groupName"], set()).add("/".join(node["assetKey"]["path"]))
    groups = sorted(members)
    # The global lineage graph, every group opened (the graph folds them when there are several).
    expanded = ",".join(f"global@global:{group}" for group in groups)
    browser.get(f"{dagster_dev.url}/asset-groups?expanded={expanded}")
    wait_for(
        browser,
        lambda b: "Global asset lineage" in page_lines(b),
        "the page title 'Global asset lineage'",
    )

    def graph_labels(b) -> list[str]:
        texts = b.execute_script(
            "return Array.from(document.querySelectorAll('svg foreignObject'))"
            ".map(node => node.firstElementChild ? node.firstElementChild.innerText : '')"
        )
        return [line.strip() for text in texts for line in text.splitlines() if line.strip()]

    wait_for(
        browser,
        lambda b: all(shows_name(name, graph_labels(b)) for name in ASSETS),
        f"asset nodes for all of {ASSETS} in the graph",
    )

    # The sidebar tree spells every name out in full (the zoomed-out graph shortens long ones).
    def sidebar_titles(b) -> set[str]:
        return {e.get_attribute("title") for e in b.find_elements(By.CSS_SELECTOR, "[title]")}

    for group in groups:
        if members[group] <= sidebar_titles(browser):
            continue  # already open
        caret = wait_for(
            browser,
            lambda b, group=group: b.find_elements(
                By.XPATH,
                f"//*[@title='{group}']/ancestor::*[.//*[@aria-label='arrow_drop_down']][1]"
                "//*[@aria-label='arrow_drop_down']/parent::button",
            ),
            f"the sidebar's toggle of group {group}",
        )
        caret[0].click()

    wait_for(
        browser,
        lambda b: set(ASSETS) <= sidebar_titles(b),
        f"all of {ASSETS} in the sidebar",
    )
    save_screenshot(browser, "asset-graph")
    for name in ASSETS:
        assert shows_name(name, graph_labels(browser)), name


def test_a_partitioned_assets_page_shows_its_hourly_partitions(dagster_dev, browser):
    before = datetime.now(timezone.utc)
    browser.get(f"{dagster_dev.url}/assets/{PARTITIONED_ASSET}?view=partitions")
    counted = re.compile(r"^([\d,]+) Partitions? Selected$")
    selected = wait_for(
        browser,
        lambda b: next(filter(None, map(counted.match, page_lines(b))), None),
        f"'N Partitions Selected' on {PARTITIONED_ASSET}'s Partitions tab",
    )
    after = datetime.now(timezone.utc)
    save_screenshot(browser, "partitioned-asset")
    lines = page_lines(browser)
    assert PARTITIONED_ASSET in lines and "Partitions" in lines

    # Hourly keys from SPEND_START_DATE to the last complete hour, one partition each.
    first = datetime.combine(START_DAY, datetime.min.time(), tzinfo=timezone.utc)
    first_key = first.strftime(KEY_FORMAT)
    last_keys = {
        (moment.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)).strftime(
            KEY_FORMAT
        )
        for moment in (before, after)
    }
    assert first_key in lines, lines[:60]
    # The newest one shown (an hour may have ended while the page loaded).
    shown_last = max((key for key in last_keys if key in lines), default=None)
    assert shown_last, (last_keys, lines[:60])
    last = datetime.strptime(shown_last, KEY_FORMAT).replace(tzinfo=timezone.utc)
    count = int((last - first) / timedelta(hours=1)) + 1
    assert count >= 48  # two whole days and then some
    assert int(selected.group(1).replace(",", "")) == count
    assert f"Missing ({count})" in lines  # nothing materialised in this fresh instance


def test_the_log_check_tells_our_warnings_from_dagsters():
    """The check above on log text as dagster dev prints it (colours and all)."""
    repo = str(REPO)
    log = (
        f"{repo}/.venv/lib/python3.11/site-packages/click/core.py:911: SupersessionWarning:"
        " Function `dev_command` is superseded\n  return callback(*args, **kwargs)\n"
        "\x1b[32m2026-11-23 21:06:35 +0000\x1b[0m - dagster - \x1b[34mINFO\x1b[0m - Launching\n"
        "2026-11-23 21:06:37 +0000 - dagster - WARNING - "
        f"{repo}/assets/billing.py:89: PreviewWarning: partitions_def on an AssetCheckSpec\n"
        "  @dg.asset_check(\n"
        "2026-11-23 21:06:38 +0000 - dagster - ERROR - Failed to load the location\n"
        "Traceback (most recent call last):\n"
        f'  File "{repo}/pipelines/definitions.py", line 3, in <module>\n'
        "ValueError: SPEND_START_DATE must be YYYY-MM-DD\n"
        "2026-11-23 21:06:39 +0000 - dagster - WARNING - sensor resources.lake warned\n"
        "2026-11-23 21:06:40 +0000 - dagster.daemon - INFO - Sensor skipped: no new assets.\n"
        "2026-11-23 21:06:41 +0000 - dagster - INFO - assets.billing found no errors\n"
    )
    found = problems(log)
    assert len(found) == 4  # the SupersessionWarning, the PreviewWarning, the error, the sensor
    assert [names_our_code(record) for record in found] == [False, True, True, True]


def test_dagster_dev_logs_no_warnings_or_errors_from_our_code(dagster_dev):
    """Runs last, after the pages above made the webserver and code server work."""
    log = dagster_dev.log()
    assert "Serving dagster-webserver" in log
    ours = [record for record in problems(log) if names_our_code(record)]
    assert not ours, "dagster dev logged warnings or errors from our code:\n\n" + "\n\n".join(ours)
