"""Clay's Public API for routines, simulated on loopback, with its signed run-finished webhooks.

As https://api.clay.com/public/v0 answers (Clay's OpenAPI for routines):
- `POST /public/v0/routines/{routine_id}/run` `{"items": [{"id", "inputs"}], "webhook_id"?}`: 1-100
  items, ids of 1-64 characters and unique in the run, inputs objects, no other fields (400
  `{"message"}` otherwise); an unknown routine is 404; 202 `{"routine_run_id", "status": "in_progress"}`.
- `GET /public/v0/routines/run/{routine_run_id}/results?cursor=&limit=`: 404 for an unknown run, 400
  for a limit outside 1-100 (default 20) or a bad cursor; 202 `{"status": "in_progress", "total",
  "finished"}` until the run has taken `run_seconds` (a run in `stuck_runs` never finishes); then
  200 `{"status": "complete", "data": [...], "cursor"?}`, at most `page_limit` items a page, the
  cursor absent on the last page. Each item is enriched as the table simulator enriches a row
  (local.clay_sim.enrich: the same lead always gets the same columns); a share fails with a message.
Every request needs `clay-api-key` (401 "Unauthorized"); a workspace not provisioned for the API
answers 401 "Authentication required" to everything; all requests share one rate (429 with
Retry-After), and `throttle(n)` makes the next n requests 429.

Webhooks: `create_webhook(url)` is `clay webhooks create <url>`: an id and a `whsec_` signing secret.
When a run that named the webhook finishes, Clay POSTs `{"webhookId", "createdAt", "data":
{"routine_run_id"}}` signed `X-Clay-Signature: sha256=<HMAC-SHA256 of the raw body>`. What happens to
each run's delivery follows `webhook_plan`, cycled by run number:
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
import math
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import requests

from local.clay_sim import TokenBucket, enrich
from local.http_stub import RecordedRequest, Reply, StubServer

API_PREFIX = "/public/v0"
API_KEY_HEADER = "clay-api-key"
SIGNATURE_HEADER = "X-Clay-Signature"
LOCAL_ROUTINE_ID = "function:t_local_enrich"
FAILURE_MESSAGE = "No enrichment data found for this person"
WEBHOOK_PLANS = frozenset({"normal", "lost", "twice", "forged"})
DELIVERY_ATTEMPTS = 3


@dataclass
class SimulatedRun:
    run_id: str
    number: int  # 1 for the first run started
    items: list[dict[str, Any]]
    webhook_id: str
    ready_at: float  # time.monotonic(); inf for a run that never finishes
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stuck(self) -> bool:
        return math.isinf(self.ready_at)


@dataclass(frozen=True)
class Delivery:
    run_id: str  # '' for a test delivery
    kind: str  # signed, replay, unsigned, wrong_secret, reserialised, test
    status: int | None  # None: the connection failed
    answer: dict[str, Any] | None

    @property
    def forged(self) -> bool:
        return self.kind in ("unsigned", "wrong_secret", "reserialised")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class ClayApiSimulator:
    api_key: str
    routine_id: str = LOCAL_ROUTINE_ID
    provisioned: bool = True
    run_seconds: float = 0.5
    rate_per_second: float = 50.0
    burst: float = 50.0
    page_limit: int = 100
    failed_share: float = 0.0
    webhook_plan: tuple[str, ...] = ("normal",)
    stuck_runs: frozenset[int] = frozenset()  # run numbers that never finish
    webhook_delay_seconds: float = 0.05

    def __post_init__(self) -> None:
        if not set(self.webhook_plan) <= WEBHOOK_PLANS or not self.webhook_plan:
            raise ValueError(f"webhook_plan takes {sorted(WEBHOOK_PLANS)}")
        self.server = StubServer(self._respond)
        self._bucket = TokenBucket(self.rate_per_second, self.burst)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._runs: dict[str, SimulatedRun] = {}
        self._webhooks: dict[str, tuple[str, str]] = {}  # id -> (url, signing secret)
        self._due: list[tuple[float, str]] = []  # (time.monotonic(), run id) of webhook deliveries
        self._delivering = 0
        self._throttle_next = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.responses: Counter[tuple[str, int]] = Counter()  # (run | results, status) -> answers
        self.deliveries: list[Delivery] = []
        self.lost_runs: list[str] = []  # runs whose webhook was never sent, by plan

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        url = self.server.start()
        self._thread = threading.Thread(target=self._deliver_loop, name="clay-api-webhooks", daemon=True)
        self._thread.start()
        return url

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.server.stop()

    @property
    def base_url(self) -> str:
        return self.server.url + API_PREFIX

    def create_webhook(self, url: str, signing_secret: str | None = None) -> tuple[str, str]:
        """`clay webhooks create <url>`: the webhook's id and its signing secret (shown once)."""
        webhook_id = f"wh_{uuid.uuid4().hex[:12]}"
        secret = signing_secret or f"whsec_{secrets.token_hex(16)}"
        with self._lock:
            self._webhooks[webhook_id] = (url, secret)
        return webhook_id, secret

    def throttle(self, requests_count: int) -> None:
        """The next requests get 429 with Retry-After: 1."""
        with self._lock:
            self._throttle_next += requests_count

    def finish(self, run_id: str) -> None:
        """The run's results are ready from now on (a run that seemed stuck finally completes); no webhook."""
        with self._lock:
            self._runs[run_id].ready_at = time.monotonic()

    def send_test_event(self, webhook_id: str) -> Delivery:
        url, secret = self._webhooks[webhook_id]
        body = self._webhook_body(webhook_id, {})
        delivery = self._post(requests.Session(), url, body, sign(secret, body), "", "test")
        return delivery

    # -- facts -----------------------------------------------------------------------------
    def runs(self) -> list[SimulatedRun]:
        with self._lock:
            return list(self._runs.values())

    def item_ids(self) -> list[str]:
        """Every item id of every run started (a lead in two runs appears twice)."""
        return [str(item["id"]) for run in self.runs() for item in run.items]

    def finished_items(self) -> dict[str, str]:
        """item id -> 'complete' or 'failed', for runs that have finished."""
        now = time.monotonic()
        return {
            str(result["id"]): str(result["status"])
            for run in self.runs()
            if run.ready_at <= now
            for result in self._results(run)
        }

    def stuck_item_ids(self) -> list[str]:
        return [str(item["id"]) for run in self.runs() if run.stuck for item in run.items]

    def busy(self) -> bool:
        """Runs still working (stuck ones excepted) or webhook deliveries to make."""
        now = time.monotonic()
        with self._lock:
            working = any(now < run.ready_at < math.inf for run in self._runs.values())
            return working or bool(self._due) or self._delivering > 0

    # -- API -------------------------------------------------------------------------------
    def _respond(self, request: RecordedRequest) -> Reply:
        path = request.path.removeprefix(API_PREFIX)
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if request.method == "POST" and len(parts) == 3 and parts[0] == "routines" and parts[2] == "run":
            endpoint, handler = "run", lambda: self._start_run(parts[1], request)
        elif request.method == "GET" and len(parts) == 4 and parts[:2] == ["routines", "run"] and parts[3] == "results":
            endpoint, handler = "results", lambda: self._results_page(parts[2], request)
        else:
            return Reply(404, {"message": "Not found"})
        reply = self._refusal(request) or handler()
        with self._lock:
            self.responses[(endpoint, reply.status)] += 1
        return reply

    def _refusal(self, request: RecordedRequest) -> Reply | None:
        if not self.provisioned:
            return Reply(401, {"message": "Authentication required"})
        if not hmac.compare_digest(request.headers.get(API_KEY_HEADER, "").encode(), self.api_key.encode()):
            return Reply(401, {"message": "Unauthorized"})
        with self._lock:
            forced = self._throttle_next > 0
            self._throttle_next -= int(forced)
        wait = 1.0 if forced else self._bucket.take()
        if wait > 0:
            return Reply(429, {"message": "Too many requests"}, {"retry-after": str(max(1, math.ceil(wait)))})
        return None

    def _start_run(self, routine_id: str, request: RecordedRequest) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"message": "Body must be JSON"})
        problem = run_request_problem(body, set(self._webhooks))
        if problem:
            return Reply(400, {"message": problem})
        if routine_id != self.routine_id:
            return Reply(404, {"message": "Routine not found"})
        with self._wake:
            number = len(self._runs) + 1
            run_id = f"run_{uuid.uuid4().hex[:20]}"
            ready_at = math.inf if number in self.stuck_runs else time.monotonic() + self.run_seconds
            run = SimulatedRun(run_id, number, list(body["items"]), str(body.get("webhook_id", "")), ready_at)
            self._runs[run_id] = run
            if run.webhook_id and not run.stuck:
                heapq.heappush(self._due, (ready_at + self.webhook_delay_seconds, run_id))
                self._wake.notify_all()
        return Reply(202, {"routine_run_id": run_id, "status": "in_progress"})

    def _results_page(self, run_id: str, request: RecordedRequest) -> Reply:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            return Reply(404, {"message": "Run not found"})
        query = {name: values[-1] for name, values in parse_qs(request.query).items()}
        limit_text, cursor = query.get("limit", "20"), query.get("cursor", "0")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            return Reply(400, {"message": "limit must be an integer from 1 to 100"})
        total = len(run.items)
        now = time.monotonic()
        if now < run.ready_at:
            finished = 0 if run.stuck else min(total - 1, int(total * (1 - (run.ready_at - now) / self.run_seconds)))
            return Reply(202, {"routine_run_id": run_id, "status": "in_progress", "total": total, "finished": finished})
        if not cursor.isdigit() or int(cursor) > total:
            return Reply(400, {"message": "Invalid cursor"})
        start = int(cursor)
        end = start + min(int(limit_text), self.page_limit)
        body: dict[str, Any] = {
            "routine_run_id": run_id,
            "status": "complete",
            "total": total,
            "finished": total,
            "data": self._results(run)[start:end],
        }
        if end < total:
            body["cursor"] = str(end)
        return Reply(200, body)

    def _results(self, run: SimulatedRun) -> list[dict[str, Any]]:
        """The run's item results, made once when first asked for after it finished."""
        with self._lock:
            if not run.results:
                enriched_at = datetime.now(UTC).isoformat()
                run.results = [self._item_result(item, enriched_at) for item in run.items]
            return run.results

    def _item_result(self, item: dict[str, Any], enriched_at: str) -> dict[str, Any]:
        item_id = str(item["id"])
        if hashlib.sha256(item_id.encode()).digest()[10] / 256 < self.failed_share:
            return {"id": item_id, "status": "failed", "error": {"message": FAILURE_MESSAGE}}
        return {"id": item_id, "status": "complete", "result": enrich(dict(item["inputs"]), enriched_at)}

    # -- webhooks --------------------------------------------------------------------------
    def _webhook_body(self, webhook_id: str, data: dict[str, Any]) -> bytes:
        document = {"webhookId": webhook_id, "createdAt": datetime.now(UTC).isoformat(), "data": data}
        return json.dumps(document, separators=(",", ":")).encode()

    def _deliver_loop(self) -> None:
        session = requests.Session()
        while True:
            with self._wake:
                while not self._stopping and (not self._due or self._due[0][0] > time.monotonic()):
                    self._wake.wait(timeout=(self._due[0][0] - time.monotonic()) if self._due else None)
                if self._stopping:
                    return
                _, run_id = heapq.heappop(self._due)
                run = self._runs[run_id]
                self._delivering += 1
            try:
                self._deliver(session, run)
            finally:
                with self._lock:
                    self._delivering -= 1

    def _deliver(self, session: requests.Session, run: SimulatedRun) -> None:
        plan = self.webhook_plan[(run.number - 1) % len(self.webhook_plan)]
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


def run_request_problem(body: Any, webhooks: set[str]) -> str:
    """What makes a run request invalid ('' when it is valid), in the words of a 400 message."""
    if not isinstance(body, dict):
        return "Body must be an object"
    if unknown := set(body) - {"items", "webhook_id"}:
        return f"Unknown field {sorted(unknown)[0]}"
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= 100:
        return "items must have 1 to 100 entries"
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"id", "inputs"}:
            return f"items[{index}] must have exactly id and inputs"
        item_id = item["id"]
        if not isinstance(item_id, str) or not 1 <= len(item_id) <= 64:
            return f"items[{index}].id must be a string of 1 to 64 characters"
        if item_id in seen:
            return f"items[{index}].id is repeated"
        seen.add(item_id)
        if not isinstance(item["inputs"], dict):
            return f"items[{index}].inputs must be an object"
    webhook_id = body.get("webhook_id")
    if webhook_id is not None and (not isinstance(webhook_id, str) or webhook_id not in webhooks):
        return "webhook_id is not a registered webhook"
    return ""
