"""Who spent it: department / team / agent from headers, tags, the mapping file, aliases.

Each dimension resolves on its own, first rule with a value wins:

1. ``header``: the request's ``X-Department`` / ``X-Team`` / ``X-Agent`` header;
2. ``tag``: a request tag ``x-department: finance`` (LiteLLM ``extra_spend_tag_headers``)
   or ``department:finance``, also inside the ``x-litellm-tags`` header;
3. ``mapping``: ``SPEND_ATTRIBUTION_FILE``, by LiteLLM key alias, then team alias;
4. ``team_alias``: the LiteLLM team alias itself (department and team only: a team
   alias does not name an agent);
5. ``unattributed``.

Values are trimmed and lower-cased so ``Finance`` and ``finance`` are one department.
``attribution_source`` records the rule that decided the department; ``team_source`` and
``agent_source`` the rules for the other two.
"""

from __future__ import annotations

from resources.attribution import DIMENSIONS

UNATTRIBUTED = "unattributed"


def _clean(expr: str) -> str:
    return f"nullif(lower(trim({expr})), '')"


# A tag "x-<dim>: v" or "<dim>:v" as (dim, value); one regex per tag serves all dimensions.
_TAG_PATTERN = rf"(?i)^\s*(?:x-)?({'|'.join(DIMENSIONS)})\s*:\s*(.*?)\s*$"


def _tag_value(dimension: str) -> str:
    # The first tag naming the dimension with a value; DuckDB lists are 1-based, [1] of [] is NULL.
    return (
        f"lower(list_filter(tag_pairs, lambda p: lower(p.dim) = '{dimension}' AND p.value <> '')"
        "[1].value)"
    )


def attribution_sql(source: str) -> str:
    """SELECT adding department/team/agent and their sources to every row of ``source``.

    ``source`` must have header_<dim>, request_tags, header_tags, key_alias, team_alias;
    a table ``mapping`` (``MAPPING_SCHEMA``) must be registered. Each candidate value is
    computed once, in its own column, then the first non-null wins.
    """
    candidates: dict[str, list[tuple[str, str]]] = {}
    for dim in DIMENSIONS:
        candidates[dim] = [
            ("header", _clean(f"header_{dim}")),
            ("tag", _tag_value(dim)),
            ("mapping", _clean(f"coalesce(key_map.{dim}, team_map.{dim})")),
        ]
        if dim != "agent":
            candidates[dim].append(("team_alias", _clean("team_alias")))
    names = [f"_{dim}_{rule}" for dim, rules in candidates.items() for rule, _ in rules]
    columns = []
    for dim, rules in candidates.items():
        value = "coalesce(" + ", ".join(f"_{dim}_{rule}" for rule, _ in rules)
        decided = " ".join(f"WHEN _{dim}_{rule} IS NOT NULL THEN '{rule}'" for rule, _ in rules)
        name = "attribution_source" if dim == "department" else f"{dim}_source"
        columns += [
            f"{value}, '{UNATTRIBUTED}') AS {dim}",
            f"CASE {decided} ELSE '{UNATTRIBUTED}' END AS {name}",
        ]
    computed = ", ".join(
        f"{expr} AS _{dim}_{rule}" for dim, rules in candidates.items() for rule, expr in rules
    )
    return f"""
    WITH tagged AS (
        SELECT *, list_transform(
            list_concat(
                coalesce(request_tags, []), coalesce(string_split(header_tags, ','), [])
            ),
            lambda t: regexp_extract(t, '{_TAG_PATTERN}', ['dim', 'value'])
        ) AS tag_pairs
        FROM {source}
    ),
    candidates AS (
        SELECT tagged.* EXCLUDE (tag_pairs), {computed}
        FROM tagged
        LEFT JOIN (SELECT * FROM mapping WHERE kind = 'key') AS key_map
            ON key_map.alias = tagged.key_alias
        LEFT JOIN (SELECT * FROM mapping WHERE kind = 'team') AS team_map
            ON team_map.alias = tagged.team_alias
    )
    SELECT candidates.* EXCLUDE ({", ".join(names)}), {", ".join(columns)}
    FROM candidates
    """
