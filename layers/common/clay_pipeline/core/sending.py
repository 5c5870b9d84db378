"""The sender's decisions, on plain data: what a dedupe mark says, what Clay's answer means, how long a
record waits, and the budget and pool arithmetic (the pacing's is core/pacing.py). Clocks and randomness
are passed in; the services (services/sender.py, services/routine_sender.py, services/dedupe.py,
services/sending_limits.py) make the DynamoDB and HTTP calls these decide about.

What happens when Clay answers 429: `classify` names it THROTTLED, `webhook_refusal` / `run_refusal` say
WAIT_OUT_THROTTLE, and `throttle_wait` says whether Retry-After is slept in-process (it fits the invocation's
remaining time and CLAY_MAX_THROTTLE_WAIT_SECONDS) or the record waits that long in its queue
(LeadSending.wait_out_throttle does what it says).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from clay_pipeline.core.outcomes import DeadLetter, Wait

DAY_SECONDS = 86_400
IN_FLIGHT_WAIT_SECONDS = 30  # a lead another invocation is sending comes back after this
RATE_WAIT_SECONDS = 2  # no pacing slot before the deadline, or a 429 without Retry-After
MAX_RETRY_DELAY_SECONDS = 900
LOST_ANSWER = "clay_answer_lost"  # the wait's reason while a lead is held after a lost answer
NEAR_LIMIT_RATIO = 0.9


# -- the dedupe mark -----------------------------------------------------------------------------------
class Claim(enum.Enum):
    CLAIMED = "claimed"  # this caller may send the lead
    ALREADY_SENT = "already_sent"  # Clay has it: skip
    IN_FLIGHT = "in_flight"  # another instance is sending it right now: try again later
    HELD = "held"  # an earlier send's outcome is unknown: wait until the hold ends (Deduper.seconds_held)


class MarkReading(enum.Enum):
    """What a live `dedupe#` mark found by a claim says."""

    SENT = "sent"  # 'sent': already sent
    CONFIRMED = "confirmed"  # 'sending', and its batch recorded the send: already sent (set the mark to 'sent')
    UNKNOWN = "unknown"  # 'unknown': held after a lost answer
    IN_FLIGHT = "in_flight"  # 'sending', not recorded, within its lease: its claimant may still be sending
    HOLD = "hold"  # 'sending', not recorded, past its lease, table path: Clay may have the row: hold it
    TAKE_OVER = "take_over"  # 'sending', not recorded, past its lease, routine path: nothing has it: send again


def mark_batch(mark: Mapping[str, Any]) -> str:
    """The batch id a 'sending' mark was claimed for ('' for marks from before claims named it)."""
    return str(mark.get("batch") or "")


def needs_batch_record(mark: Mapping[str, Any]) -> bool:
    """Whether reading the mark needs its batch's record: a 'sending' mark that names its batch."""
    return str(mark.get("status")) not in ("sent", "unknown") and bool(mark_batch(mark))


def read_mark(
    mark: Mapping[str, Any], now: float, *, recorded: bool, in_flight_seconds: int, hold_unrecorded: bool
) -> MarkReading:
    """`recorded`: the mark's batch lists the lead as sent (a batch record, or a routine run's batch list).

    A 'sending' mark without a lease (older marks) lived `in_flight_seconds` from its creation.
    """
    status = str(mark.get("status"))
    if status == "sent":
        return MarkReading.SENT
    if status == "unknown":
        return MarkReading.UNKNOWN
    if recorded:
        return MarkReading.CONFIRMED
    lease_until = int(mark.get("lease_until") or int(mark.get("created_at", 0)) + in_flight_seconds)
    if lease_until >= now:
        return MarkReading.IN_FLIGHT
    return MarkReading.HOLD if hold_unrecorded else MarkReading.TAKE_OVER


def claim_of(reading: MarkReading) -> Claim | None:
    """The claim's answer for a reading; None when the mark is to be taken over."""
    return {
        MarkReading.SENT: Claim.ALREADY_SENT,
        MarkReading.CONFIRMED: Claim.ALREADY_SENT,
        MarkReading.UNKNOWN: Claim.HELD,
        MarkReading.IN_FLIGHT: Claim.IN_FLIGHT,
        MarkReading.HOLD: Claim.HELD,
        MarkReading.TAKE_OVER: None,
    }[reading]


def takeover_condition(mark: Mapping[str, Any]) -> tuple[str, str | int]:
    """What a take-over's conditional write must find, so that of two copies taking it over one wins: the
    mark's batch id (its invocation's), or for a routine mark from before claims named their batch, its creation."""
    batch = mark_batch(mark)
    return ("batch", batch) if batch else ("created_at", int(mark["created_at"]))


def lease_until(now: float, lease_seconds: float) -> int:
    """The epoch second a claim's lease ends (rounded up: a lease never ends early)."""
    return int(now + lease_seconds) + 1


def seconds_held(mark: Mapping[str, Any] | None, now: float, ttl_attribute: str = "expires_at") -> int:
    """How long a lead is still held after an unknown outcome (0 when its mark does not hold it)."""
    if mark is None or mark.get("status") != "unknown":
        return 0
    return max(0, int(mark[ttl_attribute]) - int(now))


def claim_wait(claim: Claim, held_seconds: Callable[[], int]) -> Wait | None:
    """The wait a claim that may not send means (None for CLAIMED and ALREADY_SENT)."""
    if claim is Claim.IN_FLIGHT:
        return Wait("in_flight", IN_FLIGHT_WAIT_SECONDS)
    if claim is Claim.HELD:
        return Wait(LOST_ANSWER, held_seconds())
    return None


# -- Clay's answers ------------------------------------------------------------------------------------
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})  # repeated in-process (urllib3) before an answer counts
PERMANENT_STATUSES = frozenset({400, 413, 422})
GONE_STATUSES = frozenset({404, 410})


class WebhookOutcome(enum.Enum):
    """A table webhook's answer to one row."""

    ACCEPTED = "accepted"  # 2xx: the row exists in Clay
    THROTTLED = "throttled"  # 429: wait Retry-After
    RETRYABLE = "retryable"  # 5xx, 401/403 (a token to fix), a redirect, connection error, timeout: back to the queue
    PERMANENT = "permanent"  # 400, 413, 422 and any other 4xx not named here: the same body will never be accepted
    GONE = "gone"  # 404, 410: the webhook was deleted or retired


@dataclass(frozen=True)
class ClayAnswer:
    outcome: WebhookOutcome
    status: int | None = None
    reason: str = ""  # short, safe to log: never the URL or the token
    retry_after: float | None = None
    retries: int = 0  # in-process repeats urllib3 made before this answer
    ambiguous: bool = False  # sent, no answer (read timeout, deadline): Clay may or may not have created the row


def classify(status: int, retry_after: float | None = None, retries: int = 0) -> ClayAnswer:
    """A table webhook's status (and its Retry-After in seconds, already parsed) as an answer."""
    if 200 <= status < 300:
        return ClayAnswer(WebhookOutcome.ACCEPTED, status, "accepted", retries=retries)
    if status == 429:
        return ClayAnswer(WebhookOutcome.THROTTLED, status, "throttled", retry_after=retry_after, retries=retries)
    if status in GONE_STATUSES:
        return ClayAnswer(WebhookOutcome.GONE, status, f"webhook_gone_{status}", retries=retries)
    if status in PERMANENT_STATUSES:
        reason = "payload_too_large" if status == 413 else f"rejected_{status}"
        return ClayAnswer(WebhookOutcome.PERMANENT, status, reason, retries=retries)
    if status in (401, 403):
        # A wrong or rotated x-clay-webhook-auth token: fixable by an operator, so keep the message.
        return ClayAnswer(WebhookOutcome.RETRYABLE, status, f"unauthorized_{status}", retries=retries)
    if 400 <= status < 500:
        return ClayAnswer(WebhookOutcome.PERMANENT, status, f"rejected_{status}", retries=retries)
    return ClayAnswer(WebhookOutcome.RETRYABLE, status, f"server_error_{status}", retries=retries)


class ApiOutcome(enum.Enum):
    """The Public API's answer to a routine run start (or a results read)."""

    THROTTLED = "throttled"  # 429: wait Retry-After
    UNAUTHORIZED = "unauthorized"  # 401: no or a wrong key, or the workspace is not provisioned
    FORBIDDEN = "forbidden"  # 403: the key may not run this routine
    NOT_FOUND = "not_found"  # 404: no such routine or run
    INVALID = "invalid"  # 400 and other 4xx: the same request will never succeed
    RETRYABLE = "retryable"  # 5xx, connection errors, timeouts, an answer we cannot read


def api_outcome(status: int) -> ApiOutcome:
    if status == 429:
        return ApiOutcome.THROTTLED
    if status == 401:
        return ApiOutcome.UNAUTHORIZED
    if status == 403:
        return ApiOutcome.FORBIDDEN
    if status == 404:
        return ApiOutcome.NOT_FOUND
    if 400 <= status < 500:
        return ApiOutcome.INVALID
    return ApiOutcome.RETRYABLE


CIRCUIT_OUTCOMES = frozenset({ApiOutcome.UNAUTHORIZED, ApiOutcome.FORBIDDEN, ApiOutcome.NOT_FOUND})


class Step(enum.Enum):
    """What the sender does next about a refusal, besides ending the record."""

    NEXT_WEBHOOK = "next_webhook"  # 404/410: the webhook is retired and the send tried on the next one
    WAIT_OUT_THROTTLE = "wait_out_throttle"  # 429: Retry-After is waited out (throttle_wait), then sent again
    OPEN_CIRCUIT = "open_circuit"  # an operator must act: this and every later record wait CLAY_CIRCUIT_WAIT_SECONDS


def webhook_refusal(answer: ClayAnswer) -> Literal[Step.NEXT_WEBHOOK, Step.WAIT_OUT_THROTTLE] | DeadLetter | Wait:
    """A table webhook's answer other than ACCEPTED: try again now, dead-letter the lead, or let it wait."""
    if answer.outcome is WebhookOutcome.GONE:
        return Step.NEXT_WEBHOOK
    if answer.outcome is WebhookOutcome.THROTTLED:
        return Step.WAIT_OUT_THROTTLE
    if answer.outcome is WebhookOutcome.PERMANENT:
        return DeadLetter(answer.reason, f"Clay answered {answer.status}")
    return Wait(answer.reason, 0, failure=True, ambiguous=answer.ambiguous)


def run_refusal(
    outcome: ApiOutcome, status: int | None, message: str, ambiguous: bool
) -> Literal[Step.WAIT_OUT_THROTTLE, Step.OPEN_CIRCUIT] | DeadLetter | Wait:
    """A refused routine run start: try again now, dead-letter its leads, or let them wait.

    401, 403, 404 need an operator (a wrong key, a workspace without API access, no such routine): the
    circuit opens and the leads wait. 400 and other 4xx never succeed. 5xx, connection errors and timeouts
    are failures retried with backoff."""
    if outcome is ApiOutcome.THROTTLED:
        return Step.WAIT_OUT_THROTTLE
    if outcome in CIRCUIT_OUTCOMES:
        return Step.OPEN_CIRCUIT
    if outcome is ApiOutcome.INVALID:
        return DeadLetter(f"rejected_{status}", f"Clay answered {status}: {message}")
    reason = f"server_error_{status}" if status else message.replace(" ", "_")
    return Wait(reason, 0, failure=True, ambiguous=ambiguous)


@dataclass(frozen=True)
class ThrottleWait:
    seconds: float
    in_process: bool  # sleep `seconds`, then send again; else the record waits `seconds` in its queue


def throttle_wait(
    retry_after: float | None, now: float, deadline: float, send_seconds: float, max_in_process_seconds: float
) -> ThrottleWait:
    """Clay said 429: sleep Retry-After when it and one more send fit before the (monotonic) deadline and
    it is at most CLAY_MAX_THROTTLE_WAIT_SECONDS; else the record waits it out in its queue."""
    wait = retry_after if retry_after is not None else RATE_WAIT_SECONDS
    fits = now + wait + send_seconds <= deadline
    return ThrottleWait(wait, in_process=fits and wait <= max_in_process_seconds)


@dataclass
class InvocationWaits:
    """What this invocation already knows makes every later record wait (no state-table call needed)."""

    budget_wait: float = 0.0  # the daily budget is spent: seconds until the next UTC day
    circuit_open: bool = False  # every webhook full or gone, or the routine refused
    throttled_until: float = 0.0  # monotonic: Clay said 429 for longer than this invocation has


def pending_wait(
    waits: InvocationWaits, now: float, deadline: float, send_seconds: float, circuit_wait_seconds: int
) -> Wait | None:
    """The wait a record meets before any call, or None when it may try (`now`, `deadline` monotonic)."""
    if waits.budget_wait:
        return Wait("budget_exhausted", waits.budget_wait)
    if waits.circuit_open:
        return Wait("circuit_open", circuit_wait_seconds)
    if waits.throttled_until > now:
        return Wait("throttled", waits.throttled_until - now)
    if now + send_seconds > deadline:
        return Wait("out_of_time", 0)
    return None


# -- how long a record waits ---------------------------------------------------------------------------
def retry_ceiling(receives: int) -> int:
    """The longest backoff after a failed send on the `receives`th receive: 10 s doubling, at most 15 min."""
    return min(MAX_RETRY_DELAY_SECONDS, 10 * 2 ** min(receives - 1, 10))


def record_delay(wait: Wait, receives: int, draw: Callable[[int, int], int]) -> int:
    """Seconds before the record is tried again: a wait's own delay; a failure's exponential backoff with
    jitter, `draw(low, high)` picking between half the ceiling and the ceiling (random.randint)."""
    if not wait.failure:
        return wait.delay_seconds
    ceiling = retry_ceiling(receives)
    return draw(ceiling // 2, ceiling)


# -- daily budget and webhook pool ---------------------------------------------------------------------
def budget_day(now: datetime) -> str:
    """The UTC day a send counts against."""
    return now.date().isoformat()


def seconds_until_next_day(now: datetime) -> int:
    """Until the next UTC midnight (at least 1), when the day's budget starts again."""
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return max(1, math.ceil((tomorrow - now).total_seconds()))


@dataclass
class Reservation:
    """Units of a shared counter (budget, pool) one instance reserved and hands out one by one:
    the counter values next_number..last_number."""

    next_number: int
    last_number: int

    @classmethod
    def granted(cls, added: int, value: int) -> Reservation:
        """What a conditional write that added `added` units, leaving the counter at `value`, reserved."""
        return cls(next_number=value - added + 1, last_number=value)

    @property
    def unused(self) -> int:
        return self.last_number - self.next_number + 1

    def take(self) -> int:
        """The next unit's counter value (its number: the pool's submission count)."""
        self.next_number += 1
        return self.next_number - 1

    def give_back(self) -> None:
        """The unit last taken was not used: the next take hands it out again."""
        self.next_number -= 1


def near_limit_threshold(limit: int) -> int:
    """The submission count from which a webhook is near its lifetime limit (90%)."""
    return math.ceil(limit * NEAR_LIMIT_RATIO)


# -- routine runs ----------------------------------------------------------------------------------------
def group_runs(sizes: list[int], most_items: int, most_bytes: int) -> list[list[int]]:
    """Positions of `sizes` grouped into runs of up to `most_items` items and `most_bytes` of inputs, in order."""
    runs: list[list[int]] = []
    size = 0
    for position, lead_size in enumerate(sizes):
        if not runs or len(runs[-1]) >= most_items or size + lead_size > most_bytes:
            runs.append([])
            size = 0
        runs[-1].append(position)
        size += lead_size
    return runs
