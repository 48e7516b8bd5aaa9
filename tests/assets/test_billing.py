from decimal import Decimal

import dagster as dg
import pytest

from assets.billing import reconcile


def test_reconcile_accepts_equal_totals_and_names_every_stage_otherwise():
    reconcile({"spend_events": Decimal("1.50"), "cloudzero_cbf": Decimal("1.5")})
    with pytest.raises(dg.Failure, match="spend_events=1.5, spend_by_team=1.4"):
        reconcile({"spend_events": Decimal("1.5"), "spend_by_team": Decimal("1.4")})
