"""RouterFunction delivering to Salesforce (the batched-CRM seam) against moto and the Salesforce simulator.

Only Salesforce is configured: the other destinations are off, so every call counted is Salesforce's. The
simulator (local/salesforce_sim.py) checks the client credentials, the external id field, the 200-record limit,
required fields and field lengths, and expires sessions on demand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.services.pause import DestinationSwitch
from local.salesforce_sim import SalesforceSim
from local.sqs_events import sqs_event, sqs_record
from tests.conftest import LambdaContextStub

pytestmark = pytest.mark.integration

RECEIVED_AT = "2026-01-01T00:00:00+00:00"


@pytest.fixture
def org() -> Iterator[SalesforceSim]:
    with SalesforceSim() as sim:
        yield sim


class Router:
    def __init__(self, module: Any, stack: Any) -> None:
        self.module = module
        self.stack = stack
        self.arn = str(stack.resolver.attributes[("RoutingQueue", "Arn")])
        self.leads = LeadsTable(stack.table_names["LeadsTable"])

    def record(self, lead: dict[str, Any], version: int = 1, receive_count: int = 1) -> dict[str, Any]:
        key = str(lead["lead_id"])
        callback_id = f"{key}#h{version}"
        received_at = f"2026-01-01T00:{version:02d}:00+00:00"
        CallbackClaims(self.leads.table_name).save_enrichment(key, callback_id, lead, received_at)
        body = {"callback_id": callback_id, "lead_key": key, "lead": lead, "received_at": received_at}
        return sqs_record(json.dumps(body), self.arn, message_id=f"m-{callback_id}", receive_count=receive_count)

    def run(self, records: list[dict[str, Any]], remaining_ms: int = 60_000) -> list[str]:
        response = self.module.lambda_handler(sqs_event(records), LambdaContextStub("router", remaining_ms))
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def outcome(self, lead_key: str) -> dict[str, Any]:
        item = self.leads.get(lead_key)
        assert item is not None
        return item

    def dead_letters(self) -> list[dict[str, Any]]:
        from clay_pipeline.adapters.aws import client

        messages = client("sqs").receive_message(
            QueueUrl=self.stack.queue_urls["RoutingDLQ"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        return [
            {"body": json.loads(m["Body"]), **{k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}}
            for m in messages.get("Messages", [])
        ]


@pytest.fixture
def router(load_function: Any, stack: Any, org: SalesforceSim) -> Router:
    settings = {
        **org.secrets(),
        "SALESFORCE_LOGIN_URL": org.url,
        "SALESFORCE_FIELD_MAP": json.dumps({"Status": {"value": "Open - Not Contacted"}}),
        "DESTINATION_RETRY_ATTEMPTS": "1",
        "DESTINATION_RETRY_BACKOFF_SECONDS": "0.01",
        "DESTINATION_TIMEOUT_SECONDS": "5",
        "DESTINATION_PAUSE_CACHE_SECONDS": "0",
    }
    return Router(load_function("RouterFunction", **settings), stack)


def lead(n: int, score: float = 75, **fields: Any) -> dict[str, Any]:
    return {
        "lead_id": f"ld_sf_{n:04d}",
        "email": f"p{n}@acme.com",
        "first_name": "Jane",
        "last_name": f"Doe{n}",
        "company_name": "Acme",
        "icp_score": score,
        **fields,
    }


def test_250_leads_go_to_salesforce_in_two_requests_each_keyed_by_its_lead_id(
    router: Router, org: SalesforceSim
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
    router: Router, org: SalesforceSim
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
    router: Router, org: SalesforceSim
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
    router: Router, org: SalesforceSim
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


def test_a_refused_grant_pauses_salesforce_and_the_leads_wait_instead_of_dead_lettering(
    router: Router, org: SalesforceSim, stack: Any
) -> None:
    org.client_secret = "rotated-in-salesforce-only"
    records = [router.record(lead(n)) for n in range(3)]
    failed = router.run(records)
    assert router.dead_letters() == []
    assert not org.calls("upsert")
    switch = DestinationSwitch(StateStore(stack.table_names["StateTable"]), cache_seconds=0)
    assert "salesforce" in switch.paused()
    reason = str(switch.states()["salesforce"].get("reason"))
    assert "SALESFORCE_CLIENT_SECRET" in reason and "rotated-in-salesforce-only" not in reason
    # the leads wait (handed back to the queue, never toward the DLQ)
    assert set(failed) <= {record["messageId"] for record in records}
    assert router.outcome("ld_sf_0000")["destinations"]["salesforce"] == "paused"


def test_salesforce_is_off_without_its_login_url(load_function: Any, stack: Any, org: SalesforceSim) -> None:
    module = load_function("RouterFunction", **org.secrets(), SALESFORCE_LOGIN_URL="")
    router = Router(module, stack)
    assert router.run([router.record(lead(1))]) == []
    assert not org.requests
    assert "salesforce" not in router.outcome("ld_sf_0001")["routes"]
