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
  (local.clay_enrichment.enrich: the same lead always gets the same columns); a share fails with a message.
Every request needs `clay-api-key` (401 "Unauthorized"); a workspace not provisioned for the API
answers 401 "Authentication required" to everything; all requests share one rate (429 with
Retry-After), and `throttle(n)` makes the next n requests 429.

Webhooks: `create_webhook(url)` registers one; when a run that named it finishes, its signed delivery
is sent as `webhook_plan` says (local.clay_run_webhooks). Everything is recorded for assertions.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from local.clay_enrichment import enrich
from local.clay_run_webhooks import Delivery, RunWebhooks, ScheduledRun
from local.http_stub import RecordedRequest, Reply, Served, StubServer
from local.rate_limit import TokenBucket

API_PREFIX = "/public/v0"
API_KEY_HEADER = "clay-api-key"
LOCAL_ROUTINE_ID = "function:t_local_enrich"
FAILURE_MESSAGE = "No enrichment data found for this person"


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


@dataclass
class ClayApiSimulator(Served):
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
        self.webhooks = RunWebhooks(self.webhook_plan)
        self.server = StubServer(self._respond)
        self._bucket = TokenBucket(self.rate_per_second, self.burst)
        self._lock = threading.Lock()
        self._runs: dict[str, SimulatedRun] = {}
        self._throttle_next = 0
        self.responses: Counter[tuple[str, int]] = Counter()  # (run | results, status) -> answers

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        url = self.server.start()
        self.webhooks.start()
        return url

    def stop(self) -> None:
        self.webhooks.stop()
        self.server.stop()

    @property
    def base_url(self) -> str:
        return self.server.url + API_PREFIX

    def create_webhook(self, url: str, signing_secret: str | None = None) -> tuple[str, str]:
        """`clay webhooks create <url>`: the webhook's id and its signing secret (shown once)."""
        return self.webhooks.create(url, signing_secret)

    def throttle(self, requests_count: int) -> None:
        """The next requests get 429 with Retry-After: 1."""
        with self._lock:
            self._throttle_next += requests_count

    def finish(self, run_id: str) -> None:
        """The run's results are ready from now on (a run that seemed stuck finally completes); no webhook."""
        with self._lock:
            self._runs[run_id].ready_at = time.monotonic()

    def send_test_event(self, webhook_id: str) -> Delivery:
        return self.webhooks.send_test_event(webhook_id)

    # -- facts -----------------------------------------------------------------------------
    @property
    def deliveries(self) -> list[Delivery]:
        return self.webhooks.deliveries

    @property
    def lost_runs(self) -> list[str]:
        """Runs whose webhook was never sent, by plan."""
        return self.webhooks.lost_runs

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
        return working or self.webhooks.busy()

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
        problem = run_request_problem(body, self.webhooks.ids())
        if problem:
            return Reply(400, {"message": problem})
        if routine_id != self.routine_id:
            return Reply(404, {"message": "Routine not found"})
        with self._lock:
            number = len(self._runs) + 1
            run_id = f"run_{uuid.uuid4().hex[:20]}"
            ready_at = math.inf if number in self.stuck_runs else time.monotonic() + self.run_seconds
            run = SimulatedRun(run_id, number, list(body["items"]), str(body.get("webhook_id", "")), ready_at)
            self._runs[run_id] = run
        if run.webhook_id and not run.stuck:
            self.webhooks.schedule(ScheduledRun(ready_at + self.webhook_delay_seconds, run_id, number, run.webhook_id))
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
        now = time.monotonic()
        if now < run.ready_at:
            return in_progress(run, now, self.run_seconds)
        return results_page(run, cursor, min(int(limit_text), self.page_limit), self._results)

    def _results(self, run: SimulatedRun) -> list[dict[str, Any]]:
        """The run's item results, made once when first asked for after it finished."""
        with self._lock:
            if not run.results:
                enriched_at = datetime.now(UTC).isoformat()
                run.results = [item_result(item, enriched_at, self.failed_share) for item in run.items]
            return run.results


def in_progress(run: SimulatedRun, now: float, run_seconds: float) -> Reply:
    """The 202 for a run still working: how many items are done so far (none, for a stuck run)."""
    total = len(run.items)
    finished = 0 if run.stuck else min(total - 1, int(total * (1 - (run.ready_at - now) / run_seconds)))
    return Reply(202, {"routine_run_id": run.run_id, "status": "in_progress", "total": total, "finished": finished})


def results_page(
    run: SimulatedRun, cursor: str, size: int, results: Callable[[SimulatedRun], list[dict[str, Any]]]
) -> Reply:
    """One page of a finished run's results from `cursor` (an item offset), with the next cursor unless last."""
    total = len(run.items)
    if not cursor.isdigit() or int(cursor) > total:
        return Reply(400, {"message": "Invalid cursor"})
    start = int(cursor)
    end = start + size
    body: dict[str, Any] = {
        "routine_run_id": run.run_id,
        "status": "complete",
        "total": total,
        "finished": total,
        "data": results(run)[start:end],
    }
    if end < total:
        body["cursor"] = str(end)
    return Reply(200, body)


def item_result(item: dict[str, Any], enriched_at: str, failed_share: float) -> dict[str, Any]:
    """One item's result: enriched as the table simulator enriches a row, or failed (a share, by item id)."""
    item_id = str(item["id"])
    if hashlib.sha256(item_id.encode()).digest()[10] / 256 < failed_share:
        return {"id": item_id, "status": "failed", "error": {"message": FAILURE_MESSAGE}}
    return {"id": item_id, "status": "complete", "result": enrich(dict(item["inputs"]), enriched_at)}


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
