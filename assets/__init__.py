"""Dagster assets of the spend pipeline and the pure transforms they call."""
