"""The leads table's callback claims against moto: the conditional writes that accept each distinct callback
once (what a refused claim means is tested on plain data in tests/unit/core/test_callback_acceptance.py)."""

from __future__ import annotations

from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.dynamodb import item_size
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.core.callback_acceptance import KEPT_VERSIONS, TRIM_SLACK, Acceptance, Claim

pytestmark = pytest.mark.integration


def test_a_late_older_callback_is_counted_but_does_not_replace_the_newer_enrichment(stack: Any) -> None:
    claims = CallbackClaims(stack.table_names["LeadsTable"])
    claims.save_enrichment("ld_late", "ld_late#new", {"icp_score": 90}, "2026-01-01T00:02:00+00:00")
    claims.save_enrichment("ld_late", "ld_late#old", {"icp_score": 40}, "2026-01-01T00:01:00+00:00")
    stored = LeadsTable(stack.table_names["LeadsTable"]).get("ld_late")
    assert stored is not None
    assert (stored["callbacks"], stored["callback_id"], stored["enrichment"]) == (2, "ld_late#new", {"icp_score": 90})


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
    # THEN a version in the set is still a duplicate, and a new one is accepted and, routed, starts the bounded list
    assert resend(claims, "ld_old", 5, {"lead_id": "ld_old"}) is Acceptance.DUPLICATE
    assert resend(claims, "ld_old", 500, {"lead_id": "ld_old"}) is Acceptance.ACCEPTED
    assert (LeadsTable(table).get("ld_old") or {})["versions"] == [f"{500:032x}"]


def test_a_claim_whose_answer_was_lost_is_recognised_by_its_retry(stack: Any) -> None:
    # GIVEN a claim write that DynamoDB applied, then its answer lost (the same call tried again)
    claims = CallbackClaims(stack.table_names["LeadsTable"])
    lead_key, callback_id, lead = "ld_lost", "ld_lost#" + "a" * 32, {"lead_id": "ld_lost"}
    received_at = "2026-01-01T00:00:00.000001+00:00"
    assert claims.accept(lead_key, callback_id, lead, received_at).acceptance is Acceptance.ACCEPTED
    # WHEN the retry carries the same received_at THEN it is this invocation's own claim: accepted, counted once
    assert claims.accept(lead_key, callback_id, lead, received_at) == Claim(Acceptance.ACCEPTED, received_at)
    assert (LeadsTable(claims.table_name).get(lead_key) or {})["callbacks"] == 1
    # AND an identical callback received later finds it pending: its copy is to carry the claim's received_at
    later = "2026-01-01T00:00:05+00:00"
    assert claims.accept(lead_key, callback_id, lead, later) == Claim(Acceptance.PENDING, received_at)


def test_the_claim_stays_until_the_routers_write_then_the_version_is_a_duplicate(stack: Any) -> None:
    # GIVEN a callback's one write: the version claimed, the lead stored
    claims, leads = CallbackClaims(stack.table_names["LeadsTable"]), LeadsTable(stack.table_names["LeadsTable"])
    callback_id = "ld_flow#" + "c" * 32
    claims.accept("ld_flow", callback_id, {"lead_id": "ld_flow"}, "2026-01-01T00:00:00+00:00")
    assert (leads.get("ld_flow") or {})["pending_" + "c" * 32] == "2026-01-01T00:00:00+00:00"
    # WHEN the router's write accepts it (here, its outcome for a lead with nothing to deliver)
    item = leads.record_routing("ld_flow", callback_id, {"routing_status": "skipped"}, [callback_id])
    # THEN the claim is gone and the version listed: an identical re-send is a duplicate, no copy queued
    assert "pending_" + "c" * 32 not in item and item["versions"] == ["c" * 32]
    again = claims.accept("ld_flow", callback_id, {"lead_id": "ld_flow"}, "2026-01-01T00:01:00+00:00")
    assert again.acceptance is Acceptance.DUPLICATE


def test_an_older_callback_routed_after_a_newer_one_is_stored_is_accepted_all_the_same(stack: Any) -> None:
    # GIVEN two versions of a lead claimed, the newer stored last
    claims, leads = CallbackClaims(stack.table_names["LeadsTable"]), LeadsTable(stack.table_names["LeadsTable"])
    old, new = "ld_two#" + "1" * 32, "ld_two#" + "2" * 32
    claims.accept("ld_two", old, {"lead_id": "ld_two"}, "2026-01-01T00:00:00+00:00")
    claims.accept("ld_two", new, {"lead_id": "ld_two"}, "2026-01-01T00:00:01+00:00")
    # WHEN the older one is routed with nothing to deliver (its outcome is not written over the newer lead's)
    leads.record_routing("ld_two", old, {"routing_status": "skipped"}, [old])
    # THEN its claim is completed in a write of its own; the newer one's is still pending
    item = leads.get("ld_two") or {}
    assert item["versions"] == ["1" * 32] and "pending_" + "1" * 32 not in item
    assert "pending_" + "2" * 32 in item and item["routing_status"] == "received"
