"""The sender's decisions (core/sending.py) on plain data: no table, no queue, no Clay."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.sending import (
    LOST_ANSWER,
    ApiOutcome,
    Claim,
    ClayAnswer,
    InvocationWaits,
    MarkReading,
    Reservation,
    Step,
    WebhookOutcome,
    budget_day,
    claim_of,
    claim_wait,
    classify,
    group_runs,
    lease_until,
    near_limit_threshold,
    needs_batch_record,
    pending_wait,
    read_mark,
    record_delay,
    run_refusal,
    seconds_held,
    seconds_until_next_day,
    takeover_condition,
    throttle_wait,
    webhook_refusal,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
DAYS_30 = 30 * 86_400


def reading(mark: dict[str, Any], *, recorded: bool = False, hold_unrecorded: bool = True) -> MarkReading:
    return read_mark(mark, NOW, recorded=recorded, in_flight_seconds=300, hold_unrecorded=hold_unrecorded)


def claimed(batch: str = "b1", lease_seconds: float = 60, at: float = NOW) -> dict[str, Any]:
    """A 'sending' mark as Deduper.claim writes it."""
    return {"status": "sending", "batch": batch, "lease_until": lease_until(at, lease_seconds), "created_at": int(at)}


# -- the dedupe mark -----------------------------------------------------------------------------------
def test_a_claim_within_its_lease_and_not_yet_recorded_is_in_flight() -> None:
    # GIVEN a lead claimed by a batch that has not ended
    mark = claimed("b1", lease_seconds=60)
    assert claim_of(reading(mark)) is Claim.IN_FLIGHT  # its batch has not ended
    # WHEN its batch ends and records it THEN it is sent, lease or not
    assert claim_of(reading(mark, recorded=True)) is Claim.ALREADY_SENT


def test_lead_marked_sent_by_an_operator_during_the_hold_is_skipped() -> None:
    # GIVEN a held lead that an operator found in Clay and marked sent (the README's update-item)
    held = {**claimed(), "status": "unknown", "held_at": int(NOW), "expires_at": int(NOW) + 3600}
    marked = {**held, "status": "sent", "expires_at": int(NOW) + DAYS_30}
    # THEN it is never sent again within the dedupe days
    assert claim_of(reading(marked)) is Claim.ALREADY_SENT
    assert seconds_held(marked, NOW) == 0


def test_a_sent_mark_is_already_sent_whatever_its_lease() -> None:
    # GIVEN a confirmed mark long past its claim's lease WHEN read THEN Clay has the lead
    mark = {**claimed(lease_seconds=-3600), "status": "sent"}
    assert reading(mark) is MarkReading.SENT
    assert not needs_batch_record(mark)  # no batch record is read for it


def test_a_mark_its_batch_recorded_is_confirmed() -> None:
    # GIVEN a 'sending' mark past its lease WHEN its batch record lists the lead THEN it was sent
    mark = claimed(lease_seconds=-5)
    assert needs_batch_record(mark)
    assert reading(mark, recorded=True) is MarkReading.CONFIRMED
    assert claim_of(MarkReading.CONFIRMED) is Claim.ALREADY_SENT


def test_an_unknown_mark_is_held_for_what_is_left_of_its_hold() -> None:
    # GIVEN a lead whose answer was lost an hour-long hold ago minus ten minutes
    mark = {"status": "unknown", "held_at": int(NOW) - 600, "expires_at": int(NOW) + 3000}
    # WHEN read THEN it is held, for the 3000 s left, and no batch record is read
    assert reading(mark) is MarkReading.UNKNOWN
    assert claim_of(MarkReading.UNKNOWN) is Claim.HELD
    assert seconds_held(mark, NOW) == 3000
    assert not needs_batch_record(mark)


def test_a_lapsed_unrecorded_claim_is_held_on_the_table_path_and_taken_over_on_the_routine_path() -> None:
    # GIVEN a claimant that ended without recording its send (its lease is over)
    mark = claimed(lease_seconds=-5)
    # THEN the table path cannot know whether Clay has the row: it holds the lead as a lost answer
    assert reading(mark) is MarkReading.HOLD
    assert claim_of(MarkReading.HOLD) is Claim.HELD
    # AND the routine path knows no recorded run has it: the mark is taken over and the lead sent again
    assert reading(mark, hold_unrecorded=False) is MarkReading.TAKE_OVER
    assert claim_of(MarkReading.TAKE_OVER) is None


def test_an_older_mark_without_a_lease_lived_in_flight_seconds_from_its_creation() -> None:
    # GIVEN marks written before claims carried a lease
    young = {"status": "sending", "created_at": int(NOW) - 200}
    old = {"status": "sending", "created_at": int(NOW) - 400}
    # THEN one created within in_flight_seconds (300) is in flight, an older one is not
    assert reading(young) is MarkReading.IN_FLIGHT
    assert reading(old) is MarkReading.HOLD
    assert not needs_batch_record(young)  # it names no batch to look up


def test_a_take_over_is_conditional_on_that_very_mark() -> None:
    # GIVEN a mark naming its batch, and a routine mark from before claims named one
    # THEN a take-over's write must find the same batch id, or the same creation time
    assert takeover_condition(claimed("b9")) == ("batch", "b9")
    assert takeover_condition({"status": "sending", "created_at": 1_700_000_000}) == ("created_at", 1_700_000_000)


def test_a_lease_is_rounded_up_never_ending_early() -> None:
    assert lease_until(NOW + 0.2, 60) == int(NOW) + 61
    assert lease_until(NOW, 0) == int(NOW) + 1


def test_a_claim_that_may_not_send_waits_without_counting_as_a_failure() -> None:
    # GIVEN each claim answer WHEN turned into the record's wait
    in_flight = claim_wait(Claim.IN_FLIGHT, lambda: 0)
    held = claim_wait(Claim.HELD, lambda: 7200)
    # THEN in flight comes back in 30 s, held after what is left of the hold; neither pushes toward the DLQ
    assert in_flight is not None and (in_flight.reason, in_flight.delay_seconds, in_flight.failure) == (
        "in_flight",
        30,
        False,
    )
    assert held is not None and (held.reason, held.delay_seconds, held.failure) == (LOST_ANSWER, 7200, False)
    assert claim_wait(Claim.CLAIMED, lambda: 0) is None
    assert claim_wait(Claim.ALREADY_SENT, lambda: 0) is None


def test_seconds_held_is_zero_when_nothing_holds_the_lead() -> None:
    assert seconds_held(None, NOW) == 0
    assert seconds_held(claimed(), NOW) == 0
    assert seconds_held({"status": "unknown", "expires_at": int(NOW) - 10}, NOW) == 0  # the hold has passed


# -- Clay's answers: the table webhook -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, WebhookOutcome.ACCEPTED),
        (202, WebhookOutcome.ACCEPTED),
        (429, WebhookOutcome.THROTTLED),
        (400, WebhookOutcome.PERMANENT),
        (413, WebhookOutcome.PERMANENT),
        (422, WebhookOutcome.PERMANENT),
        (404, WebhookOutcome.GONE),
        (410, WebhookOutcome.GONE),
        (401, WebhookOutcome.RETRYABLE),  # a wrong token is an operator fix, not a reason to drop leads
        (500, WebhookOutcome.RETRYABLE),
        (503, WebhookOutcome.RETRYABLE),
    ],
)
def test_classify(status: int, outcome: WebhookOutcome) -> None:
    assert classify(status).outcome is outcome


def test_413_reason_names_the_size_problem() -> None:
    assert classify(413).reason == "payload_too_large"


def test_a_429_carries_its_retry_after_and_other_4xx_are_permanent() -> None:
    assert classify(429, 7.0).retry_after == 7.0
    assert (classify(418).outcome, classify(418).reason) == (WebhookOutcome.PERMANENT, "rejected_418")
    assert classify(403).reason == "unauthorized_403"


def test_a_gone_webhook_is_retired_and_the_send_moves_on() -> None:
    # GIVEN Clay answers 404 WHEN the refusal is read THEN the send is tried on the next webhook
    assert webhook_refusal(classify(404)) is Step.NEXT_WEBHOOK


def test_a_429_is_waited_out() -> None:
    assert webhook_refusal(classify(429, 1.0)) is Step.WAIT_OUT_THROTTLE


def test_a_400_dead_letters_the_lead_with_its_reason() -> None:
    # GIVEN Clay refuses the body for good WHEN the refusal is read THEN the lead goes to the DLQ, saying why
    refusal = webhook_refusal(classify(400))
    assert isinstance(refusal, DeadLetter)
    assert (refusal.reason, refusal.detail) == ("rejected_400", "Clay answered 400")


def test_a_5xx_or_a_lost_answer_is_a_failure_that_waits_with_backoff() -> None:
    # GIVEN a 503 after urllib3's retries, and a read timeout (Clay may have created the row)
    server = webhook_refusal(classify(503))
    lost = webhook_refusal(ClayAnswer(WebhookOutcome.RETRYABLE, reason="read_timeout", ambiguous=True))
    # THEN both are failures (toward the DLQ in the end), and only the lost answer is ambiguous
    assert isinstance(server, Wait) and (server.reason, server.failure, server.ambiguous) == (
        "server_error_503",
        True,
        False,
    )
    assert isinstance(lost, Wait) and (lost.reason, lost.failure, lost.ambiguous) == ("read_timeout", True, True)


# -- Clay's answers: the routine's run start -----------------------------------------------------------
@pytest.mark.parametrize("outcome", [ApiOutcome.UNAUTHORIZED, ApiOutcome.FORBIDDEN, ApiOutcome.NOT_FOUND])
def test_a_refused_run_an_operator_must_fix_opens_the_circuit(outcome: ApiOutcome) -> None:
    assert run_refusal(outcome, 401, "Unauthorized", ambiguous=False) is Step.OPEN_CIRCUIT


def test_a_throttled_run_is_waited_out() -> None:
    assert run_refusal(ApiOutcome.THROTTLED, 429, "slow down", ambiguous=False) is Step.WAIT_OUT_THROTTLE


def test_an_invalid_run_dead_letters_its_leads_with_clays_message() -> None:
    refusal = run_refusal(ApiOutcome.INVALID, 400, "items[0].id is too long", ambiguous=False)
    assert isinstance(refusal, DeadLetter)
    assert (refusal.reason, refusal.detail) == ("rejected_400", "Clay answered 400: items[0].id is too long")


def test_a_failed_run_start_waits_with_backoff_and_keeps_its_budget_when_it_may_have_started() -> None:
    # GIVEN a 502, and a POST that timed out (Clay may have started the run)
    server = run_refusal(ApiOutcome.RETRYABLE, 502, "Bad gateway", ambiguous=False)
    timed_out = run_refusal(ApiOutcome.RETRYABLE, None, "read timeout", ambiguous=True)
    # THEN both are failures; the reason names the status, or what went wrong when there was none
    assert isinstance(server, Wait) and (server.reason, server.failure, server.ambiguous) == (
        "server_error_502",
        True,
        False,
    )
    assert isinstance(timed_out, Wait) and (timed_out.reason, timed_out.ambiguous) == ("read_timeout", True)


# -- 429: in-process or in the queue -------------------------------------------------------------------
def test_a_short_retry_after_that_fits_is_slept_in_process() -> None:
    # GIVEN 30 s left, a send taking at most 5 s, and in-process waits of up to 20 s
    # WHEN Clay says Retry-After: 1 THEN the sender sleeps it and sends again
    wait = throttle_wait(1.0, now=100.0, deadline=130.0, send_seconds=5.0, max_in_process_seconds=20)
    assert (wait.seconds, wait.in_process) == (1.0, True)


def test_a_retry_after_longer_than_the_invocation_has_left_waits_in_the_queue() -> None:
    # GIVEN 30 s left WHEN Clay says Retry-After: 120 THEN the record waits 120 s in its queue
    wait = throttle_wait(120.0, 100.0, 130.0, 5.0, 600)
    assert (wait.seconds, wait.in_process) == (120.0, False)


def test_a_retry_after_past_the_in_process_limit_waits_in_the_queue_even_when_it_fits() -> None:
    wait = throttle_wait(25.0, 100.0, 900.0, 5.0, 20)
    assert (wait.seconds, wait.in_process) == (25.0, False)


def test_a_429_without_retry_after_waits_the_rate_wait() -> None:
    assert throttle_wait(None, 100.0, 130.0, 5.0, 20).seconds == 2


# -- what the invocation already knows -----------------------------------------------------------------
def test_an_invocation_that_knows_a_record_must_wait_says_so_without_a_call() -> None:
    # GIVEN each thing an invocation learns from an earlier record
    def wait_for(waits: InvocationWaits, now: float = 100.0, deadline: float = 200.0) -> Wait | None:
        return pending_wait(waits, now, deadline, send_seconds=10.0, circuit_wait_seconds=900)

    # THEN a spent budget, an open circuit, a long 429 and too little time left each make the record wait
    budget = wait_for(InvocationWaits(budget_wait=3600))
    circuit = wait_for(InvocationWaits(circuit_open=True))
    throttled = wait_for(InvocationWaits(throttled_until=160.0))
    late = wait_for(InvocationWaits(), now=195.0)
    assert budget is not None and (budget.reason, budget.delay_seconds) == ("budget_exhausted", 3600)
    assert circuit is not None and (circuit.reason, circuit.delay_seconds) == ("circuit_open", 900)
    assert throttled is not None and (throttled.reason, throttled.delay_seconds) == ("throttled", 60)
    assert late is not None and (late.reason, late.delay_seconds) == ("out_of_time", 0)
    # AND none of them is a failure; with nothing known the record may try
    assert not any(wait.failure for wait in (budget, circuit, throttled, late))
    assert wait_for(InvocationWaits(throttled_until=50.0)) is None


# -- how long a record waits ---------------------------------------------------------------------------
def test_a_wait_keeps_its_own_delay_and_a_failure_backs_off_with_jitter() -> None:
    # GIVEN a wait and a failure on their third receive, and a draw that records its bounds
    bounds: list[tuple[int, int]] = []

    def draw(low: int, high: int) -> int:
        bounds.append((low, high))
        return high

    # THEN the wait keeps its delay; the failure draws between half of 40 s and 40 s
    assert record_delay(Wait("circuit_open", 900), 3, draw) == 900
    assert record_delay(Wait("server_error_503", 0, failure=True), 3, draw) == 40
    assert bounds == [(20, 40)]


@pytest.mark.parametrize(("receives", "ceiling"), [(1, 10), (2, 20), (5, 160), (7, 640), (8, 900), (40, 900)])
def test_the_backoff_doubles_up_to_fifteen_minutes(receives: int, ceiling: int) -> None:
    assert record_delay(Wait("failed", failure=True), receives, lambda low, high: high) == ceiling


# -- budget and pool -----------------------------------------------------------------------------------
def test_the_budget_day_is_the_utc_date_and_resets_at_midnight() -> None:
    now = datetime(2026, 5, 1, 23, 59, 30, tzinfo=UTC)
    assert budget_day(now) == "2026-05-01"
    assert seconds_until_next_day(now) == 30
    assert seconds_until_next_day(datetime(2026, 5, 2, 0, 0, 0, tzinfo=UTC)) == 86_400
    assert seconds_until_next_day(datetime(2026, 5, 1, 23, 59, 59, 999_999, tzinfo=UTC)) == 1


def test_a_reservation_hands_out_its_units_in_order_and_takes_one_back() -> None:
    # GIVEN a write that added 5 units and left the counter at 12 (units 8 to 12 are this batch's)
    reservation = Reservation.granted(5, 12)
    # WHEN three are taken and the third is given back (its send did not happen)
    taken = [reservation.take() for _ in range(3)]
    reservation.give_back()
    # THEN they were 8, 9, 10; the next take is 10 again, and three stay unused for the batch's end
    assert taken == [8, 9, 10]
    assert reservation.unused == 3
    assert reservation.take() == 10


def test_a_webhook_is_near_its_limit_at_ninety_percent() -> None:
    assert near_limit_threshold(10) == 9
    assert near_limit_threshold(50_000) == 45_000
    assert near_limit_threshold(1) == 1


# -- routine runs ----------------------------------------------------------------------------------------
def test_runs_are_cut_by_items_and_by_bytes_in_arrival_order() -> None:
    # GIVEN five leads, runs of at most two items and 100 bytes
    # THEN a run closes when full, or when the next lead would pass the bytes
    assert group_runs([10, 10, 10, 95, 20], 2, 100) == [[0, 1], [2], [3], [4]]
    assert group_runs([], 2, 100) == []
    assert group_runs([500], 2, 100) == [[0]]  # one lead over the bytes still goes alone (its size is checked before)
