"""HubSpot, the CRM: contacts upserted by email, one outcome per contact, rep-owned fields only on create.

What HubSpot documents, and what this module does with it:
- Batch upsert by email, `POST /crm/v3/objects/contacts/batch/upsert`, at most 100 inputs
  `{"idProperty": "email", "id": <email>, "properties": {...}}`; the answer's `results` carry `new`
  (true when the upsert created the contact). Property values are typed as strings in the API
  (`properties: {string: string}`), so every value is sent as one (`property_value`).
- Errors: 207 Multi-Status with an `errors` list, each `{category, message, context}`, when the
  inputs carry a unique `objectWriteTraceId` (developers.hubspot.com/docs/api-reference/error-handling,
  "Multi-status errors", documented for the batch create endpoints; the upsert input takes the
  field too). Otherwise one refused input fails the whole batch with a 400: the contacts batch
  endpoint of the v1 API says so in as many words ("any errors with a single contact in your batch
  will prevent the entire batch from processing"), and v3 refuses a batch with an invalid property
  value the same way. So each input carries its email as `objectWriteTraceId`, a 207's errors are
  mapped back to their inputs by their context, and a batch refused whole is split in halves until
  the refused contact is alone: only it fails, with HubSpot's message.
- A property the portal does not have is refused with `PROPERTY_DOESNT_EXIST` (context `propertyName`)
  for every input that sends it: that is a setup problem, not a bad contact. It becomes a PAUSED
  result naming the property and the command that creates it (`clay-pipeline hubspot setup`, which
  uses `properties_plan`); the router pauses HubSpot and re-checks after RECHECK_SECONDS.
- 401 (the token is invalid: revoked, rotated or mistyped) and 403 (the private app lacks a scope, category
  `MISSING_SCOPES`) answer every contact alike (developers.hubspot.com/docs/api/error-handling, "401
  Unauthorized", "403 Forbidden"): a setup problem, not a bad contact. Each becomes a PAUSED result naming
  HUBSPOT_ACCESS_TOKEN and the scopes the app needs (REQUIRED_SCOPES: the contacts batch read and upsert,
  and the setup command's property calls); the router pauses HubSpot and re-checks after RECHECK_SECONDS,
  so the leads wait in RoutingQueue instead of each being dead-lettered.
- 429 bodies name their policy (`policyName`): `TEN_SECONDLY_ROLLING` is retried after a short wait;
  `DAILY` stops every call until the daily limit resets, which HubSpot's usage guidelines put at
  midnight in the account's time zone. The account's UTC offset comes from
  `GET /account-info/v3/details` (`utcOffsetMilliseconds`); when it cannot be read the reset time is
  unknown and HubSpot is re-checked after RECHECK_SECONDS instead of guessed at.
- Fields a rep owns (`hs_lead_status`, `lifecyclestage`, `hubspot_owner_id` and any named in
  HUBSPOT_OWNED_PROPERTIES) are sent only for a contact HubSpot does not have yet. Which contacts
  exist is read first with `POST /crm/v3/objects/contacts/batch/read` by email, so the owned fields
  go out in the same write that creates the contact: a crash between two writes cannot leave a
  new contact without them, and a re-send of an existing contact never carries them. (The other
  design, upsert without them and then a batch update of the results marked `new`, saves the read
  for contacts that exist but loses the owned fields if the update never happens.)

An upsert by email is idempotent, so a read timeout (the outcome unknown) is retried like any
other transient failure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clay_pipeline import config
from clay_pipeline.adapters.crm import upsert_in_batches
from clay_pipeline.adapters.webhooks import MIN_ATTEMPT_SECONDS, HttpClient, RetryPolicy
from clay_pipeline.core.deliveries import OUT_OF_TIME, DeliveryResult, Status
from clay_pipeline.core.hubspot_contacts import (
    DAILY_LIMIT,
    Contact,
    ContactMapping,
    PropertiesPlan,
    contacts_by_email,
    daily_limit_pause,
    per_item_results,
    properties_plan,
    refusal,
    until_daily_reset,
)
from clay_pipeline.core.routing_message import RoutingMessage

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
READ_PATH = "/crm/v3/objects/contacts/batch/read"
PROPERTIES_PATH = "/crm/v3/properties/contacts"
GROUPS_PATH = "/crm/v3/properties/contacts/groups"
ACCOUNT_PATH = "/account-info/v3/details"
SPLITTABLE = frozenset({"rejected_400", "rejected_409"})  # a refusal that may be one input's fault
MAX_BATCH_SIZE = 100  # inputs per batch upsert


# -- the adapter -------------------------------------------------------------------------------
class HubSpotContacts:
    """Contacts upserted by email in batches; each contact gets its own result (see the module docstring).

    A batched CRM destination (adapters/crm.BatchedCrm): the router calls upsert_leads with a whole batch.
    """

    name = "hubspot"
    label = "HubSpot"
    setting = "HUBSPOT_ACCESS_TOKEN"

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        mapping: ContactMapping | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int = MAX_BATCH_SIZE,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.mapping = mapping or ContactMapping()
        self.retry = retry or RetryPolicy(timeout_seconds=10, attempts=0, backoff_seconds=0)
        self.batch_size = batch_size
        self._utc_offset_ms: int | None = None  # the account's, read once per process on the first DAILY 429

    def configured(self) -> bool:
        return bool(config.secret(self.setting))

    def payload(self, lead: dict[str, Any], received_at: str) -> Any:
        return self.mapping.update_input(lead, received_at)

    def contact(self, lead: dict[str, Any], received_at: str) -> Contact:
        return self.mapping.contact(lead, received_at)

    def upsert_leads(self, messages: Mapping[str, RoutingMessage], deadline: float) -> dict[str, DeliveryResult]:
        """Every message's contact, upserted in batches with the retries; each result by the message's key.

        One contact per email: HubSpot refuses a batch naming a contact twice (the newest enrichment wins)."""
        contacts = contacts_by_email(((m.lead, m.received_at) for m in messages.values()), self.mapping)
        by_email = upsert_in_batches(contacts, self.batch_size, self.upsert, self.retry, deadline)
        return {key: by_email[str(message.lead["email"])] for key, message in messages.items()}

    def upsert(
        self, contacts: list[Contact], timeout: float, deadline: float | None = None
    ) -> dict[str, DeliveryResult]:
        """One batch (at most 100 contacts, distinct emails): each contact's result by its email.

        Every request gets at most `timeout` seconds and none starts past `deadline` (time.monotonic()).
        """
        deadline = time.monotonic() + timeout if deadline is None else deadline
        token = config.secret(self.setting)
        emails = [contact.email for contact in contacts]
        if not token:
            return dict.fromkeys(emails, DeliveryResult(Status.RETRYABLE, "not_configured"))
        headers = {"authorization": f"Bearer {token}"}
        existing: set[str] = set()
        if any(contact.create for contact in contacts):
            found = self._existing(emails, headers, timeout, deadline)
            if isinstance(found, DeliveryResult):
                return dict.fromkeys(emails, self._settled_pause(found, headers, timeout))
            existing = found
        inputs = [contact.input(new=contact.email.lower() not in existing) for contact in contacts]
        results = self._upsert(inputs, headers, timeout, deadline)
        daily = next((result for result in results.values() if result.reason == DAILY_LIMIT), None)
        if daily is None:
            return results
        paused = self._settled_pause(daily, headers, timeout)  # one look at the account, whatever the batch size
        return {email: paused if result.reason == DAILY_LIMIT else result for email, result in results.items()}

    def _existing(
        self, emails: list[str], headers: dict[str, str], timeout: float, deadline: float
    ) -> set[str] | DeliveryResult:
        """The emails HubSpot has a contact for (lower case); a failure result when it could not be read."""
        left = deadline - time.monotonic()
        if left < MIN_ATTEMPT_SECONDS:
            return OUT_OF_TIME
        body = {"idProperty": "email", "properties": ["email"], "inputs": [{"id": email} for email in emails]}
        result, answer = self.http.request_json("POST", self.base_url + READ_PATH, body, min(timeout, left), headers)
        if not result.delivered:
            return refusal(result, answer)
        found = answer.get("results", []) if isinstance(answer, dict) else []
        return {
            str((item.get("properties") or {}).get("email", "")).lower() for item in found if isinstance(item, dict)
        }

    def _upsert(
        self, inputs: list[dict[str, Any]], headers: dict[str, str], timeout: float, deadline: float
    ) -> dict[str, DeliveryResult]:
        """Upsert; a batch refused whole is split in halves until the refused contact is alone."""
        emails = [str(item["id"]) for item in inputs]
        left = deadline - time.monotonic()
        if left < MIN_ATTEMPT_SECONDS:
            return dict.fromkeys(emails, OUT_OF_TIME)
        result, body = self.http.request_json(
            "POST", self.base_url + UPSERT_PATH, {"inputs": inputs}, min(timeout, left), headers
        )
        if result.delivered:
            return per_item_results(emails, body)
        refused = refusal(result, body)
        if len(inputs) == 1 or refused.status is not Status.PERMANENT or result.reason not in SPLITTABLE:
            return dict.fromkeys(emails, refused)
        half = len(inputs) // 2
        return {
            **self._upsert(inputs[:half], headers, timeout, deadline),
            **self._upsert(inputs[half:], headers, timeout, deadline),
        }

    def _settled_pause(self, result: DeliveryResult, headers: dict[str, str], timeout: float) -> DeliveryResult:
        """A DAILY 429 with how long until HubSpot's daily limit resets (and what that is based on)."""
        if result.reason != DAILY_LIMIT or result.retry_after is not None:
            return result
        if self._utc_offset_ms is None:
            answer, body = self.http.request_json("GET", self.base_url + ACCOUNT_PATH, None, min(timeout, 5.0), headers)
            offset = body.get("utcOffsetMilliseconds") if answer.delivered and isinstance(body, dict) else None
            if isinstance(offset, int) and not isinstance(offset, bool):
                self._utc_offset_ms = offset
        return daily_limit_pause(*until_daily_reset(datetime.now(UTC), self._utc_offset_ms))

    def setup_properties(self, timeout: float, apply: bool = True) -> PropertiesPlan:
        """Read the portal's contact property groups and properties, and (apply) create what the mapping lacks:
        the group `clay`, then each missing property in it. Idempotent: what exists is never changed.
        HubSpotError when a call fails (with HubSpot's message)."""
        token = config.secret(self.setting)
        if not token:
            raise HubSpotError("HUBSPOT_ACCESS_TOKEN is not set (environment, or the config secret)")
        headers = {"authorization": f"Bearer {token}"}
        groups = self._get_results(GROUPS_PATH, headers, timeout)
        existing = self._get_results(PROPERTIES_PATH, headers, timeout)
        plan = properties_plan(
            self.mapping,
            [str(group.get("name")) for group in groups],
            {str(item.get("name")): str(item.get("type")) for item in existing},
        )
        if apply:
            for path, body in ([(GROUPS_PATH, plan.group)] if plan.group else []) + [
                (PROPERTIES_PATH, definition) for definition in plan.create
            ]:
                result, _ = self.http.request_json("POST", self.base_url + path, body, timeout, headers)
                if not result.delivered:
                    raise HubSpotError(f"creating {body['name']} failed: {_described(result)}")
        return plan

    def _get_results(self, path: str, headers: dict[str, str], timeout: float) -> list[dict[str, Any]]:
        result, body = self.http.request_json("GET", self.base_url + path, None, timeout, headers)
        if not result.delivered or not isinstance(body, dict):
            raise HubSpotError(f"reading {path} failed: {_described(result)}")
        return [item for item in body.get("results") or [] if isinstance(item, dict)]


class HubSpotError(Exception):
    """A HubSpot call the setup needs failed; the message is HubSpot's (never the token)."""


def _described(result: DeliveryResult) -> str:
    return result.reason + (f": {result.detail}" if result.detail else "")
