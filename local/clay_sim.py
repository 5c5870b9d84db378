"""A Clay simulator on loopback: table webhooks in, enrichment, HTTP API column callbacks out.

Inbound, like Clay's "pull in data from a webhook" source:
`POST /v3/sources/webhook/pull-in-data-from-a-webhook-<uuid>` takes one JSON row. It checks
x-clay-webhook-auth (401), the 100 KB limit (413), the webhook's lifetime submission limit
(404, as for a retired webhook) and the workspace rate, 10 rows/s with a burst of 20 (429
with Retry-After), then answers 200. Clay has no idempotency: a repeated POST is a new row.

Outbound, like an HTTP API column: each row is enriched deterministically (the same lead
always gets the same company, industry, title, size, phone and ICP score; scores cover every
routing band and some rows get none) and POSTed to the callback URL with every value as text
("85", "1,200") and empty columns left out. Auth is a static header, or the JWT flow (POST
the token URL with username and password, then `Authorization: Bearer`). The column has its
own rate limit and, on request, sends a share of rows twice or loses a share of first answers
(a connection reset after we answered: retried, so it repeats what we already accepted).

Its "Retry on failure" follows Clay University's HTTP API page (clay-run/public-docs,
docs/http-api-integration-overview.md, Step 9), defaults included (RetryPolicy): on by default;
status codes 408, 413 and 429 and the network errors ECONNREFUSED, ECONNRESET and ETIMEDOUT;
max retries 1 (1-5); retries fire immediately, with no delay; the status list can be replaced
("429, 500-503"). Every other answer, 5xx and 409 included, is recorded in the cell and the
row is given up. Each call waits at most the column's response timeout (1,000-100,000 ms; the
page gives no default, so the simulator's is the maximum): past it the call is ETIMEDOUT.

Clay also sends a row again later, and the simulator models that on request (each share picks
rows by their lead id, so a run is repeatable): a re-run column (changed job title and a new
enrichment timestamp), a retry of the same body, a re-scored row (one band higher or lower),
each `resend_delay_seconds` after the first callback; and one HTTP API column per enrichment
(partial bodies, one per enrichment, before the complete one).
And a share of rows hold what real enrichment columns hold (`messy_share`, MESSY_COLUMNS): size
buckets and suffixes ("51-200", "1.2K", "$1.2M"), "N/A" and "-", which the callback reads, and an
out-of-range score ("101", "1,000") or a date it cannot read, which it keeps as sent, treats as
missing and names in its answer's `warnings`.
Everything received and sent is recorded for assertions and the summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from local.http_stub import RecordedRequest, Reply, StubServer

WEBHOOK_PREFIX = "/v3/sources/webhook/pull-in-data-from-a-webhook-"
AUTH_HEADER = "x-clay-webhook-auth"
MAX_ROW_BYTES = 100_000
TOKEN_REFRESH_SECONDS = 55 * 60  # Clay refreshes the column's JWT about every 55 minutes

INDUSTRIES = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Information Technology",
    "Marketing",
    "Education",
)
TITLES = (
    "VP Sales",
    "Chief Revenue Officer",
    "Head of Growth",
    "Director of Marketing",
    "Software Engineer",
    "Office Manager",
    "CEO",
    "Account Executive",
)
EMPLOYEE_COUNTS = (8, 45, 240, 1200, 5400, 18000)
# ICP score bands matching the routing rules (>=90, 80-89, 70-79, 50-69, <50) and no score at all.
SCORE_BANDS: tuple[tuple[int, int] | None, ...] = ((90, 99), (80, 89), (70, 79), (50, 69), (10, 49), None)
IDENTITY_COLUMNS = ("lead_id", "email", "first_name", "last_name", "linkedin_url", "domain")
# One HTTP API column per enrichment: the columns each one sends beside the identity (the last sends everything).
ENRICHMENT_COLUMNS = (("company_name", "industry", "employee_count"), ("job_title", "phone", "email_verified"))
RERUN_TITLES = {title: f"Senior {title}" for title in TITLES}
# Columns as users' Clay tables really fill them (one set per messy row, picked by its lead id): the first
# three are read (a bucket as its lower bound, a suffix scaled, "N/A" and "-" as empty); the last three carry
# a value the callback keeps as sent and names in `warnings` (a score outside 0-100, a date it cannot read).
MESSY_COLUMNS: tuple[dict[str, str], ...] = (
    {"employee_count": " 51-200 ", "annual_revenue": "$1.2M"},
    {"employee_count": "1.2K", "annual_revenue": "3.5 billion"},
    {"employee_count": "N/A", "phone": "-"},
    {"icp_score": "101"},
    {"_clay_enriched_at": "last Tuesday"},
    {"employee_count": "10,000+", "icp_score": "1,000"},
)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. take() is 0 when a token was taken, else the wait."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def wait(self) -> None:
        while (delay := self.take()) > 0:
            time.sleep(delay)


def _digest(lead_key: str) -> bytes:
    return hashlib.sha256(lead_key.encode()).digest()


def score_band(lead_key: str) -> tuple[int, int] | None:
    return SCORE_BANDS[_digest(lead_key)[0] % len(SCORE_BANDS)]


def enrich(row: dict[str, Any], enriched_at: str) -> dict[str, str]:
    """What the table's HTTP API column sends for this row: text values, empty columns left out."""
    key = str(row.get("lead_id") or row.get("email") or row.get("domain") or json.dumps(row, sort_keys=True))
    digest = _digest(key)
    band = score_band(key)
    domain = str(row.get("domain") or "")
    company = row.get("company_name") or domain.partition(".")[0].replace("-", " ").title()
    columns: dict[str, Any] = {
        "lead_id": row.get("lead_id"),
        "email": row.get("email"),
        "first_name": row.get("first_name"),
        "last_name": row.get("last_name"),
        "linkedin_url": row.get("linkedin_url"),
        "domain": domain,
        "company_name": company,
        "industry": INDUSTRIES[digest[1] % len(INDUSTRIES)],
        "job_title": TITLES[digest[2] % len(TITLES)],
        "employee_count": f"{EMPLOYEE_COUNTS[digest[3] % len(EMPLOYEE_COUNTS)]:,}",
        "phone": f"+1 415 555 {int.from_bytes(digest[4:6]) % 10000:04d}" if digest[6] % 3 else "",
        "icp_score": str(band[0] + digest[7] % (band[1] - band[0] + 1)) if band else "",
        "email_verified": "TRUE" if row.get("email") else "",
        "_clay_enriched_at": enriched_at,
    }
    return {name: str(value) for name, value in columns.items() if value not in (None, "")}


# Clay University, HTTP API, Step 9 "Retry on failure" (clay-run/public-docs, docs/http-api-integration-overview.md).
CLAY_RETRY_STATUS_CODES = "408, 413, 429"
CLAY_RETRY_ERROR_CODES = ("ECONNREFUSED", "ECONNRESET", "ETIMEDOUT")
CLAY_MAX_RETRIES = 1  # configurable 1-5
# The same page bounds the response timeout to 1,000-100,000 ms and states no default: the maximum is assumed.
CLAY_RESPONSE_TIMEOUT_MS = 100_000


def parse_status_codes(text: str) -> frozenset[int]:
    """Clay's "Status codes to retry": comma-separated 4XX/5XX codes, `-` for ranges ("429, 500-503")."""
    codes: set[int] = set()
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if not 400 <= low <= high <= 599:
            raise ValueError(f"not a 4XX/5XX status code or range: {part!r}")
        codes.update(range(low, high + 1))
    return frozenset(codes)


@dataclass(frozen=True)
class RetryPolicy:
    """The HTTP API column's "Retry on failure" settings, Clay's defaults as defaults."""

    enabled: bool = True
    max_retries: int = CLAY_MAX_RETRIES
    status_codes: str = CLAY_RETRY_STATUS_CODES
    error_codes: tuple[str, ...] = CLAY_RETRY_ERROR_CODES
    response_timeout_ms: int = CLAY_RESPONSE_TIMEOUT_MS

    def __post_init__(self) -> None:
        if not 1 <= self.max_retries <= 5:
            raise ValueError("Clay allows 1-5 max retries")
        if not 1_000 <= self.response_timeout_ms <= 100_000:
            raise ValueError("Clay allows a response timeout of 1,000-100,000 ms")
        parse_status_codes(self.status_codes)

    @property
    def attempts(self) -> int:
        return 1 + (self.max_retries if self.enabled else 0)

    def retries(self, status: int | None, error: str | None) -> bool:
        """Whether Clay retries a call that ended with this status (or this network error, status None)."""
        if not self.enabled:
            return False
        if status is None:
            return error in self.error_codes
        return status in parse_status_codes(self.status_codes)


# What README's "Wire Clay to it" asks users to set on the column (`clay-pipeline clay-setup` prints it,
# the reasons are there): 5xx and 409 retried too, five times, waiting as long as API Gateway does.
RECOMMENDED_RETRY = RetryPolicy(max_retries=5, status_codes="408, 409, 429, 500-504", response_timeout_ms=30_000)


def network_error_code(error: requests.RequestException) -> str:
    """The Node.js error code Clay would see for a failed call (what "Error codes to retry" matches)."""
    text = repr(error)
    if isinstance(error, requests.Timeout):
        return "ETIMEDOUT"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "ECONNREFUSED"
    if "Failed to resolve" in text or "NameResolutionError" in text:
        return "ENOTFOUND"
    return "ECONNRESET" if isinstance(error, requests.ConnectionError) else "EPROTO"


@dataclass
class CallbackAuth:
    """How the HTTP API column authenticates: a static header, or the JWT flow."""

    mode: str = "token"  # token | jwt
    header: str = "X-Clay-Signature"
    secret: str = ""
    token_url: str = ""
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class ReceivedRow:
    webhook: str
    lead_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class CallbackAttempt:
    lead_id: str
    copy: int  # 0 for the row's delivery, 1 for a duplicate delivery
    attempt: int
    status: int | None  # None: the connection failed (error says how)
    answer: dict[str, Any] | None
    lost: bool = False  # the simulator dropped this answer on purpose (ECONNRESET), and retried
    body_digest: str = ""  # which version of the row this call carried
    kind: str = "row"  # row, partial, rerun, resend or rescore
    error: str = ""  # the network error Clay saw: ECONNREFUSED, ECONNRESET, ETIMEDOUT


@dataclass(frozen=True)
class FollowUp:
    """A later callback of a row already called back."""

    lead_id: str
    body: dict[str, str]
    kind: str


def rerun(columns: dict[str, str], enriched_at: str) -> dict[str, str]:
    """The row after a re-run column: a new job title and enrichment timestamp."""
    title = columns.get("job_title", "")
    return {**columns, "job_title": RERUN_TITLES.get(title, f"{title} II".strip()), "_clay_enriched_at": enriched_at}


def rescore(columns: dict[str, str], up: bool) -> dict[str, str]:
    """The row re-scored one band higher or lower (a row without a score gets a low one)."""
    text = columns.get("icp_score", "")
    score = min(99, int(text)) if text.isdigit() else 30  # a messy score ("1,000") is re-scored from a low one
    return {**columns, "icp_score": str(min(99, score + 15) if up else max(5, score - 25))}


def partial_bodies(columns: dict[str, str]) -> list[dict[str, str]]:
    """What each per-enrichment column sends before the last, complete one: identity plus its own columns."""
    identity = {name: value for name, value in columns.items() if name in IDENTITY_COLUMNS}
    return [{**identity, **{name: columns[name] for name in names if name in columns}} for names in ENRICHMENT_COLUMNS]


@dataclass
class ClaySimulator:
    callback_url: str
    auth: CallbackAuth = field(default_factory=CallbackAuth)
    webhook_token: str = ""
    rate_per_second: float = 10.0
    burst: float = 20.0
    max_row_bytes: int = MAX_ROW_BYTES
    submission_limit: int = 50_000
    callback_rate_per_second: float = 20.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # the column's "Retry on failure": Clay's defaults
    duplicate_share: float = 0.0  # rows whose callback is delivered twice
    lost_response_share: float = 0.0  # rows whose first answer is ignored, so the call is retried
    rerun_share: float = 0.0  # rows called back again later with changed columns (a re-run column)
    resend_share: float = 0.0  # rows called back again later with the very same body
    rescore_share: float = 0.0  # rows called back again later one score band higher or lower
    per_column_share: float = 0.0  # rows called back in partial bodies (one per enrichment), the last complete
    messy_share: float = 0.0  # rows whose columns hold messy values (MESSY_COLUMNS), some the callback warns on
    resend_delay_seconds: float = 1.0
    workers: int = 2

    def __post_init__(self) -> None:
        self.server = StubServer(self._respond)
        self._inbound = TokenBucket(self.rate_per_second, self.burst)
        self._outbound = TokenBucket(self.callback_rate_per_second, self.callback_rate_per_second)
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._work: queue.Queue[dict[str, Any] | FollowUp | None] = queue.Queue()
        self._open = threading.Event()  # callbacks go out while set (hold_callbacks clears it)
        self._open.set()
        self._threads: list[threading.Thread] = []
        self._timers: list[threading.Timer] = []
        self._webhooks: dict[str, int] = {}  # id -> submissions
        self._retired: set[str] = set()
        self._token: tuple[str, float] | None = None  # JWT and when it was fetched
        self.rows: list[ReceivedRow] = []
        self.inbound: Counter[int] = Counter()  # status -> answers given to the sender
        self.callbacks: list[CallbackAttempt] = []
        self.token_requests = 0
        self.abandoned: list[str] = []  # lead ids whose callback never got a 2xx
        self.pending = 0  # rows accepted, and later callbacks scheduled, whose callbacks are not finished
        self.resent: Counter[str] = Counter()  # kind -> later callbacks sent (partial, rerun, resend, rescore)
        self.messy: set[str] = set()  # lead ids of rows sent with messy columns

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        url = self.server.start()
        for number in range(self.workers):
            thread = threading.Thread(target=self._work_loop, name=f"clay-column-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return url

    def hold_callbacks(self) -> None:
        """Rows are taken in but not called back until release_callbacks (a test lines callbacks up)."""
        self._open.clear()

    def release_callbacks(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self._open.set()
        for timer in self._timers:
            timer.cancel()
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def create_webhook(self) -> str:
        webhook_id = str(uuid.uuid4())
        with self._lock:
            self._webhooks[webhook_id] = 0
        return f"{self.url}{WEBHOOK_PREFIX}{webhook_id}"

    def retire(self, webhook_url: str) -> None:
        with self._lock:
            self._retired.add(webhook_url.rsplit(WEBHOOK_PREFIX, 1)[-1])

    # -- facts -----------------------------------------------------------------------------
    def lead_ids(self) -> list[str]:
        with self._lock:
            return [row.lead_id for row in self.rows]

    def answered(self, duplicate: bool) -> list[str]:
        """Lead ids of callbacks we answered 2xx (not lost on purpose), new or duplicate as asked."""
        with self._lock:
            return [
                c.lead_id
                for c in self.callbacks
                if c.status is not None
                and 200 <= c.status < 300
                and not c.lost
                and bool((c.answer or {}).get("duplicate")) is duplicate
            ]

    def accepted_callbacks(self) -> list[str]:
        """Lead ids of every 2xx answer that was not a duplicate, including answers the simulator lost."""
        return [lead_id for lead_id, _ in self.accepted_versions()]

    def accepted_versions(self) -> list[tuple[str, str]]:
        """(lead id, body digest) of every 2xx answer that was not a duplicate: each version of a row accepted."""
        with self._lock:
            return [
                (c.lead_id, c.body_digest)
                for c in self.callbacks
                if c.status is not None and 200 <= c.status < 300 and not (c.answer or {}).get("duplicate")
            ]

    def versions_sent(self) -> set[tuple[str, str]]:
        """(lead id, body digest) of every distinct body the column called back with."""
        with self._lock:
            return {(c.lead_id, c.body_digest) for c in self.callbacks}

    def warned(self) -> list[str]:
        """Lead id of each callback answered 2xx with `warnings` (columns kept as sent, not understood)."""
        with self._lock:
            return [
                c.lead_id
                for c in self.callbacks
                if c.status is not None and 200 <= c.status < 300 and (c.answer or {}).get("warnings")
            ]

    def busy(self) -> bool:
        with self._lock:
            return self.pending > 0

    # -- inbound webhook -------------------------------------------------------------------
    def _respond(self, request: RecordedRequest) -> Reply:
        reply = self._inbound_reply(request)
        with self._lock:
            self.inbound[reply.status] += 1
        return reply

    def _inbound_reply(self, request: RecordedRequest) -> Reply:
        webhook_id = request.path.removeprefix(WEBHOOK_PREFIX)
        with self._lock:
            known = request.path.startswith(WEBHOOK_PREFIX) and webhook_id in self._webhooks
            retired = webhook_id in self._retired
            full = known and self._webhooks[webhook_id] >= self.submission_limit
            if full:
                self._retired.add(webhook_id)
        if request.method != "POST" or not known or retired or full:
            return Reply(404, {"error": "webhook not found"})
        if self.webhook_token and request.headers.get(AUTH_HEADER) != self.webhook_token:
            return Reply(401, {"error": "unauthorized"})
        if len(request.body) > self.max_row_bytes:
            return Reply(413, {"error": "payload too large"})
        wait = self._inbound.take()
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
            self.pending += 1
        self._work.put(row)
        return Reply(200, {"success": True})

    # -- outbound HTTP API column ----------------------------------------------------------
    def _work_loop(self) -> None:
        session = requests.Session()
        while (work := self._work.get()) is not None:
            self._open.wait()
            try:
                if isinstance(work, FollowUp):
                    self._deliver(session, work.lead_id, work.body, work.kind)
                else:
                    self._deliver_row(session, work)
            finally:
                with self._lock:
                    self.pending -= 1

    def _deliver_row(self, session: requests.Session, row: dict[str, Any]) -> None:
        lead_id = str(row.get("lead_id", ""))
        columns = enrich(row, datetime.now(UTC).isoformat())
        digest = _digest(lead_id or json.dumps(columns))
        if digest[15] / 256 < self.messy_share:
            columns = {**columns, **MESSY_COLUMNS[digest[16] % len(MESSY_COLUMNS)]}
            with self._lock:
                self.messy.add(lead_id)
        if digest[10] / 256 < self.per_column_share:
            for partial in partial_bodies(columns):
                self._deliver(session, lead_id, partial, "partial")
        copies = 2 if digest[8] / 256 < self.duplicate_share else 1
        lose_first = digest[9] / 256 < self.lost_response_share
        for copy in range(copies):
            self._deliver(session, lead_id, columns, "row", copy, lose_first and copy == 0)
        if digest[11] / 256 < self.rerun_share:
            self._later(FollowUp(lead_id, rerun(columns, datetime.now(UTC).isoformat()), "rerun"))
        if digest[12] / 256 < self.resend_share:
            self._later(FollowUp(lead_id, columns, "resend"))
        if digest[13] / 256 < self.rescore_share:
            self._later(FollowUp(lead_id, rescore(columns, up=digest[14] % 2 == 0), "rescore"))

    def _later(self, follow_up: FollowUp) -> None:
        """Call the row back again after resend_delay_seconds (counted as pending until it is done)."""
        with self._lock:
            self.pending += 1
        timer = threading.Timer(self.resend_delay_seconds, self._work.put, args=(follow_up,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _deliver(
        self,
        session: requests.Session,
        lead_id: str,
        columns: dict[str, str],
        kind: str,
        copy: int = 0,
        lose_first: bool = False,
    ) -> None:
        if kind != "row":
            with self._lock:
                self.resent[kind] += 1
        if not self._call(session, lead_id, copy, columns, kind, lose_first):
            with self._lock:
                self.abandoned.append(lead_id)

    def _call(
        self, session: requests.Session, lead_id: str, copy: int, columns: dict[str, str], kind: str, lose_first: bool
    ) -> bool:
        """POST, retried as the column's RetryPolicy says (immediately); True once a 2xx answer was kept."""
        body = json.dumps(columns).encode()
        version = hashlib.sha256(json.dumps(columns, sort_keys=True).encode()).hexdigest()[:16]
        for attempt in range(1, self.retry.attempts + 1):
            self._outbound.wait()
            status, answer, error = self._post(session, body)
            lost = lose_first and attempt == 1 and status is not None and status < 300
            if lost:  # the answer never reached Clay: the connection was reset after we processed the call
                error = "ECONNRESET"
            with self._lock:
                self.callbacks.append(
                    CallbackAttempt(lead_id, copy, attempt, status, answer, lost, version, kind, error)
                )
            if status is not None and 200 <= status < 300 and not lost:
                return True
            if not self.retry.retries(None if lost else status, error):
                return False  # Clay records the error in the cell and moves on to the next row
        return False

    def _post(self, session: requests.Session, body: bytes) -> tuple[int | None, dict[str, Any] | None, str]:
        """(status, JSON answer, "") or, when the call failed, (None, None, the network error code)."""
        headers = {"content-type": "application/json"}
        try:
            headers.update(self._auth_headers(session))
            response = session.post(
                self.callback_url, data=body, headers=headers, timeout=self.retry.response_timeout_ms / 1000
            )
        except requests.RequestException as error:
            return None, None, network_error_code(error)
        if response.status_code == 401 and self.auth.mode == "jwt":
            self._token = None  # expired or rotated: fetch a new one on the retry
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return response.status_code, answer if isinstance(answer, dict) else None, ""

    def _auth_headers(self, session: requests.Session) -> dict[str, str]:
        if self.auth.mode != "jwt":
            return {self.auth.header: self.auth.secret} if self.auth.secret else {}
        with self._token_lock:  # one column, one token: concurrent rows wait for the same fetch
            cached = self._token
            if cached is None or time.monotonic() - cached[1] > TOKEN_REFRESH_SECONDS:
                response = session.post(
                    self.auth.token_url,
                    json={"username": self.auth.username, "password": self.auth.password},
                    timeout=10,
                )
                with self._lock:
                    self.token_requests += 1
                if response.status_code != 200:
                    return {}
                cached = self._token = (str(response.json()["access_token"]), time.monotonic())
        return {"authorization": f"Bearer {cached[0]}"}
