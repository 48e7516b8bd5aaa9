"""The cached LiteLLM virtualenvs: which recipe builds each version, when a venv is kept or
built again, and that every tested venv meets its litellm's requirements."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import litellm_install
from tests.litellm_install import (
    MARKER_NAME,
    NEWEST_VERSION,
    PINNED_VERSION,
    RELEASES,
    REQUIREMENTS_CHECK,
    TESTED_VERSIONS,
    ensure_litellm_venv,
    venv_python,
)


def test_tested_versions_are_the_pinned_and_the_newest():
    assert TESTED_VERSIONS == (PINNED_VERSION, NEWEST_VERSION)


def test_the_pinned_recipe_is_the_marker_earlier_runs_wrote():
    # So a venv built before there were several versions is kept, not built again.
    assert RELEASES[PINNED_VERSION].recipe() == "litellm[proxy]==1.106.2\n"


def test_the_newest_litellm_is_installed_without_its_dependencies_last():
    release = RELEASES[NEWEST_VERSION]
    *_, last = release.pip_installs
    assert last[0] == "--no-deps"
    assert f"litellm=={NEWEST_VERSION}" in last
    # Every package its [proxy] extra names at a version the registry lacks is installed
    # here at another version (or, litellm-proxy, not at all) and left out of the check.
    names = {argument.partition("==")[0] for argument in last[1:]}
    assert set(release.substituted) - names == {"litellm-proxy"}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(litellm_install.CACHE_ENV, str(tmp_path))
    return tmp_path


def fake_venv(cache: Path, version: str, marker: str | None) -> Path:
    venv = cache / f"litellm-{version}"
    venv_python(venv).parent.mkdir(parents=True)
    venv_python(venv).touch()
    if marker is not None:
        (venv / MARKER_NAME).write_text(marker)
    return venv


@pytest.fixture
def installs(monkeypatch) -> list[str]:
    """The versions ``ensure_litellm_venv`` installs, in order, without installing them."""
    installed: list[str] = []
    monkeypatch.setattr(
        litellm_install, "_install", lambda venv, release, log: installed.append(release.version)
    )
    return installed


def test_a_venv_with_its_recipe_is_kept(cache, installs):
    venv = fake_venv(cache, NEWEST_VERSION, RELEASES[NEWEST_VERSION].recipe())
    assert ensure_litellm_venv(NEWEST_VERSION) == venv
    assert installs == []


def test_a_venv_built_by_another_recipe_is_built_again(cache, installs):
    venv = fake_venv(cache, NEWEST_VERSION, "--no-deps litellm==1.110.2\n")
    ensure_litellm_venv(NEWEST_VERSION)
    assert installs == [NEWEST_VERSION]
    assert (venv / MARKER_NAME).read_text() == RELEASES[NEWEST_VERSION].recipe()


def test_an_unmarked_venv_is_kept_only_if_it_imports_the_version(cache, installs, monkeypatch):
    venv = fake_venv(cache, PINNED_VERSION, marker=None)
    monkeypatch.setattr(litellm_install, "_installed_version", lambda venv, log: PINNED_VERSION)
    ensure_litellm_venv(PINNED_VERSION)
    assert installs == []
    (venv / MARKER_NAME).unlink()
    monkeypatch.setattr(litellm_install, "_installed_version", lambda venv, log: None)
    ensure_litellm_venv(PINNED_VERSION)
    assert installs == [PINNED_VERSION]


@pytest.mark.parametrize("version", TESTED_VERSIONS)
def test_every_requirement_of_the_installed_litellm_is_met(version):
    venv = ensure_litellm_venv(version)
    done = subprocess.run(
        [str(venv_python(venv)), "-c", REQUIREMENTS_CHECK, *RELEASES[version].substituted],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"unmet:\n{done.stdout}{done.stderr}"
