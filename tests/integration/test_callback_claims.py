"""The leads table's callback claims against moto: what their writes keep on the item over many re-sends and on
items written before the versions list. Each write and refusal (a late older callback, a claim whose answer was
lost) is in the contract suite, tests/integration/test_callback_claims_contract.py, on moto and on the fake; what a
refused claim means is tested on plain data in tests/unit/core/test_callback_acceptance.py."""

from __future__ import annotations

from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.dynamodb import item_size
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.core.callback_acceptance import KEPT_VERSIONS, TRIM_SLACK, Acceptance

pytestmark = pytest.mark.integration


# -- bounded state per lead: the `versions` list of the lead's item (issue 19) ----------------------------
def resend(claims: CallbackClaims, lead_key: str, number: int, lead: dict[str, Any]) -> Acceptance:
    """One more distinct version of the lead called back: claimed and stored as the callback does, then completed
    as the router's first write on the item does."""
    callback_id = f"{lead_key}#{number:032x}"
    acceptance = claims.accept(lead_key, callback_id, lead, f"2026-01-01T00:00:00.{number:06d}").acceptance
    if acceptance is Acceptance.ACCEPTED:
        LeadsTable(claims.table_name).accept(lead_key, [callback_id])
    return acceptance


def test_the_lead_item_stays_within_a_fixed_size_whatever_the_number_of_resends(stack: Any) -> None:
    # GIVEN a wide lead (20 KB of columns) that Clay calls back again and again, each time a new version
    claims, leads = CallbackClaims(stack.table_names["LeadsTable"]), LeadsTable(stack.table_names["LeadsTable"])
    lead = {"lead_id": "ld_wide", **{f"column_{n}": "x" * 200 for n in range(100)}}
    bound = item_size({"lead_key": "ld_wide", "enrichment": lead}) + 2_500  # the versions and bookkeeping
    sizes = []
    # WHEN it is re-sent through four trim cycles (past the first, the list only cycles: 10,000 re-sends are
    # bench/callback_outages.py's, moto takes about 25 ms a write)
    resends = 4 * (KEPT_VERSIONS + TRIM_SLACK)
    for number in range(resends):
        assert resend(claims, "ld_wide", number, lead) is Acceptance.ACCEPTED
        item = leads.get("ld_wide") or {}
        sizes.append(item_size(item))
        assert len(item["versions"]) < KEPT_VERSIONS + TRIM_SLACK
    print(
        f"item size after 1, {KEPT_VERSIONS + TRIM_SLACK} and {resends} re-sends: {sizes[0]}, "
        f"{sizes[KEPT_VERSIONS + TRIM_SLACK - 1]}, {sizes[-1]} bytes (bound {bound})"
    )
    # THEN the item never passes the bound, and the last cycle is no larger than the first full one (but for the
    # `callbacks` count: a byte per two more digits)
    assert max(sizes) <= bound
    cycle = KEPT_VERSIONS + TRIM_SLACK
    assert max(sizes[-cycle:]) <= max(sizes[cycle : 2 * cycle]) + 1
    # AND what exactly-once needs is kept: the newest versions are duplicates, one past the window is new again
    assert claims.accept("ld_wide", f"ld_wide#{resends - 1:032x}", lead, "2027").acceptance is Acceptance.DUPLICATE
    assert resend(claims, "ld_wide", 0, lead) is Acceptance.ACCEPTED  # the first version, long out of the window


def test_an_item_from_before_the_list_starts_a_list_with_its_next_callback(stack: Any) -> None:
    # GIVEN a lead item written by the earlier code: `versions` a string set that only grew
    table = stack.table_names["LeadsTable"]
    client("dynamodb").put_item(
        TableName=table,
        Item={"lead_key": {"S": "ld_old"}, "versions": {"SS": [f"{n:032x}" for n in range(100)]}},
    )
    claims = CallbackClaims(table)
    # THEN a version in the set is still a duplicate, and a new one is accepted and starts the bounded list
    assert resend(claims, "ld_old", 5, {"lead_id": "ld_old"}) is Acceptance.DUPLICATE
    assert resend(claims, "ld_old", 500, {"lead_id": "ld_old"}) is Acceptance.ACCEPTED
    assert (LeadsTable(table).get("ld_old") or {})["versions"] == [f"{500:032x}"]
