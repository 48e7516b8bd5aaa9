"""The code location: every asset, job, schedule and resource of the spend pipeline.

Resources read their settings from environment variables (shown as such in the UI);
unset optional variables fall back to the embedded defaults (local ``./data``, no
LiteLLM spend-log source, CloudZero dry run).
"""

import os

import dagster as dg

from assets.aggregates import (
    request_errors,
    spend_by_agent,
    spend_by_department,
    spend_by_model,
    spend_by_team,
)
from assets.billing import (
    cloudzero_cbf,
    cloudzero_month_within_limits,
    cloudzero_submission,
)
from assets.events import spend_events, spend_events_quality
from assets.freshness import sources_answering
from assets.ingest import litellm_spend_logs, litellm_webhook_events
from pipelines.jobs import cloudzero_submit_job, hourly_spend_job
from pipelines.schedules import hourly_spend_schedule
from pipelines.sensors import (
    cloudzero_cbf_sensor,
    late_landing_sensor,
    source_freshness_sensor,
    spend_logs_reconciliation_sensor,
)
from resources.attribution import AttributionMappingResource
from resources.cloudzero import CloudZeroResource
from resources.cloudzero_grain import DEFAULT_RESOURCE_DIMENSIONS
from resources.lake import CHUNK_ROWS, LakeResource
from resources.landing import LandingZoneResource
from resources.litellm import LiteLLMSpendLogsResource

# A range run records one materialisation per hour and asset (5,040 for a month of the
# seven assets, as many "planned" events before it starts). Dagster writes them in batches
# when this is set, one INSERT per batch on PostgreSQL instead of one per event. It is read
# when events are stored, so setting it here covers every run this code location executes;
# set it in the webserver's and daemon's environment too, which create the planned events.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")

DEFAULT_DATA_DIR = "./data"
DEFAULT_CLOUDZERO_API_URL = "https://api.cloudzero.com"


def env_or(name: str, default: str | None = None) -> dg.EnvVar | str | None:
    """``EnvVar(name)`` when the variable is set, so the UI shows where a value comes from."""
    return dg.EnvVar(name) if os.getenv(name) else default


def env_flag(name: str) -> bool:
    return os.getenv(name, "").strip().lower() in {"1", "true", "yes", "on"}


ASSETS = [
    litellm_spend_logs,
    litellm_webhook_events,
    spend_events,
    spend_by_department,
    spend_by_team,
    spend_by_agent,
    spend_by_model,
    request_errors,
    cloudzero_cbf,
    cloudzero_submission,
]
JOBS = [hourly_spend_job, cloudzero_submit_job]
# Checks of their own: warnings that never stop anything. spend_events_quality and
# cloudzero_month_within_limits run as steps; sources_answering is evaluated by
# source_freshness_sensor, outside the runs. The rules that hold back a bad hour run inside
# their assets (check_specs, assets/hour_rules.py).
CHECKS = [
    spend_events_quality,
    cloudzero_month_within_limits,
    sources_answering,
]
SENSORS = [
    cloudzero_cbf_sensor,
    late_landing_sensor,
    spend_logs_reconciliation_sensor,
    source_freshness_sensor,
]


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources as the current environment configures them."""
    data_dir = env_or("SPEND_DATA_DIR", DEFAULT_DATA_DIR)
    return {
        "lake": LakeResource(
            data_dir=data_dir,
            chunk_rows=dg.EnvVar.int("SPEND_CHUNK_ROWS")
            if os.getenv("SPEND_CHUNK_ROWS")
            else CHUNK_ROWS,
        ),
        "landing": LandingZoneResource(data_dir=data_dir),
        "attribution": AttributionMappingResource(mapping_file=env_or("SPEND_ATTRIBUTION_FILE")),
        "litellm": LiteLLMSpendLogsResource(
            database_url=env_or("LITELLM_DATABASE_URL"),
            proxy_url=env_or("LITELLM_PROXY_URL"),
            master_key=env_or("LITELLM_MASTER_KEY"),
        ),
        "cloudzero": CloudZeroResource(
            api_key=env_or("CLOUDZERO_API_KEY"),
            connection_id=env_or("CLOUDZERO_CONNECTION_ID"),
            api_url=env_or("CLOUDZERO_API_URL", DEFAULT_CLOUDZERO_API_URL),
            timezone=env_or("CLOUDZERO_TIMEZONE", "UTC"),
            dry_run=env_flag("CLOUDZERO_DRY_RUN"),
            data_dir=data_dir,
            resource_dimensions=env_or(
                "CLOUDZERO_RESOURCE_DIMENSIONS", DEFAULT_RESOURCE_DIMENSIONS
            ),
        ),
    }


defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=JOBS,
    schedules=[hourly_spend_schedule],
    sensors=SENSORS,
    resources=resources_from_env(),
)
