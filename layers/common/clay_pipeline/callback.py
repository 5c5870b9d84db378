"""Accepting Clay's enriched rows: verify, validate, and accept each callback exactly once.

A callback is a version of a lead: `callback_id` is `<lead_key>#<hash of the canonical body>`.
Exactly once takes two writes, both on the lead's LEADS_TABLE item (stores.LeadsTable):
1. one conditional write claims the version (a `pending_<version>` lease that ends with the
   invocation's remaining time) and stores the lead, unless the version is already accepted
   (answered as a duplicate) or claimed by a live lease (an identical callback in flight: wait,
   then 409 so Clay retries);
2. after the routing message is queued, a second write adds the version to the item's
   `versions` set and ends the claim.
If queueing fails, the claim is dropped and the answer is 503, so Clay's retry is accepted. A
crash after 1 leaves a lease that lapses, and the retry is accepted then; a crash between the
queueing and 2 lets the retry queue the version again, which the router's per-lead ledger
absorbs (nothing is delivered twice). If DynamoDB fails, nothing is queued.

Hand-written rather than Powertools' idempotency utility: it keeps its in-progress and completion
records in an item of its own, two writes per callback beside the lead's own write (3 WRU per
callback, bench/cost_model.py); here the lead's writes are the claim and the completion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from clay_pipeline import auth, config
from clay_pipeline.config import CallbackSettings
from clay_pipeline.http_api import (
    HttpError,
    check_content_type,
    check_size,
    parse_json,
    unauthorized,
)
from clay_pipeline.models import EnrichedLead, body_hash, field_errors
from clay_pipeline.observability import logger
from clay_pipeline.stores import Acceptance, LeadsTable, Queue

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Waits for a concurrent identical callback to finish before answering 409 (seconds).
IN_PROGRESS_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)
DEFAULT_CLAIM_SECONDS = 10.0  # a claim's lease without a Lambda context (the function's timeout)
_warned_no_secret = False


@dataclass(frozen=True)
class CallbackRequest:
    lead: EnrichedLead
    lead_key: str
    callback_id: str


def authenticate(settings: CallbackSettings, headers: dict[str, str], body: bytes) -> None:
    """Raise 401 unless the caller proves it knows a current or previous secret."""
    global _warned_no_secret
    secrets = config.secret_list("CALLBACK_SECRETS")
    if not secrets:
        if not _warned_no_secret:
            logger.error("CALLBACK_SECRETS is not configured: every callback is refused until it is set")
            _warned_no_secret = True
        raise unauthorized()
    verifier = auth.callback_verifier(
        settings.callback_auth_mode, settings.callback_secret_header, secrets, settings.callback_tolerance_seconds
    )
    if not verifier.verify(headers, body):
        raise unauthorized()


def parse_callback(settings: CallbackSettings, headers: dict[str, str], body: bytes) -> CallbackRequest:
    """Size, content type, JSON and fields, in that order: cheap checks before parsing."""
    check_size(body, settings.callback_max_body_bytes)
    check_content_type(headers)
    document = parse_json(body)
    if not isinstance(document, dict):
        raise HttpError(
            400, {"error": f"body must be a JSON object, not {type(document).__name__}"}, reason="not_object"
        )
    try:
        lead = EnrichedLead.model_validate(document)
    except ValidationError as error:
        raise HttpError(
            400, {"error": "invalid fields", "fields": field_errors(error)}, reason="invalid_fields"
        ) from None
    lead_key = str(lead.lead_id)
    return CallbackRequest(lead=lead, lead_key=lead_key, callback_id=f"{lead_key}#{body_hash(document)[:32]}")


def issue_token(body: bytes) -> dict[str, Any]:
    """POST /clay/token: username and password in, bearer token out (jwt mode only)."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise unauthorized()
    username, password = document.get("username"), document.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise unauthorized()
    issuer = auth.TokenIssuer(config.secret_list("CALLBACK_JWT_USERS"), config.secret_list("CALLBACK_SECRETS"))
    token = issuer.issue(username, password)
    if token is None:
        raise unauthorized()
    return {"access_token": token, "token_type": auth.BEARER, "expires_in": auth.JWT_LIFETIME_SECONDS}


class CallbackAcceptor:
    """Stores and queues each distinct callback once (the flow is in the module's docstring)."""

    def __init__(self, settings: CallbackSettings) -> None:
        self.leads = LeadsTable(settings.leads_table)
        self.routing_queue = Queue(settings.routing_queue_url)
        self._context: LambdaContext | None = None

    def register_context(self, context: LambdaContext | None) -> None:
        # A claim's lease ends with this invocation's remaining time: a crash frees it then.
        self._context = context

    def accept(self, request: CallbackRequest) -> dict[str, Any]:
        received_at = datetime.now(UTC).isoformat()
        for wait in (*IN_PROGRESS_WAITS, None):
            acceptance = self.leads.accept_callback(
                request.lead_key, request.callback_id, request.lead.to_message(), received_at, self._lease_seconds()
            )
            if acceptance is Acceptance.DUPLICATE:
                return {"received": True, "lead_key": request.lead_key, "duplicate": True}
            if acceptance is Acceptance.ACCEPTED:
                break
            if wait is None:
                raise HttpError(
                    409,
                    {"error": "an identical callback is being processed; retry later", "duplicate": True},
                    headers={"retry-after": "2"},
                    reason="in_progress",
                )
            time.sleep(wait)
        message = {
            "callback_id": request.callback_id,
            "lead_key": request.lead_key,
            "lead": request.lead.to_message(),
            "received_at": received_at,
        }
        try:
            self.routing_queue.send(message)
        except Exception:
            self._release(request)
            raise
        self.leads.complete_callback(request.lead_key, request.callback_id)
        return {"received": True, "lead_key": request.lead_key, "duplicate": False}

    def _lease_seconds(self) -> float:
        if self._context is None:
            return DEFAULT_CLAIM_SECONDS
        return max(1.0, self._context.get_remaining_time_in_millis() / 1000)

    def _release(self, request: CallbackRequest) -> None:
        try:
            self.leads.release_callback(request.lead_key, request.callback_id)
        except Exception as error:  # the claim then lapses with its lease: Clay's retry gets 409 until then
            logger.warning("could not release the callback's claim", extra={"error": type(error).__name__})
