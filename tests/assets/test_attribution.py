import pytest

from assets.events import build_spend_events
from resources.attribution import MappingFileError, load_mapping
from tests.samples import EMPTY, raw_row, raw_table

MAPPING = """
keys:
  billing-key: {department: Finance, team: billing, agent: reconciler}
teams:
  data-science: {department: research}
"""


def attribute(tmp_path, **fields) -> dict:
    path = tmp_path / "map.yaml"
    path.write_text(MAPPING)
    events = build_spend_events(EMPTY, raw_table(raw_row("k1", **fields)), load_mapping(path))
    row = events.to_pylist()[0]
    return {
        k: row[k]
        for k in (
            "department",
            "team",
            "agent",
            "attribution_source",
            "team_source",
            "agent_source",
        )
    }


def test_headers_win_over_everything(tmp_path):
    got = attribute(
        tmp_path,
        header_department=" Finance ",
        header_team="AP",
        header_agent="invoice-bot",
        request_tags=["x-department: marketing"],
        key_alias="billing-key",
        team_alias="data-science",
    )
    assert got == {
        "department": "finance",
        "team": "ap",
        "agent": "invoice-bot",
        "attribution_source": "header",
        "team_source": "header",
        "agent_source": "header",
    }


def test_tags_in_both_forms_and_inside_the_litellm_tags_header(tmp_path):
    got = attribute(
        tmp_path,
        request_tags=["User-Agent: curl", "x-department: Marketing", "team:content"],
        header_tags="projA, agent:copy-writer",
    )
    assert got == {
        "department": "marketing",
        "team": "content",
        "agent": "copy-writer",
        "attribution_source": "tag",
        "team_source": "tag",
        "agent_source": "tag",
    }


def test_mapping_by_key_alias_before_team_alias_and_each_dimension_falls_through(tmp_path):
    got = attribute(
        tmp_path, key_alias="billing-key", team_alias="data-science", header_agent="bot"
    )
    assert got == {
        "department": "finance",
        "team": "billing",
        "agent": "bot",
        "attribution_source": "mapping",
        "team_source": "mapping",
        "agent_source": "header",
    }
    got = attribute(tmp_path, team_alias="data-science")
    assert got == {
        "department": "research",
        "team": "data-science",
        "agent": "unattributed",
        "attribution_source": "mapping",
        "team_source": "team_alias",
        "agent_source": "unattributed",
    }


def test_team_alias_then_unattributed(tmp_path):
    assert attribute(tmp_path, team_alias="Platform")["department"] == "platform"
    assert attribute(tmp_path, team_alias="Platform")["attribution_source"] == "team_alias"
    nothing = attribute(tmp_path, header_department="  ", request_tags=["department:"])
    assert set(nothing.values()) == {"unattributed"}


def test_mapping_file_errors_are_specific(tmp_path):
    assert load_mapping(None).num_rows == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("teams:\n  x: {department: a, cost_center: b}\n")
    with pytest.raises(MappingFileError, match="teams.x must map to department/team/agent"):
        load_mapping(bad)
    bad.write_text("owners: {}\n")
    with pytest.raises(MappingFileError, match="only 'keys' and/or 'teams'"):
        load_mapping(bad)
    with pytest.raises(MappingFileError, match="cannot read"):
        load_mapping(tmp_path / "missing.yaml")
