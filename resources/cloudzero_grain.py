"""What a CloudZero resource is made of: the dimensions of ``CLOUDZERO_RESOURCE_DIMENSIONS``,
and which of them spreads a month's rows the most."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from resources.cbf import TAG_PREFIX

# What a CloudZero resource can be made of: columns of spend_events. Each becomes a
# resource/tag:<dimension> column and a part of the resource id, in the configured order.
RESOURCE_DIMENSIONS = (
    "department",
    "team",
    "agent",
    "provider",
    "model",
    "model_group",
    "call_type",
)
DEFAULT_RESOURCE_DIMENSIONS = "department,team,agent,provider,model"


def parse_dimensions(spec: str) -> list[str]:
    """``CLOUDZERO_RESOURCE_DIMENSIONS`` as a list, or a clear error."""
    dimensions = [part.strip().lower() for part in spec.split(",") if part.strip()]
    unknown = [d for d in dimensions if d not in RESOURCE_DIMENSIONS]
    if not dimensions or unknown or len(set(dimensions)) != len(dimensions):
        problem = (
            f"unknown {', '.join(unknown)}"
            if unknown
            else ("none given" if not dimensions else "a dimension repeats")
        )
        raise ValueError(
            f"CLOUDZERO_RESOURCE_DIMENSIONS={spec!r}: {problem}; give a comma-separated list of "
            f"{', '.join(RESOURCE_DIMENSIONS)}"
        )
    return dimensions


def widest_tag(rows: Sequence[Mapping[str, str]]) -> tuple[str, int] | None:
    """The tag with the most distinct values among ``rows``, and how many."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith(TAG_PREFIX):
                values.setdefault(key[len(TAG_PREFIX) :], set()).add(value)
    if not values:
        return None
    name = max(sorted(values), key=lambda k: len(values[k]))
    return name, len(values[name])
