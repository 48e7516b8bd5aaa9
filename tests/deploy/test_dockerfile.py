"""The Dockerfile builds the one image of a deployment (code location, runs, receiver).

No container engine runs on the test machines, so the image is not built here: these tests
read the Dockerfile and .dockerignore and check what a build would do.
"""

import re
import tomllib

import pytest

from receiver.cli import DEFAULT_PORT, parse_args
from tests.deploy.dockerfile import (
    ROOT,
    Instruction,
    copy_sources,
    env_names,
    ignore_patterns,
    ignored,
    instructions,
    words,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRET_LOOKING = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
CODE_LOCATION_PORT = 4000


def index_of(steps: list[Instruction], predicate, what: str) -> int:
    found = [i for i, step in enumerate(steps) if predicate(step)]
    assert found, f"the Dockerfile has no {what}"
    return found[0]


def pip_install(step: Instruction) -> list[str] | None:
    """The arguments of a ``pip install`` in a RUN step, or None."""
    if step.keyword != "RUN":
        return None
    command = words(step.args.split("&&")[0])
    for start in range(len(command) - 1):
        if command[start : start + 2] == ["pip", "install"]:
            return command[start + 2 :]
    return None


def package_dirs() -> list[str]:
    """The top-level packages the distribution installs (pyproject's packages.find include)."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(p.rstrip("*") for p in include)


def test_one_stage_on_a_pinned_python_311_slim_image():
    froms = [s for s in instructions() if s.keyword == "FROM"]
    assert len(froms) == 1
    image = words(froms[0].args)[0]
    # A full patch version (and optionally a digest), never a moving tag such as 3.11-slim.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_the_lock_is_installed_before_the_source_is_copied():
    steps = instructions()
    copy_lock = index_of(
        steps, lambda s: s.keyword == "COPY" and "requirements.lock" in copy_sources(s), "lock copy"
    )
    # The lock's layer depends on the lock alone, so a code change reuses it.
    assert copy_sources(steps[copy_lock]) == ["requirements.lock"]
    install_lock = index_of(
        steps, lambda s: (pip_install(s) or [])[:2] == ["-r", "requirements.lock"], "lock install"
    )
    first_source = index_of(
        steps,
        lambda s: s.keyword == "COPY" and any(src in package_dirs() for src in copy_sources(s)),
        "copy of the project's packages",
    )
    install_project = index_of(
        steps, lambda s: pip_install(s) == ["--no-deps", "."], "pip install --no-deps ."
    )
    assert copy_lock < install_lock < first_source < install_project
    # Nothing is installed except from the lock and the project itself.
    installs = [pip_install(s) for s in steps if pip_install(s) is not None]
    assert installs == [["-r", "requirements.lock"], ["--no-deps", "."]]


def test_every_package_and_build_file_of_the_distribution_is_copied_before_installing():
    steps = instructions()
    install_project = index_of(
        steps, lambda s: pip_install(s) == ["--no-deps", "."], "pip install --no-deps ."
    )
    copied = {
        src for s in steps[:install_project] if s.keyword == "COPY" for src in copy_sources(s)
    }
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *package_dirs()}
    assert needed <= copied, needed - copied
    # The console scripts the deployment runs are the distribution's.
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts["spend-receiver"] == "receiver.cli:main"


def test_every_copy_source_exists_and_is_in_the_build_context():
    sources = [src for s in instructions() if s.keyword == "COPY" for src in copy_sources(s)]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
        assert not ignored(src), f"COPY {src}: .dockerignore leaves it out of the context"
        if (ROOT / src).is_dir():
            for path in (ROOT / src).rglob("*.py"):
                if "__pycache__" not in path.parts:
                    rel = path.relative_to(ROOT).as_posix()
                    assert not ignored(rel), f"{rel} is left out of the context"


@pytest.mark.parametrize("path", [".venv", "data", ".dagster", ".git", "test-artifacts"])
def test_dockerignore_keeps_local_state_out(path):
    assert ignored(path)
    assert ignored(f"{path}/some/file")


def test_dockerignore_matching_follows_docker():
    patterns = ["data", "**/__pycache__", "*.md", "!README.md"]
    assert ignored("data/landing/x.ndjson", patterns)
    assert not ignored("resources/data.py", patterns)  # "data" is the top-level entry only
    assert ignored("resources/__pycache__/lake.cpython-311.pyc", patterns)
    assert ignored("BENCHMARKS.md", patterns)
    assert not ignored("README.md", patterns)
    assert "!" not in "".join(p[:1] for p in ignore_patterns())  # ours needs no exceptions


def test_runs_as_a_numeric_non_root_user():
    steps = instructions()
    users = [s for s in steps if s.keyword == "USER"]
    assert users, "the image would run as root"
    user = users[-1].args.split(":")[0]
    # Numeric, so Kubernetes can check runAsNonRoot against it.
    assert user.isdigit() and int(user) != 0
    cmd = index_of(steps, lambda s: s.keyword == "CMD", "CMD")
    assert steps.index(users[-1]) < cmd
    # Processes start in the user's own home, where DuckDB may spill (.tmp/ in the working
    # directory), not in the root-owned source tree.
    home = re.search(r"--home-dir (\S+)", " ".join(s.args for s in steps if s.keyword == "RUN"))
    workdirs = [s.args for s in steps if s.keyword == "WORKDIR"]
    assert home and workdirs[-1] == home.group(1)


def test_exposes_the_code_location_and_the_receiver_ports():
    exposed = {
        w.split("/")[0] for s in instructions() if s.keyword == "EXPOSE" for w in words(s.args)
    }
    assert exposed == {str(CODE_LOCATION_PORT), str(DEFAULT_PORT)}


def test_no_secret_is_built_in():
    for step in instructions():
        if step.keyword in {"ENV", "ARG"}:
            for name in env_names(step):
                assert not SECRET_LOOKING.search(name), f"{step.keyword} {name} looks secret"
        if step.keyword == "COPY":
            for src in copy_sources(step):
                assert not re.search(r"(^|/)\.env|\.pem$|\.key$|credentials", src), src


def test_the_default_command_is_the_receiver_and_nothing_wraps_the_given_command():
    steps = instructions()
    # Dagster's Helm chart and K8sRunLauncher pass whole commands as container args
    # (`dagster api grpc …`, `dagster api execute_run …`): an ENTRYPOINT would prefix them.
    assert not [s for s in steps if s.keyword == "ENTRYPOINT"]
    cmds = [s for s in steps if s.keyword == "CMD"]
    assert len(cmds) == 1 and cmds[0].args.startswith("["), (
        "CMD in exec form, so SIGTERM reaches it"
    )
    command = words(cmds[0].args)
    assert command[0] == "spend-receiver"
    args = parse_args(command[1:])
    assert (args.host, args.port) == ("0.0.0.0", DEFAULT_PORT)
    assert not args.no_auth


def test_the_lock_holds_what_dagster_needs_on_kubernetes():
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    )
    # The code location and its runs talk to the PostgreSQL instance; dagster-k8s is what
    # Dagster's Kubernetes deployment expects in the image K8sRunLauncher starts runs from.
    for name in ("dagster", "dagster-postgres", "dagster-k8s"):
        assert name in pins, f"{name} is not in requirements.lock"
    # Integration libraries are released together with dagster (0.x.y beside 1.x.y).
    assert pins["dagster-k8s"] == pins["dagster-postgres"]
    assert PYPROJECT["project"]["optional-dependencies"]["k8s"] == [
        f"dagster-k8s=={pins['dagster-k8s']}"
    ]
