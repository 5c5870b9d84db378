"""Salesforce, the CRM: leads upserted by external id (the lead_id) with sObject Collections, one result per lead.

The records and the field mapping are in core/salesforce_records.py, how Salesforce's answers read in
core/salesforce_answers.py, the SOQL query in core/salesforce_soql.py (with the documentation each rests on).
This module makes the calls:
- **Auth**: the OAuth 2.0 client credentials flow (Salesforce Help, "OAuth 2.0 Client Credentials Flow for
  Server-to-Server Integration"): `POST {SALESFORCE_LOGIN_URL}/services/oauth2/token`, form-encoded
  `grant_type=client_credentials`, `client_id`, `client_secret` -> `{access_token, instance_url, token_type}`.
  The grant has no refresh token and its answer no expiry: the session lasts as the org's session timeout says
  (two hours by default), and an expired one answers 401 `INVALID_SESSION_ID` ("Error Handling for Session
  Expiration"). So the token is cached per container (keyed by the login URL and credentials, so a rotated secret
  takes a new one) and, on a 401, fetched again once and the same request repeated once. A refused grant (400
  `invalid_client_id`, `invalid_client`, `invalid_grant`) is a setup problem no retry fixes: Salesforce is paused
  with a message naming the setting to check, and its leads wait in RoutingQueue instead of being dead-lettered.
- **Create-only fields**: an upsert cannot say beforehand whether it will create the record, and the fields a rep
  owns (Status, OwnerId, any marked create_only) and the required-field placeholders must go only into the write
  that creates it. Two documented ways exist: (a) read which external ids exist first (a SOQL query, `GET
  /services/data/vXX.X/query?q=SELECT Id, <ExternalIdField> FROM <SObject> WHERE <ExternalIdField> IN (...)`),
  then upsert each record with or without them; (b) upsert without them, then update the records whose result
  says `created: true`. (b) cannot create a Lead whose Company Clay did not find (REQUIRED_FIELD_MISSING: the
  placeholder is create-only) and loses the owned fields when the second write never happens (a crash, a
  timeout); (a) sends each record whole in one write. So (a): one query call per batch of up to 200 records (more
  only for very long lead_ids: query_batches), skipped when no record of the batch has a create-only part. Cost
  per batch: 2 API calls (query + upsert) against the org's 24-hour allocation, 1 when nothing is create-only.
- **Batches**: at most 200 records per request (MAX_RECORDS), one API call each. A request refused whole for a
  reason that may be one record's (a 400 that is not a setup problem) is split in halves until that record is
  alone, so only its lead is dead-lettered.
- **Idempotency**: an upsert by external id repeated after a lost answer updates the record it created: the
  router resends it (a read timeout is retryable here), never holds it for an operator.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from clay_pipeline import config
from clay_pipeline.adapters.crm import upsert_in_batches
from clay_pipeline.adapters.http import OutboundError, send, url_problem
from clay_pipeline.adapters.webhooks import MIN_ATTEMPT_SECONDS, HttpClient, RetryPolicy, classify_failure
from clay_pipeline.core.deliveries import OUT_OF_TIME, DeliveryResult, Status
from clay_pipeline.core.routing_message import RoutingMessage
from clay_pipeline.core.salesforce_answers import (
    RecordOutcome,
    Refusal,
    Token,
    Verdict,
    grant_refused,
    read_refusal,
    read_results,
    read_token,
)
from clay_pipeline.core.salesforce_records import MAX_RECORDS, RecordMapping, SalesforceRecord
from clay_pipeline.core.salesforce_soql import existing_query, found_external_ids, query_batches

TOKEN_PATH = "/services/oauth2/token"  # noqa: S105  # nosec B105 - a path, not a secret
CLIENT_ID, CLIENT_SECRET = "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"  # nosec B105 - names
RECHECK_SECONDS = 900  # a pause whose end is not known is re-checked this often
LOCK_WAIT_SECONDS = 2.0  # UNABLE_TO_LOCK_ROW: the other transaction is usually done within seconds
GRANT_REFUSED = "salesforce_grant_refused"
SESSION_REFUSED = "salesforce_session_refused"
SETUP_PROBLEM = "salesforce_setup"
DAILY_LIMIT = "salesforce_daily_limit"


class SalesforceSession:
    """Calls to one org with the client credentials token: fetched once per container (per login URL and
    credentials, so a rotated secret takes a new one), fetched again once when Salesforce says it expired."""

    def __init__(self, http: HttpClient, login_url: str) -> None:
        self.http = http
        self.login_url = login_url.rstrip("/")
        self._token: tuple[str, Token] | None = None  # (credentials key, token): per container, rotation-aware
        self._token_lock = threading.Lock()

    def configured(self) -> bool:
        """Off unless both the login URL and the client id are set."""
        return bool(self.login_url) and bool(config.secret(CLIENT_ID))

    def call(
        self, method: str, path: str, body: Any, timeout: float, deadline: float
    ) -> tuple[DeliveryResult | None, int, Any]:
        """(failure, status, parsed answer): failure when no answer came or no token could be had."""
        token = self._access(timeout, deadline)
        if isinstance(token, DeliveryResult):
            return token, 0, None
        failure, status, answer = self._request(method, token.instance_url + path, body, token, timeout, deadline)
        if failure is None and status == 401:  # INVALID_SESSION_ID: the session expired; one new token, one repeat
            token = self._access(timeout, deadline, stale=token)
            if isinstance(token, DeliveryResult):
                return token, 0, None
            failure, status, answer = self._request(method, token.instance_url + path, body, token, timeout, deadline)
            if failure is None and status == 401:
                detail = (
                    "Salesforce refused a token it had just issued (401 INVALID_SESSION_ID): check that the run-as"
                    f" user of the app behind {CLIENT_ID} is active and API Enabled, and the app's session policies"
                )
                return DeliveryResult(Status.PAUSED, SESSION_REFUSED, RECHECK_SECONDS, detail), status, answer
        return failure, status, answer

    def _request(
        self, method: str, url: str, body: Any, token: Token, timeout: float, deadline: float
    ) -> tuple[DeliveryResult | None, int, Any]:
        left = deadline - time.monotonic()
        if left < MIN_ATTEMPT_SECONDS:
            return OUT_OF_TIME, 0, None
        if problem := url_problem(url):  # the instance_url the token came with
            return (
                DeliveryResult(Status.PERMANENT, "insecure_url", detail=f"Salesforce's instance URL {problem}"),
                0,
                None,
            )
        headers = {"authorization": f"Bearer {token.access_token}", "accept": "application/json"}
        try:
            answer = send(self.http.session, method, url, min(timeout, left), json=body, headers=headers)
        except OutboundError as error:
            return _transport(error), 0, None
        return None, answer.status, answer.json()

    def _access(self, timeout: float, deadline: float, stale: Token | None = None) -> Token | DeliveryResult:
        """The cached token, or a new one (also when the cached one is `stale`: Salesforce refused it)."""
        client_id, client_secret = config.secret(CLIENT_ID), config.secret(CLIENT_SECRET)
        if not self.login_url or not client_id:
            return DeliveryResult(Status.RETRYABLE, "not_configured")  # turned off mid-invocation
        key = hashlib.sha256(f"{self.login_url}\n{client_id}\n{client_secret}".encode()).hexdigest()
        with self._token_lock:  # one grant per container, whichever thread asks first
            if self._token is not None and self._token[0] == key and self._token[1] is not stale:
                return self._token[1]
            left = deadline - time.monotonic()
            if left < MIN_ATTEMPT_SECONDS:
                return OUT_OF_TIME
            form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
            try:
                answer = send(self.http.session, "POST", self.login_url + TOKEN_PATH, min(timeout, left), data=form)
            except OutboundError as error:
                return _transport(error)
            body = answer.json()
            if answer.status in (400, 401, 403):
                return DeliveryResult(Status.PAUSED, GRANT_REFUSED, RECHECK_SECONDS, grant_refused(body))
            if not 200 <= answer.status < 300:
                return DeliveryResult(Status.RETRYABLE, f"salesforce_token_{answer.status}")
            token = read_token(body)
            if token is None:
                return DeliveryResult(Status.RETRYABLE, "salesforce_token_unreadable")
            self._token = (key, token)
            return token


class SalesforceRecords:
    """Leads upserted into one object by external id in batches of up to 200; each lead gets its own result.

    A batched CRM destination (adapters/crm.BatchedCrm): the router calls upsert_leads with a whole batch."""

    name = "salesforce"
    label = "Salesforce"
    setting = CLIENT_ID

    def __init__(
        self,
        http: HttpClient,
        login_url: str,
        api_version: str,
        mapping: RecordMapping | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.session = SalesforceSession(http, login_url)
        self.api_version = api_version
        self.mapping = mapping or RecordMapping()
        self.retry = retry or RetryPolicy(timeout_seconds=10, attempts=0, backoff_seconds=0)

    def configured(self) -> bool:
        """Off unless both the login URL and the client id are set."""
        return self.session.configured()

    def payload(self, lead: dict[str, Any], received_at: str) -> Any:
        return self.mapping.update_payload(lead, received_at)

    def record(self, lead: dict[str, Any], received_at: str) -> SalesforceRecord:
        return self.mapping.record(lead, received_at)

    # -- upsert ---------------------------------------------------------------------------------
    def upsert_leads(self, messages: Mapping[str, RoutingMessage], deadline: float) -> dict[str, DeliveryResult]:
        """Every message's lead, upserted in requests of 200 with the retries; each result by the message's key.

        One record per lead_id: a request naming an external id twice would make Salesforce refuse the repeat,
        so the newest enrichment of a lead wins (by received_at)."""
        records: dict[str, SalesforceRecord] = {}
        for message in sorted(messages.values(), key=lambda m: m.received_at):
            record = self.record(message.lead, message.received_at)
            records[record.lead_id] = record
        by_lead = self.upsert_records(list(records.values()), deadline)
        return {key: by_lead[str(message.lead["lead_id"])] for key, message in messages.items()}

    def upsert_records(self, records: list[SalesforceRecord], deadline: float) -> dict[str, DeliveryResult]:
        """Records of distinct lead_ids in requests of at most 200 (adapters/crm.upsert_in_batches: the retries,
        and nothing more sent once Salesforce says to stop); each lead's result by its lead_id."""
        batches = {record.lead_id: record for record in records}
        return upsert_in_batches(batches, MAX_RECORDS, self.upsert, self.retry, deadline)

    def upsert(self, batch: list[SalesforceRecord], timeout: float, deadline: float) -> dict[str, DeliveryResult]:
        """One batch (at most 200 records, distinct lead_ids): each lead's result by its lead_id. Every request
        gets at most `timeout` seconds and none starts past `deadline` (time.monotonic())."""
        if len(batch) > MAX_RECORDS:
            raise ValueError(f"a collections upsert takes at most {MAX_RECORDS} records, not {len(batch)}")
        return self._upsert_batch(batch, timeout, deadline)

    def _upsert_batch(
        self, batch: list[SalesforceRecord], timeout: float, deadline: float
    ) -> dict[str, DeliveryResult]:
        lead_ids = [record.lead_id for record in batch]
        existing: set[str] = set()
        if any(record.create for record in batch):
            found = self._existing(lead_ids, timeout, deadline)
            if isinstance(found, DeliveryResult):
                return dict.fromkeys(lead_ids, found)
            existing = found
        return self._send(batch, existing, timeout, deadline)

    def _send(
        self, batch: list[SalesforceRecord], existing: set[str], timeout: float, deadline: float
    ) -> dict[str, DeliveryResult]:
        lead_ids = [record.lead_id for record in batch]
        body = {
            "allOrNone": False,
            "records": [self.mapping.body(record, new=record.lead_id not in existing) for record in batch],
        }
        mapping = self.mapping
        path = f"/services/data/{self.api_version}/composite/sobjects/{mapping.sobject}/{mapping.external_id_field}"
        failure, status, answer = self.session.call("PATCH", path, body, timeout, deadline)
        if failure is not None:
            return dict.fromkeys(lead_ids, failure)
        if 200 <= status < 300:
            return {lead_id: _delivery(outcome, mapping) for lead_id, outcome in read_results(lead_ids, answer).items()}
        refusal = read_refusal(status, answer, mapping.external_id_field)
        if refusal.verdict is Verdict.DEAD_LETTER and len(batch) > 1:  # may be one record's fault: find it
            half = len(batch) // 2
            return {
                **self._send(batch[:half], existing, timeout, deadline),
                **self._send(batch[half:], existing, timeout, deadline),
            }
        return dict.fromkeys(lead_ids, _refused(refusal, mapping))

    def _existing(self, lead_ids: list[str], timeout: float, deadline: float) -> set[str] | DeliveryResult:
        """The lead_ids Salesforce has a record for; a failure result when that could not be read."""
        found: set[str] = set()
        for batch in query_batches(lead_ids):
            soql = existing_query(self.mapping.sobject, self.mapping.external_id_field, batch)
            path = f"/services/data/{self.api_version}/query?q={quote(soql, safe='')}"
            failure, status, answer = self.session.call("GET", path, None, timeout, deadline)
            if failure is not None:
                return failure
            if not 200 <= status < 300:
                refusal = read_refusal(status, answer, self.mapping.external_id_field)
                if refusal.verdict is Verdict.DEAD_LETTER:  # a query refused is no lead's fault: retried, then DLQ
                    return DeliveryResult(Status.RETRYABLE, f"salesforce_query_{status}", detail=refusal.message)
                return _refused(refusal, self.mapping)
            found |= found_external_ids(answer, self.mapping.external_id_field)
        return found


# -- what an answer means for a lead -------------------------------------------------------------
def _delivery(outcome: RecordOutcome, mapping: RecordMapping) -> DeliveryResult:
    if outcome.verdict is Verdict.DELIVERED:  # the record's id, for the trace and the logs (not lead data)
        reason = "salesforce_created" if outcome.created else "salesforce_updated"
        return DeliveryResult(Status.DELIVERED, reason, detail=outcome.salesforce_id)
    said = outcome.message + (f" (fields: {', '.join(outcome.fields)})" if outcome.fields else "")
    reason = f"salesforce_{outcome.code.lower()}"
    if outcome.verdict is Verdict.PAUSE:  # a field the run-as user cannot write: every lead would fail alike
        return _setup_problem(mapping, f". Salesforce said: {said}")
    if outcome.verdict is Verdict.WAIT:
        wait = LOCK_WAIT_SECONDS if outcome.code == "UNABLE_TO_LOCK_ROW" else None
        return DeliveryResult(Status.RETRYABLE, reason, wait, said)
    return DeliveryResult(Status.PERMANENT, reason, detail=said)


def _refused(refusal: Refusal, mapping: RecordMapping) -> DeliveryResult:
    reason = f"salesforce_{refusal.code.lower()}" if refusal.code else "salesforce_refused"
    said = f". Salesforce said: {refusal.message}" if refusal.message else ""
    if refusal.verdict is Verdict.WAIT:
        wait = LOCK_WAIT_SECONDS if refusal.code == "UNABLE_TO_LOCK_ROW" else None
        return DeliveryResult(Status.RETRYABLE, reason, wait, refusal.message)
    if refusal.verdict is Verdict.DEAD_LETTER:
        return DeliveryResult(Status.PERMANENT, reason, detail=refusal.message)
    if refusal.code == "REQUEST_LIMIT_EXCEEDED":
        detail = "the org's 24-hour API request allocation is spent: Salesforce is paused, re-checked every 15 minutes"
        return DeliveryResult(Status.PAUSED, DAILY_LIMIT, RECHECK_SECONDS, detail + said)
    return _setup_problem(mapping, said)


def _setup_problem(mapping: RecordMapping, said: str) -> DeliveryResult:
    """Paused until the admin fixes a field, the external id or the permission set (`said`: Salesforce's words)."""
    detail = (
        f"Salesforce refused the {mapping.sobject} upsert: check that {mapping.external_id_field}"
        " (SALESFORCE_EXTERNAL_ID_FIELD) exists as an External ID field, that every field SALESFORCE_FIELD_MAP"
        f" writes exists on {mapping.sobject}, and that the run-as user's permission set grants API Enabled,"
        f" Read, Create and Edit on {mapping.sobject} and Edit on those fields"
    )
    return DeliveryResult(Status.PAUSED, SETUP_PROBLEM, RECHECK_SECONDS, detail + said)


def _transport(error: OutboundError) -> DeliveryResult:
    """No answer: retryable, a lost one included (an upsert by external id and a query repeat safely)."""
    return classify_failure(error, idempotent=True)
