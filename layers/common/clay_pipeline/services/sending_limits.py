"""Limits on sending to Clay, shared by every sender instance through STATE_TABLE.

Each limit is an atomic conditional write, so concurrent instances never overshoot:
- pacing   `rate#<window>#<index>`: a counter of send slots per two-second window, reserved
            several at a time; slot n is used at its own time within the window, so sends
            are spread over the second (Pacer).
- pool     `pool#<url fingerprint>`: lifetime submissions per webhook URL, never past the limit;
            the next URL in CLAY_WEBHOOK_URLS is used once one is full.
- retired  `webhook-dead#<url fingerprint>`: Clay answered 404/410 for that URL.
- budget   `budget#<UTC date>`: rows sent today, never past CLAY_DAILY_SEND_BUDGET.
- dedupe   `dedupe#<lead_id>`: 'sending' from the claim on, for CLAY_DEDUPE_DAYS, with the
            claiming invocation's lease and batch id (what confirms it is in Deduper), 'sent' once
            confirmed, 'unknown' for CLAY_UNKNOWN_HOLD_SECONDS after Clay's answer was lost
            (Deduper.hold). A crash does not free a 'sending' mark: the lease tells a later copy
            its claimant is gone.
Pool and budget units are reserved for a whole batch with one write (BatchReservations) and the
unused ones given back with one more at its end, instead of a write per lead.
Webhook URLs are secrets: keys and logs carry a fingerprint or the URL's index, never the URL.
"""

from __future__ import annotations

import enum
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.adapters.dynamodb import STATE_TTL
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.observability import count, logger

DAY_SECONDS = 86_400
FOREVER_SECONDS = 10 * 365 * DAY_SECONDS  # webhook lifetime counters and retirements never expire
NEAR_LIMIT_RATIO = 0.9
RATE_KEY_TTL_SECONDS = 300
PACER_WINDOW_SECONDS = 2.0
MIN_LATENESS_SECONDS = 0.1  # the least lateness a slot is allowed: a reservation's own round trip fits in it
CLAY_BURST = 20  # rows Clay takes from a workspace in one second: 10/s with bursts of 20 (local/clay_table_webhook.py)
SPENT_CACHE_SECONDS = 60.0  # how long an instance trusts that a URL is full or gone before asking again

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- dedupe --------------------------------------------------------------------------------
def dedupe_key(lead_id: str) -> str:
    return f"dedupe#{lead_id}"


class Claim(enum.Enum):
    CLAIMED = "claimed"  # this caller may send the lead
    ALREADY_SENT = "already_sent"  # Clay has it: skip
    IN_FLIGHT = "in_flight"  # another instance is sending it right now: try again later
    HELD = "held"  # an earlier send's outcome is unknown: wait until the hold ends (Deduper.seconds_held)


@dataclass(frozen=True)
class Deduper:
    """`dedupe#<lead_id>`: one mark per lead sent to Clay, for CLAY_DEDUPE_DAYS.

    The claim creates the mark as 'sending', with the claiming invocation's lease and its batch id.
    What confirms it: on the table path the batch record the sender writes once at the end of its
    batch (stale.SentBatch) lists every lead it sent; on the routine path the sender sets each
    lead of a recorded run to 'sent' (and lists the ones it could not set in routines.RunStore's
    batch list). A mark found later is read as:
    - 'sent' (an older confirmed mark, or one confirmed on an earlier look): already sent;
    - 'sending', confirmed by its batch (`confirmed_by`): sent (the mark is then set to 'sent');
    - 'sending', not confirmed, within its lease: another invocation is sending it now;
    - 'sending', not confirmed, after its lease: the invocation that claimed it ended without
      recording a send. On the table path whether Clay got the row is unknown (it may have died
      after posting), so it is held as after a lost answer (hold), then sent once more. With
      `hold_unrecorded` False (the routine path) nothing is unknown: a run no record lists is
      collected by nothing, so the mark is taken over and the lead sent again at once;
    - 'unknown': held (hold).
    The table path's crash window is one batch's sends (a confirm per lead made it one send): a
    sender that dies after posting, before its batch ends, lets each lead it posted be sent once
    more after the hold. A failed send (Clay refused, nothing created) releases the mark at once.
    """

    store: StateStore
    days: int
    in_flight_seconds: int = 300  # a claim's lease when the caller names none
    hold_seconds: int = 21_600  # how long an unknown outcome holds the lead (CLAY_UNKNOWN_HOLD_SECONDS)
    confirmed_by: Callable[[str, str], bool] | None = None  # (batch id, lead id) -> that batch recorded the send
    hold_unrecorded: bool = True  # False: an unconfirmed mark past its lease is taken over, not held

    def claim(self, lead_id: str, details: dict[str, Any] | None = None, lease_seconds: float | None = None) -> Claim:
        """`details` ride on the mark's write (what `clay-pipeline trace` shows: batch, source, submitted_at)."""
        if self.days <= 0:
            return Claim.CLAIMED
        key = self._key(lead_id)
        lease_until = int(time.time() + (self.in_flight_seconds if lease_seconds is None else lease_seconds)) + 1
        attributes = {**(details or {}), "status": "sending", "lease_until": lease_until}
        replacing: tuple[str, str | int] | None = None
        # Twice: a mark can expire between the failed put and the get, or be taken over on the first look.
        for _ in range(2):
            if self.store.put_mark(key, self.days * DAY_SECONDS, attributes, replacing=replacing):
                return Claim.CLAIMED
            mark = self.store.get(key)
            if mark is None:
                continue
            claim = self._read(lead_id, mark)
            if claim is not None:
                return claim
            # Only over that very mark (its batch id is its invocation's): of two copies taking it over, one
            # wins and the other finds it in flight. A routine mark from before claims named their batch: its creation.
            batch = str(mark.get("batch") or "")
            replacing = ("batch", batch) if batch else ("created_at", int(mark["created_at"]))
        return Claim.IN_FLIGHT

    def _read(self, lead_id: str, mark: dict[str, Any]) -> Claim | None:
        """What the mark says; None when its claimant ended unrecorded and the mark is to be taken over."""
        status = str(mark.get("status"))
        if status == "sent":
            return Claim.ALREADY_SENT
        if status == "unknown":
            return Claim.HELD
        batch = str(mark.get("batch") or "")
        if batch and self.confirmed_by is not None and self.confirmed_by(batch, lead_id):
            self.confirm(lead_id)  # later duplicates skip the batch record
            return Claim.ALREADY_SENT
        # Not recorded (yet): the claiming invocation may still be sending. An older 'sending' mark
        # without a lease lived in_flight_seconds from its creation.
        lease_until = int(mark.get("lease_until") or int(mark.get("created_at", 0)) + self.in_flight_seconds)
        if lease_until >= time.time():
            return Claim.IN_FLIGHT
        if not self.hold_unrecorded:
            logger.warning(
                "the invocation that claimed this lead ended without recording a send: it is sent again",
                extra={"lead_id": lead_id},
            )
            return None
        if self.hold(lead_id, self.hold_seconds):
            count("ClaySendUnknown")
            logger.warning(
                "the invocation that sent this lead ended without recording it: held, then sent once more",
                extra={"lead_id": lead_id, "hold_seconds": self.hold_seconds},
            )
        return Claim.HELD

    def hold(self, lead_id: str, seconds: int) -> bool:
        """Whether Clay created the row is unknown (its answer was lost, or the sender died after posting).

        The policy: neither forget the send (the next receive would POST again, perhaps a second
        paid row) nor trust it (the lead might never reach Clay). The mark becomes 'unknown' for
        `seconds`; every instance holds the lead back meanwhile, so an operator alerted by the
        ClaySendUnknown metric can look for the lead_id in Clay and mark it sent. When the hold
        ends unmarked, the lead is sent once more: at most one extra row per lost answer.
        False when dedupe is off (nothing is remembered, so nothing is held).
        """
        if self.days <= 0:
            return False
        now = int(time.time())
        self.store.update(self._key(lead_id), {"status": "unknown", "held_at": now, "expires_at": now + seconds})
        return True

    def seconds_held(self, lead_id: str) -> int:
        """How long the lead is still held after an unknown outcome (0 when it is not)."""
        mark = self.store.get(self._key(lead_id))
        if mark is None or mark.get("status") != "unknown":
            return 0
        return max(0, int(mark[STATE_TTL]) - int(time.time()))

    def confirm(self, lead_id: str, details: dict[str, str] | None = None) -> None:
        """Mark the lead sent (the routine path's leads of a recorded run, and a mark its batch confirmed);
        `details` ride on the same write (the routine path's run id, for `clay-pipeline trace`)."""
        if self.days > 0:
            now = int(time.time())
            self.store.update(
                self._key(lead_id),
                {"status": "sent", "sent_at": now, "expires_at": now + self.days * DAY_SECONDS, **(details or {})},
            )

    def release(self, lead_id: str) -> None:
        if self.days > 0:
            self.store.delete(self._key(lead_id))

    @staticmethod
    def _key(lead_id: str) -> str:
        return dedupe_key(lead_id)


# -- units reserved per batch --------------------------------------------------------------
@dataclass
class Reservation:
    """Counter values this instance added and hands out one by one: next_number..last_number."""

    next_number: int
    last_number: int

    @property
    def unused(self) -> int:
        return self.last_number - self.next_number + 1


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
                held = self._held[key] = Reservation(next_number=value - added + 1, last_number=value)
            held.next_number += 1
            return held.next_number - 1

    def give_back(self, key: str) -> None:
        """A unit taken was not used: it serves another lead of this batch, or returns at the end."""
        with self._lock:
            self._held[key].next_number -= 1

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
        key = f"budget#{self.clock().date().isoformat()}"
        return key if self._reserved.take(key, wanted) is not None else None

    def release(self, key: str) -> None:
        if key:
            self._reserved.give_back(key)

    def return_unused(self) -> None:
        """End of batch: rows reserved but not sent go back to the day's budget."""
        self._reserved.return_unused()

    def seconds_until_reset(self) -> int:
        now = self.clock()
        tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        return max(1, math.ceil((tomorrow - now).total_seconds()))


# -- webhook pool --------------------------------------------------------------------------
@dataclass(frozen=True)
class Webhook:
    index: int  # position in CLAY_WEBHOOK_URLS: what logs and metrics show
    url: str
    fingerprint: str
    submissions: int  # lifetime count including this one

    @property
    def pool_key(self) -> str:
        return f"pool#{self.fingerprint}"


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
            used = self._reserved.take(f"pool#{fingerprint}", wanted)
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
            self._dead_key(webhook.fingerprint), FOREVER_SECONDS, {"status": status, "webhook_index": webhook.index}
        )
        self._live_until.pop(webhook.fingerprint, None)
        self._remember_unusable(webhook.fingerprint)

    def _is_retired(self, fingerprint: str) -> bool:
        """Asks the table at most once per SPENT_CACHE_SECONDS per URL: a retirement by another instance
        is seen within that time (a send to it meanwhile gets the 404/410 and retires it here too)."""
        if self._live_until.get(fingerprint, 0.0) > self.monotonic():
            return False
        if self.store.get(self._dead_key(fingerprint)) is not None:
            return True
        self._live_until[fingerprint] = self.monotonic() + SPENT_CACHE_SECONDS
        return False

    def _watch_usage(self, index: int, used: int) -> None:
        threshold = math.ceil(self.limit * NEAR_LIMIT_RATIO)
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

    @staticmethod
    def _dead_key(fingerprint: str) -> str:
        return f"webhook-dead#{fingerprint}"


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
    seconds after its time. Slot times lie on one grid, 1 / rate apart, each used at most once, so
    a sliding second holds at most the slots of 1 + max_late seconds: rate x (1 + max_late) + 1
    sends, which max_late keeps at Clay's burst (CLAY_BURST, 20) at 10/s (bench/pacing.py measures
    the busiest second). Hand-written because no library shares a rate limit between Lambda
    instances through DynamoDB.
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
    slots: int = field(init=False)
    window_seconds: float = field(init=False)
    max_late: float = field(init=False)  # a slot reached later than this after its time is skipped
    _held: deque[float] = field(default_factory=deque, init=False)  # wall-clock times of slots reserved here
    _filled_window: int | None = field(default=None, init=False)  # a window this instance saw full
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        # About `window` (longer below one send per window), holding a whole number of slots at the exact rate.
        self.slots = max(1, round(self.rate_per_second * max(self.window, 1 / self.rate_per_second)))
        self.window_seconds = self.slots / self.rate_per_second
        # rate x (1 + max_late) + 1 <= CLAY_BURST: late sends never crowd a second past Clay's burst. Above
        # about 17/s that leaves no room for a DynamoDB round trip of lateness (MIN_LATENESS), and the rate
        # is past Clay's own anyway: nothing is skipped.
        late = (CLAY_BURST - 1) / self.rate_per_second - 1
        self.max_late = late if late >= MIN_LATENESS_SECONDS else math.inf

    def acquire(self, deadline: float, wanted: int = 1) -> bool:
        """Wait for a send slot, reserving up to `wanted` at once; False if none comes before `deadline`."""
        while True:
            with self._lock:
                at = self._next_slot(max(1, wanted))
            if at is not None:
                wait = at - self.wall_clock()
                if wait < -self.max_late:
                    continue  # too late for its second: spent, like a slot whose window ended
                if wait <= 0:
                    return True
                if time.monotonic() + wait > deadline:
                    return False
                self.sleep(wait)
                return True
            now = self.wall_clock()
            # Wake in the next window, spread a little so instances do not collide on the same write
            # (random jitter, not security: hence nosec B311).
            next_window = (int(now // self.window_seconds) + 1) * self.window_seconds
            wait = next_window - now + random.uniform(0, 1 / self.rate_per_second)  # nosec B311
            if time.monotonic() + wait > deadline:
                return False
            self.sleep(wait)

    def _next_slot(self, wanted: int) -> float | None:
        """The time of the next slot this instance holds, reserving more when it holds none; None when full."""
        now = self.wall_clock()
        index = int(now // self.window_seconds)
        while self._held and int(self._held[0] // self.window_seconds) < index:
            self._held.popleft()  # its window is over
        if not self._held and index != self._filled_window:
            start = index * self.window_seconds
            reached = min(self.slots, int((now - start) * self.rate_per_second))
            key = f"rate#{round(self.window_seconds * 1000)}#{index}"
            added, value = self.store.reserve_up_to(key, self.slots, wanted, RATE_KEY_TTL_SECONDS, start=reached)
            if not added or value >= self.slots:
                self._filled_window = index  # nothing more to ask this window for
            if not added:
                return None
            self._held.extend(start + n / self.rate_per_second for n in range(value - added, value))
        return self._held.popleft() if self._held else None
