"""The Salesforce record mapping, on plain data (core/salesforce_records.py)."""

from __future__ import annotations

import json

import pytest

from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.salesforce_records import (
    NOT_PROVIDED,
    RecordMapping,
    check_api_version,
)

pytestmark = pytest.mark.unit

RECEIVED_AT = "2026-01-01T00:00:00+00:00"
LEAD = {
    "lead_id": "ld_1",
    "email": "ada@acme.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company_name": "Acme",
    "job_title": "CTO",
    "domain": "acme.com",
    "industry": "Software",
    "employee_count": 250,
    "phone": "+1 555 0100",
    "icp_score": 85.0,
    "tier": "A",
}


# ------------------------------------------------------------------------------------- the mapping
def test_default_lead_mapping_types_each_value_and_keeps_create_only_fields_apart() -> None:
    record = RecordMapping().record(LEAD, RECEIVED_AT)
    assert record.lead_id == "ld_1"
    assert record.update == {
        "Email": "ada@acme.com",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Company": "Acme",
        "Title": "CTO",
        "Phone": "+1 555 0100",
        "Website": "acme.com",
        "Industry": "Software",
        "NumberOfEmployees": 250,
        "Clay_ICP_Score__c": 85,  # a number, not "85"
        "Clay_Tier__c": "A",
    }
    assert record.create == {"LeadSource": "Other"}


def test_body_carries_type_and_external_id_and_the_create_part_only_when_new() -> None:
    mapping = RecordMapping()
    record = mapping.record(LEAD, RECEIVED_AT)
    new, existing = mapping.body(record, new=True), mapping.body(record, new=False)
    assert new["attributes"] == {"type": "Lead"} and new["Clay_Lead_Id__c"] == "ld_1"
    assert new["LeadSource"] == "Other"
    assert "LeadSource" not in existing and existing["Clay_Lead_Id__c"] == "ld_1"
    assert mapping.update_payload(LEAD, RECEIVED_AT) == existing  # what on_change hashes: no create-only field
    sent = {name: value for name, value in new.items() if name not in ("attributes", "Clay_Lead_Id__c")}
    assert mapping.as_update("ld_1", sent) == existing  # a create, read back as the update it hashes as


def test_lead_without_last_name_or_company_gets_the_placeholder_only_on_create() -> None:
    record = RecordMapping().record({"lead_id": "ld_2", "email": "x@y.io"}, RECEIVED_AT)
    assert record.create["LastName"] == NOT_PROVIDED and record.create["Company"] == NOT_PROVIDED
    assert "LastName" not in record.update and "Company" not in record.update  # an update keeps the rep's values


def test_contact_requires_only_last_name() -> None:
    mapping = RecordMapping.from_settings("Contact")
    record = mapping.record({"lead_id": "ld_3", "email": "x@y.io"}, RECEIVED_AT)
    assert record.create == {"LeadSource": "Other", "LastName": NOT_PROVIDED}
    assert "Company" not in mapping.body(record, new=True)


def test_text_is_cut_to_the_documented_field_length_and_an_email_never() -> None:
    long_email = "a" * 90 + "@acme.com"
    lead = {**LEAD, "first_name": "F" * 60, "job_title": "T" * 200, "company_name": "C" * 300, "email": long_email}
    update = RecordMapping().record(lead, RECEIVED_AT).update
    assert len(update["FirstName"]) == 40 and len(update["Title"]) == 128 and len(update["Company"]) == 255
    assert update["Email"] == long_email  # Salesforce refuses it: that lead alone is dead-lettered


def test_values_are_typed_numbers_as_numbers_dates_iso_and_unknown_values_left_out() -> None:
    field_map = json.dumps(
        {
            "Enriched_On__c": "enrichment_date",
            "NumberOfEmployees": "employee_count",
            "AnnualRevenue": "revenue",
            "Funded__c": "funded",
            "Tags__c": "tags",
        }
    )
    mapping = RecordMapping.from_settings(field_map=field_map)
    lead = {**LEAD, "employee_count": "1,200", "revenue": "$1.5M", "funded": True, "tags": ["a", "b"], "phone": ""}
    update = mapping.record(lead, "2026-03-04T23:10:00+00:00").update
    assert update["NumberOfEmployees"] == 1200 and update["AnnualRevenue"] == 1_500_000
    assert update["Enriched_On__c"] == "2026-03-04"
    assert update["Funded__c"] is True and update["Tags__c"] == "a;b"
    assert "Phone" not in update  # never null: that would clear what Salesforce has


def test_field_map_adds_drops_and_marks_create_only_fields_and_constants() -> None:
    field_map = json.dumps(
        {
            "Website": None,
            "Rating": {"field": "rating", "create_only": True},
            "Status": {"value": "Open - Not Contacted"},
            "LeadSource": {"value": "Clay", "create_only": True},
        }
    )
    mapping = RecordMapping.from_settings(field_map=field_map)
    record = mapping.record({**LEAD, "rating": "Hot"}, RECEIVED_AT)
    assert "Website" not in record.update
    # Status is a rep's field: create-only even without create_only
    assert record.create == {"Rating": "Hot", "Status": "Open - Not Contacted", "LeadSource": "Clay"}
    assert mapping.create_only == {"Rating", "Status", "LeadSource"}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (("Account", "Clay_Lead_Id__c", ""), "SALESFORCE_OBJECT"),
        (("Lead", "Email", ""), "SALESFORCE_EXTERNAL_ID_FIELD"),
        (("Lead", "Clay_Lead_Id__c", "{not json"), "SALESFORCE_FIELD_MAP: not JSON"),
        (("Lead", "Clay_Lead_Id__c", "[1]"), "SALESFORCE_FIELD_MAP: must be a JSON object"),
        (("Lead", "Clay_Lead_Id__c", '{"Bad Name": "x"}'), "'Bad Name' is not a Salesforce field's API name"),
        (("Lead", "Clay_Lead_Id__c", '{"Title": "job title"}'), "'job title' is not a lead field name"),
        (("Lead", "Clay_Lead_Id__c", '{"Clay_Lead_Id__c": "email"}'), "is the external id field"),
        (("Lead", "Clay_Lead_Id__c", '{"Title": {"field": "a", "value": "b"}}'), "Title: give a lead field name"),
        (("Lead", "Clay_Lead_Id__c", '{"Title": {"field": "a", "create_only": "yes"}}'), "create_only is true"),
        (("Lead", "Clay_Lead_Id__c", '{"NumberOfEmployees": {"value": "many"}}'), "'many' is not a value it takes"),
    ],
)
def test_invalid_settings_are_a_config_error_naming_the_setting(settings: tuple[str, str, str], named: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as raised:
        RecordMapping.from_settings(*settings)
    assert named in str(raised.value)


def test_api_version_must_have_the_collections_upsert() -> None:
    assert check_api_version("v62.0") == "v62.0"
    for version in ("v45.0", "62.0", "v62.1", "latest"):
        with pytest.raises(ValueError, match=r"v46\.0 or later"):
            check_api_version(version)
