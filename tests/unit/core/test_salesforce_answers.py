"""The reading of Salesforce's answers (per-record results, refusals, the token), on plain data
(core/salesforce_answers.py)."""

from __future__ import annotations

import pytest

from clay_pipeline.core.salesforce_answers import Verdict, grant_refused, read_refusal, read_results, read_token

pytestmark = pytest.mark.unit


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
