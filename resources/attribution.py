"""The attribution mapping file (``SPEND_ATTRIBUTION_FILE``) as a resource."""

import dagster as dg
import pyarrow as pa

from assets.attribution import load_mapping


class AttributionMappingResource(dg.ConfigurableResource):
    """YAML mapping of LiteLLM key / team aliases to department, team and agent."""

    mapping_file: str | None = None

    def mapping(self) -> pa.Table:
        return load_mapping(self.mapping_file)
