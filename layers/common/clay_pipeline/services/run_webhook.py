"""POST /clay/routine-webhook: Clay's signed run-finished webhook speeds up collecting a run.

Clay POSTs `{"webhookId", "createdAt", "data": {"routine_run_id"}}` (a test delivery has
`"data": {}`) with `X-Clay-Signature: sha256=<hex HMAC-SHA256 of the raw body>` under the
webhook's signing secret (`whsec_...`, shown once by `clay webhooks create`). The signature is
checked in constant time over the exact bytes received, against every secret in
CLAY_WEBHOOK_SIGNING_SECRETS (current first, then previous: rotation). There is no timestamp,
so a replayed delivery is stopped by a mark per routine_run_id: the first delivery queues one
collection message (run_collector.py), any later one is answered 200 as a duplicate. Delivery
is not guaranteed, so nothing depends on it: the run's poll chain collects it anyway.
No secret configured means every delivery is refused: this never fails open.
"""

from __future__ import annotations

from typing import Any

from clay_pipeline.adapters.queues import Queue
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import RunPollSettings
from clay_pipeline.core import auth, state_keys
from clay_pipeline.core.column_values import identifier_problem
from clay_pipeline.core.errors import BadRequest, Unauthorized
from clay_pipeline.core.request_body import check_content_type, check_size, parse_json
from clay_pipeline.core.routines import DAY_SECONDS, MAX_ITEM_ID_LENGTH, PollMessage
from clay_pipeline.services.caller_auth import secrets_or_unauthorized

SIGNATURE_HEADER = "X-Clay-Signature"


def verify_signature(headers: dict[str, str], body: bytes, secrets: list[str]) -> bool:
    """sha256=<hex> over the raw body under any of the secrets, compared in constant time."""
    # Clay signs the body alone: a timestamp header a caller adds must not change what is verified.
    untimed = {name: value for name, value in headers.items() if name != auth.TIMESTAMP_HEADER}
    return auth.HmacVerifier(SIGNATURE_HEADER, secrets, tolerance_seconds=1).verify(untimed, body)


def authenticate(headers: dict[str, str], body: bytes) -> None:
    secrets = secrets_or_unauthorized("CLAY_WEBHOOK_SIGNING_SECRETS", "run webhook")
    if not verify_signature(headers, body, secrets):
        raise Unauthorized()


def run_id_of(body: bytes, headers: dict[str, str]) -> str | None:
    """The routine_run_id of a delivery; None for a test delivery (`"data": {}`)."""
    check_content_type(headers)
    document = parse_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
        raise BadRequest("body must be a JSON object with a 'data' object", reason="not_object")
    data = document["data"]
    if not data:
        return None
    run_id = data.get("routine_run_id")
    # Written to DynamoDB (the run's mark): an id it cannot store is the sender's mistake (400), not an outage.
    if problem := identifier_problem(run_id, MAX_ITEM_ID_LENGTH):
        raise BadRequest(
            "invalid fields", reason="invalid_fields", fields=[{"field": "data.routine_run_id", "error": problem}]
        )
    return str(run_id)


class RunWebhook:
    def __init__(
        self, settings: RunPollSettings, marks: StateStore | None = None, poll_queue: Queue | None = None
    ) -> None:
        self.settings = settings
        self.marks = marks or StateStore(settings.state_table)
        self.poll_queue = poll_queue or Queue(settings.run_poll_queue_url)

    def receive(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """Size, signature, then the body; the 200 answer (a test delivery, a duplicate or a run to collect)."""
        check_size(body, self.settings.run_webhook_max_body_bytes)
        authenticate(headers, body)
        run_id = run_id_of(body, headers)
        if run_id is None:
            return {"received": True, "test": True}
        key = state_keys.run_webhook(run_id)
        if not self.marks.put_mark(key, self.settings.run_mark_days * DAY_SECONDS):
            return {"received": True, "routine_run_id": run_id, "duplicate": True}
        try:
            self.poll_queue.send(PollMessage(run_id, trigger="webhook").to_message())
        except Exception:
            self.marks.delete(key)  # Clay's retry of this delivery must not look like a duplicate
            raise
        return {"received": True, "routine_run_id": run_id, "duplicate": False}
