"""core/hubspot_contacts.py: a lead as a HubSpot contact, HubSpot's answers read per input, the daily reset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.core.deliveries import DELIVERED, Status
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.hubspot_contacts import (
    DAILY_LIMIT,
    RECHECK_SECONDS,
    ContactMapping,
    contacts_by_email,
    daily_limit_pause,
    next_local_midnight,
    per_item_results,
    property_value,
    until_daily_reset,
)
from tests.unit.adapters.test_webhooks import LEAD  # the same lead the webhook destinations are tested with

pytestmark = pytest.mark.unit

RECEIVED_AT = "2026-01-01T00:00:00+00:00"


# ------------------------------------------------------------------------------------- the mapping
def test_the_default_mapping_sends_strings_and_keeps_the_lead_status_for_a_new_contact() -> None:
    contact = ContactMapping().contact({**LEAD, "_clay_enriched_at": "2026-03-04T23:30:00-05:00"}, RECEIVED_AT)
    assert contact.update == {
        "email": "jane@acme.com",
        "firstname": "Jane",
        "lastname": "Doe",
        "company": "Acme",
        "jobtitle": "VP Sales",
        "clay_icp_score": "92",
        "clay_enrichment_date": "2026-03-05",  # the UTC date
    }
    assert contact.create == {"hs_lead_status": "NEW"}
    assert contact.input(new=True)["properties"]["hs_lead_status"] == "NEW"
    assert "hs_lead_status" not in contact.input(new=False)["properties"]
    assert contact.input(new=False)["objectWriteTraceId"] == "jane@acme.com"


def test_unknown_values_are_left_out_not_blanked_and_the_date_comes_from_receipt() -> None:
    contact = ContactMapping().contact({"email": "a@x.com", "icp_score": 70, "job_title": ""}, "2026-02-01T10:00Z")
    assert contact.update == {"email": "a@x.com", "clay_icp_score": "70", "clay_enrichment_date": "2026-02-01"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(85.0, "85"), (85.5, "85.5"), (7, "7"), (True, "true"), (["a", "b"], "a;b"), ({"k": 1}, '{"k":1}'), ("", None)],
)
def test_every_value_is_sent_as_the_string_hubspot_types_it(value: Any, expected: str | None) -> None:
    assert property_value(value) == expected


def test_the_mapping_setting_adds_drops_and_owns_properties() -> None:
    mapping = ContactMapping.from_settings(
        "clay_tier=tier,jobtitle=,hubspot_owner_id=owner_id", "hs_lead_status,hubspot_owner_id", ""
    )
    contact = mapping.contact({**LEAD, "owner_id": 31}, RECEIVED_AT)
    assert contact.update["clay_tier"] == "A"
    assert "jobtitle" not in contact.update
    assert contact.create == {"hubspot_owner_id": "31"}  # owned: only on create; no new-contact values
    assert "clay_tier" in mapping.needed_properties()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (("JobTitle=job_title", "", ""), "HUBSPOT_PROPERTY_MAP: 'JobTitle' is not a HubSpot property name"),
        (("jobtitle=job title", "", ""), "HUBSPOT_PROPERTY_MAP: 'job title' is not a lead field name"),
        (("email=", "", ""), "HUBSPOT_PROPERTY_MAP: email is the contact's id"),
        (("", "", "hs_lead_status"), "HUBSPOT_NEW_CONTACT_VALUES: 'hs_lead_status' is not property=value"),
        (("", "", "hs_lead_status="), "HUBSPOT_NEW_CONTACT_VALUES: hs_lead_status has no value"),
        (("", "Lead Status", ""), "HUBSPOT_OWNED_PROPERTIES: 'Lead Status' is not a HubSpot property name"),
    ],
)
def test_an_invalid_mapping_is_refused_naming_the_setting(settings: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ContactMapping.from_settings(*settings)


def test_an_error_naming_no_input_retries_the_unconfirmed_ones() -> None:
    # GIVEN an error without context WHEN mapped THEN no input is known delivered: retry (upserts are idempotent)
    body = {"status": "COMPLETE", "results": [], "errors": [{"category": "VALIDATION_ERROR", "message": "?"}]}
    results = per_item_results(["a@x.com"], body)
    assert (results["a@x.com"].status, results["a@x.com"].reason) == (Status.RETRYABLE, "hubspot_unattributed_error")


def test_rate_limited_inputs_of_a_207_are_retryable() -> None:
    body = {"errors": [{"category": "RATE_LIMITS", "message": "slow", "context": {"ids": ["B@x.com"]}}]}
    results = per_item_results(["a@x.com", "b@x.com"], body)
    assert results["a@x.com"] == DELIVERED
    assert (results["b@x.com"].status, results["b@x.com"].reason) == (Status.RETRYABLE, "hubspot_rate_limits")


@pytest.mark.parametrize(
    ("now", "offset_hours", "midnight"),
    [
        ("2026-12-06T13:00:00+00:00", -5, "2026-12-07T05:00:00+00:00"),  # 08:00 in New York
        ("2026-12-07T03:00:00+00:00", -5, "2026-12-07T05:00:00+00:00"),  # 22:00 the day before
        ("2026-12-06T23:30:00+00:00", 1, "2026-12-07T23:00:00+00:00"),  # 00:30 in Paris: the next one
    ],
)
def test_next_local_midnight(now: str, offset_hours: int, midnight: str) -> None:
    moment = datetime.fromisoformat(now)
    assert next_local_midnight(moment, offset_hours * 3_600_000) == datetime.fromisoformat(midnight)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-04T23:30:00-05:00", "2026-03-05"),
        ("2026-03-04T10:00:00", "2026-03-04"),  # naive: UTC, as Clay's timestamps are
        (1_772_668_800_000, "2026-03-05"),  # epoch milliseconds
        ("9999-12-31T23:59:59-23:59", None),  # past what Python can hold: left out, not a crash
        ("soon", None),
    ],
)
def test_the_enrichment_date_is_a_utc_day_or_left_out(value: Any, expected: str | None) -> None:
    contact = ContactMapping().contact({"email": "a@x.com", "_clay_enriched_at": value}, "not a date")
    assert contact.update.get("clay_enrichment_date") == expected


def test_two_enrichments_of_one_email_make_one_contact_the_newest_wins() -> None:
    # GIVEN two leads with the same email, the newer one a CTO, in either order
    older = ({"email": "a@x.com", "job_title": "VP"}, "2026-01-01T00:00:00+00:00")
    newer = ({"email": "a@x.com", "job_title": "CTO"}, "2026-01-01T00:05:00+00:00")
    # WHEN turned into contacts THEN one contact, with the newest enrichment
    for leads in ([older, newer], [newer, older]):
        contacts = contacts_by_email(leads, ContactMapping())
        assert list(contacts) == ["a@x.com"]
        assert contacts["a@x.com"].update["jobtitle"] == "CTO"


def test_a_daily_limit_pauses_until_two_minutes_past_the_accounts_midnight() -> None:
    # GIVEN 13:00 UTC and an account at UTC-5 WHEN HubSpot's daily limit is reached
    seconds, basis = until_daily_reset(datetime(2026, 12, 6, 13, 0, tzinfo=UTC), -5 * 3_600_000)
    # THEN the pause lasts until 05:02 UTC the next day, and says so
    assert seconds == 16 * 3600 + 120
    assert basis == "2026-12-07 05:02Z (midnight in the account's time zone)"
    paused = daily_limit_pause(seconds, basis)
    assert (paused.status, paused.reason, paused.retry_after) == (Status.PAUSED, DAILY_LIMIT, seconds)
    assert paused.detail == f"HubSpot's daily API limit is reached; HubSpot is paused until {basis}"


def test_without_the_accounts_time_zone_the_daily_limit_is_rechecked_in_15_minutes() -> None:
    seconds, basis = until_daily_reset(datetime(2026, 12, 6, 13, 0, tzinfo=UTC), None)
    assert (seconds, basis) == (RECHECK_SECONDS, "a re-check in 15 minutes (the account's time zone could not be read)")
