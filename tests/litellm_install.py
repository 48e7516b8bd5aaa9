"""The LiteLLM versions the tests run, each installed once into its own cached virtualenv.

The proxy is not a dependency of this project and brings its own pinned dependency tree, so
each tested version lives in its own virtualenv, ``<cache>/litellm-<version>``, where
``<cache>`` is ``$SPEND_TEST_CACHE`` or ``~/.cache/litellm-spend``. A marker file holding the
version's install recipe is written after a successful install, requirement check and import
check: a venv without it (an interrupted install) or with another recipe is built again. A
file lock per version keeps two test runs from installing into the same directory at once.

``python -m tests.litellm_install`` installs every tested version ahead of the tests.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "SPEND_TEST_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "litellm-spend"
MARKER_NAME = ".spend-tests-installed"
VENV_TIMEOUT_S = 5 * 60
# One pip run. With empty pip and venv caches, the [proxy] set (about 750 MB installed) took
# 47 s for 1.106.2 and 49 s + 11 s for 1.110.2 here; the limit leaves room for a slow index.
PIP_TIMEOUT_S = 15 * 60
CHECK_TIMEOUT_S = 180
OUTPUT_TAIL_CHARS = 6000

# Without it LiteLLM downloads its price list from GitHub at import time; the bundled copy
# is enough because every test model carries its own prices.
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true"}

# Importing the proxy server pulls in every [proxy] extra: a partial install fails here.
IMPORT_CHECK = (
    "import importlib.metadata as m, litellm.proxy.proxy_server; print(m.version('litellm'))"
)

# Run inside the venv: every requirement of the installed litellm, core and [proxy], is met,
# except the packages named on the command line (installed at another version on purpose).
# ``packaging`` is one of litellm's own requirements, so the venv has it.
REQUIREMENTS_CHECK = """
import importlib.metadata as metadata, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
substituted = {canonicalize_name(name) for name in sys.argv[1:]}
unmet = []
for text in metadata.requires("litellm") or []:
    requirement = Requirement(text)
    if canonicalize_name(requirement.name) in substituted:
        continue
    if requirement.marker and not requirement.marker.evaluate({"extra": "proxy"}):
        continue
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        unmet.append(f"{requirement} (not installed)")
        continue
    if not requirement.specifier.contains(installed, prereleases=True):
        unmet.append(f"{requirement} (installed: {installed})")
print("\\n".join(unmet))
sys.exit(1 if unmet else 0)
"""


@dataclass(frozen=True)
class LiteLLMRelease:
    """One tested LiteLLM version and how it is installed: ``pip install`` runs, in order."""

    version: str
    pip_installs: tuple[tuple[str, ...], ...]
    # Requirements of this litellm that the registry cannot meet, installed at another
    # version by ``pip_installs`` (the requirement check leaves them out).
    substituted: tuple[str, ...] = ()

    def recipe(self) -> str:
        """The marker's text: one line per pip run, its arguments as written (unquoted, so
        the 1.106.2 marker reads ``litellm[proxy]==1.106.2`` as it always has)."""
        return "".join(f"{' '.join(arguments)}\n" for arguments in self.pip_installs)


PINNED_VERSION = "1.106.2"
NEWEST_VERSION = "1.110.2"

RELEASES = {
    release.version: release
    for release in (
        LiteLLMRelease(PINNED_VERSION, pip_installs=((f"litellm[proxy]=={PINNED_VERSION}",),)),
        # litellm[proxy] cannot be installed here from 1.108.13 on: it pins LiteLLM's own
        # side packages at versions this registry does not have (litellm-proxy-extras
        # 0.4.110.post1 and later, litellm-enterprise 0.1.79.post2 and later, and from
        # 1.110.0 litellm-proxy, absent altogether). The proxy itself is in the litellm wheel;
        # the extras hold the database migrations and enterprise hooks, which a proxy without a
        # database never runs. So: 1.106.2's [proxy] dependency set as pip resolves it, plus
        # the [proxy] requirements added since (semver, backports-zstd); then litellm 1.110.2
        # without dependencies, with the newest extras and enterprise packages there are. The
        # requirement check then proves every other requirement of 1.110.2 is met.
        LiteLLMRelease(
            NEWEST_VERSION,
            pip_installs=(
                (
                    f"litellm[proxy]=={PINNED_VERSION}",
                    "semver>=3.0.4,<4",
                    "backports-zstd>=1.0.0,<2.0; python_full_version < '3.14'",
                ),
                (
                    "--no-deps",
                    f"litellm=={NEWEST_VERSION}",
                    "litellm-proxy-extras==0.4.110",
                    "litellm-enterprise==0.1.83",
                ),
            ),
            substituted=("litellm-proxy", "litellm-proxy-extras", "litellm-enterprise"),
        ),
    )
}
TESTED_VERSIONS = tuple(RELEASES)


class LiteLLMInstallError(RuntimeError):
    """A proxy's virtualenv could not be built; the message carries the output tail."""


def litellm_venv_dir(version: str) -> Path:
    cache = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(cache).expanduser() / f"litellm-{version}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def install_time_limit(release: LiteLLMRelease) -> float:
    """The longest one install of ``release`` may take, all its steps' limits together."""
    return VENV_TIMEOUT_S + len(release.pip_installs) * PIP_TIMEOUT_S + 3 * CHECK_TIMEOUT_S


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
    started = time.monotonic()
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
        log.write(f"{output}\n[exit {done.returncode} after {time.monotonic() - started:.0f}s]\n")
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
            CHECK_TIMEOUT_S,
            "import check",
        )
    except LiteLLMInstallError:
        return None
    lines = out.strip().splitlines()
    return lines[-1].strip() if lines else None


def _write_marker(venv: Path, release: LiteLLMRelease) -> None:
    tmp = venv / f"{MARKER_NAME}.tmp"
    tmp.write_text(release.recipe())
    os.replace(tmp, venv / MARKER_NAME)


def _install(venv: Path, release: LiteLLMRelease, log_path: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)  # half-built or built by another recipe: start again from nothing
    _run_logged([sys.executable, "-m", "venv", str(venv)], log_path, VENV_TIMEOUT_S, "venv")
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--no-input"]
    for arguments in release.pip_installs:
        _run_logged(
            [*pip, "--disable-pip-version-check", *arguments],
            log_path,
            PIP_TIMEOUT_S,
            f"pip install {shlex.join(arguments)}",
        )
    _run_logged(
        [str(venv_python(venv)), "-c", REQUIREMENTS_CHECK, *release.substituted],
        log_path,
        CHECK_TIMEOUT_S,
        f"the requirement check of litellm {release.version} (unmet requirements listed)",
    )
    version = _installed_version(venv, log_path)
    if version != release.version:
        raise LiteLLMInstallError(
            f"after installing, the venv imports litellm {version!r}, not {release.version} "
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


def ensure_litellm_venv(version: str = PINNED_VERSION) -> Path:
    """The virtualenv holding LiteLLM ``version`` and its proxy, installed if needed."""
    release = RELEASES[version]
    venv = litellm_venv_dir(version)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log_path = venv.parent / f"litellm-{version}-install.log"
    # Another run's install holds the lock for at most its own time limits.
    with _exclusive_lock(venv.parent / f"litellm-{version}.lock", install_time_limit(release)):
        marker = venv / MARKER_NAME
        if marker.is_file() and venv_python(venv).exists():
            if marker.read_text() == release.recipe():
                return venv
            _install(venv, release, log_path)  # the recipe changed since this venv was built
        # A venv built without this module (no marker) is kept if it imports the right version.
        elif _installed_version(venv, log_path) != version:
            _install(venv, release, log_path)
        _write_marker(venv, release)
    return venv


def main() -> None:
    for version in TESTED_VERSIONS:
        started = time.monotonic()
        venv = ensure_litellm_venv(version)
        print(f"litellm {version}: {venv} ({time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    main()
