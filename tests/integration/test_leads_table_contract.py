"""Contract of the leads table's fake (tests/fakes/leads_table.py): every test runs on LeadsTable against moto
and on the fake, so the fake can never accept what DynamoDB refuses."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.contract import OnDynamoDB, OnFakes

pytestmark = pytest.mark.integration


class LeadsTableContract:
    """What both LeadsTable and FakeLeadsTable must do."""

    def test_record_routing_writes_the_outcome_of_the_stored_callback_only_and_get_reads_it(self, ports: Any) -> None:
        # get: None for a lead never stored, the item (as DynamoDB gives numbers and lists back) once stored
        assert ports.leads.get("ld_none") is None
        ports.put("ld_x", enrichment={"icp_score": 85.0, "tags": ("a",)}, callback_id="ld_x#1")
        assert ports.leads.get("ld_x") == {
            "lead_key": "ld_x",
            "enrichment": {"icp_score": 85, "tags": ["a"]},
            "callback_id": "ld_x#1",
        }
        # GIVEN a lead stored by callback #1 with an earlier outcome
        ports.put("ld_r", callback_id="ld_r#1", routing_status="received", skipped_reason="old")
        # WHEN #1's outcome is recorded THEN it is written (None removes), and the item as it is now comes back
        now = ports.leads.record_routing("ld_r", "ld_r#1", {"routing_status": "skipped", "skipped_reason": None})
        assert now == {"lead_key": "ld_r", "callback_id": "ld_r#1", "routing_status": "skipped"}
        # WHEN an older callback's outcome comes after a newer one was stored THEN nothing is written, the item as it is
        ports.put("ld_r", callback_id="ld_r#2", routing_status="received")
        was = ports.leads.record_routing("ld_r", "ld_r#1", {"routing_status": "routed"})
        assert was == {"lead_key": "ld_r", "callback_id": "ld_r#2", "routing_status": "received"}
        assert ports.item("ld_r") == was
        # AND a lead without a stored callback takes the outcome (its item is created)
        assert ports.leads.record_routing("ld_new", "ld_new#1", {"routing_status": "routed"}) == {
            "lead_key": "ld_new",
            "routing_status": "routed",
        }

    def test_the_outcome_write_accepts_the_callbacks_it_routes_even_when_a_newer_one_is_stored(
        self, ports: Any
    ) -> None:
        # GIVEN a version claimed by the callback (its claim holds its received_at)
        ports.put("ld_a", callback_id="ld_a#c1", pending_c1="t1", routing_status="received")
        # WHEN its outcome is recorded (nothing to deliver) THEN the same write accepts it: listed, the claim gone
        item = ports.leads.record_routing("ld_a", "ld_a#c1", {"routing_status": "skipped"}, ["ld_a#c1"])
        assert (item["versions"], "pending_c1" in item, item["routing_status"]) == (["c1"], False, "skipped")
        # GIVEN an older version routed after a newer one was stored
        ports.put("ld_b", callback_id="ld_b#new", pending_old="t1", pending_new="t2", routing_status="received")
        # WHEN the older one's outcome is refused THEN its claim is still accepted (a write of its own)
        ports.leads.record_routing("ld_b", "ld_b#old", {"routing_status": "skipped"}, ["ld_b#old"])
        item = ports.item("ld_b")
        assert (item["versions"], item["routing_status"]) == (["old"], "received")
        assert "pending_old" not in item and item["pending_new"] == "t2"
        # AND accept alone does the same (an item written before the list: tests/integration/test_callback_claims.py)
        ports.put("ld_c", versions=["c1"], pending_c3="t3")
        ports.leads.accept("ld_c", ["ld_c#c3"])
        item = ports.item("ld_c")
        assert (item["versions"], "pending_c3" in item) == (["c1", "c3"], False)


class TestOnDynamoDB(OnDynamoDB, LeadsTableContract):
    """The adapter on moto."""


class TestOnFake(OnFakes, LeadsTableContract):
    """The fake."""
