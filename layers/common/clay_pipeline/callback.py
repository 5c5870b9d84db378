"""Accepting Clay's enriched rows: verify, validate, and accept each callback exactly once.

Exactly-once uses Powertools idempotency on STATE_TABLE: a conditional put takes an
in-progress lock keyed by `<lead_key>#<hash of the canonical body>`, the lead is stored
and queued, then the record is marked complete. An identical retry finds the completed
record and is answered as a duplicate; a failure deletes the lock so Clay's retry can
succeed; a crash leaves a lock that expires with the Lambda's remaining time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from clay_pipeline import auth, config
from clay_pipeline.aws import client
from clay_pipeline.config import CallbackSettings, ConfigError, dump_json
from clay_pipeline.http_api import (
    HttpError,
    check_content_type,
    check_size,
    parse_json,
    unauthorized,
)
from clay_pipeline.models import EnrichedLead, body_hash, field_errors
from clay_pipeline.observability import logger
from clay_pipeline.stores import STATE_KEY, STATE_TTL, LeadsTable, Queue, item_size

# Waits for a concurrent identical callback to finish before answering 409 (seconds).
IN_PROGRESS_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)
# What an accepted lead may take, measured after normalisation (values can grow: "1e5" is queued as
# 100000.0, and a list of small numbers takes 1.5 times its JSON in DynamoDB):
# - in LEADS_TABLE: 300 KB of the 400 KB item, leaving 100 KB for the router's outcome and ledger;
# - on RoutingQueue: SQS's classic 256 KiB message (queues may allow 1 MiB; this fits both).
ENRICHMENT_MAX_STORED_BYTES = 300_000
ROUTING_MESSAGE_MAX_BYTES = 262_144
ROUTING_ENVELOPE_BYTES = 256  # callback_id, lead_key and received_at around the lead
_warned_no_secret = False
_warned_config: set[str] = set()


@dataclass(frozen=True)
class CallbackRequest:
    lead: EnrichedLead
    lead_key: str
    callback_id: str
    message: dict[str, Any]  # the lead as stored and queued


def check_configuration(settings: CallbackSettings) -> None:
    """At cold start: a callback secret or JWT user set in the environment and too weak to trust fails the
    start (ConfigError). Values in Secrets Manager are read at run time, not here (no network call while
    the function starts): a weak one refuses every caller with 401 and an error in the log instead."""
    auth.check_secrets(config.secret_list("CALLBACK_SECRETS", environment_only=True))
    if settings.callback_auth_mode == "jwt":
        auth.jwt_users(config.secret_list("CALLBACK_JWT_USERS", environment_only=True))


def _refuse_misconfigured(error: ConfigError) -> HttpError:
    """A secret rotated to a weak value refuses every caller (401), with one error in the log per problem."""
    if str(error) not in _warned_config:
        logger.error(f"{error}: every caller is refused until it is fixed")
        _warned_config.add(str(error))
    return unauthorized()


def authenticate(settings: CallbackSettings, headers: dict[str, str], body: bytes) -> None:
    """Raise 401 unless the caller proves it knows a current or previous secret."""
    global _warned_no_secret
    secrets = config.secret_list("CALLBACK_SECRETS")
    if not secrets:
        if not _warned_no_secret:
            logger.error("CALLBACK_SECRETS is not configured: every callback is refused until it is set")
            _warned_no_secret = True
        raise unauthorized()
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
    except ConfigError as error:
        raise _refuse_misconfigured(error) from None
    if not verifier.verify(headers, body):
        raise unauthorized()


def check_fits(message: dict[str, Any]) -> None:
    """413 when the normalised lead would not fit the leads table item or the routing message."""
    stored = item_size({"enrichment": message})
    if stored > ENRICHMENT_MAX_STORED_BYTES:
        raise HttpError(
            413,
            {"error": f"the lead takes {stored} bytes in the leads table; the limit is {ENRICHMENT_MAX_STORED_BYTES}"},
            reason="oversize_stored",
        )
    queued = len(dump_json(message).encode()) + ROUTING_ENVELOPE_BYTES
    if queued > ROUTING_MESSAGE_MAX_BYTES:
        raise HttpError(
            413,
            {"error": f"the lead is {queued} bytes as a queue message; the limit is {ROUTING_MESSAGE_MAX_BYTES}"},
            reason="oversize_message",
        )


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
    message = lead.to_message()
    check_fits(message)
    lead_key = str(lead.lead_id)
    return CallbackRequest(
        lead=lead, lead_key=lead_key, callback_id=f"{lead_key}#{body_hash(document)[:32]}", message=message
    )


def issue_token(body: bytes) -> dict[str, Any]:
    """POST /clay/token: username and password in, bearer token out (jwt mode only)."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise unauthorized()
    username, password = document.get("username"), document.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise unauthorized()
    try:
        issuer = auth.TokenIssuer(config.secret_list("CALLBACK_JWT_USERS"), config.secret_list("CALLBACK_SECRETS"))
    except ConfigError as error:
        raise _refuse_misconfigured(error) from None
    token = issuer.issue(username, password)
    if token is None:
        raise unauthorized()
    return {"access_token": token, "token_type": auth.BEARER, "expires_in": auth.JWT_LIFETIME_SECONDS}


def _mark_duplicate(response: Any, idempotent_data: DataRecord) -> Any:
    return {**response, "duplicate": True} if isinstance(response, dict) else response


class CallbackAcceptor:
    """Stores and queues each distinct callback once."""

    def __init__(self, settings: CallbackSettings) -> None:
        self.leads = LeadsTable(settings.leads_table)
        self.routing_queue = Queue(settings.routing_queue_url)
        self.persistence = DynamoDBPersistenceLayer(
            table_name=settings.state_table,
            key_attr=STATE_KEY,
            expiry_attr=STATE_TTL,
            boto3_client=client("dynamodb"),
        )
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="callback_id",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.callback_idempotency_days * 86400,
            response_hook=_mark_duplicate,
        )
        self._accept_once = idempotent_function(
            data_keyword_argument="request",
            persistence_store=self.persistence,
            config=self.idempotency,
            key_prefix="idem#callback",
        )(self._store_and_queue)

    def register_context(self, context: LambdaContext | None) -> None:
        # Ties the in-progress lock's expiry to this invocation's remaining time.
        if context is not None:
            self.idempotency.register_lambda_context(context)

    def accept(self, request: CallbackRequest) -> dict[str, Any]:
        payload = {"callback_id": request.callback_id, "lead_key": request.lead_key, "lead": request.message}
        for wait in (*IN_PROGRESS_WAITS, None):
            try:
                return dict(self._accept_once(request=payload))
            except IdempotencyAlreadyInProgressError:
                if wait is None:
                    break
                time.sleep(wait)
        raise HttpError(
            409,
            {"error": "an identical callback is being processed; retry later", "duplicate": True},
            headers={"retry-after": "2"},
            reason="in_progress",
        )

    def _store_and_queue(self, request: dict[str, Any]) -> dict[str, Any]:
        received_at = datetime.now(UTC).isoformat()
        self.leads.save_enrichment(request["lead_key"], request["callback_id"], request["lead"], received_at)
        self.routing_queue.send({**request, "received_at": received_at})
        return {"received": True, "lead_key": request["lead_key"], "duplicate": False}
