"""The attribution mapping file (``SPEND_ATTRIBUTION_FILE``): its format, its reader and its
resource. Which rule attributes a request is ``assets.attribution``'s."""

from pathlib import Path

import dagster as dg
import pyarrow as pa
import yaml

DIMENSIONS = ("department", "team", "agent")
MAPPING_SCHEMA = pa.schema(
    [("kind", pa.string()), ("alias", pa.string())] + [(d, pa.string()) for d in DIMENSIONS]
)


class MappingFileError(ValueError):
    pass


def load_mapping(path: str | Path | None) -> pa.Table:
    """Read the YAML mapping file into rows (kind: key|team, alias, department, team, agent).

    Format::

        keys:   {<key alias>: {department: .., team: .., agent: ..}}
        teams:  {<team alias>: {department: .., team: .., agent: ..}}
    """
    if not path:
        return MAPPING_SCHEMA.empty_table()
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MappingFileError(f"cannot read SPEND_ATTRIBUTION_FILE {path}: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"keys", "teams"}:
        raise MappingFileError(f"{path}: top level must have only 'keys' and/or 'teams'")
    rows = []
    for section, kind in (("keys", "key"), ("teams", "team")):
        for alias, target in (doc.get(section) or {}).items():
            if not isinstance(target, dict) or set(target) - set(DIMENSIONS):
                raise MappingFileError(
                    f"{path}: {section}.{alias} must map to department/team/agent, got {target!r}"
                )
            rows.append(
                {"kind": kind, "alias": str(alias)}
                | {d: (str(target[d]) if target.get(d) is not None else None) for d in DIMENSIONS}
            )
    return pa.Table.from_pylist(rows, schema=MAPPING_SCHEMA)


class AttributionMappingResource(dg.ConfigurableResource):
    """YAML mapping of LiteLLM key / team aliases to department, team and agent."""

    mapping_file: str | None = None

    def mapping(self) -> pa.Table:
        return load_mapping(self.mapping_file)
