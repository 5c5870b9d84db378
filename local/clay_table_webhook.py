"""Clay's table webhook source ("pull in data from a webhook"), simulated: what it takes in and refuses.

`POST /v3/sources/webhook/pull-in-data-from-a-webhook-<uuid>` takes one JSON row. It checks
x-clay-webhook-auth (401), the 100 KB limit (413), the webhook's lifetime submission limit
(404, as for a retired webhook) and the workspace rate, 10 rows/s with a burst of 20 (429
with Retry-After), then answers 200. Clay has no idempotency: a repeated POST is a new row.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.http_stub import RecordedRequest, Reply
from local.rate_limit import TokenBucket

WEBHOOK_PREFIX = "/v3/sources/webhook/pull-in-data-from-a-webhook-"
AUTH_HEADER = "x-clay-webhook-auth"
MAX_ROW_BYTES = 100_000


@dataclass(frozen=True)
class ReceivedRow:
    webhook: str
    lead_id: str
    body: dict[str, Any]


class TableWebhook:
    """The table's webhooks: each accepted row is recorded in `rows` and handed to `accept`."""

    def __init__(
        self,
        accept: Callable[[dict[str, Any]], None],
        token: str,
        rate_per_second: float,
        burst: float,
        max_row_bytes: int,
        submission_limit: int,
    ) -> None:
        self._accept = accept
        self.token = token
        self.max_row_bytes = max_row_bytes
        self.submission_limit = submission_limit
        self._bucket = TokenBucket(rate_per_second, burst)
        self._lock = threading.Lock()
        self._webhooks: dict[str, int] = {}  # id -> submissions
        self._retired: set[str] = set()
        self.rows: list[ReceivedRow] = []
        self.inbound: Counter[int] = Counter()  # status -> answers given to the sender

    def create(self, base_url: str) -> str:
        webhook_id = str(uuid.uuid4())
        with self._lock:
            self._webhooks[webhook_id] = 0
        return f"{base_url}{WEBHOOK_PREFIX}{webhook_id}"

    def retire(self, webhook_url: str) -> None:
        with self._lock:
            self._retired.add(webhook_url.rsplit(WEBHOOK_PREFIX, 1)[-1])

    def lead_ids(self) -> list[str]:
        with self._lock:
            return [row.lead_id for row in self.rows]

    def respond(self, request: RecordedRequest) -> Reply:
        reply = self._reply(request)
        with self._lock:
            self.inbound[reply.status] += 1
        return reply

    def _reply(self, request: RecordedRequest) -> Reply:
        webhook_id = request.path.removeprefix(WEBHOOK_PREFIX)
        with self._lock:
            known = request.path.startswith(WEBHOOK_PREFIX) and webhook_id in self._webhooks
            retired = webhook_id in self._retired
            full = known and self._webhooks[webhook_id] >= self.submission_limit
            if full:
                self._retired.add(webhook_id)
        if request.method != "POST" or not known or retired or full:
            return Reply(404, {"error": "webhook not found"})
        if self.token and request.headers.get(AUTH_HEADER) != self.token:
            return Reply(401, {"error": "unauthorized"})
        if len(request.body) > self.max_row_bytes:
            return Reply(413, {"error": "payload too large"})
        wait = self._bucket.take()
        if wait > 0:
            return Reply(429, {"error": "rate limited"}, {"retry-after": str(max(1, math.ceil(wait)))})
        try:
            row = json.loads(request.body)
        except ValueError:
            return Reply(400, {"error": "invalid JSON"})
        if not isinstance(row, dict):
            return Reply(400, {"error": "a row must be a JSON object"})
        with self._lock:
            self._webhooks[webhook_id] += 1
            self.rows.append(ReceivedRow(webhook_id, str(row.get("lead_id", "")), row))
        self._accept(row)
        return Reply(200, {"success": True})
