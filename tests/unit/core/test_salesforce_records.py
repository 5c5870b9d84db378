"""The Salesforce record mapping and the reading of Salesforce's answers, on plain data (core/salesforce_records.py)."""

from __future__ import annotations

import json

import pytest

from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.salesforce_records import (
    NOT_PROVIDED,
    RecordMapping,
    Verdict,
    check_api_version,
    existing_query,
    found_external_ids,
    grant_refused,
    query_batches,
    read_refusal,
    read_results,
    read_token,
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


# ------------------------------------------------------------------------------------- the answers
def test_results_map_back_in_order_delivered_dead_letter_and_wait() -> None:
    body = [
        {"id": "00Q1", "success": True, "created": True, "errors": []},
        {
            "id": None,
            "success": False,
            "errors": [
                {"statusCode": "STRING_TOO_LONG", "message": "Title: data value too large", "fields": ["Title"]}
            ],
        },
        {"id": None, "success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]},
        {"id": None, "success": False, "errors": [{"statusCode": "REQUEST_LIMIT_EXCEEDED", "message": "limit"}]},
        {"id": "00Q5", "success": True, "created": False, "errors": []},
    ]
    outcomes = read_results(["a", "b", "c", "d", "e", "f"], body)
    assert (
        outcomes["a"].verdict is Verdict.DELIVERED and outcomes["a"].salesforce_id == "00Q1" and outcomes["a"].created
    )
    assert outcomes["b"].verdict is Verdict.DEAD_LETTER and outcomes["b"].code == "STRING_TOO_LONG"
    assert outcomes["b"].message == "Title: data value too large" and outcomes["b"].fields == ("Title",)
    assert outcomes["c"].verdict is Verdict.WAIT and outcomes["d"].verdict is Verdict.WAIT
    assert outcomes["e"].verdict is Verdict.DELIVERED and not outcomes["e"].created
    assert outcomes["f"].verdict is Verdict.WAIT and outcomes["f"].code == "no_result"  # a missing result retries


def test_a_record_with_a_lock_and_a_real_error_is_dead_lettered_for_the_real_one() -> None:
    errors = [
        {"statusCode": "UNABLE_TO_LOCK_ROW", "message": "x"},
        {"statusCode": "INVALID_EMAIL_ADDRESS", "message": "y"},
    ]
    outcome = read_results(["a"], [{"success": False, "errors": errors}])["a"]
    assert outcome.verdict is Verdict.DEAD_LETTER and outcome.code == "INVALID_EMAIL_ADDRESS"


@pytest.mark.parametrize("code", ["INVALID_FIELD_FOR_INSERT_UPDATE", "INVALID_FIELD"])
def test_a_field_the_run_as_user_cannot_write_said_on_a_record_is_a_setup_pause(code: str) -> None:
    error = {"statusCode": code, "message": "Unable to create/update fields: Clay_Tier__c.", "fields": ["Clay_Tier__c"]}
    outcome = read_results(["a"], [{"success": False, "errors": [error]}])["a"]
    assert outcome.verdict is Verdict.PAUSE and outcome.code == code and outcome.fields == ("Clay_Tier__c",)


@pytest.mark.parametrize(
    ("status", "body", "verdict", "expired"),
    [
        (401, [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}], Verdict.PAUSE, True),
        (
            403,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
            Verdict.PAUSE,
            False,
        ),
        (
            403,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentRequests Limit exceeded."}],
            Verdict.WAIT,
            False,
        ),
        (503, None, Verdict.WAIT, False),
        (
            404,
            [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
            Verdict.PAUSE,
            False,
        ),
        (
            400,
            [{"errorCode": "INVALID_FIELD", "message": "No such column 'X__c' on sobject of type Lead"}],
            Verdict.PAUSE,
            False,
        ),
        (403, [{"errorCode": "INSUFFICIENT_ACCESS", "message": "no access"}], Verdict.PAUSE, False),
        (400, [{"errorCode": "JSON_PARSER_ERROR", "message": "Cannot deserialize"}], Verdict.DEAD_LETTER, False),
    ],
)
def test_whole_request_errors(status: int, body: object, verdict: Verdict, expired: bool) -> None:
    refusal = read_refusal(status, body, "Clay_Lead_Id__c")
    assert refusal.verdict is verdict and refusal.session_expired is expired


def test_existing_query_escapes_soql_literals_and_batches_long_id_lists() -> None:
    soql = existing_query("Lead", "Clay_Lead_Id__c", ["ld_1", "o'brien\\x"])
    assert soql == "SELECT Id, Clay_Lead_Id__c FROM Lead WHERE Clay_Lead_Id__c IN ('ld_1','o\\'brien\\\\x')"
    ids = ["x" * 128 + str(n) for n in range(200)]
    batches = query_batches(ids)
    assert len(batches) > 1 and [lead_id for batch in batches for lead_id in batch] == ids
    assert all(len(existing_query("Lead", "F__c", batch)) < 8100 for batch in batches)
    assert query_batches(["ld_1", "ld_2"]) == [["ld_1", "ld_2"]]


def test_found_external_ids_reads_the_query_answer() -> None:
    body = {"totalSize": 1, "done": True, "records": [{"Id": "00Q1", "Clay_Lead_Id__c": "ld_1"}, {"Id": "00Q2"}]}
    assert found_external_ids(body, "Clay_Lead_Id__c") == {"ld_1"}
    assert found_external_ids(None, "Clay_Lead_Id__c") == set()


def test_token_answer_and_refused_grant_in_an_admins_words() -> None:
    token = read_token(
        {"access_token": "00D!abc", "instance_url": "https://acme.my.salesforce.com/", "token_type": "Bearer"}
    )
    assert token is not None and token.instance_url == "https://acme.my.salesforce.com"
    assert "00D!abc" not in repr(token)  # never in a log line
    assert read_token({"access_token": "x"}) is None
    refused = grant_refused({"error": "invalid_client", "error_description": "invalid client credentials"})
    assert "SALESFORCE_CLIENT_SECRET" in refused and "invalid client credentials" in refused
    assert "run-as user" in grant_refused({"error": "invalid_grant", "error_description": "no client credentials user"})
