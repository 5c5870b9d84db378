"""Destination sinks on loopback: outreach, nurture, Slack, Zapier webhooks and HubSpot's batch upsert.

One StubServer with a path per destination. Webhooks record the JSON they accept; HubSpot
answers its batch shape {"status": "COMPLETE", "results": [...]} and records each input.
A destination can be taken down (503 with Retry-After) for a while to test that nothing is
lost, or made slow: it processes each request at once and answers late, the way a real
webhook's answer gets lost (the router's timeout passes after the delivery was made). Only
accepted deliveries are recorded as delivered; every request stays in `requests`.
`GET /` lists what each destination accepted (handy with --serve).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from clay_pipeline.destinations import HUBSPOT_UPSERT_PATH, IDEMPOTENCY_HEADER
from local.http_stub import RecordedRequest, Reply, StubServer

WEBHOOK_PATHS = {"outreach": "/outreach", "nurture": "/nurture", "slack": "/slack", "zapier": "/zapier"}
DESTINATIONS = ("outreach", "hubspot", "nurture", "slack", "zapier")


@dataclass(frozen=True)
class Delivery:
    destination: str
    key: str  # the Idempotency-Key for webhooks, the contact's email for HubSpot
    payload: Any


class Sinks:
    def __init__(self, hubspot_token: str = "") -> None:  # nosec B107 - empty: no token check
        self.hubspot_token = hubspot_token  # when set, HubSpot answers 401 to any other bearer token
        self.server = StubServer(self._respond)
        self._lock = threading.Lock()
        self._down_until: dict[str, float] = {}
        self._answer_after: dict[str, float] = {}  # destination -> seconds between processing and answering
        self.deliveries: list[Delivery] = []
        self.refused: dict[str, int] = dict.fromkeys(DESTINATIONS, 0)

    def start(self) -> str:
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def secrets(self) -> dict[str, str]:
        """The router's destination settings pointing here (HUBSPOT_BASE_URL is an environment variable)."""
        return {f"{name.upper()}_WEBHOOK_URL": self.url + path for name, path in WEBHOOK_PATHS.items()}

    def down(self, destination: str, seconds: float = 3600.0) -> None:
        """Answer 503 to this destination's requests for `seconds` (up() ends it early)."""
        with self._lock:
            self._down_until[destination] = time.monotonic() + seconds

    def up(self, destination: str) -> None:
        with self._lock:
            self._down_until.pop(destination, None)

    def slow(self, destination: str, seconds: float | None) -> None:
        """Process this webhook destination's requests at once, then answer `seconds` later (None: at once)."""
        with self._lock:
            if seconds is None:
                self._answer_after.pop(destination, None)
            else:
                self._answer_after[destination] = seconds

    def delivered(self, destination: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if destination is None or d.destination == destination]

    def counts(self) -> dict[str, int]:
        return {name: len(self.delivered(name)) for name in DESTINATIONS}

    # -- answering -------------------------------------------------------------------------
    def _respond(self, request: RecordedRequest) -> Reply:
        if request.method == "GET":
            return Reply(200, {name: [d.payload for d in self.delivered(name)] for name in DESTINATIONS})
        destination = self._destination(request.path)
        if destination is None:
            return Reply(404, {"message": "no such sink"})
        with self._lock:
            if self._down_until.get(destination, 0.0) > time.monotonic():
                self.refused[destination] += 1
                return Reply(503, {"message": f"{destination} is down"}, {"retry-after": "1"})
        try:
            payload = request.json()
        except ValueError:
            return Reply(400, {"message": "body is not JSON"})
        if destination == "hubspot":
            if self.hubspot_token and request.headers.get("authorization") != f"Bearer {self.hubspot_token}":
                return Reply(401, {"status": "error", "category": "INVALID_AUTHENTICATION", "message": "bad token"})
            return self._upsert(payload)
        key = request.headers.get(IDEMPOTENCY_HEADER.lower(), "")
        with self._lock:
            self.deliveries.append(Delivery(destination, key, payload))
            delay = self._answer_after.get(destination, 0.0)
        return Reply(200, b"ok" if destination == "slack" else {"ok": True}, delay=delay)

    def _upsert(self, payload: Any) -> Reply:
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return Reply(400, {"status": "error", "category": "VALIDATION_ERROR", "message": "inputs required"})
        results = []
        with self._lock:
            for item in inputs:
                self.deliveries.append(Delivery("hubspot", str(item.get("id", "")).lower(), item))
                results.append({"id": uuid.uuid4().hex[:12], "properties": item.get("properties", {}), "new": True})
        return Reply(200, {"status": "COMPLETE", "results": results})

    @staticmethod
    def _destination(path: str) -> str | None:
        if path == HUBSPOT_UPSERT_PATH:
            return "hubspot"
        return next((name for name, sink_path in WEBHOOK_PATHS.items() if sink_path == path), None)
