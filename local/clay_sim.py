"""A Clay simulator on loopback: table webhooks in, enrichment, HTTP API column callbacks out.

Each piece of Clay it simulates has its own module: the table webhook that takes rows in
(local.clay_table_webhook: auth, 100 KB, submission limit, rate), the enrichment
(local.clay_enrichment: deterministic columns per lead, messy values, later versions), the
HTTP API column that calls each row back (local.clay_column: auth, its own rate) and the
column's "Retry on failure" (local.clay_retry, Clay University's documented defaults). This
module runs them together: a worker pool calls each accepted row back, and on request sends
a share of rows twice or loses a share of first answers (a connection reset after we
answered: retried, so it repeats what we already accepted).

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

import json
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from local.clay_column import CallbackAttempt, CallbackAuth, CallbackLog, HttpApiColumn
from local.clay_enrichment import MESSY_COLUMNS, enrich, lead_digest, partial_bodies, rerun, rescore
from local.clay_retry import RetryPolicy
from local.clay_table_webhook import MAX_ROW_BYTES, ReceivedRow, TableWebhook
from local.http_stub import Served, StubServer


@dataclass(frozen=True)
class FollowUp:
    """A later callback of a row already called back."""

    lead_id: str
    body: dict[str, str]
    kind: str


class CallbackWorkers:
    """The column's worker pool: rows and later callbacks queued, each handled by one of `count` threads."""

    def __init__(self, count: int, handle: Callable[[requests.Session, dict[str, Any] | FollowUp], None]) -> None:
        self._count = count
        self._handle = handle
        self._lock = threading.Lock()
        self._work: queue.Queue[dict[str, Any] | FollowUp | None] = queue.Queue()
        self._open = threading.Event()  # work is handled while set (hold clears it)
        self._open.set()
        self._threads: list[threading.Thread] = []
        self._timers: list[threading.Timer] = []
        self.pending = 0  # work queued or scheduled, not finished

    def start(self) -> None:
        for number in range(self._count):
            thread = threading.Thread(target=self._loop, name=f"clay-column-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self._open.set()
        for timer in self._timers:
            timer.cancel()
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def put(self, work: dict[str, Any] | FollowUp) -> None:
        with self._lock:
            self.pending += 1
        self._work.put(work)

    def later(self, delay_seconds: float, work: FollowUp) -> None:
        """Queue the work after a delay (counted as pending from now until it is done)."""
        with self._lock:
            self.pending += 1
        timer = threading.Timer(delay_seconds, self._work.put, args=(work,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def busy(self) -> bool:
        with self._lock:
            return self.pending > 0

    def _loop(self) -> None:
        session = requests.Session()
        while (work := self._work.get()) is not None:
            self._open.wait()
            try:
                self._handle(session, work)
            finally:
                with self._lock:
                    self.pending -= 1


@dataclass
class ClaySimulator(Served):
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
        self.webhook = TableWebhook(
            self._accept,
            token=self.webhook_token,
            rate_per_second=self.rate_per_second,
            burst=self.burst,
            max_row_bytes=self.max_row_bytes,
            submission_limit=self.submission_limit,
        )
        self.log = CallbackLog()
        self.column = HttpApiColumn(
            self.callback_url, self.auth, self.retry, self.callback_rate_per_second, self.log.record
        )
        self.pool = CallbackWorkers(self.workers, self._handle)
        self.server = StubServer(self.webhook.respond)
        self._lock = threading.Lock()
        self.abandoned: list[str] = []  # lead ids whose callback never got a 2xx
        self.resent: Counter[str] = Counter()  # kind -> later callbacks sent (partial, rerun, resend, rescore)
        self.messy: set[str] = set()  # lead ids of rows sent with messy columns

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        url = self.server.start()
        self.pool.start()
        return url

    def hold_callbacks(self) -> None:
        """Rows are taken in but not called back until release_callbacks (a test lines callbacks up)."""
        self.pool.hold()

    def release_callbacks(self) -> None:
        self.pool.release()

    def stop(self) -> None:
        self.pool.stop()
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def create_webhook(self) -> str:
        return self.webhook.create(self.url)

    def retire(self, webhook_url: str) -> None:
        self.webhook.retire(webhook_url)

    # -- facts (the table webhook's, the column's calls in `log`) -------------------------
    @property
    def rows(self) -> list[ReceivedRow]:
        return self.webhook.rows

    @property
    def inbound(self) -> Counter[int]:
        """Status -> answers the table webhook gave the sender."""
        return self.webhook.inbound

    @property
    def callbacks(self) -> list[CallbackAttempt]:
        return self.log.attempts

    @property
    def token_requests(self) -> int:
        return self.column.token_requests

    @property
    def pending(self) -> int:
        """Rows accepted, and later callbacks scheduled, whose callbacks are not finished."""
        return self.pool.pending

    def lead_ids(self) -> list[str]:
        return self.webhook.lead_ids()

    def answered(self, duplicate: bool) -> list[str]:
        return self.log.answered(duplicate)

    def accepted_callbacks(self) -> list[str]:
        """Lead ids of every 2xx answer that was not a duplicate, including answers the simulator lost."""
        return [lead_id for lead_id, _ in self.log.accepted_versions()]

    def accepted_versions(self) -> list[tuple[str, str]]:
        return self.log.accepted_versions()

    def versions_sent(self) -> set[tuple[str, str]]:
        return self.log.versions_sent()

    def warned(self) -> list[str]:
        return self.log.warned()

    def busy(self) -> bool:
        return self.pool.busy()

    # -- what the column sends for each row ------------------------------------------------
    def _accept(self, row: dict[str, Any]) -> None:
        """A row the table webhook took in: its callbacks are pending until the column is done with it."""
        self.pool.put(row)

    def _handle(self, session: requests.Session, work: dict[str, Any] | FollowUp) -> None:
        if isinstance(work, FollowUp):
            self._deliver(session, work.lead_id, work.body, work.kind)
        else:
            self._deliver_row(session, work)

    def _deliver_row(self, session: requests.Session, row: dict[str, Any]) -> None:
        lead_id = str(row.get("lead_id", ""))
        columns = enrich(row, datetime.now(UTC).isoformat())
        digest = lead_digest(lead_id or json.dumps(columns))
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
            self.pool.later(
                self.resend_delay_seconds, FollowUp(lead_id, rerun(columns, datetime.now(UTC).isoformat()), "rerun")
            )
        if digest[12] / 256 < self.resend_share:
            self.pool.later(self.resend_delay_seconds, FollowUp(lead_id, columns, "resend"))
        if digest[13] / 256 < self.rescore_share:
            self.pool.later(
                self.resend_delay_seconds, FollowUp(lead_id, rescore(columns, up=digest[14] % 2 == 0), "rescore")
            )

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
        if not self.column.call(session, lead_id, copy, columns, kind, lose_first):
            with self._lock:
                self.abandoned.append(lead_id)
