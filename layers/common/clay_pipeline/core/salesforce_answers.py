"""Salesforce's answers read back per lead: per-record results, whole-request refusals, the token (pure: no I/O).

What Salesforce documents, and what this module does with it:
- A collections upsert (core/salesforce_records.py) that is not well formed gets a 400; a well formed one a 200
  whose list holds one UpsertResult per record, in the request's order: `{id, success, created, errors:
  [{statusCode, message, fields}]}` (SOAP API Developer Guide, "UpsertResult"; the error shape is the Error
  object's). `read_results` maps each back to its lead.
- Whole-request errors come as a list of `{errorCode, message, fields}` with the HTTP status (REST API Developer
  Guide, "Status Codes and Error Responses"): 401 `INVALID_SESSION_ID` (the session expired: get a new token,
  "Error Handling for Session Expiration"), 403 `REQUEST_LIMIT_EXCEEDED` (the org's rolling 24-hour API
  allocation, `TotalRequests`, or its concurrent long-running request limit, `ConcurrentRequests`: "API Request
  Limits and Allocations" in the Salesforce Developer Limits and Allocations Quick Reference). `read_refusal`
  says what each means for the leads.
- `UNABLE_TO_LOCK_ROW`: another transaction holds the record (or a parent it locks); Salesforce's guidance on
  record locking is to retry. That code and `REQUEST_LIMIT_EXCEEDED` on a record wait and retry; a field the run-as
  user cannot write (SETUP_CODES) is the admin's fix, as for the whole request: Salesforce pauses; any other code
  on a record is that record's own problem (a value Salesforce refuses, a validation rule, a duplicate rule): its
  lead alone is dead-lettered with Salesforce's message.
- The client credentials grant's answer (`read_token`) and its refusal in an admin's words (`grant_refused`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

WAIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW"})
# A field the run-as user cannot write, said on a record: field-level security ("Unable to create/update fields: X.
# Please check the security settings of this field", as commonly reported), or a field the object lacks if
# Salesforce says so per record (undocumented: local/salesforce_sim.py). Every lead carrying it would fail alike.
SETUP_CODES = frozenset({"INVALID_FIELD", "INVALID_FIELD_FOR_INSERT_UPDATE"})


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    WAIT = "wait"  # try again later: the lead is fine, Salesforce was busy (a lock, a limit) or did not answer it
    DEAD_LETTER = "dead_letter"  # this lead alone can never succeed as it is: Salesforce refused its values
    PAUSE = "pause"  # a setup problem every lead shares (the token, a permission, a field): wait for the admin


@dataclass(frozen=True)
class RecordOutcome:
    """One lead's result: delivered (its Salesforce id, whether the upsert created it) or why not."""

    verdict: Verdict
    salesforce_id: str = ""
    created: bool = False
    code: str = ""  # Salesforce's statusCode / errorCode, or ours (no_result)
    message: str = ""  # Salesforce's own words (may quote lead data: for the DLQ, not the logs)
    fields: tuple[str, ...] = ()


def read_results(lead_ids: list[str], body: Any) -> dict[str, RecordOutcome]:
    """Each lead's outcome from a 200's UpsertResult list (in request order). A lead without a result waits: an
    upsert by external id is idempotent, so sending it again cannot make a second record."""
    results = body if isinstance(body, list) else []
    outcomes: dict[str, RecordOutcome] = {}
    for index, lead_id in enumerate(lead_ids):
        result = results[index] if index < len(results) and isinstance(results[index], dict) else None
        if result is None:
            outcomes[lead_id] = RecordOutcome(
                Verdict.WAIT, code="no_result", message="Salesforce's answer had no result for it"
            )
        elif result.get("success") is True:
            outcomes[lead_id] = RecordOutcome(
                Verdict.DELIVERED, str(result.get("id") or ""), result.get("created") is True
            )
        else:
            outcomes[lead_id] = _record_error(result.get("errors"))
    return outcomes


def _record_error(errors: Any) -> RecordOutcome:
    found = [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []
    codes = [str(error.get("statusCode") or error.get("errorCode") or "UNKNOWN") for error in found] or ["UNKNOWN"]
    message = "; ".join(_one_line(error.get("message")) for error in found if error.get("message"))
    fields = tuple(str(name) for error in found for name in (error.get("fields") or []) if name)
    if all(code in WAIT_CODES for code in codes):
        verdict = Verdict.WAIT
    else:
        verdict = Verdict.PAUSE if SETUP_CODES & set(codes) else Verdict.DEAD_LETTER
    code = next((code for code in codes if code not in WAIT_CODES), codes[0])
    return RecordOutcome(verdict, code=code, message=message or code, fields=fields)


@dataclass(frozen=True)
class Refusal:
    """What a whole request's error means for every lead in it."""

    verdict: Verdict
    code: str
    message: str
    session_expired: bool = False  # 401 INVALID_SESSION_ID: a new token, then the same request once more


def request_errors(body: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    """(errorCode, message, fields) of a whole-request error body (a list of error objects, or one object)."""
    items = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    return [
        (
            str(item.get("errorCode") or item.get("statusCode") or ""),
            _one_line(item.get("message")),
            tuple(str(name) for name in item.get("fields") or [] if name),
        )
        for item in items
        if isinstance(item, dict)
    ]


def read_refusal(status: int, body: Any, external_id_field: str) -> Refusal:
    """A non-2xx answer to an upsert or a query, for every lead of the request (see the module docstring)."""
    errors = request_errors(body)
    code, message, _ = errors[0] if errors else ("", "", ())
    if status == 401:
        return Refusal(Verdict.PAUSE, code or "INVALID_SESSION_ID", message, session_expired=True)
    if code == "REQUEST_LIMIT_EXCEEDED":
        # TotalRequests: the org's rolling 24-hour allocation is spent, calls are blocked until usage drops (pause
        # and re-check); ConcurrentRequests: too many long-running calls at once (wait a little).
        verdict = Verdict.PAUSE if "TotalRequests" in message else Verdict.WAIT
        return Refusal(verdict, code, message)
    if code == "UNABLE_TO_LOCK_ROW" or status >= 500 or status == 429:
        return Refusal(Verdict.WAIT, code or f"http_{status}", message)
    if status == 404 or (code == "NOT_FOUND" and external_id_field in message):
        return Refusal(Verdict.PAUSE, code or "NOT_FOUND", message)  # the object or the external id field is missing
    if status == 403 or code in ("INVALID_FIELD", "INVALID_TYPE", "INSUFFICIENT_ACCESS", "API_DISABLED_FOR_ORG"):
        return Refusal(Verdict.PAUSE, code or f"http_{status}", message)  # a permission or a field: the admin's fix
    return Refusal(Verdict.DEAD_LETTER, code or f"http_{status}", message or f"Salesforce answered {status}")


# -- the token --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    instance_url: str


def read_token(body: Any) -> Token | None:
    """The client credentials grant's answer: `{access_token, instance_url, token_type, ...}` (None when it is not)."""
    if not isinstance(body, dict):
        return None
    token, instance = body.get("access_token"), body.get("instance_url")
    if not isinstance(token, str) or not token or not isinstance(instance, str) or not instance:
        return None
    return Token(token, instance.rstrip("/"))


def grant_refused(body: Any) -> str:
    """A refused grant in words an admin acts on, naming the settings (never their values)."""
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    said = _one_line(body.get("error_description")) if isinstance(body, dict) else ""
    hint = {
        "invalid_client_id": "SALESFORCE_CLIENT_ID is not the consumer key of an app in this org",
        "invalid_client": "SALESFORCE_CLIENT_SECRET does not match SALESFORCE_CLIENT_ID's consumer secret",
        "invalid_grant": "the app's client credentials flow has no run-as user, or that user cannot log in",
        "unsupported_grant_type": "the app does not have the client credentials flow enabled",
    }.get(
        error, "check SALESFORCE_LOGIN_URL (the org's My Domain URL), SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET"
    )
    code = f"{error or 'no error code'}: {said or 'no description'}"
    return f"Salesforce refused the client credentials grant ({code}): {hint}"


def _one_line(value: Any, limit: int = 300) -> str:
    return re.sub(r"\s+", " ", str(value))[:limit].strip() if value else ""
