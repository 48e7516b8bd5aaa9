"""deploy/kubernetes: the receivers' manifests and the values for Dagster's Helm chart.

No cluster runs here, so nothing is applied: every YAML file is loaded and its structure
checked (kinds, selectors, probes, ports, environment, secrets), the Helm values against the
chart's own schema, and the instance settings they produce against deploy/dagster.yaml.

Chart keys: ``CHART_KEYS`` below lists the key paths of Dagster's Helm chart that the values
may use, taken from the chart's values schema, the pydantic models in ``helm/dagster/schema``
of dagster-io/dagster (``charts/dagster/values.py``, ``subschema/{daemon,webserver,
run_launcher,postgresql,concurrency,global_,telemetry,service_account}.py`` and
``charts/dagster_user_deployments/subschema/user_deployments.py``), as they stand on the
chart's master line, which includes the instance-wide ``concurrency`` block. The chart is
released with the same version as dagster; the deployment installs 1.13.27, the pinned
dagster. The released 1.13.27 package itself was not downloaded (no network on the test
machines); the README says how to render the chart and check the instance it writes.
"""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.app import CALLBACK_PATH
from receiver.cli import parse_args
from tests.deploy.dockerfile import ROOT, instructions, words

K8S = ROOT / "deploy" / "kubernetes"
VALUES_FILE = K8S / "dagster-values.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRET_LOOKING = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
OPTIONAL_MANIFESTS = {"receiver-hpa.yaml"}  # shipped, enabled by uncommenting it in kustomize

# The standard cloud SDK environment that pyarrow's filesystems read for SPEND_DATA_DIR on
# object storage; not the project's own names, so not in its Configuration table.
CLOUD_ENV = {
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
}

ANY = "any"  # a Kubernetes object, an env map or another subtree the chart passes through
_K8S_OBJECTS = dict.fromkeys(
    [
        "env",
        "envConfigMaps",
        "envSecrets",
        "annotations",
        "labels",
        "deploymentLabels",
        "nodeSelector",
        "affinity",
        "tolerations",
        "podSecurityContext",
        "securityContext",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "volumeMounts",
        "volumes",
        "schedulerName",
        "image",
    ],
    ANY,
)
CHART_KEYS: dict[str, Any] = {
    "global": dict.fromkeys(
        [
            "postgresqlSecretName",
            "dagsterHome",
            "serviceAccountName",
            "celeryConfigSecretName",
            "dagsterInstanceConfigMap",
        ],
        ANY,
    ),
    "generatePostgresqlPasswordSecret": ANY,
    "generateCeleryConfigSecret": ANY,
    "imagePullSecrets": ANY,
    "postgresql": {
        **dict.fromkeys(
            [
                "image",
                "enabled",
                "postgresqlHost",
                "postgresqlUsername",
                "postgresqlPassword",
                "postgresqlDatabase",
                "postgresqlParams",
                "postgresqlScheme",
            ],
            ANY,
        ),
        "service": {"port": ANY},
    },
    "dagster-user-deployments": {
        "enabled": ANY,
        "enableSubchart": ANY,
        "imagePullSecrets": ANY,
        "deployments": [
            {
                **_K8S_OBJECTS,
                **dict.fromkeys(
                    ["name", "dagsterApiGrpcArgs", "codeServerArgs", "port", "replicaCount"], ANY
                ),
                "includeConfigInLaunchedRuns": {"enabled": ANY},
            }
        ],
    },
    "dagsterWebserver": {
        **_K8S_OBJECTS,
        **dict.fromkeys(
            [
                "replicaCount",
                "nameOverride",
                "pathPrefix",
                "service",
                "workspace",
                "enableReadOnly",
                "dbStatementTimeout",
                "dbPoolRecycle",
                "logLevel",
            ],
            ANY,
        ),
    },
    "dagsterDaemon": {
        **_K8S_OBJECTS,
        **dict.fromkeys(
            [
                "enabled",
                "heartbeatTolerance",
                "runMonitoring",
                "runRetries",
                "sensors",
                "schedules",
            ],
            ANY,
        ),
        "runCoordinator": {
            "enabled": ANY,
            "type": ANY,
            "config": {
                "queuedRunCoordinator": dict.fromkeys(
                    [
                        "maxConcurrentRuns",
                        "tagConcurrencyLimits",
                        "dequeueIntervalSeconds",
                        "dequeueNumWorkers",
                        "dequeueUseThreads",
                    ],
                    ANY,
                ),
                "customRunCoordinator": ANY,
            },
        },
    },
    "runLauncher": {
        "type": ANY,
        "config": {
            "k8sRunLauncher": {
                **dict.fromkeys(
                    [
                        "image",
                        "imagePullPolicy",
                        "jobNamespace",
                        "loadInclusterConfig",
                        "kubeconfigFile",
                        "envConfigMaps",
                        "envSecrets",
                        "envVars",
                        "volumeMounts",
                        "volumes",
                        "labels",
                        "failPodOnRunFailure",
                        "resources",
                        "schedulerName",
                        "securityContext",
                    ],
                    ANY,
                ),
                "runK8sConfig": dict.fromkeys(
                    [
                        "containerConfig",
                        "podSpecConfig",
                        "podTemplateSpecMetadata",
                        "jobSpecConfig",
                        "jobMetadata",
                    ],
                    ANY,
                ),
            },
            "celeryK8sRunLauncher": ANY,
            "customRunLauncher": ANY,
        },
    },
    "concurrency": {
        "enabled": ANY,
        "pools": dict.fromkeys(["defaultLimit", "granularity", "opGranularityRunBuffer"], ANY),
        "runs": dict.fromkeys(["maxConcurrentRuns", "tagConcurrencyLimits"], ANY),
    },
    "telemetry": {"enabled": ANY},
    "serviceAccount": dict.fromkeys(["create", "name", "annotations"], ANY),
    "computeLogManager": ANY,
    "pythonLogs": ANY,
    "retention": ANY,
    "additionalInstanceConfig": ANY,
}


# --- loading -------------------------------------------------------------------------------


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path == VALUES_FILE:
            continue
        for doc in load_all(path):
            doc["_file"] = path.name
            docs.append(doc)
    return docs


def one(kind: str) -> dict:
    found = [m for m in manifests() if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def values() -> dict:
    return yaml.safe_load(VALUES_FILE.read_text())


def code_location() -> dict:
    deployments = values()["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    return deployments[0]


def run_launcher() -> dict:
    launcher = values()["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    return launcher["config"]["k8sRunLauncher"]


def receiver_container() -> dict:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def settings() -> dict[str, str]:
    return one("ConfigMap")["data"]


def container_port(container: dict, port: int | str) -> int:
    """A probe's or Service's port, a number or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in named, f"no container port named {port!r}"
    return named[port]


def readme_without_scale_out() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Scale-out")
    end = text.find("\n## ", start + 1)
    return text[:start] + (text[end:] if end != -1 else "")


def readme_scale_out() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Scale-out")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def project_env_names() -> set[str]:
    """Variables the project documents (README tables outside this guide) or its code reads."""
    names: set[str] = set()
    for line in readme_without_scale_out().splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    read = re.compile(
        r"""(?:getenv|environ\.get|environ\.setdefault|EnvVar)\(\s*["']([A-Z][A-Z0-9_]+)"""
    )
    for room in ("pipelines", "assets", "resources", "receiver"):
        for path in (ROOT / room).rglob("*.py"):
            names |= set(read.findall(path.read_text()))
    names |= set(
        re.findall(r"\{env: ([A-Z][A-Z0-9_]+)\}", (ROOT / "deploy/dagster.yaml").read_text())
    )
    return names


def env_names_used() -> dict[str, set[str]]:
    """Every variable a deployment file sets, by where it is set."""
    used: dict[str, set[str]] = {
        "spend-settings": set(settings()),
        "receiver": {e["name"] for e in receiver_container().get("env", [])},
        "runs": {v.split("=", 1)[0] for v in run_launcher().get("envVars", [])},
    }
    v = values()
    for component, section in [
        ("code location", code_location()),
        ("webserver", v.get("dagsterWebserver", {})),
        ("daemon", v.get("dagsterDaemon", {})),
    ]:
        env = section.get("env", {})
        used[component] = set(env) if isinstance(env, dict) else {e["name"] for e in env}
    return used


# --- the manifests -------------------------------------------------------------------------


def test_every_file_loads_and_is_a_known_kind():
    kinds = {(m["apiVersion"], m["kind"]) for m in manifests()}
    assert kinds == {
        ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    }
    for m in manifests():
        if m["kind"] == "Kustomization":
            continue
        name = m["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
        assert "namespace" not in m["metadata"], "the namespace is chosen at apply time"
        assert m["metadata"]["labels"]["app.kubernetes.io/part-of"] == "litellm-cloudzero-spend"
    assert isinstance(values(), dict)


def test_kustomization_lists_every_manifest():
    listed = set(one("Kustomization")["resources"])
    files = {m["_file"] for m in manifests() if m["kind"] != "Kustomization"}
    assert listed == files - OPTIONAL_MANIFESTS
    assert "# - receiver-hpa.yaml" in (K8S / "kustomization.yaml").read_text()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_receiver_offline():
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout) if d)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]


def test_selectors_match_the_receiver_pods():
    deployment = one("Deployment")
    match = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert match and match.items() <= pod_labels.items()
    assert one("Service")["spec"]["selector"] == match
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == match
    for spread in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert spread["labelSelector"]["matchLabels"] == match
    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }


def test_receivers_are_several_and_never_all_down():
    deployment = one("Deployment")
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one("PodDisruptionBudget")["spec"]
    assert 1 <= pdb["minAvailable"] < replicas  # a drain can still move a pod
    hpa = one("HorizontalPodAutoscaler")["spec"]
    assert hpa["minReplicas"] >= replicas and hpa["maxReplicas"] > hpa["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]


def test_the_receiver_command_is_one_process_the_cli_accepts():
    container = receiver_container()
    command = container.get("command", []) + container["args"]
    assert command[0] == "spend-receiver"
    args = parse_args(command[1:])
    assert args.workers == 1  # one process per pod, whatever the node's cores; scale with replicas
    assert args.host == "0.0.0.0" and not args.no_auth
    assert [p["containerPort"] for p in container["ports"]] == [args.port]
    # The image is the one the Dockerfile builds, as the code location uses it.
    repository, tag = container["image"].rsplit(":", 1)
    image = code_location()["image"]
    assert (repository, tag) == (image["repository"], image["tag"])
    assert "ENTRYPOINT" not in {s.keyword for s in instructions()}


def test_probes_ask_the_receiver_for_healthz_on_its_port():
    container = receiver_container()
    port = parse_args(container["args"][1:]).port
    assert '"/healthz"' in (ROOT / "receiver" / "app.py").read_text()
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz"
        assert container_port(container, http["port"]) == port
    ready, live = container["readinessProbe"], container["livenessProbe"]
    # Overload answers 503 to /healthz too: stop routing quickly, restart only much later.
    assert (
        live["periodSeconds"] * live["failureThreshold"]
        > ready["periodSeconds"] * ready["failureThreshold"]
    )


def test_the_service_reaches_the_receiver_port_at_the_callback_litellm_uses():
    container = receiver_container()
    service = one("Service")
    (port,) = service["spec"]["ports"]
    assert container_port(container, port["targetPort"]) == parse_args(container["args"][1:]).port
    name = service["metadata"]["name"]
    endpoint = f"http://{name}.<namespace>.svc.cluster.local:{port['port']}{CALLBACK_PATH}"
    assert endpoint in (K8S / "receiver-service.yaml").read_text()
    assert endpoint in readme_scale_out()


def test_shutdown_outlasts_the_receivers_drain():
    pod = one("Deployment")["spec"]["template"]["spec"]
    cli = (ROOT / "receiver" / "cli.py").read_text()
    graceful = int(re.search(r"timeout_graceful_shutdown=(\d+)", cli).group(1))
    pre_stop = receiver_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful


def test_pods_run_as_the_images_user_without_privileges():
    image_user = int([s for s in instructions() if s.keyword == "USER"][-1].args.split(":")[0])
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_user
    container = receiver_container()["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"]["drop"] == ["ALL"]
    location = code_location()
    assert location["podSecurityContext"]["runAsNonRoot"] is True
    assert location["podSecurityContext"]["runAsUser"] == image_user
    assert run_launcher()["securityContext"]["runAsUser"] == image_user
    # The chart mounts only dagster.yaml into DAGSTER_HOME; the image makes the directory
    # itself, owned by its user, so Dagster may write there.
    dagster_home = values()["global"]["dagsterHome"]
    runs = " ".join(s.args for s in instructions() if s.keyword == "RUN")
    assert f"install -d -o {image_user} -g {image_user} {dagster_home}" in runs


def test_no_pod_mounts_a_shared_disk():
    # Object storage is the only shared state: a receiver has nothing but scratch space.
    for volume in one("Deployment")["spec"]["template"]["spec"].get("volumes", []):
        assert set(volume) == {"name", "emptyDir"}, volume
    for section in (code_location(), run_launcher()):
        assert not section.get("volumes"), "a Dagster pod mounts a volume"
    assert "PersistentVolumeClaim" not in {m["kind"] for m in manifests()}


def test_every_component_reads_one_object_storage_root():
    data_dir = settings()["SPEND_DATA_DIR"]
    assert re.match(r"(s3|gs|az)://[^/]+/.+", data_dir), data_dir
    receiver_maps = [e["configMapRef"]["name"] for e in receiver_container()["envFrom"]]
    assert receiver_maps == ["spend-settings"]
    assert code_location()["envConfigMaps"] == [{"name": "spend-settings"}]
    assert run_launcher()["envConfigMaps"] == [{"name": "spend-settings"}]
    # Set once, in the ConfigMap: nothing overrides it for one component.
    for component, names in env_names_used().items():
        if component != "spend-settings":
            assert "SPEND_DATA_DIR" not in names, component


def test_every_variable_set_is_one_the_project_or_its_storage_reads():
    known = project_env_names() | CLOUD_ENV
    for required in ("SPEND_DATA_DIR", "SPEND_WEBHOOK_TOKENS", "CLOUDZERO_API_KEY"):
        assert required in known  # the derivation still finds the Configuration table
    for component, names in env_names_used().items():
        assert names <= known, f"{component}: unknown variables {sorted(names - known)}"


def test_the_guide_names_every_variable_and_secret_the_files_use():
    guide = readme_scale_out()
    for names in env_names_used().values():
        for name in names:
            assert f"`{name}`" in guide, f"{name} is missing from the Scale-out guide"
    secrets = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in receiver_container()["env"]
        if "valueFrom" in e
    }
    secrets |= {s["name"] for s in code_location()["envSecrets"]}
    secrets.add(values()["global"]["postgresqlSecretName"])
    for secret in secrets:
        assert f"`{secret}`" in guide, f"Secret {secret} is not explained in the guide"
    for name in ("SPEND_WEBHOOK_TOKENS", "CLOUDZERO_API_KEY", "CLOUDZERO_CONNECTION_ID"):
        assert f"`{name}`" in guide


def test_no_secret_is_written_in_the_files():
    for entry in receiver_container()["env"]:
        if SECRET_LOOKING.search(entry["name"]):
            assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], entry["name"]
    for name in settings():
        assert not SECRET_LOOKING.search(name), f"spend-settings holds {name}"
    for component, names in env_names_used().items():
        if component not in {"receiver", "spend-settings"}:
            for name in names:
                assert not SECRET_LOOKING.search(name), f"{component}: {name} in plain values"
    postgres = values()["postgresql"]
    assert "postgresqlPassword" not in postgres
    text = "\n".join(p.read_text() for p in sorted(K8S.glob("*.yaml")))
    for leak in (r"AKIA[0-9A-Z]{16}", r"-----BEGIN", r"Bearer [A-Za-z0-9]", r"sk-[A-Za-z0-9]{8}"):
        assert not re.search(leak, text), leak


def test_every_pod_declares_its_resources():
    for name, resources in [
        ("receiver", receiver_container()["resources"]),
        ("code location", code_location()["resources"]),
        ("runs", run_launcher()["resources"]),
    ]:
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name


# --- Dagster's Helm chart ------------------------------------------------------------------


def unknown_keys(value: Any, schema: Any, path: str = "") -> list[str]:
    if schema == ANY:
        return []
    if isinstance(schema, list):
        assert isinstance(value, list), f"{path} should be a list"
        return [
            k for i, item in enumerate(value) for k in unknown_keys(item, schema[0], f"{path}[{i}]")
        ]
    assert isinstance(value, dict), f"{path} should be a mapping"
    found = []
    for key, sub in value.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            found.append(where)
        else:
            found += unknown_keys(sub, schema[key], where)
    return found


def test_every_values_key_exists_in_the_chart():
    assert unknown_keys(values(), CHART_KEYS) == []


def test_the_key_check_catches_a_misspelt_key():
    assert unknown_keys(
        {"runLauncher": {"config": {"k8sRunLauncher": {"envSecret": []}}}}, CHART_KEYS
    ) == ["runLauncher.config.k8sRunLauncher.envSecret"]
    assert unknown_keys(
        {"dagster-user-deployments": {"deployments": [{"name": "x", "dagsterApiGrpcArg": []}]}},
        CHART_KEYS,
    ) == ["dagster-user-deployments.deployments[0].dagsterApiGrpcArg"]


def test_the_code_location_serves_the_projects_definitions_from_the_image():
    location = code_location()
    module = PYPROJECT["tool"]["dagster"]["module_name"]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == module
    assert location["dagsterApiGrpcArgs"] == ["-m", module]
    exposed = {w for s in instructions() if s.keyword == "EXPOSE" for w in words(s.args)}
    assert str(location["port"]) in exposed
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", location["name"])
    assert location["image"]["tag"] not in ("", "latest")
    # Runs start from the image the code location reports, never a fixed one.
    assert "image" not in run_launcher()
    # The chart runs `dagster api grpc -h 0.0.0.0 -p <port> <dagsterApiGrpcArgs>`.
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "api", "grpc", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for option in ("--module-name", "--host", "--port"):
        assert option in done.stdout


def test_runs_get_the_code_locations_environment_and_their_own_resources():
    location, launcher = code_location(), run_launcher()
    # Not copied from the code location (its smaller resources would win over the runs'), so
    # the run launcher names the same ConfigMap and Secrets itself.
    assert location["includeConfigInLaunchedRuns"] == {"enabled": False}
    assert launcher["envConfigMaps"] == location["envConfigMaps"]
    assert launcher["envSecrets"] == location["envSecrets"]
    assert set(launcher["resources"]["requests"]) == set(location["resources"]["requests"])


def test_postgres_is_external_and_its_password_comes_from_a_secret():
    v = values()
    assert v["postgresql"]["enabled"] is False
    assert v["postgresql"]["postgresqlHost"]
    assert v["postgresql"]["service"]["port"] == 5432
    assert v["generatePostgresqlPasswordSecret"] is False
    assert v["global"]["postgresqlSecretName"]
    assert "postgresql-password" in readme_scale_out()


def test_the_instance_has_the_limits_of_deploy_dagster_yaml():
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    v = values()
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    coordinator = v["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    # The chart refuses run limits both here and in `concurrency`.
    assert "config" not in coordinator
    concurrency = v["concurrency"]
    assert concurrency["enabled"] is True
    runs = instance["concurrency"]["runs"]
    assert concurrency["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert concurrency["pools"] == {
        "defaultLimit": instance["concurrency"]["pools"]["default_limit"]
    }
    assert v["dagsterDaemon"]["runRetries"] == {
        "enabled": instance["run_retries"]["enabled"],
        "maxRetries": instance["run_retries"]["max_retries"],
    }
    assert v["telemetry"] == instance["telemetry"]


def test_the_limits_name_what_the_code_tags():
    limits = values()["concurrency"]["runs"]["tagConcurrencyLimits"]
    jobs = (ROOT / "pipelines" / "jobs.py").read_text()
    lane = next(limit for limit in limits if limit["key"] == "spend/lane")
    assert 'LANE_TAG = "spend/lane"' in jobs and lane["value"] == "lake"
    # cloudzero_submission's pool has no limit of its own: the default limit applies.
    assert 'pool="cloudzero"' in (ROOT / "assets" / "billing.py").read_text()
    assert values()["concurrency"]["pools"]["defaultLimit"] == 1


def test_event_batching_is_on_wherever_events_are_stored():
    definitions = (ROOT / "pipelines" / "definitions.py").read_text()
    default = re.search(r'setdefault\("DAGSTER_EVENT_BATCH_SIZE", "(\d+)"\)', definitions).group(1)
    v = values()
    assert v["dagsterWebserver"]["env"]["DAGSTER_EVENT_BATCH_SIZE"] == default
    assert v["dagsterDaemon"]["env"]["DAGSTER_EVENT_BATCH_SIZE"] == default
    assert f"DAGSTER_EVENT_BATCH_SIZE={default}" in run_launcher()["envVars"]
