"""Limits on sending to Clay, shared by every sender instance through STATE_TABLE.

Each limit is one atomic conditional write, so concurrent instances never overshoot:
- pacing   `rate#<window>#<index>`: a counter per short wall-clock window; at most
            `slots` sends per window, where slots / window == CLAY_SEND_RATE_PER_SECOND.
            Windows are short (about 0.1 s) so sends are spread out instead of bursting at
            the start of each second; any sliding second holds at most rate + slots.
- pool     `pool#<url fingerprint>`: lifetime submissions per webhook URL, never past the limit;
            the next URL in CLAY_WEBHOOK_URLS is used once one is full.
- retired  `webhook-dead#<url fingerprint>`: Clay answered 404/410 for that URL.
- budget   `budget#<UTC date>`: rows sent today, never past CLAY_DAILY_SEND_BUDGET.
- dedupe   `dedupe#<lead_id>`: 'sending' while a POST is in flight (short TTL, so a crash
            frees it), 'sent' for CLAY_DEDUPE_DAYS after Clay accepted the row.
Webhook URLs are secrets: keys and logs carry a fingerprint or the URL's index, never the URL.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clay_pipeline.clay_client import webhook_fingerprint
from clay_pipeline.observability import count, logger
from clay_pipeline.stores import StateStore

DAY_SECONDS = 86_400
FOREVER_SECONDS = 10 * 365 * DAY_SECONDS  # webhook lifetime counters and retirements never expire
NEAR_LIMIT_RATIO = 0.9
MIN_WINDOW_SECONDS = 0.1
RATE_KEY_TTL_SECONDS = 300
SPENT_CACHE_SECONDS = 60.0  # how long an instance trusts that a URL is full or gone before asking again

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- dedupe --------------------------------------------------------------------------------
class Claim(enum.Enum):
    CLAIMED = "claimed"  # this caller may send the lead
    ALREADY_SENT = "already_sent"  # Clay has it: skip
    IN_FLIGHT = "in_flight"  # another instance is sending it right now: try again later


@dataclass(frozen=True)
class Deduper:
    store: StateStore
    days: int
    in_flight_seconds: int = 300  # longer than one send can take, shorter than LeadQueue's visibility

    def claim(self, lead_id: str) -> Claim:
        if self.days <= 0:
            return Claim.CLAIMED
        key = self._key(lead_id)
        for _ in range(2):  # a mark can expire between the failed put and the get: try once more
            if self.store.put_mark(key, self.in_flight_seconds, {"status": "sending"}):
                return Claim.CLAIMED
            mark = self.store.get(key)
            if mark is not None:
                return Claim.ALREADY_SENT if mark.get("status") == "sent" else Claim.IN_FLIGHT
        return Claim.IN_FLIGHT

    def confirm(self, lead_id: str) -> None:
        if self.days > 0:
            now = int(time.time())
            self.store.update(
                self._key(lead_id), {"status": "sent", "sent_at": now, "expires_at": now + self.days * DAY_SECONDS}
            )

    def release(self, lead_id: str) -> None:
        if self.days > 0:
            self.store.delete(self._key(lead_id))

    @staticmethod
    def _key(lead_id: str) -> str:
        return f"dedupe#{lead_id}"


# -- daily budget --------------------------------------------------------------------------
@dataclass(frozen=True)
class DailyBudget:
    store: StateStore
    limit: int  # 0 = no cap
    clock: Clock = utc_now

    def reserve(self) -> str | None:
        """Count one row against today. Returns the key to release on failure ('' when uncapped), None when spent."""
        if self.limit <= 0:
            return ""
        key = f"budget#{self.clock().date().isoformat()}"
        used = self.store.increment_below(key, self.limit, ttl_seconds=2 * DAY_SECONDS)
        return key if used is not None else None

    def release(self, key: str) -> None:
        if key:
            self.store.decrement(key)

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
    _unusable_until: dict[str, float] = field(default_factory=dict)  # fingerprint -> monotonic time

    def acquire(self, urls: list[str]) -> Webhook | None:
        """Count one submission on the first URL that is neither full nor retired; None when all are."""
        for index, url in enumerate(urls):
            fingerprint = webhook_fingerprint(url)
            if self._unusable_until.get(fingerprint, 0.0) > time.monotonic():
                continue
            if self.store.get(self._dead_key(fingerprint)) is not None:
                self._remember_unusable(fingerprint)
                continue
            used = self.store.increment_below(f"pool#{fingerprint}", self.limit, ttl_seconds=FOREVER_SECONDS)
            if used is None:
                logger.warning("webhook is full; rotating to the next", extra={"webhook_index": index})
                self._remember_unusable(fingerprint)
                continue
            self._watch_usage(index, used)
            return Webhook(index=index, url=url, fingerprint=fingerprint, submissions=used)
        return None

    def release(self, webhook: Webhook) -> None:
        """Give the submission back: Clay did not create the row."""
        self.store.decrement(webhook.pool_key)

    def retire(self, webhook: Webhook, status: int | None) -> None:
        """Clay says the webhook no longer exists: no instance uses it again until the mark is removed."""
        self.store.put_mark(
            self._dead_key(webhook.fingerprint), FOREVER_SECONDS, {"status": status, "webhook_index": webhook.index}
        )
        self._remember_unusable(webhook.fingerprint)

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
        self._unusable_until[fingerprint] = time.monotonic() + SPENT_CACHE_SECONDS

    @staticmethod
    def _dead_key(fingerprint: str) -> str:
        return f"webhook-dead#{fingerprint}"


# -- pacing --------------------------------------------------------------------------------
@dataclass
class Pacer:
    """At most `rate_per_second` sends across all instances, as counters per short wall-clock window.

    Hand-written because no library shares a rate limit between Lambda instances through
    DynamoDB; a fixed window counter is one conditional write per send.
    """

    store: StateStore
    rate_per_second: float
    sleep: Callable[[float], None] = time.sleep
    wall_clock: Callable[[], float] = time.time
    slots: int = field(init=False)
    window_seconds: float = field(init=False)

    def __post_init__(self) -> None:
        self.slots = max(1, round(self.rate_per_second * max(MIN_WINDOW_SECONDS, 1 / self.rate_per_second)))
        self.window_seconds = self.slots / self.rate_per_second

    def acquire(self, deadline: float) -> bool:
        """Wait for a send slot; False if none comes before `deadline` (time.monotonic())."""
        window_ms = round(self.window_seconds * 1000)
        while True:
            now = self.wall_clock()
            index = int(now // self.window_seconds)
            key = f"rate#{window_ms}#{index}"
            if self.store.increment_below(key, self.slots, ttl_seconds=RATE_KEY_TTL_SECONDS) is not None:
                return True
            # Wake in the next window, spread a little so instances do not collide on the same write
            # (random jitter, not security: hence nosec B311).
            wait = (index + 1) * self.window_seconds - now + random.uniform(0, self.window_seconds / 4)  # nosec B311
            if time.monotonic() + wait > deadline:
                return False
            self.sleep(wait)
