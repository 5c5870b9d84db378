"""One batch's deliveries to Salesforce (services/delivery.py, the batched-CRM seam) on the Salesforce simulator,
without AWS: batches of 200, one bad record, an expired session, unchanged resends, Salesforce off. Each lead's
ledger is carried from run to run as plain data (DeliveryBatch); the pause the router writes when Salesforce
refuses its grant is tested on moto in tests/integration/test_router_salesforce.py. Carried over from there with
their assertions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from local.salesforce_sim import SalesforceSim
from local.sqs_events import sqs_event
from tests.integration.test_router import routing_record
from tests.integration.test_router_salesforce import lead, salesforce_settings
from tests.unit.core.plain_routing import ARN
from tests.unit.services.test_delivery import DeliveryBatch

pytestmark = pytest.mark.unit


class SalesforceBatch:
    """DeliveryBatch with only Salesforce on (the simulator), its records as the callback queues them: version n is
    the lead's nth callback, received n minutes in."""

    def __init__(self, batch: DeliveryBatch) -> None:
        self.batch = batch

    def record(self, lead: dict[str, Any], version: int = 1, receive_count: int = 1) -> dict[str, Any]:
        received_at = f"2026-01-01T00:{version:02d}:00+00:00"
        return routing_record(lead, f"{lead['lead_id']}#h{version}", received_at, ARN, receive_count)

    def run(self, records: list[dict[str, Any]], remaining_ms: int = 60_000) -> list[str]:
        return self.batch.run(sqs_event(records), remaining_ms)

    def outcome(self, lead_key: str) -> dict[str, Any]:
        return self.batch.outcome(lead_key)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.batch.dead_letters()


@pytest.fixture
def salesforce_batch(monkeypatch: pytest.MonkeyPatch, load_function_without_aws: Any) -> Callable[..., SalesforceBatch]:
    """A SalesforceBatch with these settings, and no AWS at all (load_function_without_aws's closed endpoint)."""

    def make(**environ: str) -> SalesforceBatch:
        for name, value in environ.items():
            monkeypatch.setenv(name, value)  # the CRM reads its secrets per call
        return SalesforceBatch(DeliveryBatch(environ))

    return make


@pytest.fixture
def router(salesforce_batch: Callable[..., SalesforceBatch], org: SalesforceSim) -> SalesforceBatch:
    return salesforce_batch(**salesforce_settings(org))


def test_250_leads_go_to_salesforce_in_two_requests_each_keyed_by_its_lead_id(
    router: SalesforceBatch, org: SalesforceSim
) -> None:
    # GIVEN a batch of 250 qualifying leads (score 75, an email) WHEN the router runs once
    leads = [lead(n) for n in range(250)]
    failed = router.run([router.record(item) for item in leads])
    # THEN two upserts of 200 and 50 records, each carrying its lead_id as the external id, one token
    assert failed == []
    batches = org.upserted()
    assert [len(batch) for batch in batches] == [200, 50]
    assert sorted(record["Clay_Lead_Id__c"] for batch in batches for record in batch) == [i["lead_id"] for i in leads]
    assert len(org.calls("token")) == 1 and len(org.calls("query")) == 2
    # every lead written once, recorded delivered in its ledger
    assert sorted(w.lead_id for w in org.writes()) == [i["lead_id"] for i in leads]
    outcome = router.outcome("ld_sf_0007")
    assert outcome["routing_status"] == "routed" and outcome["destinations"]["salesforce"] == "delivered"
    assert "salesforce" in outcome["deliveries"]
    assert "salesforce" in outcome["routes"]


def test_one_bad_record_dead_letters_that_lead_alone_and_the_rest_are_delivered(
    router: SalesforceBatch, org: SalesforceSim
) -> None:
    # GIVEN an org whose tier field holds one character, and one lead whose tier does not fit
    org.custom_fields["Clay_Tier__c"] = 1
    leads = [lead(1, tier="A"), lead(2, tier="AB"), lead(3, tier="B")]
    failed = router.run([router.record(item) for item in leads])
    assert failed == []  # dead-lettered, not retried
    [dead] = router.dead_letters()
    assert dead["body"]["lead_key"] == "ld_sf_0002" and dead["reason"] == "permanent_failure"
    assert "salesforce_string_too_long" in dead["detail"] and "Clay_Tier__c" in dead["detail"]
    assert json.loads(dead["destinations"])["salesforce"] == "permanent:salesforce_string_too_long"
    assert sorted(w.lead_id for w in org.writes()) == ["ld_sf_0001", "ld_sf_0003"]
    assert router.outcome("ld_sf_0001")["destinations"]["salesforce"] == "delivered"


def test_an_expired_session_costs_one_refresh_and_no_lead_is_lost_or_doubled(
    router: SalesforceBatch, org: SalesforceSim
) -> None:
    assert router.run([router.record(lead(n)) for n in range(5)]) == []
    # WHEN the org's session times out between two batches
    org.expire_sessions()
    assert router.run([router.record(lead(n)) for n in range(5, 10)]) == []
    # THEN one new token; each lead written exactly once
    assert len(org.calls("token")) == 2
    assert sorted(w.lead_id for w in org.writes()) == [f"ld_sf_{n:04d}" for n in range(10)]
    assert all(router.outcome(f"ld_sf_{n:04d}")["destinations"]["salesforce"] == "delivered" for n in range(10))


def test_an_unchanged_resend_costs_no_call_and_a_changed_one_updates_without_the_reps_fields(
    router: SalesforceBatch, org: SalesforceSim
) -> None:
    first = lead(1, company_name=None)
    assert router.run([router.record(first)]) == []
    [created] = org.upserted()[0]
    assert created["Status"] == "Open - Not Contacted" and created["Company"] == "[not provided]"
    calls = len(org.requests)
    # a rep works the lead
    org.records[("Lead", "ld_sf_0001")].update(Status="Working - Contacted", Company="Acme Corp")
    # WHEN Clay sends the same row again: no call at all
    assert router.run([router.record(first, version=2)]) == []
    assert len(org.requests) == calls
    assert router.outcome("ld_sf_0001")["routing_status"] == "routed"
    # WHEN it sends a changed row: an update without Status, LeadSource or the Company placeholder
    assert router.run([router.record({**first, "job_title": "CTO"}, version=3)]) == []
    update = org.upserted()[-1][0]
    assert update["Title"] == "CTO" and not {"Status", "LeadSource", "Company"} & set(update)
    kept = org.record("ld_sf_0001")
    assert kept is not None and kept["Status"] == "Working - Contacted" and kept["Company"] == "Acme Corp"
    assert [w.created for w in org.writes()] == [True, False]


def test_salesforce_is_off_without_its_login_url(
    salesforce_batch: Callable[..., SalesforceBatch], org: SalesforceSim
) -> None:
    router = salesforce_batch(**org.secrets(), SALESFORCE_LOGIN_URL="")
    assert router.run([router.record(lead(1))]) == []
    assert not org.requests
    assert "salesforce" not in router.outcome("ld_sf_0001")["routes"]
