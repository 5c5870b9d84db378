"""HubSpot's adapter against the stateful HubSpot simulator on loopback (local/hubspot_sim.HubSpotSim) and
scripted answers: the mapping, one outcome per contact, rep-owned fields on create only, the 429 policies, the
properties setup."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.adapters.hubspot import ACCOUNT_PATH, READ_PATH, UPSERT_PATH, HubSpotContacts, HubSpotError
from clay_pipeline.adapters.webhooks import HttpClient
from clay_pipeline.core.deliveries import DELIVERED, Status
from clay_pipeline.core.hubspot_contacts import (
    REQUIRED_SCOPES,
    Contact,
    ContactMapping,
    next_local_midnight,
)
from local.http_stub import Reply, StubServer
from local.hubspot_sim import HubSpotSim

pytestmark = pytest.mark.unit

TOKEN = "pat-test"
RECEIVED_AT = "2026-01-01T00:00:00+00:00"


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONFIG_SECRET_ID", raising=False)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)


@pytest.fixture
def crm() -> HubSpotSim:
    hubspot = HubSpotSim(token=TOKEN)
    hubspot.add_custom_properties([("clay_icp_score", "number"), ("clay_enrichment_date", "date")])
    return hubspot


@pytest.fixture
def server(crm: HubSpotSim) -> Iterator[StubServer]:
    with StubServer(crm.answer) as stub:
        yield stub


def contacts(*emails: str, score: float = 80) -> list[Contact]:
    return [ContactMapping().contact({"email": email, "icp_score": score}, RECEIVED_AT) for email in emails]


# ------------------------------------------------------------------------------------- one outcome per contact
@pytest.mark.parametrize("multi_status", [False, True])
def test_one_refused_contact_fails_alone_with_hubspots_message(
    server: StubServer, crm: HubSpotSim, multi_status: bool
) -> None:
    # GIVEN ten contacts, the seventh with an email HubSpot refuses
    crm.multi_status = multi_status
    emails = [f"c{n}@acme.com" for n in range(10)]
    emails[6] = "jane,doe@acme.com"
    results = HubSpotContacts(HttpClient(), server.url).upsert(contacts(*emails), timeout=5)
    # THEN nine are delivered and in HubSpot, one refused with HubSpot's words
    assert [email for email, result in results.items() if result == DELIVERED] == emails[:6] + emails[7:]
    refused = results["jane,doe@acme.com"]
    assert (refused.status, refused.reason) == (Status.PERMANENT, "hubspot_validation_error")
    assert refused.detail == "Property values were not valid: Email address jane,doe@acme.com is invalid"
    assert sorted(crm.contacts) == sorted(emails[:6] + emails[7:])
    # AND the refused batch was split until the refused contact was alone (or HubSpot named it: one call)
    assert len(server.received(UPSERT_PATH)) == (1 if multi_status else 7)


def test_a_contact_hubspot_has_gets_no_rep_owned_field_a_new_one_does(server: StubServer, crm: HubSpotSim) -> None:
    crm.contacts["old@acme.com"] = {
        "id": "1",
        "createdAt": "",
        "properties": {"email": "old@acme.com", "hs_lead_status": "CONNECTED"},
    }
    results = HubSpotContacts(HttpClient(), server.url).upsert(contacts("OLD@acme.com", "new@acme.com"), timeout=5)
    assert set(results.values()) == {DELIVERED}
    [read] = server.received(READ_PATH)
    assert [item["id"] for item in read.json()["inputs"]] == ["OLD@acme.com", "new@acme.com"]
    [upsert] = server.received(UPSERT_PATH)
    sent = {item["id"]: item["properties"] for item in upsert.json()["inputs"]}
    assert "hs_lead_status" not in sent["OLD@acme.com"]
    assert sent["new@acme.com"]["hs_lead_status"] == "NEW"
    assert crm.contacts["old@acme.com"]["properties"]["hs_lead_status"] == "CONNECTED"


def test_without_create_only_values_no_read_is_made(server: StubServer) -> None:
    mapping = ContactMapping.from_settings("", "", "")
    hubspot = HubSpotContacts(HttpClient(), server.url, mapping)
    results = hubspot.upsert([mapping.contact({"email": "a@acme.com", "icp_score": 80}, RECEIVED_AT)], timeout=5)
    assert results == {"a@acme.com": DELIVERED}
    assert server.received(READ_PATH) == []


def test_a_missing_property_is_a_pause_naming_it_and_the_setup_command(server: StubServer, crm: HubSpotSim) -> None:
    del crm.properties["clay_icp_score"]
    results = HubSpotContacts(HttpClient(), server.url).upsert(contacts("a@acme.com", "b@acme.com"), timeout=5)
    assert {(r.status, r.reason) for r in results.values()} == {(Status.PAUSED, "hubspot_property_missing")}
    assert results["a@acme.com"].detail == (
        "HubSpot has no contact property clay_icp_score: create it with `clay-pipeline hubspot setup`"
    )
    assert results["a@acme.com"].retry_after == 900
    assert len(server.received(UPSERT_PATH)) == 1  # not split: every contact sends the property


def test_a_daily_429_pauses_until_the_accounts_midnight(server: StubServer, crm: HubSpotSim) -> None:
    crm.limit("DAILY")
    hubspot = HubSpotContacts(HttpClient(), server.url)
    results = hubspot.upsert(contacts("a@acme.com"), timeout=5)
    result = results["a@acme.com"]
    assert (result.status, result.reason) == (Status.PAUSED, "hubspot_daily_limit")
    reset = next_local_midnight(datetime.now(UTC), -18_000_000).timestamp() + 120
    assert result.retry_after is not None
    assert abs(datetime.now(UTC).timestamp() + result.retry_after - reset) < 2
    # AND the account's offset is read once per process
    hubspot.upsert(contacts("a@acme.com"), timeout=5)
    assert len(server.received(ACCOUNT_PATH)) == 1


def test_a_ten_secondly_429_is_retryable_and_names_hubspots_words(server: StubServer, crm: HubSpotSim) -> None:
    crm.limit("TEN_SECONDLY_ROLLING", times=1)
    [result] = HubSpotContacts(HttpClient(), server.url).upsert(contacts("a@acme.com"), timeout=5).values()
    assert (result.status, result.reason) == (Status.RETRYABLE, "throttled_429")
    assert result.detail == "You have reached your ten_secondly_rolling limit."


def test_a_read_timeout_on_the_upsert_is_retryable(server: StubServer) -> None:
    # GIVEN HubSpot processing the upsert but answering after the timeout (the outcome unknown)
    server.script(UPSERT_PATH, Reply(200, {"status": "COMPLETE", "results": []}, delay=1.5))
    mapping = ContactMapping.from_settings("", "", "")
    hubspot = HubSpotContacts(HttpClient(), server.url, mapping)
    [result] = hubspot.upsert([mapping.contact({"email": "a@acme.com"}, RECEIVED_AT)], timeout=0.6).values()
    # THEN it is retried: an upsert by email is idempotent
    assert result.status is Status.RETRYABLE


@pytest.mark.parametrize(("status", "expected"), [(401, Status.PAUSED), (403, Status.PAUSED), (502, Status.RETRYABLE)])
def test_a_failed_call_fails_every_contact_without_splitting(server: StubServer, status: int, expected: Status) -> None:
    server.script(READ_PATH, Reply(status, {"status": "error", "message": "no", "category": "INVALID_AUTHENTICATION"}))
    results = HubSpotContacts(HttpClient(), server.url).upsert(contacts("a@x.com", "b@x.com"), timeout=5)
    assert {result.status for result in results.values()} == {expected}
    assert server.received(UPSERT_PATH) == []


@pytest.mark.parametrize(
    ("refuse", "reason", "words"),
    [
        ({"token": "another-token"}, "hubspot_token_refused", "refused HUBSPOT_ACCESS_TOKEN (401"),
        ({"missing_scopes": ("crm.objects.contacts.write",)}, "hubspot_scopes_missing", "lack of a scope (403)"),
    ],
)
def test_a_refused_token_is_a_pause_naming_the_setting_and_the_scopes(
    server: StubServer, crm: HubSpotSim, refuse: dict[str, Any], reason: str, words: str
) -> None:
    # GIVEN HubSpot refusing the app's token or one of its scopes
    for name, value in refuse.items():
        setattr(crm, name, value)
    results = HubSpotContacts(HttpClient(), server.url).upsert(contacts("a@x.com", "b@x.com"), timeout=5)
    # THEN every contact is paused for a 15-minute re-check, with what to fix, after one refused call
    assert {(r.status, r.reason, r.retry_after) for r in results.values()} == {(Status.PAUSED, reason, 900)}
    [detail] = {r.detail for r in results.values()}
    assert words in detail and "HUBSPOT_ACCESS_TOKEN" in detail
    assert all(scope in detail for scope in REQUIRED_SCOPES)
    assert len(server.received(READ_PATH)) == 1 and server.received(UPSERT_PATH) == []


# ------------------------------------------------------------------------------------- the properties setup
def test_setup_creates_the_group_and_missing_properties_once(server: StubServer) -> None:
    crm = HubSpotSim(token=TOKEN)  # a portal nobody set up
    server.responder = crm.answer
    hubspot = HubSpotContacts(HttpClient(), server.url, ContactMapping.from_settings("clay_tier=tier"))
    # WHEN run THEN the group and the three custom properties are created, typed
    first = hubspot.setup_properties(timeout=5)
    assert first.group is not None and first.group["name"] == "clay"
    assert [(p["name"], p["type"]) for p in first.create] == [
        ("clay_enrichment_date", "date"),
        ("clay_icp_score", "number"),
        ("clay_tier", "string"),
    ]
    assert {name: crm.properties[name].group for name in ("clay_icp_score", "clay_tier")} == {
        "clay_icp_score": "clay",
        "clay_tier": "clay",
    }
    posts = len([r for r in server.received() if r.method == "POST"])
    # WHEN run again THEN nothing changes: no write at all
    second = hubspot.setup_properties(timeout=5)
    assert (second.changes, second.group, second.create) == (False, None, [])
    assert len([r for r in server.received() if r.method == "POST"]) == posts == 4


def test_setup_reports_a_property_of_another_type_and_does_not_change_it(server: StubServer, crm: HubSpotSim) -> None:
    crm.add_custom_properties([("clay_icp_score", "string")])
    plan = HubSpotContacts(HttpClient(), server.url).setup_properties(timeout=5)
    assert plan.mismatched == ["clay_icp_score is string, number expected"]
    assert not plan.changes


def test_setup_says_what_hubspot_refused(server: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "wrong")
    with pytest.raises(HubSpotError, match="reading /crm/v3/properties/contacts/groups failed: rejected_401"):
        HubSpotContacts(HttpClient(), server.url).setup_properties(timeout=5)
