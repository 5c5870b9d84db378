"""SenderFunction against moto's server and a loopback stand-in for Clay's table webhook."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.batch_records import SentBatches, hour_bucket, unpack_bodies
from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.adapters.dynamodb import item_size
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.leads import Lead
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.sending_limits import DailyBudget
from local.http_stub import Reply, StubServer, answering_together
from local.sqs_events import from_received
from tests.conftest import LambdaContextStub
from tests.dynamodb_calls import recorded_dynamodb_calls

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"
CLAY_TOKEN = "clay-webhook-token-for-tests"
HOOK_A, HOOK_B = "/v3/sources/webhook/hook-a", "/v3/sources/webhook/hook-b"


def lead(number: int, **extra: Any) -> dict[str, Any]:
    return {"email": f"person{number}@example.com", "first_name": f"P{number}", "source": "api", **extra}


class RecordingQueue(Queue):
    """LeadQueue that remembers the visibility the sender asked for."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        object.__setattr__(self, "visibility", {})

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.visibility[receipt_handle] = seconds  # type: ignore[attr-defined]
        super().change_visibility(receipt_handle, seconds)


class Sender:
    """A cold-started SenderFunction plus what the tests inspect."""

    def __init__(self, module: Any, stack: Any) -> None:
        self.module = module
        self.stack = stack
        self.queue_url = stack.queue_urls["LeadQueue"]
        self.state = StateStore(stack.table_names["StateTable"])
        self.lead_queue = RecordingQueue(self.queue_url)
        module.sender.sending.lead_queue = self.lead_queue

    def enqueue(self, *bodies: dict[str, Any] | str) -> None:
        for body in bodies:
            client("sqs").send_message(
                QueueUrl=self.queue_url, MessageBody=body if isinstance(body, str) else json.dumps(body)
            )

    def receive(self, expected: int) -> dict[str, Any]:
        """An SQS event built from real received messages (real receipt handles), as Lambda builds it."""
        messages: list[dict[str, Any]] = []
        for _ in range(20):
            if len(messages) >= expected:
                break
            response = client("sqs").receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, expected - len(messages)),
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            messages.extend(response.get("Messages", []))
        assert len(messages) == expected
        return from_received(messages, str(self.stack.resolver.attributes[("LeadQueue", "Arn")]))

    def run(self, event: dict[str, Any], remaining_ms: int = 30_000) -> list[str]:
        """Invoke the handler; the ids of the messages it reported as failed."""
        response = self.module.lambda_handler(event, LambdaContextStub("sender", remaining_ms))
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def send(self, *bodies: dict[str, Any] | str, remaining_ms: int = 30_000) -> tuple[dict[str, Any], list[str]]:
        self.enqueue(*bodies)
        event = self.receive(len(bodies))
        return event, self.run(event, remaining_ms)

    def dead_letters(self) -> list[dict[str, Any]]:
        found = []
        while True:
            messages = (
                client("sqs")
                .receive_message(
                    QueueUrl=self.stack.queue_urls["LeadDLQ"],
                    MaxNumberOfMessages=10,
                    MessageAttributeNames=["All"],
                    WaitTimeSeconds=0,
                )
                .get("Messages", [])
            )
            if not messages:
                return found
            for message in messages:
                attributes = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
                found.append({"body": message["Body"], **attributes})
                client("sqs").delete_message(
                    QueueUrl=self.stack.queue_urls["LeadDLQ"], ReceiptHandle=message["ReceiptHandle"]
                )

    def pool_count(self, url: str) -> int:
        return self.state.counter(f"pool#{webhook_fingerprint(url)}")

    def budget_count(self) -> int:
        return self.state.counter(f"budget#{datetime.now(UTC).date().isoformat()}")


def run_at_once(senders: list[Sender], leads_each: int) -> list[list[str]]:
    """Each sender gets a batch of its own leads; all batches run in parallel threads. Their failures."""
    events = []
    for number, sender in enumerate(senders):
        sender.enqueue(*(lead(100 * number + n) for n in range(leads_each)))
        events.append(sender.receive(leads_each))
    results: dict[int, list[str]] = {}

    def run(index: int) -> None:
        results[index] = senders[index].run(events[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(senders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(len(senders))), "a sender did not finish its batch"
    return [results[index] for index in range(len(senders))]


def ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


def emitted_metrics(output: str, name: str) -> list[dict[str, Any]]:
    """Powertools EMF documents in stdout that carry metric `name`."""
    found = []
    for line in output.splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            document = json.loads(line)
            if name in document:
                found.append(document)
    return found


@pytest.fixture
def clay(http_stub: StubServer) -> StubServer:
    return http_stub


@pytest.fixture
def make_sender(load_function: Any, stack: Any, clay: StubServer) -> Any:
    def make(**overrides: str) -> Sender:
        settings = {
            "CLAY_WEBHOOK_URLS": f"{clay.url}{HOOK_A},{clay.url}{HOOK_B}",
            "CLAY_WEBHOOK_AUTH_TOKEN": CLAY_TOKEN,
            "CLAY_SEND_RATE_PER_SECOND": "1000",
            "CLAY_REQUEST_TIMEOUT_SECONDS": "2",
            "CLAY_RETRY_BACKOFF_SECONDS": "0",
            # One send at a time, so a test can say which lead met which answer; concurrent sends have their own tests.
            "CLAY_SEND_CONCURRENCY": "1",
            **overrides,
        }
        return Sender(load_function("SenderFunction", **settings), stack)

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
    client("sqs").change_message_visibility(
        QueueUrl=sender.queue_url, ReceiptHandle=event["Records"][2]["receiptHandle"], VisibilityTimeout=0
    )
    failures = sender.run(sender.receive(1))
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
    client("sqs").delete_message(QueueUrl=sender.queue_url, ReceiptHandle=event["Records"][0]["receiptHandle"])
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=sender.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert sender.dead_letters() == []


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


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_pacing_holds_across_two_concurrent_senders(make_sender: Any, clay: StubServer, concurrency: str) -> None:
    # GIVEN two sender instances sharing a rate of 5 per second, each with its own batch of eight
    rate, per_instance = 5, 8
    senders = [make_sender(CLAY_SEND_RATE_PER_SECOND=str(rate), CLAY_SEND_CONCURRENCY=concurrency) for _ in range(2)]
    # WHEN both run at the same time
    results = run_at_once(senders, per_instance)
    # THEN every lead arrived once
    assert results == [[], []]
    arrivals = sorted(request.received_at for request in clay.received())
    assert len(arrivals) == 2 * per_instance
    assert len({request.json()["email"] for request in clay.received()}) == 2 * per_instance
    # AND Clay's own log never saw more than the rate in any one-second window (+2: a send straddling
    # each window edge), and the whole run was spread over the time the rate requires
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert busiest <= rate + 2
    assert arrivals[-1] - arrivals[0] >= (2 * per_instance - 1) / rate - 0.5


# -- what a batch costs in the state table ----------------------------------------------------------
def test_a_batch_reserves_budget_and_pool_with_one_write_each(make_sender: Any, clay: StubServer) -> None:
    # GIVEN a daily budget and a batch of ten new leads
    sender = make_sender(CLAY_DAILY_SEND_BUDGET="1000")
    sender.enqueue(*(lead(n) for n in range(10)))
    event = sender.receive(10)
    # WHEN it is processed
    with recorded_dynamodb_calls() as calls:
        failures = sender.run(event)
    # THEN all ten are sent, with one write for the budget and one for the pool (every unit was used:
    # nothing to give back) and one question whether the webhook is retired
    assert failures == []
    assert len(clay.received(HOOK_A)) == 10
    assert calls.on("budget#") == 1
    assert calls.on("pool#") == 1
    assert calls.on("webhook-dead#") == 1
    # AND the one per-lead write that makes a redelivery safe is the dedupe claim (the batch's record
    # confirms the sends), and pacing took one write per one-second window the batch's sends fell in
    # (two when the batch straddled a window's end)
    assert calls.on("dedupe#", "PutItem") == 10
    assert calls.on("dedupe#", "UpdateItem") == 0
    assert calls.on("sent#", "PutItem") == 1
    assert 1 <= calls.on("rate#") <= 2
    assert sender.budget_count() == sender.pool_count(f"{clay.url}{HOOK_A}") == 10


def test_the_templates_batch_of_twenty_at_ten_a_second_takes_few_writes_beyond_its_claims(
    make_sender: Any, clay: StubServer
) -> None:
    # GIVEN the template's sender settings: a batch of twenty, 10 sends a second, four POSTs in flight
    sender = make_sender(CLAY_SEND_RATE_PER_SECOND="10", CLAY_SEND_CONCURRENCY="4")
    sender.enqueue(*(lead(n) for n in range(20)))
    event = sender.receive(20)
    # WHEN it is processed
    with recorded_dynamodb_calls() as calls:
        failures = sender.run(event)
    # THEN all twenty reached Clay, each claimed once, with one pool write, at most three pacing
    # writes (two-second windows of twenty slots) and one batch record
    assert failures == []
    assert len({request.json()["email"] for request in clay.received()}) == 20
    assert calls.on("dedupe#", "PutItem") == 20
    assert calls.on("pool#") == 1
    assert 1 <= calls.on("rate#") <= 3
    assert calls.on("sent#", "PutItem") == 1
    # AND that record lists all twenty within one write unit (1 KB)
    mark = sender.state.get(f"dedupe#{Lead.model_validate(lead(0)).lead_id}")
    assert mark is not None
    record = SentBatches(sender.state.table_name).get(str(mark["batch"]))
    assert record is not None
    assert len(record["leads"]) == 20
    assert item_size({key: value for key, value in record.items() if key != "bodies"}) <= 1024


def test_two_instances_given_the_same_lead_at_once_post_it_once(make_sender: Any, clay: StubServer) -> None:
    # GIVEN the same person queued twice (a producer's retry) and two instances each holding one copy
    senders = [make_sender(CLAY_SEND_CONCURRENCY="4") for _ in range(2)]
    senders[0].enqueue(lead(7), {**lead(7), "source": "web-form"})
    events = [senders[0].receive(1), senders[1].receive(1)]
    start = threading.Barrier(2, timeout=5)
    failures: dict[int, list[str]] = {}

    def run(index: int) -> None:
        start.wait()
        failures[index] = senders[index].run(events[index])

    # WHEN both instances process their copy at the same moment
    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # THEN Clay got one row; the other copy was skipped as sent or handed back while the first was in flight
    assert sorted(failures) == [0, 1]
    assert len(clay.received()) == 1
    handed_back = [index for index in (0, 1) if failures[index]]
    assert len(handed_back) <= 1
    # AND a copy handed back is skipped once it comes round again: still one row
    for index in handed_back:
        assert senders[index].run(events[index]) == []
    assert len(clay.received()) == 1
    assert senders[0].dead_letters() == []


def test_units_for_rows_not_sent_go_back_at_the_end_of_the_batch(make_sender: Any, clay: StubServer) -> None:
    # GIVEN lead 1 was sent before, and Clay will refuse lead 2 with 400
    sender = make_sender(CLAY_DAILY_SEND_BUDGET="100")
    sender.send(lead(1))
    clay.script(HOOK_A, Reply(400, {"error": "bad"}))
    # WHEN a batch of lead 1 again, lead 2, 3 and 4 is processed
    with recorded_dynamodb_calls() as calls:
        _, failures = sender.send(lead(1), lead(2), lead(3), lead(4))
    # THEN the duplicate is skipped, lead 2 is dead-lettered, and 3 and 4 are sent
    assert failures == []
    assert [item["reason"] for item in sender.dead_letters()] == ["rejected_400"]
    assert len(clay.received(HOOK_A)) == 4  # lead 1 once, then 2 (refused), 3 and 4
    # AND the budget and the pool count only the three rows Clay created
    assert sender.budget_count() == 3
    assert sender.pool_count(f"{clay.url}{HOOK_A}") == 3
    # AND each took one write to reserve for the batch and one to give back the unit not used
    assert calls.on("budget#", "UpdateItem") == 2
    assert calls.on("pool#", "UpdateItem") == 2


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


def test_concurrent_batches_never_pass_a_small_budget_or_pool(make_sender: Any, clay: StubServer) -> None:
    # GIVEN a budget of five rows, webhooks of three submissions, and two instances with five leads each
    senders = [make_sender(CLAY_DAILY_SEND_BUDGET="5", CLAY_WEBHOOK_SUBMISSION_LIMIT="3") for _ in range(2)]
    # WHEN both run at the same time
    results = run_at_once(senders, 5)
    # THEN exactly five rows reached Clay, no webhook passed three, and the other five wait in the queue
    assert len(clay.received()) == 5
    assert len(clay.received(HOOK_A)) <= 3
    assert len(clay.received(HOOK_B)) <= 3
    assert len(results[0]) + len(results[1]) == 5
    assert senders[0].budget_count() == 5
    assert senders[0].pool_count(f"{clay.url}{HOOK_A}") + senders[0].pool_count(f"{clay.url}{HOOK_B}") == 5


def test_crash_mid_batch_over_counts_but_loses_no_lead(make_sender: Any, clay: StubServer) -> None:
    # GIVEN a budget of three and an instance that reserved for a batch of three, sent one, then died
    crashed = make_sender(CLAY_DAILY_SEND_BUDGET="3")
    crashed.enqueue(*(lead(n) for n in range(3)))
    event = crashed.receive(3)
    crashed.module.sender.start(30_000, records=3)
    assert crashed.module.sender.process(QueueRecord.from_event(event["Records"][0])) == "sent"
    # WHEN another instance gets the other two after their visibility timeout
    survivor = make_sender(CLAY_DAILY_SEND_BUDGET="3")
    rest = {**event, "Records": event["Records"][1:]}
    failures = survivor.run(rest)
    # THEN the units the dead instance held stay counted (the limit is reached early, never passed)
    assert survivor.budget_count() == 3
    assert len(clay.received()) == 1
    # AND its leads are not lost: they wait in the queue for the next day's budget
    assert failures == ids(rest)
    assert sorted(survivor.lead_queue.visibility) == sorted(r["receiptHandle"] for r in rest["Records"])
    assert survivor.dead_letters() == []


def test_a_lead_posted_by_an_instance_that_died_before_its_batch_ended_is_held_not_sent_twice(
    make_sender: Any, clay: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an instance (3 s left) that posted a lead and died before its batch record was written
    crashed = make_sender(CLAY_RETRY_ATTEMPTS="0", CLAY_REQUEST_TIMEOUT_SECONDS="0.5")
    crashed.enqueue(lead(1))
    event = crashed.receive(1)
    crashed.module.sender.start(3_000, records=1)
    assert crashed.module.sender.process(QueueRecord.from_event(event["Records"][0])) == "sent"
    assert len(clay.received()) == 1
    # WHEN the message comes back while that invocation could still be running THEN it waits
    survivor = make_sender()
    assert survivor.run(event) == ids(event)
    # WHEN it comes back after that THEN whether Clay has the row is unknown: held, never posted twice meanwhile
    mark = survivor.state.get(f"dedupe#{Lead.model_validate(lead(1)).lead_id}")
    assert mark is not None
    time.sleep(max(0.0, mark["lease_until"] - time.time() + 0.2))  # the dead invocation's lease (its time left)
    assert survivor.run(event) == ids(event)
    assert len(clay.received()) == 1
    assert max(survivor.lead_queue.visibility.values()) >= 3600  # CLAY_UNKNOWN_HOLD_SECONDS, not a retry
    assert len(emitted_metrics(capsys.readouterr().out, "ClaySendUnknown")) == 1


# ----------------------------------------------------------------------------- batch record (batch_records.py)
def test_a_batch_writes_one_record_of_what_it_sent_and_the_marks_point_to_it(
    make_sender: Any, clay: StubServer, stack: Any
) -> None:
    # GIVEN a lead already sent, and Clay answering the next POST 503 (urllib3 retries it)
    sender = make_sender()
    sender.send(lead(1))
    clay.script(HOOK_A, Reply(503))
    # WHEN a batch of that lead and two new ones (one on its 3rd receive) is processed
    sender.enqueue(lead(1), lead(2, source="web-form"), lead(3))
    event = sender.receive(3)
    event["Records"][2]["attributes"]["ApproximateReceiveCount"] = "3"
    with recorded_dynamodb_calls() as calls:
        assert sender.run(event) == []
    # THEN one batch record was written for the two it sent: webhook, receives and POSTs per lead
    assert calls.on("sent#", "PutItem") == 1
    id2, id3 = (str(Lead.model_validate(lead(n)).lead_id) for n in (2, 3))
    mark = sender.state.get(f"dedupe#{id2}")
    assert mark is not None
    record = SentBatches(stack.table_names["StateTable"]).get(mark["batch"])
    assert record is not None
    # [webhook, seconds sent before the record's sent_at, receives, POSTs] (batch_records.ENTRY)
    (webhook2, before2, receives2, posts2), (webhook3, before3, receives3, posts3) = (
        record["leads"][lead_id] for lead_id in (id2, id3)
    )
    assert (webhook2, receives2, posts2) == (0, 1, 2)
    assert (webhook3, receives3, posts3) == (0, 3, 1)
    assert set(record["leads"]) == {id2, id3}
    assert record["sent_bucket"] == hour_bucket(record["sent_at"])
    assert min(before2, before3) == 0  # sent_at is the batch's last send
    assert max(before2, before3) <= 5
    assert 29 * 86400 < record["expires_at"] - record["sent_at"] <= 30 * 86400  # as long as the dedupe marks
    assert record["bodies"] == b""  # kept only with STALE_REQUEUE
    # AND the lead's dedupe mark says where it came from (what `clay-pipeline trace` shows)
    assert (mark["source"], mark["status"]) == ("web-form", "sending")  # confirmed by the record above
    assert datetime.fromisoformat(mark["submitted_at"]).tzinfo is not None
    # AND a batch that sent nothing writes no record (it read lead 2's record to know it was sent)
    with recorded_dynamodb_calls() as calls:
        sender.send(lead(2))
    assert calls.on("sent#", "PutItem") == 0
    assert calls.on("sent#", "GetItem") == 1


def test_with_stale_requeue_the_batch_record_keeps_each_body_clay_got(
    make_sender: Any, clay: StubServer, stack: Any
) -> None:
    # GIVEN STALE_REQUEUE on WHEN a lead is sent
    sender = make_sender(STALE_REQUEUE="true")
    sender.send(lead(7, custom_column="kept"))
    # THEN its batch record holds the very body Clay received, compressed
    [request] = clay.received(HOOK_A)
    lead_id = request.json()["lead_id"]
    mark = sender.state.get(f"dedupe#{lead_id}")
    assert mark is not None
    record = SentBatches(stack.table_names["StateTable"]).get(mark["batch"])
    assert record is not None
    assert json.loads(unpack_bodies(record["bodies"])[lead_id]) == request.json()
