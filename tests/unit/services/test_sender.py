"""The table path's sender (services/sender.py, lead_sending.py) through SenderFunction's handler, on the in-memory
state table and queues (tests/unit/services/in_memory_sender.py) and a loopback stand-in for Clay's table webhook:
what each of Clay's answers does to a lead, dedupe, the daily budget, webhook rotation, a wait near maxReceiveCount.
What a batch costs in DynamoDB, concurrent instances and crash windows: tests/integration/test_sender.py (moto)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline.adapters.batch_records import unpack_bodies
from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.core.leads import Lead
from clay_pipeline.services.sending_limits import DailyBudget
from local.http_stub import Reply, StubServer, answering_together
from tests.fakes.state_table import FakeStateStore
from tests.integration.test_sender import CLAY_TOKEN, HOOK_A, HOOK_B, emitted_metrics, ids, lead, table_settings
from tests.unit.services.in_memory_sender import InMemorySender, Queues

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[3] / "events"


@pytest.fixture
def clay(http_stub: StubServer) -> StubServer:
    return http_stub


@pytest.fixture
def make_sender(load_function_without_aws: Any, clay: StubServer) -> Any:
    state, queues = FakeStateStore(), Queues()

    def make(**overrides: str) -> InMemorySender:
        module = load_function_without_aws("SenderFunction", **table_settings(clay, **overrides))
        return InMemorySender(module, state, queues)

    return make


def test_accepted_lead_is_posted_once_with_its_lead_id_and_auth(make_sender: Any, clay: StubServer) -> None:
    # GIVEN a sender and a lead on the queue
    sender = make_sender()
    # WHEN the batch is processed
    _, failures = sender.send(lead(1, custom_column="kept"))
    # THEN Clay got exactly the normalised lead with its lead_id and the auth header
    assert failures == []
    [request] = clay.received(HOOK_A)
    expected = Lead.model_validate(request.json()).to_message()
    assert request.json() == expected
    assert request.json()["lead_id"].startswith("ld_")
    assert request.json()["custom_column"] == "kept"
    assert request.headers["x-clay-webhook-auth"] == CLAY_TOKEN
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 1
    # AND its dedupe claim points to its batch, whose record confirms the send (no second write per lead)
    lead_id = request.json()["lead_id"]
    mark = sender.state.get(f"dedupe#{lead_id}")
    assert mark is not None and mark["status"] == "sending"
    assert sender.module.sender.sent_batches.lists(mark["batch"], lead_id)


def test_event_file_good_malformed_and_oversize(
    make_sender: Any, clay: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN events/sender-batch.json: a good lead, a malformed JSON body and a lead over 100 KB
    sender = make_sender()
    event = json.loads((EVENTS / "sender-batch.json").read_text())
    # WHEN it is processed
    failures = sender.run(event)
    # THEN the good one is sent and the other two go to the DLQ at once, with their reasons
    assert failures == []
    assert len(clay.received()) == 1
    dead = sender.dead_letters()
    assert sorted(item["reason"] for item in dead) == ["malformed_json", "oversize"]
    assert {item["source_message_id"] for item in dead} == set(ids(event)[1:])
    malformed = next(item for item in dead if item["reason"] == "malformed_json")
    assert malformed["body"] == event["Records"][1]["body"]  # kept byte for byte, so a redrive replays it
    assert len(emitted_metrics(capsys.readouterr().out, "ClayDeadLettered")) == 2


def test_429_with_short_retry_after_waits_then_sends(make_sender: Any, clay: StubServer) -> None:
    # GIVEN Clay throttles once with Retry-After: 1
    sender = make_sender()
    clay.script(HOOK_A, Reply(429, {"error": "rate limited"}, {"retry-after": "1"}))
    # WHEN a lead is processed with plenty of time left
    _, failures = sender.send(lead(1))
    # THEN the sender waited at least Retry-After (seen by Clay) and the lead went through
    assert failures == []
    first, second = clay.received(HOOK_A)
    assert second.received_at - first.received_at >= 0.95
    assert sender.lead_queue.visibility == {}


def test_429_longer_than_remaining_time_hands_back_with_visibility(make_sender: Any, clay: StubServer) -> None:
    # GIVEN Clay throttles with a Retry-After longer than the invocation has left
    sender = make_sender()
    clay.script(HOOK_A, Reply(429, {}, {"retry-after": "120"}))
    # WHEN a batch of two is processed
    event, failures = sender.send(lead(1), lead(2), remaining_ms=30_000)
    # THEN neither waits: both go back with a 120 s visibility, and Clay saw only the first
    assert failures == ids(event)
    assert sorted(sender.lead_queue.visibility.values()) == [120, 120]
    assert len(clay.received()) == 1
    assert sender.dead_letters() == []
    # AND nothing stays counted or marked for leads Clay did not take
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 0
    assert sender.state.get(f"dedupe#{Lead.model_validate(lead(1)).lead_id}") is None


def test_500_then_200_is_retried_in_process(
    make_sender: Any, clay: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Clay fails once with 500
    sender = make_sender()
    clay.script(HOOK_A, Reply(500, {"error": "boom"}))
    # WHEN a lead is processed
    _, failures = sender.send(lead(1))
    # THEN the retry succeeded, the submission is counted once, and the retry is reported
    assert failures == []
    assert len(clay.received(HOOK_A)) == 2
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 1
    assert emitted_metrics(capsys.readouterr().out, "ClayRetried")


def test_persistent_5xx_goes_back_to_the_queue_with_backoff(make_sender: Any, clay: StubServer) -> None:
    # GIVEN Clay answers 503 to every attempt
    sender = make_sender(CLAY_RETRY_ATTEMPTS="2")
    clay.script(HOOK_A, *[Reply(503, {})] * 3)
    # WHEN a lead is processed
    event, failures = sender.send(lead(1))
    # THEN three attempts were made, then the message went back with a backoff delay, not to the DLQ
    assert failures == ids(event)
    assert len(clay.received(HOOK_A)) == 3
    [delay] = sender.lead_queue.visibility.values()
    assert 5 <= delay <= 10
    assert sender.dead_letters() == []
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 0


def test_400_and_413_are_dead_lettered_at_once(make_sender: Any, clay: StubServer) -> None:
    # GIVEN Clay refuses the first lead with 400 and the second with 413
    sender = make_sender()
    clay.script(HOOK_A, Reply(400, {"error": "bad"}), Reply(413, {"error": "too large"}))
    # WHEN both are processed
    event, failures = sender.send(lead(1), lead(2))
    # THEN each was tried once, both are in the DLQ with the reason and count as processed
    assert failures == []
    assert len(clay.received(HOOK_A)) == 2
    dead = sender.dead_letters()
    assert sorted(item["reason"] for item in dead) == ["payload_too_large", "rejected_400"]
    assert {item["source_message_id"] for item in dead} == set(ids(event))
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 0


def test_404_retires_the_webhook_and_the_next_one_is_used(
    make_sender: Any, clay: StubServer, captured_logs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the first webhook was deleted in Clay
    sender = make_sender()
    clay.script(HOOK_A, Reply(404, {"error": "not found"}))
    # WHEN two leads are processed
    _, failures = sender.send(lead(1), lead(2))
    # THEN both went to the second webhook, the first is marked dead and an alarm metric is emitted
    assert failures == []
    assert len(clay.received(HOOK_A)) == 1
    assert len(clay.received(HOOK_B)) == 2
    assert sender.state.get(f"webhook-dead#{webhook_fingerprint(clay.url + HOOK_A)}") is not None
    gone = emitted_metrics(capsys.readouterr().out, "ClayWebhookGone")
    assert sorted(m.get("webhook", "-") for m in gone) == ["-", "0"]  # the alarm's metric and the per-webhook one
    # AND the secret URL never appears in the logs
    assert clay.url not in captured_logs.getvalue()


def test_every_webhook_gone_opens_the_circuit_and_messages_wait(make_sender: Any, clay: StubServer) -> None:
    # GIVEN both webhooks answer 410
    sender = make_sender(CLAY_CIRCUIT_WAIT_SECONDS="600")
    clay.script(HOOK_A, Reply(410, {}))
    clay.script(HOOK_B, Reply(410, {}))
    # WHEN two leads are processed
    event, failures = sender.send(lead(1), lead(2))
    # THEN both wait in the queue with the circuit delay; none is dead-lettered
    assert failures == ids(event)
    assert sorted(sender.lead_queue.visibility.values()) == [600, 600]
    assert sender.dead_letters() == []
    assert len(clay.received()) == 2  # one try per webhook, none for the second lead


def test_lost_answer_holds_the_lead_back_instead_of_posting_it_again(
    make_sender: Any, clay: StubServer, captured_logs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Clay answers after the client's timeout (it may well have created the row)
    sender = make_sender(CLAY_REQUEST_TIMEOUT_SECONDS="0.3", CLAY_UNKNOWN_HOLD_SECONDS="7200")
    clay.script(HOOK_A, Reply(200, {}, delay=1.0))
    lead_id = Lead.model_validate(lead(1)).lead_id
    # WHEN a lead is processed
    event, failures = sender.send(lead(1))
    # THEN it was posted once and goes back to the queue for the whole hold, never to the DLQ
    assert failures == ids(event)
    assert len(clay.received(HOOK_A)) == 1
    assert list(sender.lead_queue.visibility.values()) == [7200]
    assert sender.dead_letters() == []
    # AND the submission stays counted, the mark says 'unknown', and an operator can see it
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 1
    mark = sender.state.get(f"dedupe#{lead_id}")
    assert mark is not None and mark["status"] == "unknown"
    assert emitted_metrics(capsys.readouterr().out, "ClaySendUnknown")
    assert "Clay's answer was lost" in captured_logs.getvalue() and lead_id in captured_logs.getvalue()
    # WHEN the message (or the same person submitted again) comes back during the hold
    failures = sender.run(event)
    _, again = sender.send({"email": "PERSON1@example.com", "source": "web-form"})
    # THEN nothing is posted: both wait out the rest of the hold
    assert failures == ids(event) and len(again) == 1
    assert len(clay.received()) == 1
    assert all(7000 <= seconds <= 7200 for seconds in sender.lead_queue.visibility.values())


def test_held_lead_is_sent_once_more_when_the_hold_ends(make_sender: Any, clay: StubServer) -> None:
    # GIVEN a lead held after a lost answer
    sender = make_sender(CLAY_REQUEST_TIMEOUT_SECONDS="0.3")
    clay.script(HOOK_A, Reply(200, {}, delay=1.0))
    event, _ = sender.send(lead(1))
    lead_id = Lead.model_validate(lead(1)).lead_id
    # WHEN the hold has passed and the message comes back
    sender.state.update(f"dedupe#{lead_id}", {"expires_at": int(time.time()) - 1})
    failures = sender.run(event)
    # THEN it is posted a second time (at most one extra row per lost answer) and marked sent
    assert failures == []
    assert len(clay.received()) == 2
    mark = sender.state.get(f"dedupe#{lead_id}")
    assert mark is not None and sender.module.sender.sent_batches.lists(mark["batch"], lead_id)


def test_with_dedupe_off_a_lost_answer_is_retried_like_any_failure(make_sender: Any, clay: StubServer) -> None:
    sender = make_sender(CLAY_REQUEST_TIMEOUT_SECONDS="0.3", CLAY_DEDUPE_DAYS="0")
    clay.script(HOOK_A, Reply(200, {}, delay=1.0))
    event, failures = sender.send(lead(1))
    assert failures == ids(event)
    assert max(sender.lead_queue.visibility.values()) <= 20  # the usual backoff, not a hold


def test_pool_rotates_at_the_limit_and_opens_the_circuit_when_spent(
    make_sender: Any, clay: StubServer, captured_logs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two webhooks of two submissions each
    sender = make_sender(CLAY_WEBHOOK_SUBMISSION_LIMIT="2")
    # WHEN five leads are processed
    event, failures = sender.send(*(lead(n) for n in range(5)))
    # THEN each webhook took exactly two, and the fifth waits with the circuit open
    assert len(clay.received(HOOK_A)) == 2
    assert len(clay.received(HOOK_B)) == 2
    assert failures == [ids(event)[4]]
    assert sender.dead_letters() == []
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 2
    output = capsys.readouterr().out
    assert emitted_metrics(output, "ClayCircuitOpen")
    near = emitted_metrics(output, "ClayPoolNearLimit")
    assert {m["webhook"] for m in near if "webhook" in m} == {"0", "1"}
    assert any("webhook" not in m for m in near)  # the undimensioned metric the alarm watches
    assert "90%" in captured_logs.getvalue()


def test_budget_exhaustion_waits_for_the_next_utc_day(make_sender: Any, clay: StubServer) -> None:
    # GIVEN a budget of two rows a day, at 23:00 UTC
    sender = make_sender(CLAY_DAILY_SEND_BUDGET="2")
    now = [datetime(2026, 3, 1, 23, 0, tzinfo=UTC)]
    sender.module.sender.sending.budget = DailyBudget(sender.state, 2, clock=lambda: now[0])
    # WHEN three leads are processed
    event, failures = sender.send(lead(1), lead(2), lead(3))
    # THEN two are sent and the third waits until midnight, not in the DLQ
    assert failures == [ids(event)[2]]
    assert len(clay.received()) == 2
    assert sender.lead_queue.visibility[event["Records"][2]["receiptHandle"]] == 3600
    assert sender.dead_letters() == []
    # WHEN the next day comes and the message is delivered again
    now[0] = datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC)
    failures = sender.run({"Records": [event["Records"][2]]})
    # THEN it is sent against the new day's budget
    assert failures == []
    assert [r.json()["email"] for r in clay.received()] == [f"person{n}@example.com" for n in (1, 2, 3)]


def test_redelivery_and_repeat_submission_are_not_sent_twice(
    make_sender: Any, clay: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lead that was sent
    sender = make_sender()
    event, _ = sender.send(lead(1))
    # WHEN SQS delivers the same message again, and a producer submits the same person again
    assert sender.run(event) == []
    _, failures = sender.send({"email": "PERSON1@example.com", "source": "web-form"})
    # THEN Clay still has one row and the skips are reported
    assert failures == []
    assert len(clay.received()) == 1
    assert len(emitted_metrics(capsys.readouterr().out, "ClaySkippedDuplicate")) == 2


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_a_lead_queued_twice_in_one_batch_is_sent_once_and_neither_copy_comes_back(
    make_sender: Any, clay: StubServer, capsys: pytest.CaptureFixture[str], concurrency: str
) -> None:
    # GIVEN one batch holding the same person twice (a producer's retry) among other leads
    sender = make_sender(CLAY_SEND_CONCURRENCY=concurrency)
    sender.enqueue(lead(1), lead(2), {**lead(1), "source": "web-form"}, lead(3))
    event = sender.receive(4)
    # WHEN the batch is processed
    failures = sender.run(event)
    # THEN Clay got three rows, the second copy was skipped at once (not handed back to wait for its
    # own batch's claim) and nothing waits in the queue
    assert failures == []
    assert sorted(request.json()["email"] for request in clay.received()) == [
        "person1@example.com",
        "person2@example.com",
        "person3@example.com",
    ]
    assert len(emitted_metrics(capsys.readouterr().out, "ClaySkippedDuplicate")) == 1
    assert sender.lead_queue.visibility == {}
    assert sender.dead_letters() == []


def test_a_lead_queued_twice_in_one_batch_whose_first_copy_failed_tries_again_later(
    make_sender: Any, clay: StubServer
) -> None:
    # GIVEN one batch holding the same person twice, and Clay failing the first POST for good (500s)
    sender = make_sender(CLAY_RETRY_ATTEMPTS="0")
    clay.script(HOOK_A, Reply(500))
    sender.enqueue(lead(1), {**lead(1), "source": "web-form"})
    event = sender.receive(2)
    # WHEN the batch is processed
    failures = sender.run(event)
    # THEN neither copy is lost or skipped: both come back to the queue, and Clay has no row
    assert sorted(failures) == sorted(ids(event))
    assert len(clay.received()) == 1
    assert clay.received()[0].json()["email"] == "person1@example.com"
    assert sender.dead_letters() == []


def test_lead_being_sent_elsewhere_waits_instead_of_being_skipped(make_sender: Any, clay: StubServer) -> None:
    # GIVEN another instance is sending the same lead right now
    sender = make_sender()
    lead_id = Lead.model_validate(lead(1)).lead_id
    assert sender.state.put_mark(f"dedupe#{lead_id}", 300, {"status": "sending"})
    # WHEN this instance gets the lead
    event, failures = sender.send(lead(1))
    # THEN it neither sends nor drops it: the message comes back later
    assert failures == ids(event)
    assert clay.received() == []
    assert list(sender.lead_queue.visibility.values()) == [30]


def test_a_batch_posts_concurrently_each_at_its_own_slot(make_sender: Any, clay: StubServer) -> None:
    # GIVEN a sender posting four at a time, and Clay answering a request only once four are in flight
    clay.responder = answering_together(4, timeout=3, reply=Reply(200, {"success": True}))
    sender = make_sender(CLAY_SEND_CONCURRENCY="4", CLAY_RETRY_ATTEMPTS="0")
    # WHEN a batch of eight is processed
    _, failures = sender.send(*(lead(n) for n in range(8)))
    # THEN all eight were accepted at the first attempt, each lead once
    assert failures == []
    assert len(clay.received()) == 8
    assert len({request.json()["email"] for request in clay.received()}) == 8
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 8


def test_pool_rotates_mid_batch_when_a_webhook_fills(make_sender: Any, clay: StubServer) -> None:
    # GIVEN webhooks of three submissions, the first already used once
    sender = make_sender(CLAY_WEBHOOK_SUBMISSION_LIMIT="3")
    sender.state.reserve_up_to(f"pool#{webhook_fingerprint(clay.url + HOOK_A)}", 3, 1, ttl_seconds=60)
    # WHEN a batch of four is processed
    _, failures = sender.send(*(lead(n) for n in range(4)))
    # THEN the first webhook takes its last two and the second the rest; neither passes its limit
    assert failures == []
    assert len(clay.received(HOOK_A)) == 2
    assert len(clay.received(HOOK_B)) == 2
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 3
    assert sender.pool_count(f"{clay.url}{HOOK_B}") == 2


def test_with_stale_requeue_the_batch_record_keeps_each_body_clay_got(make_sender: Any, clay: StubServer) -> None:
    # GIVEN STALE_REQUEUE on WHEN a lead is sent
    sender = make_sender(STALE_REQUEUE="true")
    sender.send(lead(7, custom_column="kept"))
    # THEN its batch record holds the very body Clay received, compressed
    [request] = clay.received(HOOK_A)
    lead_id = request.json()["lead_id"]
    mark = sender.state.get(f"dedupe#{lead_id}")
    assert mark is not None
    record = sender.module.sender.sent_batches.get(mark["batch"])
    assert record is not None
    assert json.loads(unpack_bodies(record["bodies"])[lead_id]) == request.json()


def test_waiting_message_about_to_reach_max_receives_is_requeued_fresh(make_sender: Any, clay: StubServer) -> None:
    # GIVEN the circuit is open and a message has been received nine times (maxReceiveCount 10)
    sender = make_sender()
    clay.script(HOOK_A, Reply(410, {}))
    clay.script(HOOK_B, Reply(410, {}))
    sender.enqueue(lead(1))
    event = sender.receive(1)
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "9"
    # WHEN it is processed
    failures = sender.run(event)
    # THEN the old copy is done with and a fresh copy waits in the queue: waiting never dead-letters
    assert failures == []
    # Lambda deletes a message not reported as failed
    sender.lead_queue.delete(event["Records"][0]["receiptHandle"])
    assert sender.lead_queue.delayed() == 1  # SQS's ApproximateNumberOfMessagesDelayed
    assert sender.dead_letters() == []
