"""Clay's webhooks for finished routine runs, simulated: registered, signed, and sent (or not) by plan.

`create_webhook(url)` is `clay webhooks create <url>`: an id and a `whsec_` signing secret.
When a run that named the webhook finishes, Clay POSTs `{"webhookId", "createdAt", "data":
{"routine_run_id"}}` signed `X-Clay-Signature: sha256=<HMAC-SHA256 of the raw body>`. What happens to
each run's delivery follows `plan`, cycled by run number:
- "normal": one signed delivery;
- "lost": none (Clay does not guarantee delivery);
- "twice": the same signed bytes delivered twice (a retry, or a replay);
- "forged": first an unsigned copy, one signed with a wrong secret and the signed bytes re-serialised
  (all three must be refused with 401), then the real delivery.
`send_test_event` sends a signed test delivery (`"data": {}`). Everything is recorded for assertions.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

SIGNATURE_HEADER = "X-Clay-Signature"
WEBHOOK_PLANS = frozenset({"normal", "lost", "twice", "forged"})
DELIVERY_ATTEMPTS = 3


@dataclass(frozen=True)
class Delivery:
    run_id: str  # '' for a test delivery
    kind: str  # signed, replay, unsigned, wrong_secret, reserialised, test
    status: int | None  # None: the connection failed
    answer: dict[str, Any] | None

    @property
    def forged(self) -> bool:
        return self.kind in ("unsigned", "wrong_secret", "reserialised")


@dataclass(frozen=True, order=True)
class ScheduledRun:
    """A finished run whose webhook is due at `due` (time.monotonic())."""

    due: float
    run_id: str
    number: int  # 1 for the first run started: picks the run's place in the plan
    webhook_id: str


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class RunWebhooks:
    """The workspace's webhooks and the thread that delivers each finished run's, as `plan` says."""

    def __init__(self, plan: tuple[str, ...]) -> None:
        if not set(plan) <= WEBHOOK_PLANS or not plan:
            raise ValueError(f"webhook_plan takes {sorted(WEBHOOK_PLANS)}")
        self.plan = plan
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._webhooks: dict[str, tuple[str, str]] = {}  # id -> (url, signing secret)
        self._due: list[ScheduledRun] = []
        self._delivering = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.deliveries: list[Delivery] = []
        self.lost_runs: list[str] = []  # runs whose webhook was never sent, by plan

    def start(self) -> None:
        self._thread = threading.Thread(target=self._deliver_loop, name="clay-api-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def create(self, url: str, signing_secret: str | None = None) -> tuple[str, str]:
        """`clay webhooks create <url>`: the webhook's id and its signing secret (shown once)."""
        webhook_id = f"wh_{uuid.uuid4().hex[:12]}"
        secret = signing_secret or f"whsec_{secrets.token_hex(16)}"
        with self._lock:
            self._webhooks[webhook_id] = (url, secret)
        return webhook_id, secret

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._webhooks)

    def schedule(self, run: ScheduledRun) -> None:
        with self._wake:
            heapq.heappush(self._due, run)
            self._wake.notify_all()

    def busy(self) -> bool:
        with self._lock:
            return bool(self._due) or self._delivering > 0

    def send_test_event(self, webhook_id: str) -> Delivery:
        url, secret = self._webhooks[webhook_id]
        body = self._webhook_body(webhook_id, {})
        return self._post(requests.Session(), url, body, sign(secret, body), "", "test")

    def _webhook_body(self, webhook_id: str, data: dict[str, Any]) -> bytes:
        document = {"webhookId": webhook_id, "createdAt": datetime.now(UTC).isoformat(), "data": data}
        return json.dumps(document, separators=(",", ":")).encode()

    def _deliver_loop(self) -> None:
        session = requests.Session()
        while True:
            with self._wake:
                while not self._stopping and (not self._due or self._due[0].due > time.monotonic()):
                    self._wake.wait(timeout=(self._due[0].due - time.monotonic()) if self._due else None)
                if self._stopping:
                    return
                run = heapq.heappop(self._due)
                self._delivering += 1
            try:
                self._deliver(session, run)
            finally:
                with self._lock:
                    self._delivering -= 1

    def _deliver(self, session: requests.Session, run: ScheduledRun) -> None:
        plan = self.plan[(run.number - 1) % len(self.plan)]
        url, secret = self._webhooks[run.webhook_id]
        body = self._webhook_body(run.webhook_id, {"routine_run_id": run.run_id})
        signature = sign(secret, body)
        if plan == "lost":
            with self._lock:
                self.lost_runs.append(run.run_id)
            return
        if plan == "forged":
            reserialised = json.dumps(json.loads(body), indent=1).encode()
            self._post(session, url, body, "", run.run_id, "unsigned")
            self._post(session, url, body, sign("whsec_not-the-secret", body), run.run_id, "wrong_secret")
            self._post(session, url, reserialised, signature, run.run_id, "reserialised")
        self._post(session, url, body, signature, run.run_id, "signed")
        if plan == "twice":
            self._post(session, url, body, signature, run.run_id, "replay")

    def _post(
        self, session: requests.Session, url: str, body: bytes, signature: str, run_id: str, kind: str
    ) -> Delivery:
        headers = {"content-type": "application/json", **({SIGNATURE_HEADER: signature} if signature else {})}
        status: int | None = None
        answer: dict[str, Any] | None = None
        for attempt in range(DELIVERY_ATTEMPTS):
            try:
                response = session.post(url, data=body, headers=headers, timeout=10)
            except requests.RequestException:
                status, answer = None, None
            else:
                status = response.status_code
                try:
                    parsed = response.json()
                except ValueError:
                    parsed = None
                answer = parsed if isinstance(parsed, dict) else None
                if status < 500:
                    break
            if attempt + 1 < DELIVERY_ATTEMPTS:
                time.sleep(0.1 * 2**attempt)
        delivery = Delivery(run_id, kind, status, answer)
        with self._lock:
            self.deliveries.append(delivery)
        return delivery
