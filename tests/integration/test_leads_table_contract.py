"""Contract of the leads table's fake (tests/fakes/leads_table.py): every test runs on LeadsTable against moto
and on the fake, so the fake can never accept what DynamoDB refuses."""

from __future__ import annotations

from typing import Any

import pytest

from local.aws import Provisioned
from tests.fakes.contract import LeadPorts, fake_lead_ports, real_lead_ports

pytestmark = pytest.mark.integration


class LeadsTableContract:
    """What both LeadsTable and FakeLeadsTable must do."""

    def test_get_is_none_for_a_lead_never_stored_and_the_item_once_stored(self, ports: LeadPorts) -> None:
        assert ports.leads.get("ld_none") is None
        ports.put("ld_x", enrichment={"icp_score": 85.0, "tags": ("a",)}, callback_id="ld_x#1")
        assert ports.leads.get("ld_x") == {
            "lead_key": "ld_x",
            "enrichment": {"icp_score": 85, "tags": ["a"]},  # as DynamoDB gives numbers and lists back
            "callback_id": "ld_x#1",
        }

    def test_record_routing_writes_the_outcome_of_the_stored_callback_only(self, ports: Any) -> None:
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


class TestOnDynamoDB(LeadsTableContract):
    """The adapter, on the template's resources in moto's server."""

    @pytest.fixture
    def ports(self, stack: Provisioned) -> LeadPorts:
        return real_lead_ports(stack.table_names["LeadsTable"])


class TestOnFake(LeadsTableContract):
    """The fake the service tests use."""

    @pytest.fixture
    def ports(self) -> LeadPorts:
        return fake_lead_ports()
