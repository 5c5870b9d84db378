"""Limits on sending to Clay, shared by every sender instance through STATE_TABLE.

Each limit is an atomic conditional write, so concurrent instances never overshoot:
- pacing   `rate#<window>#<index>`: a counter of send slots per two-second window, reserved
            several at a time; slot n is used at its own time within the window, so sends
            are spread over the second (Pacer).
- pool     `pool#<url fingerprint>`: lifetime submissions per webhook URL, never past the limit;
            the next URL in CLAY_WEBHOOK_URLS is used once one is full.
- retired  `webhook-dead#<url fingerprint>`: Clay answered 404/410 for that URL.
- budget   `budget#<UTC date>`: rows sent today, never past CLAY_DAILY_SEND_BUDGET.
The dedupe marks are services/dedupe.py's; the arithmetic (windows, slots, days) is core/sending.py's.
Pool and budget units are reserved for a whole batch with one write (BatchReservations) and the
unused ones given back with one more at its end, instead of a write per lead.
Webhook URLs are secrets: keys and logs carry a fingerprint or the URL's index, never the URL.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core import state_keys
from clay_pipeline.core.pacing import PACER_WINDOW_SECONDS, PacingWindow, pacing_window, slot_delay
from clay_pipeline.core.sending import (
    DAY_SECONDS,
    Reservation,
    budget_day,
    near_limit_threshold,
    seconds_until_next_day,
)
from clay_pipeline.observability import count, logger

FOREVER_SECONDS = 10 * 365 * DAY_SECONDS  # webhook lifetime counters and retirements never expire
RATE_KEY_TTL_SECONDS = 300
SPENT_CACHE_SECONDS = 60.0  # how long an instance trusts that a URL is full or gone before asking again

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- units reserved per batch --------------------------------------------------------------
@dataclass
class BatchReservations:
    """Units of shared counters (`count` never past `limit`) reserved a batch at a time.

    One conditional write reserves the units the rest of the batch may need; the ones it did not
    use go back with one write at the end (return_unused). A crash in between leaves them counted:
    the limit is then reached a few units early, never passed, and no lead is lost (it is still in
    the queue). Units another instance holds look taken until its batch ends: right at a limit a
    lead may wait (next day, next webhook) for a unit that then comes back, as it could already
    while another instance's send failed. Thread-safe: a batch's sends run concurrently.
    """

    store: StateStore
    limit: int
    ttl_seconds: int
    _held: dict[str, Reservation] = field(default_factory=dict)  # counter key -> units held
    _lock: threading.Lock = field(default_factory=threading.Lock)  # a batch's sends run concurrently

    def take(self, key: str, wanted: int) -> int | None:
        """One unit of `key`, reserving up to `wanted` when none is held: its counter value, None when full."""
        with self._lock:
            held = self._held.get(key)
            if held is None or held.unused == 0:
                added, value = self.store.reserve_up_to(key, self.limit, max(1, wanted), self.ttl_seconds)
                if not added:
                    return None
                held = self._held[key] = Reservation.granted(added, value)
            return held.take()

    def give_back(self, key: str) -> None:
        """A unit taken was not used: it serves another lead of this batch, or returns at the end."""
        with self._lock:
            self._held[key].give_back()

    def return_unused(self) -> None:
        with self._lock:
            held, self._held = self._held, {}
        for key, reservation in held.items():
            if reservation.unused <= 0:
                continue
            try:
                self.store.decrement(key, reservation.unused)
            except ClientError as error:  # they stay counted: the limit comes a little early, never late
                logger.warning(
                    "could not return reserved units", extra={"counter": key.split("#")[0], "error": str(error)}
                )


# -- daily budget --------------------------------------------------------------------------
@dataclass
class DailyBudget:
    store: StateStore
    limit: int  # 0 = no cap
    clock: Clock = utc_now
    _reserved: BatchReservations = field(init=False)

    def __post_init__(self) -> None:
        self._reserved = BatchReservations(self.store, self.limit, ttl_seconds=2 * DAY_SECONDS)

    def reserve(self, wanted: int = 1) -> str | None:
        """Count one row against today, reserving up to `wanted` (the batch's remaining leads) at once.

        Returns the key to release on failure ('' when uncapped), None when today's budget is spent.
        """
        if self.limit <= 0:
            return ""
        key = state_keys.budget(budget_day(self.clock()))
        return key if self._reserved.take(key, wanted) is not None else None

    def release(self, key: str) -> None:
        if key:
            self._reserved.give_back(key)

    def return_unused(self) -> None:
        """End of batch: rows reserved but not sent go back to the day's budget."""
        self._reserved.return_unused()

    def seconds_until_reset(self) -> int:
        return seconds_until_next_day(self.clock())


# -- webhook pool --------------------------------------------------------------------------
@dataclass(frozen=True)
class Webhook:
    index: int  # position in CLAY_WEBHOOK_URLS: what logs and metrics show
    url: str
    fingerprint: str
    submissions: int  # lifetime count including this one

    @property
    def pool_key(self) -> str:
        return state_keys.pool(self.fingerprint)


@dataclass
class WebhookPool:
    store: StateStore
    limit: int
    monotonic: Callable[[], float] = time.monotonic  # how the per-instance caches tell time (tests pass a fake)
    _unusable_until: dict[str, float] = field(default_factory=dict)  # fingerprint -> monotonic time
    _live_until: dict[str, float] = field(default_factory=dict)  # fingerprint -> monotonic time: not retired
    _reserved: BatchReservations = field(init=False)

    def __post_init__(self) -> None:
        self._reserved = BatchReservations(self.store, self.limit, ttl_seconds=FOREVER_SECONDS)

    def acquire(self, urls: list[str], wanted: int = 1) -> Webhook | None:
        """One submission on the first URL that is neither full nor retired; None when all are.

        Up to `wanted` submissions (the batch's remaining leads) are reserved on that URL at once.
        """
        for index, url in enumerate(urls):
            fingerprint = webhook_fingerprint(url)
            if self._unusable_until.get(fingerprint, 0.0) > self.monotonic():
                continue
            if self._is_retired(fingerprint):
                self._remember_unusable(fingerprint)
                continue
            used = self._reserved.take(state_keys.pool(fingerprint), wanted)
            if used is None:
                logger.warning("webhook is full; rotating to the next", extra={"webhook_index": index})
                self._remember_unusable(fingerprint)
                continue
            self._watch_usage(index, used)
            return Webhook(index=index, url=url, fingerprint=fingerprint, submissions=used)
        return None

    def release(self, webhook: Webhook) -> None:
        """Give the submission back: Clay did not create the row."""
        self._reserved.give_back(webhook.pool_key)

    def return_unused(self) -> None:
        """End of batch: submissions reserved but not made go back to their webhook."""
        self._reserved.return_unused()

    def retire(self, webhook: Webhook, status: int | None) -> None:
        """Clay says the webhook no longer exists: no instance uses it again until the mark is removed."""
        self.store.put_mark(
            state_keys.webhook_dead(webhook.fingerprint),
            FOREVER_SECONDS,
            {"status": status, "webhook_index": webhook.index},
        )
        self._live_until.pop(webhook.fingerprint, None)
        self._remember_unusable(webhook.fingerprint)

    def _is_retired(self, fingerprint: str) -> bool:
        """Asks the table at most once per SPENT_CACHE_SECONDS per URL: a retirement by another instance
        is seen within that time (a send to it meanwhile gets the 404/410 and retires it here too)."""
        if self._live_until.get(fingerprint, 0.0) > self.monotonic():
            return False
        if self.store.get(state_keys.webhook_dead(fingerprint)) is not None:
            return True
        self._live_until[fingerprint] = self.monotonic() + SPENT_CACHE_SECONDS
        return False

    def _watch_usage(self, index: int, used: int) -> None:
        threshold = near_limit_threshold(self.limit)
        if used >= threshold:
            count("ClayPoolNearLimit")  # what the alarm watches (service dimension only)
            count("ClayPoolNearLimit", webhook=str(index))  # which webhook, for the dashboard
            if used == threshold:
                logger.warning(
                    "webhook has used 90% of its submissions; add a new webhook URL to CLAY_WEBHOOK_URLS",
                    extra={"webhook_index": index, "submissions": used, "limit": self.limit},
                )

    def _remember_unusable(self, fingerprint: str) -> None:
        self._unusable_until[fingerprint] = self.monotonic() + SPENT_CACHE_SECONDS


# -- pacing --------------------------------------------------------------------------------
@dataclass
class Pacer:
    """At most `rate_per_second` sends across all instances: a counter of send slots per window (two seconds).

    Slot n of window W may be used from W + n / rate, whichever instance holds it, so sends stay
    spread over each second. One conditional write reserves as many slots as the batch still
    needs (StateStore.reserve_up_to): about one write per seven sends instead of one per send. A new
    window's counter starts at the slot the clock has reached, so the first instance in a window
    never gets slots already past. Slots an instance holds when their window ends are dropped
    unused (their window counted them), and so is a slot its sends reach more than `max_late`
    seconds after its time: a sliding second then holds at most Clay's burst (core.sending.pacing_window
    has the arithmetic; bench/pacing.py measures the busiest second). Hand-written because no library
    shares a rate limit between Lambda instances through DynamoDB.
    Thread-safe: a sender's concurrent sends share one Pacer.
    """

    store: StateStore
    rate_per_second: float
    sleep: Callable[[float], None] = time.sleep
    wall_clock: Callable[[], float] = time.time
    # Two seconds: a batch of twenty at 10/s takes one or two reservations (about 0.14 writes per lead
    # measured); longer windows would save a few hundredths of a write per lead and raise the worst
    # sliding second (rate + slots - 1) along with the slots an instance may hold unused.
    window: float = PACER_WINDOW_SECONDS
    grid: PacingWindow = field(init=False)
    _held: deque[float] = field(default_factory=deque, init=False)  # wall-clock times of slots reserved here
    _filled_window: int | None = field(default=None, init=False)  # a window this instance saw full
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.grid = pacing_window(self.rate_per_second, self.window)

    @property
    def slots(self) -> int:
        return self.grid.slots

    @property
    def window_seconds(self) -> float:
        return self.grid.seconds

    @property
    def max_late(self) -> float:
        """A slot reached later than this after its time is skipped."""
        return self.grid.max_late

    def acquire(self, deadline: float, wanted: int = 1) -> bool:
        """Wait for a send slot, reserving up to `wanted` at once; False if none comes before `deadline`."""
        while True:
            with self._lock:
                at = self._next_slot(max(1, wanted))
            if at is not None:
                wait = slot_delay(at, self.wall_clock(), self.max_late)
                if wait is None:
                    continue  # too late for its second: spent, like a slot whose window ended
                if wait == 0:
                    return True
                if time.monotonic() + wait > deadline:
                    return False
                self.sleep(wait)
                return True
            # Wake in the next window, spread a little so instances do not collide on the same write
            # (random jitter, not security: hence nosec B311).
            wait = self.grid.until_next(self.wall_clock(), random.uniform(0, 1 / self.rate_per_second))  # nosec B311
            if time.monotonic() + wait > deadline:
                return False
            self.sleep(wait)

    def _next_slot(self, wanted: int) -> float | None:
        """The time of the next slot this instance holds, reserving more when it holds none; None when full."""
        now = self.wall_clock()
        index = self.grid.index(now)
        while self._held and self.grid.index(self._held[0]) < index:
            self._held.popleft()  # its window is over
        if not self._held and index != self._filled_window:
            key = state_keys.rate(self.grid.key_ms, index)
            added, value = self.store.reserve_up_to(
                key, self.slots, wanted, RATE_KEY_TTL_SECONDS, start=self.grid.reached(now)
            )
            if not added or value >= self.slots:
                self._filled_window = index  # nothing more to ask this window for
            if not added:
                return None
            self._held.extend(self.grid.slot_times(index, value - added, value))
        return self._held.popleft() if self._held else None
