"""Destination sinks on loopback: outreach, nurture, Slack, Zapier webhooks, a stateful HubSpot and Salesforce.

One StubServer with a path per destination. Webhooks record the JSON they accept. HubSpot
(local.hubspot_sim.HubSpotSim) answers its paths with contacts and properties kept in memory.
Salesforce (local/salesforce_sim.SalesforceSim) answers its token and data paths on the same server.
A destination can be taken down (503 with Retry-After) for a while to test that nothing is
lost, or made slow: it processes each request at once and answers late, the way a real
webhook's answer gets lost (the router's timeout passes after the delivery was made). Only
accepted deliveries are recorded as delivered; every request stays in `requests`.
`GET /` lists what each destination accepted (handy with --serve).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from clay_pipeline.adapters.webhooks import IDEMPOTENCY_HEADER
from local.http_stub import RecordedRequest, Reply, Served, StubServer
from local.hubspot_sim import HUBSPOT_PATHS, HubSpotSim
from local.salesforce_sim import SalesforceSim, Written

WEBHOOK_PATHS = {"outreach": "/outreach", "nurture": "/nurture", "slack": "/slack", "zapier": "/zapier"}
DESTINATIONS = ("outreach", "hubspot", "nurture", "slack", "zapier")  # Salesforce too when the sinks have it


@dataclass(frozen=True)
class Delivery:
    destination: str
    key: str  # the Idempotency-Key for webhooks, the contact's email for HubSpot
    payload: Any


class Sinks(Served):
    def __init__(self, hubspot_token: str = "", salesforce: bool = False) -> None:  # nosec B107 - empty: no check
        self.hubspot = HubSpotSim(token=hubspot_token)  # with a token, HubSpot answers 401 to any other
        self.salesforce = SalesforceSim()  # when on, its token endpoint and data API answer on this server's paths
        self.destinations = (*DESTINATIONS, "salesforce") if salesforce else DESTINATIONS
        self.server = StubServer(self._respond)
        self._lock = threading.Lock()
        self._down_until: dict[str, float] = {}
        self._answer_after: dict[str, float] = {}  # destination -> seconds between processing and answering
        self.deliveries: list[Delivery] = []
        self.refused: dict[str, int] = dict.fromkeys(self.destinations, 0)

    def start(self) -> str:
        self.salesforce.instance_url = self.server.start()
        return self.server.url

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
        return {name: len(self.delivered(name)) for name in self.destinations}

    # -- answering -------------------------------------------------------------------------
    def _respond(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == "/":
            return Reply(200, {name: [d.payload for d in self.delivered(name)] for name in self.destinations})
        destination = self._destination(request.path)
        if destination is None or destination not in self.destinations:
            return Reply(404, {"message": "no such sink"})
        with self._lock:
            if self._down_until.get(destination, 0.0) > time.monotonic():
                self.refused[destination] += 1
                return Reply(503, {"message": f"{destination} is down"}, {"retry-after": "1"})
        if destination == "hubspot":
            return self.hubspot.answer(request, self._record_hubspot)
        if destination == "salesforce":
            return self.salesforce.answer(request, self._record_salesforce)
        try:
            payload = request.json()
        except ValueError:
            return Reply(400, {"message": "body is not JSON"})
        self._record(Delivery(destination, request.headers.get(IDEMPOTENCY_HEADER.lower(), ""), payload))
        with self._lock:
            delay = self._answer_after.get(destination, 0.0)
        return Reply(200, b"ok" if destination == "slack" else {"ok": True}, delay=delay)

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def _record_hubspot(self, email: str, item: dict[str, Any]) -> None:
        """A contact HubSpot wrote, as the upsert sent it (the key: its email)."""
        self._record(Delivery("hubspot", email, item))

    def _record_salesforce(self, written: Written) -> None:
        """A record Salesforce wrote, as the upsert sent it (the key: its lead_id, the external id)."""
        self._record(Delivery("salesforce", written.lead_id, written.fields))

    @staticmethod
    def _destination(path: str) -> str | None:
        if path in HUBSPOT_PATHS:
            return "hubspot"
        if SalesforceSim.handles(path):
            return "salesforce"  # answered only when the sinks have Salesforce on (_respond: 404 otherwise)
        return next((name for name, sink_path in WEBHOOK_PATHS.items() if sink_path == path), None)
