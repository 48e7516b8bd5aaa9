"""Dagster assets of the spend pipeline and the pure transforms they call."""

import warnings

import dagster as dg

# Single-run backfills are the design (a 30-day backfill is one run, not 720); Dagster
# still labels `backfill_policy` beta, which we accept knowingly rather than repeat on
# every import.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
# Checks are partitioned like the hourly assets they check (STYLE.md); Dagster labels a
# partitioned check spec "preview", accepted for the same reason.
warnings.filterwarnings(
    "ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning
)
