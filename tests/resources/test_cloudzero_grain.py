"""What a CloudZero resource is made of: CLOUDZERO_RESOURCE_DIMENSIONS, and the widest tag."""

import pytest

from resources.cloudzero_grain import DEFAULT_RESOURCE_DIMENSIONS, parse_dimensions, widest_tag


def test_the_default_grain_and_a_coarser_one_in_the_order_given():
    assert parse_dimensions(DEFAULT_RESOURCE_DIMENSIONS) == [
        "department",
        "team",
        "agent",
        "provider",
        "model",
    ]
    assert parse_dimensions(" Model_Group , department ") == ["model_group", "department"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("department,cost", "unknown cost"),
        ("", "none given"),
        ("team,team", "a dimension repeats"),
    ],
)
def test_a_bad_spec_names_the_variable_the_problem_and_the_choices(spec, problem):
    with pytest.raises(ValueError) as error:
        parse_dimensions(spec)
    message = str(error.value)
    assert message.startswith("CLOUDZERO_RESOURCE_DIMENSIONS=") and problem in message
    assert "department, team, agent, provider, model, model_group" in message


def test_the_widest_tag_is_the_one_with_the_most_distinct_values():
    rows = [
        {"resource/tag:department": "finance", "resource/tag:model": f"m{i}", "cost/cost": "1"}
        for i in range(3)
    ]
    assert widest_tag(rows) == ("model", 3)
    assert widest_tag([{"cost/cost": "1"}]) is None
