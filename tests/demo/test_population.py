"""The sample proxy's population: the mapping file's shape and the answer key's attribution."""

from __future__ import annotations

import yaml

from demo.population import MAPPING, MAPPING_YAML, UNATTRIBUTED, expected_attribution


def test_expected_attribution_per_rule():
    agent_headers = {"x-department": "finance", "x-team": "ap", "x-agent": "invoice-bot"}
    assert expected_attribution(
        agent_headers, ["department:legal"], "billing-service-key", "data-science"
    ) == ("finance", "ap", "invoice-bot", "header")
    assert expected_attribution(
        {},
        ["User-Agent: curl", "x-department: hr", "team:people", "agent:onboarder"],
        None,
        "sales-ops",
    ) == ("hr", "people", "onboarder", "tag")
    assert expected_attribution({}, [], "billing-service-key", "finance-ops") == (
        "finance",
        "billing",
        "billing-reconciler",
        "mapping",
    )
    assert expected_attribution({}, [], "ds-notebook-key", "data-science") == (
        "research",
        "data-science",
        UNATTRIBUTED,
        "mapping",
    )
    assert expected_attribution({}, [], "ml-batch-key", "data-science") == (
        "research",
        "data-science",
        "batch-scorer",
        "mapping",
    )
    assert expected_attribution({}, [], "growth-key", "growth-experiments") == (
        "growth-experiments",
        "growth-experiments",
        UNATTRIBUTED,
        "team_alias",
    )
    assert expected_attribution({}, ["User-Agent: curl/8.5.0"], "personal-key-jdoe", None) == (
        UNATTRIBUTED,
        UNATTRIBUTED,
        UNATTRIBUTED,
        UNATTRIBUTED,
    )


def test_mapping_yaml_has_the_documented_shape():
    parsed = yaml.safe_load(MAPPING_YAML)
    assert parsed == MAPPING
    assert set(parsed) == {"keys", "teams"}
    for section in parsed.values():
        for entry in section.values():
            assert set(entry) <= {"department", "team", "agent"}
