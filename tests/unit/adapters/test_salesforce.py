"""Salesforce's adapter against the Salesforce simulator on loopback (local/salesforce_sim.py): the token and its
one refresh, batches of 200 by external id, one outcome per lead, create-only fields, the setup problems, and the
simulator's whole-request refusals as the REST API documents them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from clay_pipeline.adapters.salesforce import (
    DAILY_LIMIT,
    GRANT_REFUSED,
    SETUP_PROBLEM,
    SalesforceRecords,
)
from clay_pipeline.adapters.webhooks import HttpClient, RetryPolicy
from clay_pipeline.core.deliveries import DeliveryResult, Status
from clay_pipeline.core.salesforce_records import FieldType, Kind, RecordMapping, SalesforceRecord
from local.salesforce_sim import TOKEN_PATH, SalesforceSim

pytestmark = pytest.mark.unit

RECEIVED_AT = "2026-01-01T00:00:00+00:00"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch, org: SalesforceSim) -> None:
    monkeypatch.delenv("CONFIG_SECRET_ID", raising=False)
    for name, value in org.secrets().items():
        monkeypatch.setenv(name, value)


def adapter(org: SalesforceSim, field_map: str = "", sobject: str = "Lead", timeout: float = 10) -> SalesforceRecords:
    """The adapter with the router's retry policy as a test wants it: each request `timeout`, no retry."""
    mapping = RecordMapping.from_settings(sobject, "Clay_Lead_Id__c", field_map)
    retry = RetryPolicy(timeout_seconds=timeout, attempts=0, backoff_seconds=0)
    return SalesforceRecords(HttpClient(), org.url, "v62.0", mapping, retry)


def upsert(crm: SalesforceRecords, leads: list[dict[str, object]], seconds: float = 10) -> dict[str, DeliveryResult]:
    """The leads' records upserted as the router does (requests of 200), within `seconds`."""
    return crm.upsert_records(records(crm, leads), deadline=time.monotonic() + seconds)


def lead(n: int, **extra: object) -> dict[str, object]:
    return {
        "lead_id": f"ld_{n:04d}",
        "email": f"p{n}@acme.com",
        "last_name": f"Person{n}",
        "company_name": "Acme",
        "icp_score": 80,
        "tier": "A",
        **extra,
    }


def records(crm: SalesforceRecords, leads: list[dict[str, object]]) -> list[SalesforceRecord]:
    return [crm.record(item, RECEIVED_AT) for item in leads]


def test_off_unless_login_url_and_client_id_are_set(org: SalesforceSim, monkeypatch: pytest.MonkeyPatch) -> None:
    assert adapter(org).configured()
    assert not SalesforceRecords(HttpClient(), "", "v62.0").configured()
    monkeypatch.delenv("SALESFORCE_CLIENT_ID")
    assert not adapter(org).configured()


def test_250_leads_go_in_two_requests_of_200_and_50_each_record_keyed_by_its_lead_id(org: SalesforceSim) -> None:
    # GIVEN 250 new leads
    crm = adapter(org)
    leads = [lead(n) for n in range(250)]
    # WHEN they are upserted
    results = upsert(crm, leads)
    # THEN two upsert requests carry 200 and 50 records, each with its lead_id as the external id
    batches = org.upserted()
    assert [len(batch) for batch in batches] == [200, 50]
    sent = [record["Clay_Lead_Id__c"] for batch in batches for record in batch]
    assert sent == [item["lead_id"] for item in leads]
    assert all(record["attributes"] == {"type": "Lead"} for batch in batches for record in batch)
    assert all(json.loads(call.body)["allOrNone"] is False for call in org.calls("upsert"))
    # every lead delivered once, created, with its Salesforce id; one token for the whole run
    assert {result.status for result in results.values()} == {Status.DELIVERED}
    assert {result.reason for result in results.values()} == {"salesforce_created"}
    assert len({result.detail for result in results.values()}) == 250
    assert len(org.writes()) == 250 and len(org.calls("token")) == 1
    assert len(org.calls("query")) == 2  # which exist: one query per batch (the create-only fields)


def test_one_bad_record_fails_alone_with_salesforces_message(org: SalesforceSim) -> None:
    crm = adapter(org)
    leads = [lead(1), lead(2, email="not an email"), lead(3)]
    results = upsert(crm, leads)
    assert results["ld_0001"].delivered and results["ld_0003"].delivered
    bad = results["ld_0002"]
    assert bad.status is Status.PERMANENT and bad.reason == "salesforce_invalid_email_address"
    assert "invalid email address" in bad.detail and "Email" in bad.detail
    assert org.record("ld_0002") is None and len(org.upserted()) == 1


def test_a_request_refused_whole_is_split_until_the_bad_record_is_alone(org: SalesforceSim) -> None:
    # GIVEN a number field the mapping does not know, and one lead with text in it: Salesforce refuses the request
    org.custom_fields["Seats__c"] = FieldType(Kind.NUMBER)
    crm = adapter(org, json.dumps({"Seats__c": "seats"}))
    leads = [lead(n, seats=10) for n in range(8)]
    leads[5]["seats"] = "lots"
    results = upsert(crm, leads)
    assert results["ld_0005"].status is Status.PERMANENT and results["ld_0005"].reason == "salesforce_json_parser_error"
    assert all(results[f"ld_{n:04d}"].delivered for n in range(8) if n != 5)
    assert len(org.writes()) == 7  # none twice


def test_an_expired_session_costs_one_token_refresh_and_no_lead_is_lost_or_doubled(org: SalesforceSim) -> None:
    crm = adapter(org)
    first = upsert(crm, [lead(1)])
    assert first["ld_0001"].delivered and len(org.calls("token")) == 1
    # WHEN the org's session timeout passes between two batches
    org.expire_sessions()
    results = upsert(crm, [lead(2), lead(3)])
    # THEN one new token, the refused call repeated once, each lead written exactly once
    assert len(org.calls("token")) == 2
    assert all(result.delivered for result in results.values())
    assert [w.lead_id for w in org.writes()] == ["ld_0001", "ld_0002", "ld_0003"]


def test_a_token_salesforce_refuses_again_pauses_instead_of_looping(org: SalesforceSim) -> None:
    crm = adapter(org)
    upsert(crm, [lead(1)])
    org.sessions_refused = True  # tokens are issued, and refused
    result = upsert(crm, [lead(2)])["ld_0002"]
    assert result.status is Status.PAUSED and "run-as user" in result.detail
    assert len(org.calls("token")) == 2  # refreshed once, not in a loop


@pytest.mark.parametrize(
    ("change", "hint"),
    [
        ({"client_secret": "rotated-elsewhere"}, "SALESFORCE_CLIENT_SECRET"),
        ({"client_id": "another-app"}, "SALESFORCE_CLIENT_ID"),
        ({"run_as_user": False}, "run-as user"),
    ],
)
def test_a_refused_grant_pauses_naming_the_setting_and_sends_nothing(
    org: SalesforceSim, change: dict[str, object], hint: str
) -> None:
    for name, value in change.items():
        setattr(org, name, value)
    result = upsert(adapter(org), [lead(1)])["ld_0001"]
    assert result.status is Status.PAUSED and result.reason == GRANT_REFUSED and hint in result.detail
    assert org.client_secret not in result.detail and "sim-client-secret" not in result.detail
    assert not org.calls("upsert") and not org.calls("query")


def test_the_token_is_cached_per_container_and_a_rotated_secret_takes_a_new_one(
    org: SalesforceSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = adapter(org)
    for n in range(3):
        upsert(crm, [lead(n)])
    assert len(org.calls("token")) == 1
    org.client_secret = "rotated"
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "rotated")
    assert upsert(crm, [lead(9)])["ld_0009"].delivered
    assert len(org.calls("token")) == 2


def test_create_only_fields_go_out_on_create_and_never_on_an_update(org: SalesforceSim) -> None:
    # GIVEN a mapping with a rep's Status and the default create-only LeadSource, and a lead without a company
    crm = adapter(org, json.dumps({"Status": {"value": "Open - Not Contacted"}}))
    created = upsert(crm, [lead(1, company_name=None)])
    assert created["ld_0001"].reason == "salesforce_created"
    first = org.upserted()[0][0]
    assert first["Status"] == "Open - Not Contacted" and first["LeadSource"] == "Other"
    assert first["Company"] == "[not provided]"
    # a rep works the lead
    org.records[("Lead", "ld_0001")].update(Status="Working - Contacted", Company="Acme Corp")
    # WHEN Clay sends it again, changed
    updated = upsert(crm, [lead(1, company_name=None, job_title="CEO")])
    # THEN the update carries the change and none of the create-only fields
    assert updated["ld_0001"].reason == "salesforce_updated"
    second = org.upserted()[1][0]
    assert second["Title"] == "CEO"
    assert not {"Status", "LeadSource", "Company"} & set(second)
    assert org.record("ld_0001") is not None
    assert org.record("ld_0001")["Status"] == "Working - Contacted"  # type: ignore[index]
    assert org.record("ld_0001")["Company"] == "Acme Corp"  # type: ignore[index]


def test_no_query_when_no_record_has_a_create_only_part(org: SalesforceSim) -> None:
    crm = adapter(org, json.dumps({"LeadSource": None}))
    results = upsert(crm, [lead(1), lead(2)])
    assert all(result.delivered for result in results.values())
    assert not org.calls("query") and len(org.calls("upsert")) == 1


def test_a_locked_row_waits_alone_and_is_written_on_the_retry(org: SalesforceSim) -> None:
    crm = adapter(org)
    org.lock_rows(["ld_0002"])
    results = upsert(crm, [lead(1), lead(2), lead(3)])
    assert results["ld_0001"].delivered and results["ld_0003"].delivered
    assert (
        results["ld_0002"].status is Status.RETRYABLE and results["ld_0002"].reason == "salesforce_unable_to_lock_row"
    )
    assert results["ld_0002"].retry_after == 2.0
    assert upsert(crm, [lead(2)])["ld_0002"].delivered
    assert [w.lead_id for w in org.writes()] == ["ld_0001", "ld_0003", "ld_0002"]


def test_request_limits_pause_for_the_24_hour_allocation_and_retry_for_concurrency(org: SalesforceSim) -> None:
    crm = adapter(org, json.dumps({"LeadSource": None}))
    org.limit_requests(1, total=True)
    daily = upsert(crm, [lead(1)])["ld_0001"]
    assert daily.status is Status.PAUSED and daily.reason == DAILY_LIMIT and daily.retry_after == 900
    org.limit_requests(1, total=False)
    busy = upsert(crm, [lead(1)])["ld_0001"]
    assert busy.status is Status.RETRYABLE and busy.reason == "salesforce_request_limit_exceeded"
    assert not org.writes()


def test_once_salesforce_says_stop_the_rest_of_the_batch_is_not_sent(org: SalesforceSim) -> None:
    crm = adapter(org, json.dumps({"LeadSource": None}))
    org.limit_requests(1, total=True)
    results = upsert(crm, [lead(n) for n in range(300)])
    assert {result.reason for result in results.values()} == {DAILY_LIMIT}
    assert len(org.calls("upsert")) == 1


def test_a_missing_external_id_field_or_mapped_field_is_a_setup_pause(org: SalesforceSim) -> None:
    org.external_id_fields["Lead"] = set()
    result = upsert(adapter(org), [lead(1)])["ld_0001"]
    assert result.status is Status.PAUSED and result.reason == SETUP_PROBLEM
    assert "SALESFORCE_EXTERNAL_ID_FIELD" in result.detail and "The requested resource does not exist" in result.detail
    org.external_id_fields["Lead"] = {"Clay_Lead_Id__c"}
    crm = adapter(org, json.dumps({"Lead_Score__c": "icp_score"}))
    missing = upsert(crm, [lead(2)])["ld_0002"]
    assert missing.status is Status.PAUSED and "No such column 'Lead_Score__c'" in missing.detail
    assert "permission set" in missing.detail and not org.writes()


def test_a_field_the_permission_set_cannot_edit_pauses_salesforce_instead_of_dead_lettering(
    org: SalesforceSim,
) -> None:
    # GIVEN the run-as user's permission set lacks Edit on the tier field (field-level security)
    org.read_only_fields.add("Clay_Tier__c")
    results = upsert(adapter(org), [lead(1), lead(2, tier=None)])
    # THEN the lead carrying it pauses Salesforce with the field and the permission set to check; the other is written
    paused = results["ld_0001"]
    assert paused.status is Status.PAUSED and paused.reason == SETUP_PROBLEM
    assert "Unable to create/update fields: Clay_Tier__c" in paused.detail
    assert "permission set" in paused.detail
    assert results["ld_0002"].delivered and [w.lead_id for w in org.writes()] == ["ld_0002"]


def test_contacts_need_only_a_last_name(org: SalesforceSim) -> None:
    crm = adapter(org, sobject="Contact")
    results = upsert(crm, [lead(1, last_name=None, company_name=None)])
    assert results["ld_0001"].delivered
    written = org.record("ld_0001", "Contact")
    assert written is not None and written["LastName"] == "[not provided]" and "Company" not in written
    assert org.calls("upsert")[0].path.endswith("/composite/sobjects/Contact/Clay_Lead_Id__c")


def test_no_answer_is_retryable_since_an_upsert_by_external_id_repeats_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    crm = SalesforceRecords(HttpClient(connect_retries=0), "http://127.0.0.1:9", "v62.0")  # nothing listens
    result = upsert(crm, [lead(1)], seconds=2)["ld_0001"]
    assert result.status is Status.RETRYABLE and result.reason == "connection_error"


def test_a_lost_answer_is_retried_and_the_record_is_not_doubled(org: SalesforceSim) -> None:
    # GIVEN Salesforce writes the records, then answers after the client gave up (the answer is lost)
    crm = adapter(org, timeout=1.0)
    org.answer_after = 1.5
    lost = upsert(crm, [lead(1), lead(2)])
    assert {result.status for result in lost.values()} == {Status.RETRYABLE}  # an upsert repeats safely
    assert len(org.writes()) == 2  # Salesforce did write them
    # WHEN it is sent again
    org.answer_after = 0.0
    again = upsert(crm, [lead(1), lead(2)])
    # THEN the repeat updates the records the lost call created: one record per lead
    assert {result.reason for result in again.values()} == {"salesforce_updated"}
    assert [w.created for w in org.writes()] == [True, True, False, False]
    assert len(org.records) == 2


# -- the simulator's whole-request refusals, as the REST API documentation shows them (local/salesforce_sim.py says
# where it is silent): nothing is written when a request is refused whole
RAW_UPSERT = "/services/data/v62.0/composite/sobjects/Lead/{}"


def raw_upsert(org: SalesforceSim, records: list[dict[str, Any]], field: str = "Clay_Lead_Id__c") -> requests.Response:
    form = {"grant_type": "client_credentials", "client_id": org.client_id, "client_secret": org.client_secret}
    token = requests.post(org.url + TOKEN_PATH, data=form, timeout=5).json()["access_token"]
    return requests.patch(
        org.url + RAW_UPSERT.format(field),
        json={"allOrNone": False, "records": records},
        headers={"authorization": f"Bearer {token}"},
        timeout=5,
    )


def raw_record(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": "Lead"},
        "Clay_Lead_Id__c": f"ld_{n}",
        "LastName": "Doe",
        "Company": "Acme",
        **fields,
    }


def test_a_missing_external_id_field_is_the_documented_404(org: SalesforceSim) -> None:
    answer = raw_upsert(org, [raw_record(1)], field="Missing_Id__c")
    assert answer.status_code == 404
    assert answer.json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND", "fields": []}
    ]
    assert org.writes() == []


def test_more_than_200_records_is_a_400_and_nothing_is_written(org: SalesforceSim) -> None:
    answer = raw_upsert(org, [raw_record(n) for n in range(201)])
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert org.writes() == []
    assert raw_upsert(org, [raw_record(n) for n in range(200)]).status_code == 200
    assert len(org.writes()) == 200


def test_a_field_the_object_lacks_refuses_the_whole_request(org: SalesforceSim) -> None:
    answer = raw_upsert(org, [raw_record(1), raw_record(2, Lead_Score__c=5)])
    assert answer.status_code == 400
    [error] = answer.json()
    assert error["errorCode"] == "INVALID_FIELD" and "Lead_Score__c" in error["message"]
    assert org.writes() == []
