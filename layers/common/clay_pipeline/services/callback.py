"""Accepting Clay's enriched rows: verify, validate, and accept each callback exactly once.

A callback is a version of a lead: `callback_id` is `<lead_key>#<hash of the canonical body>`.
One write on the lead's LEADS_TABLE item accepts it (adapters/callback_claims.py; what a refused claim
means is core/callback_acceptance.py): a conditional write claims the version (`pending_<version>`, holding
this callback's received_at) and stores the lead, unless the version is one of the lead's recent accepted
versions (answered as a duplicate) or claimed already by an identical callback (PENDING: that one queued
it, is queueing it or died first, so a copy is queued and the answer is a duplicate's; the router's ledger
delivers the lead once). The routing message is then queued. The router's first write on the lead's item
for this version completes the claim (the version joins the item's bounded `versions` list), so a callback
costs one write.

Clay's HTTP API column does not retry a 5xx by default (it retries 408, 413, 429 and network
errors, once, immediately: docs/ARCHITECTURE.md, "The callback and Clay's retries"), so a 503 is
a lost lead. Each DynamoDB and SQS call is therefore retried with backoff inside the invocation
until its deadline (the Lambda's remaining time less DEADLINE_RESERVE_SECONDS): an outage shorter
than that costs a slower answer, not a callback. Only past the deadline is the claim dropped and
503 answered. A crash after the claim leaves it in place: a re-send of the same body then queues a copy,
and a different body of the lead is accepted as usual; with no re-send, the stale-lead sweeper queues the
claim's message once it is CALLBACK_UNQUEUED_AFTER_SECONDS old (services/sweeper.py). If DynamoDB fails,
nothing is queued.

Hand-written rather than Powertools' idempotency utility: it keeps its in-progress and completion
records in an item of its own, two writes per callback beside the lead's own write (3 WRU per
callback, bench/cost_model.py); here the lead's one write is the claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from clay_pipeline import config
from clay_pipeline.adapters.aws_failures import is_transient
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.dynamodb import item_size
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.config import CallbackSettings
from clay_pipeline.core import auth
from clay_pipeline.core.callback_acceptance import Acceptance, routing_message
from clay_pipeline.core.errors import BadRequest, ConfigError, TooLarge, Unauthorized
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.leads import EnrichedLead, body_hash, field_errors
from clay_pipeline.core.request_body import check_content_type, check_size, json_object, parse_json
from clay_pipeline.observability import count, logger
from clay_pipeline.services.caller_auth import check_environment_secrets, refuse_everyone, secrets_or_unauthorized

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Waits between the retries of a failed DynamoDB or SQS call, doubling up to the cap (seconds), until the
# invocation's deadline.
FIRST_RETRY_WAIT_SECONDS = 0.05
MAX_RETRY_WAIT_SECONDS = 2.0
# The deadline keeps this much of the Lambda's remaining time for the call in flight when it passes
# (botocore's connect and read timeouts, aws.py), the release of the claim and the answer.
DEADLINE_RESERVE_SECONDS = 5.0
DEFAULT_REMAINING_SECONDS = 10.0  # the time an invocation has without a Lambda context (the library outside Lambda)
T = TypeVar("T")
# What an accepted lead may take, measured after normalisation (values can grow: "1e5" is queued as
# 100000.0, and a list of small numbers takes 1.5 times its JSON in DynamoDB):
# - in LEADS_TABLE: 300 KB of the 400 KB item, leaving 100 KB for the router's outcome and ledger;
# - on RoutingQueue: SQS's classic 256 KiB message (queues may allow 1 MiB; this fits both).
ENRICHMENT_MAX_STORED_BYTES = 300_000
ROUTING_MESSAGE_MAX_BYTES = 262_144
ROUTING_ENVELOPE_BYTES = 256  # callback_id, lead_key and received_at around the lead


@dataclass(frozen=True)
class CallbackRequest:
    lead: EnrichedLead
    lead_key: str
    callback_id: str
    message: dict[str, Any]  # the lead as stored and queued
    # Columns that could not be read: kept as sent, treated as missing, named in the 200 answer.
    warnings: list[dict[str, str]] = field(default_factory=list)


def check_configuration(settings: CallbackSettings) -> None:
    """At cold start: a callback secret or JWT user set in the environment and too weak to trust fails the
    start (ConfigError); caller_auth says why only the environment's."""
    check_environment_secrets("CALLBACK_SECRETS")
    if settings.callback_auth_mode == "jwt":
        auth.jwt_users(config.secret_list("CALLBACK_JWT_USERS", environment_only=True))


def authenticate(settings: CallbackSettings, headers: dict[str, str], body: bytes) -> None:
    """Unauthorized unless the caller proves it knows a current or previous secret."""
    secrets = secrets_or_unauthorized("CALLBACK_SECRETS", "callback")
    jwt_mode = settings.callback_auth_mode == "jwt"
    try:
        users = auth.jwt_users(config.secret_list("CALLBACK_JWT_USERS")) if jwt_mode else {}
        verifier = auth.callback_verifier(
            settings.callback_auth_mode,
            settings.callback_secret_header,
            secrets,
            settings.callback_tolerance_seconds,
            users=users.keys(),
        )
    except ConfigError as error:  # a JWT user rotated to a weak value
        raise refuse_everyone(str(error), "caller") from None
    if not verifier.verify(headers, body):
        raise Unauthorized()


def check_fits(message: dict[str, Any]) -> None:
    """413 when the normalised lead would not fit the leads table item or the routing message."""
    stored = item_size({"enrichment": message})
    if stored > ENRICHMENT_MAX_STORED_BYTES:
        raise TooLarge(
            f"the lead takes {stored} bytes in the leads table; the limit is {ENRICHMENT_MAX_STORED_BYTES}",
            reason="oversize_stored",
        )
    queued = len(dump_json(message).encode()) + ROUTING_ENVELOPE_BYTES
    if queued > ROUTING_MESSAGE_MAX_BYTES:
        raise TooLarge(
            f"the lead is {queued} bytes as a queue message; the limit is {ROUTING_MESSAGE_MAX_BYTES}",
            reason="oversize_message",
        )


def parse_callback(settings: CallbackSettings, headers: dict[str, str], body: bytes) -> CallbackRequest:
    """Size, content type, JSON and fields, in that order: cheap checks before parsing."""
    check_size(body, settings.callback_max_body_bytes)
    check_content_type(headers)
    document = json_object(parse_json(body))
    try:
        lead = EnrichedLead.read(document)
    except ValidationError as error:
        raise BadRequest("invalid fields", reason="invalid_fields", fields=field_errors(error)) from None
    message = lead.to_message()
    check_fits(message)
    lead_key = str(lead.lead_id)
    for warning in lead.warnings:  # a declared column (a fixed set): a bounded dimension
        count("CallbackColumnUnreadable", column=warning["field"])
    return CallbackRequest(
        lead=lead,
        lead_key=lead_key,
        callback_id=f"{lead_key}#{body_hash(document)[:32]}",
        message=message,
        warnings=lead.warnings,
    )


def waits(first: float = FIRST_RETRY_WAIT_SECONDS, cap: float = MAX_RETRY_WAIT_SECONDS) -> Iterator[float]:
    """Doubling waits from `first`, at most `cap` each."""
    wait = first
    while True:
        yield wait
        wait = min(cap, wait * 2)


class CallbackAcceptor:
    """Stores and queues each distinct callback once (the flow is in the module's docstring).

    `max_wait_seconds` caps the waiting (a queue consumer hands its message back instead of waiting long);
    `clock` and `sleep` measure and spend the invocation's time (a benchmark runs outages on a virtual clock).
    `claims` and `routing_queue`: the leads table's claims and RoutingQueue (default: the settings' own).
    """

    def __init__(
        self,
        settings: CallbackSettings,
        max_wait_seconds: float | None = None,
        claims: CallbackClaims | None = None,
        routing_queue: Queue | None = None,
    ) -> None:
        self.max_wait_seconds = max_wait_seconds
        self.claims = claims or CallbackClaims(settings.leads_table, retention_days=settings.lead_retention_days)
        self.routing_queue = routing_queue or Queue(settings.routing_queue_url)
        self._context: LambdaContext | None = None
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep

    def register_context(self, context: LambdaContext | None) -> None:
        # The retries of a failed call end with this invocation's remaining time (less the reserve).
        self._context = context

    def accept(self, request: CallbackRequest) -> dict[str, Any]:
        received_at = datetime.now(UTC).isoformat()  # one value for every attempt: a retried claim knows its own
        patience = max(0.0, self._remaining_seconds() - DEADLINE_RESERVE_SECONDS)
        if self.max_wait_seconds is not None:
            patience = min(patience, self.max_wait_seconds)
        deadline = self.clock() + patience
        claim = self._patiently(
            "LeadsTable",
            deadline,
            lambda: self.claims.accept(request.lead_key, request.callback_id, request.message, received_at),
        )
        if claim.acceptance is Acceptance.DUPLICATE:
            return {"received": True, "lead_key": request.lead_key, "duplicate": True}
        message = routing_message(request.callback_id, request.lead_key, request.message, claim.received_at)
        if claim.acceptance is Acceptance.PENDING:
            # The identical callback that claimed it may have died before queueing: a copy makes sure it is
            # routed (the router's ledger delivers the lead once). Not queued: 503, as for any callback.
            self._patiently("RoutingQueue", deadline, lambda: self.routing_queue.send(message))
            return {"received": True, "lead_key": request.lead_key, "duplicate": True}
        try:
            self._patiently("RoutingQueue", deadline, lambda: self.routing_queue.send(message))
        except Exception:
            self._release(request)
            raise
        return {"received": True, "lead_key": request.lead_key, "duplicate": False}

    def _patiently(self, dependency: str, deadline: float, call: Callable[[], T]) -> T:
        """The call, retried after a transient failure (doubling waits) while the next try starts before `deadline`."""
        pause, first = waits(), True
        while True:
            try:
                return call()
            except Exception as error:
                wait = next(pause)
                if not is_transient(error) or self.clock() + wait > deadline:
                    raise
                count("CallbackDependencyRetry", dependency=dependency)
                if first:  # once per call: an outage would otherwise log a line per retry
                    logger.warning(
                        "waiting for a dependency", extra={"dependency": dependency, "error": type(error).__name__}
                    )
                first = False
                self.sleep(wait)

    def _remaining_seconds(self) -> float:
        if self._context is None:
            return DEFAULT_REMAINING_SECONDS
        return max(1.0, self._context.get_remaining_time_in_millis() / 1000)

    def _release(self, request: CallbackRequest) -> None:
        try:
            self.claims.release(request.lead_key, request.callback_id)
        except Exception as error:  # the claim stays: a re-send then queues a copy (routed once by the ledger)
            logger.warning("could not release the callback's claim", extra={"error": type(error).__name__})
