"""notebooks/explore_spend.ipynb, executed top to bottom against a demo lake made by the pipeline."""

import os
import re
import sys
from pathlib import Path

import dagster as dg
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from assets.partitions import partition_key
from demo.population import MAPPING_YAML
from demo.traffic import generate_traffic, land_traffic
from pipelines.definitions import ASSETS, JOBS, resources_from_env
from pipelines.jobs import partition_range_tags
from tests.samples import HOUR0
from tests.spend_pipeline import sample_range

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_spend.ipynb"
HOURS = 3
KERNEL = "python3"  # the name the notebook's metadata asks for
CELL_TIMEOUT = 120


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory):
    """A few hours of sample traffic landed and run through ``hourly_spend_job``."""
    root = tmp_path_factory.mktemp("notebook")
    with sample_range(root, HOURS, events_per_hour=60) as (traffic, data_dir, defs, instance, tags):
        result = defs.resolve_job_def("hourly_spend_job").execute_in_process(
            instance=instance, tags=tags
        )
    assert result.success
    return traffic, data_dir


def execute_notebook(root: str, jupyter_dir: Path, extra_env: dict[str, str] | None = None):
    """The notebook after nbclient ran every cell in a kernel of this interpreter, on the
    storage root ``root``."""
    # A kernel spec of our own, first on JUPYTER_PATH, so that the kernel is this venv's
    # Python whatever specs the user or the system has installed under the same name.
    write_kernel_spec(jupyter_dir / "kernels" / KERNEL)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(jupyter_dir))
        assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            kernel_name=KERNEL,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        # Raises CellExecutionError, naming the cell, when any cell fails.
        client.execute(env=os.environ | (extra_env or {}) | {"SPEND_DATA_DIR": root})
    return nb


@pytest.fixture(scope="module")
def executed(demo_lake, tmp_path_factory):
    _, data_dir = demo_lake
    return execute_notebook(str(data_dir), tmp_path_factory.mktemp("jupyter"))


def cell(nb, cell_id: str):
    (found,) = [c for c in nb.cells if c.get("id") == cell_id]
    return found


def html(nb, cell_id: str) -> str:
    """The HTML of a cell's result (a pandas table); every column is there, unlike the text."""
    outputs = [o for o in cell(nb, cell_id).outputs if o.output_type == "execute_result"]
    assert len(outputs) == 1, cell_id
    return outputs[0].data["text/html"]


def test_committed_notebook_is_valid_and_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == KERNEL
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for c in code:
        assert c.outputs == [] and c.execution_count is None, c.id


def test_every_cell_runs_without_error(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    for c in code:
        assert c.execution_count is not None, c.id
        assert not [o for o in c.outputs if o.output_type == "error"], c.id
    # Each code cell but the setup shows something.
    assert all(c.outputs for c in code if c.id != "setup")


def test_totals_match_the_sample_traffic_exactly(executed, demo_lake):
    traffic, data_dir = demo_lake
    coverage = cell(executed, "coverage")
    printed = "".join(o.text for o in coverage.outputs if o.output_type == "stream")
    assert f"{(data_dir / 'lake').resolve()}: {HOURS} hours, shown per hour" in printed
    table = html(executed, "coverage")
    assert f"${traffic.total_cost:,.6f}" in table
    assert f"<td>{len(traffic.requests)}</td>" in table
    assert f"${traffic.total_cost:,.6f}" in html(executed, "departments")


def test_breakdowns_name_the_sample_departments_teams_agents_and_models(executed, demo_lake):
    traffic, _ = demo_lake
    departments = {r.department for r in traffic.requests}
    assert {"finance", "engineering", "support"} <= departments
    by_period = html(executed, "departments-by-period")
    by_department = html(executed, "departments")
    for department in departments:
        assert f"<th>{department}</th>" in by_period
        assert f"<td>{department}</td>" in by_department
    assert "<td>(total)</td>" in by_department
    teams, agents = html(executed, "teams"), html(executed, "agents")
    for r in traffic.requests:
        assert f"<td>{r.team}</td>" in teams
        assert f"<td>{r.agent}</td>" in agents
    for hour in traffic.hours:
        assert f"<td>{hour:%Y-%m-%d %H:00}</td>" in html(executed, "over-time")
    models = html(executed, "models")
    for model in {r.model.split("/", 1)[1] for r in traffic.requests}:
        assert f"<td>{model}</td>" in models


def test_failed_share_overall_and_per_provider(executed, demo_lake):
    traffic, _ = demo_lake
    failed = sum(r.failed for r in traffic.requests)
    assert failed > 0
    table = html(executed, "failures")
    share = 100 * failed / len(traffic.requests)
    assert f"<td>{failed}</td>" in table and f"<td>{share:,.2f}</td>" in table
    for provider in {r.provider for r in traffic.requests}:
        assert f"<td>{provider}</td>" in table


def test_plot_cell_renders_a_png(executed):
    outputs = cell(executed, "plot").outputs
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert len(images[0].data["image/png"]) > 10_000  # base64 of a real figure, not a blank one
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]


def test_model_comparison_has_every_model_with_cost_per_million_tokens(executed, demo_lake):
    traffic, _ = demo_lake
    table = html(executed, "model-comparison")
    for header in ("cost_per_mtok", "failed_pct", "p95_latency_ms"):
        assert f"<th>{header}</th>" in table
    for r in traffic.requests:
        assert f"<td>{r.model.removeprefix(r.provider + '/')}</td>" in table
    printed = "".join(o.text for o in cell(executed, "setup").outputs if o.output_type == "stream")
    assert "source filter: both" in printed


def test_error_types_name_each_error_class_of_the_traffic(executed, demo_lake):
    traffic, _ = demo_lake
    classes = {r.error_class for r in traffic.requests if r.failed}
    assert len(classes) >= 3
    table = html(executed, "error-types")
    for error_class in classes:
        assert f"<td>{error_class}</td>" in table


def test_cache_savings_show_cached_tokens_hits_and_a_saving(executed, demo_lake):
    traffic, _ = demo_lake
    table = html(executed, "cache-savings")
    cached = sum(r.cache_read_tokens or 0 for r in traffic.requests)
    assert cached > 0 and f"<td>{cached}</td>" not in table  # per model, not one total
    hits = sum(bool(r.cache_hit) for r in traffic.requests)
    assert hits > 0
    assert "<th>saved</th>" in table
    assert re.search(r"<td>\$\d+\.\d*[1-9]\d*</td>", table)  # a saving that is not zero


def test_the_notebook_opens_a_lake_on_object_storage(tmp_path, s3_server, s3_root):
    traffic = generate_traffic(HOUR0, 2, events_per_hour=40, seed=12)
    land_traffic(traffic, s3_root)
    (tmp_path / "mapping.yaml").write_text(MAPPING_YAML)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPEND_DATA_DIR", s3_root)
        env.setenv("SPEND_ATTRIBUTION_FILE", str(tmp_path / "mapping.yaml"))
        defs = dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resources_from_env())
        tags = partition_range_tags(
            partition_key(traffic.hours[0]), partition_key(traffic.hours[-1])
        )
        with dg.instance_for_test() as instance:
            job = defs.resolve_job_def("hourly_spend_job")
            assert job.execute_in_process(instance=instance, tags=tags).success
    nb = execute_notebook(s3_root, tmp_path / "jupyter", s3_server.env())
    printed = "".join(o.text for o in cell(nb, "coverage").outputs if o.output_type == "stream")
    assert f"{s3_root}/lake: 2 hours, shown per hour" in printed
    assert f"${traffic.total_cost:,.6f}" in html(nb, "coverage")
