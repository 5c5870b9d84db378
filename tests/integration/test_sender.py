"""SenderFunction against moto's server and a loopback stand-in for Clay's table webhook: what a batch costs in
DynamoDB, what its batch record stores, concurrent instances sharing pacing, budget and pool through conditional
writes, and crash windows. What each of Clay's answers does to a lead runs on the in-memory state table and
queues in tests/unit/services/test_sender.py."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.batch_records import SentBatches, hour_bucket
from clay_pipeline.adapters.clay_webhook import webhook_fingerprint
from clay_pipeline.adapters.dynamodb import item_size
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.leads import Lead
from clay_pipeline.queue_batch import QueueRecord
from local.http_stub import Reply, StubServer
from local.sqs_events import from_received
from tests.dynamodb_calls import recorded_dynamodb_calls
from tests.sender_invocation import SenderInvocation

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


class Sender(SenderInvocation):
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


def table_settings(clay: StubServer, **overrides: str) -> dict[str, str]:
    """The table path's environment for the tests: Clay's two webhooks on the stub, fast retries."""
    return {
        "CLAY_WEBHOOK_URLS": f"{clay.url}{HOOK_A},{clay.url}{HOOK_B}",
        "CLAY_WEBHOOK_AUTH_TOKEN": CLAY_TOKEN,
        "CLAY_SEND_RATE_PER_SECOND": "1000",
        "CLAY_REQUEST_TIMEOUT_SECONDS": "2",
        "CLAY_RETRY_BACKOFF_SECONDS": "0",
        # One send at a time, so a test can say which lead met which answer; concurrent sends have their own tests.
        "CLAY_SEND_CONCURRENCY": "1",
        **overrides,
    }


@pytest.fixture
def make_sender(load_function: Any, stack: Any, clay: StubServer) -> Any:
    def make(**overrides: str) -> Sender:
        return Sender(load_function("SenderFunction", **table_settings(clay, **overrides)), stack)

    return make


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
