"""StaleSweeperFunction against moto's server: it reads only its window's batch records and leads.

Batch records and leads are written as the sender and the callback write them (SentBatches,
LeadsTable), with send times in the past; the sweeper's clock is moved instead of waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from clay_pipeline.adapters import batch_records
from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.batch_records import SENT_RECORD_TTL_SECONDS, SentBatches, hour_bucket, iso
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.dynamodb import to_item
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.leads import body_hash
from clay_pipeline.services.sweeper import CHECKPOINT_KEY
from local.apigw import http_event
from local.http_stub import StubServer
from local.sqs_events import from_received
from tests.conftest import LambdaContextStub
from tests.dynamodb_calls import before_dynamodb_calls
from tests.integration.test_sender import emitted_metrics
from tests.reliability.test_callback_reliability import (
    LEAD,
    SECRET,
    VERSION,
    DyingQueue,
    ProcessDied,
    queued,
    routed_to_zapier,
)

pytestmark = pytest.mark.integration

HOUR = 3600
NOW = int(time.time())


@dataclass
class Reads:
    """What the sweeper asked DynamoDB for."""

    operations: list[str] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)  # SentByHour partitions queried
    keys_read: list[str] = field(default_factory=list)  # leads table keys of BatchGetItem


@contextmanager
def recorded_reads() -> Iterator[Reads]:
    reads = Reads()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        reads.operations.append(model.name)
        if model.name == "Query":
            assert params["IndexName"] == "SentByHour"
            reads.buckets.append(params["ExpressionAttributeValues"][":bucket"]["S"])
        if model.name == "BatchGetItem":
            for request in params["RequestItems"].values():
                reads.keys_read += [key["lead_key"]["S"] for key in request["Keys"]]

    with before_dynamodb_calls(record):
        yield reads


def lead_id(number: int) -> str:
    return f"ld_{number:024d}"


class History:
    """Sends and callbacks written the way the sender and the callback write them."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.state, self.leads_table = stack.table_names["StateTable"], stack.table_names["LeadsTable"]
        self.batches = SentBatches(self.state)
        self.leads = LeadsTable(self.leads_table)

    def batch(self, batch_id: str, sent_at: int, ids: list[str], bodies: bytes = b"") -> None:
        entries = {lead: [0, 0, 1, 1] for lead in ids}  # batch_records.ENTRY
        self.batches.put(batch_id, sent_at, entries, SENT_RECORD_TTL_SECONDS, bodies)

    def callback(self, lead: str, at: float) -> None:
        CallbackClaims(self.leads_table).save_enrichment(
            lead, f"{lead}#h", {"lead_id": lead, "email": f"{lead}@x.io"}, iso(at)
        )

    def bulk(self, sends: dict[int, list[str]], called_back: dict[str, float]) -> None:
        """Many batch records and called-back leads at once (BatchWriteItem: 25 items per call)."""
        items: list[tuple[str, dict[str, Any]]] = []
        for sent_at, ids in sends.items():
            entries = {lead: [0, 0, 1, 1] for lead in ids}  # batch_records.ENTRY
            record = {"pk": f"sent#{sent_at}", "sent_bucket": hour_bucket(sent_at), "sent_at": sent_at}
            items.append((self.state, to_item({**record, "leads": entries, "expires_at": sent_at + 8 * 86400})))
        for lead, at in called_back.items():
            item = {"lead_key": lead, "received_at": iso(at), "callbacks": 1, "routing_status": "routed"}
            items.append((self.leads_table, to_item(item)))
        for start in range(0, len(items), 25):
            chunk: dict[str, list[dict[str, Any]]] = {}
            for table, item in items[start : start + 25]:
                chunk.setdefault(table, []).append({"PutRequest": {"Item": item}})
            client("dynamodb").batch_write_item(RequestItems=chunk)

    def item(self, lead: str) -> dict[str, Any]:
        found = self.leads.get(lead)
        assert found is not None
        return found

    def checkpoint(self) -> int:
        mark = StateStore(self.state).get(CHECKPOINT_KEY)
        return int(mark["swept_to"]) if mark else 0


@pytest.fixture
def history(stack: Any) -> History:
    return History(stack)


@pytest.fixture
def make_sweeper(load_function: Any) -> Any:
    def make(clock: float = NOW, **env: str) -> Any:
        module = load_function("StaleSweeperFunction", **env)
        module.sweeper.clock = lambda: clock
        return module

    return make


def sweep(module: Any, clock: float | None = None) -> dict[str, Any]:
    if clock is not None:
        module.sweeper.clock = lambda: clock
    report: dict[str, Any] = module.lambda_handler({}, LambdaContextStub("sweeper", 300_000))
    return report


def test_a_sweep_reads_only_its_window_in_a_table_of_thousands(
    history: History, make_sweeper: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 72 hours of sends, a batch of 10 leads every 10 minutes (4,320 leads, 432 batch records), each
    # called back a minute later, except in the hour that is now 24-25 hours old: there three leads never
    # came back and one was re-sent after its only callback
    window_end = NOW - 24 * HOUR
    sends: dict[int, list[str]] = {}
    for number in range(432):
        sent_at = NOW - 72 * HOUR + number * 600 + 1
        sends[sent_at] = [lead_id(number * 10 + n) for n in range(10)]
    in_window = {at: ids for at, ids in sends.items() if window_end - HOUR < at <= window_end}
    silent = [ids[n] for ids in list(in_window.values())[:3] for n in (4,)]
    resent = next(iter(in_window.values()))[7]
    called_back = {lead: at + 60 for at, ids in sends.items() for lead in ids if lead not in silent}
    called_back[resent] = min(in_window) - 3 * HOUR  # its callback came before this send
    history.bulk(sends, called_back)
    sweeper = make_sweeper(clock=NOW)
    # WHEN the hourly sweep runs (its first run: it looks back one hour)
    with recorded_reads() as reads:
        report = sweep(sweeper)
    # THEN it read the window's batch records through the index (one Query per hour it spans, no Scan)
    assert "Scan" not in reads.operations
    assert set(reads.buckets) <= {hour_bucket(window_end - HOUR + 1), hour_bucket(window_end)}
    assert report["batches"] == len(in_window) == 6
    # AND the window's 60 leads from the leads table, not the 4,320
    assert sorted(reads.keys_read) == sorted(lead for ids in in_window.values() for lead in ids)
    assert reads.operations.count("BatchGetItem") == 1
    # AND marked exactly the silent and the re-sent leads stale
    assert (report["stale"], report["leads_checked"]) == (4, 60)
    for lead in [*silent, resent]:
        item = history.item(lead)
        assert item["routing_status"] == "stale"
        assert item["clay_sent_at"] == iso(next(at for at, ids in in_window.items() if lead in ids))
    assert history.item(lead_id(0))["routing_status"] == "routed"
    # AND published the count the alarm watches, and moved its checkpoint to the window's end
    [metric] = emitted_metrics(capsys.readouterr().out, "LeadsStale")
    assert metric["LeadsStale"] == [4.0]
    assert history.checkpoint() == window_end
    # WHEN it runs again an hour later THEN it reads the next hour only, and finds nothing new there
    with recorded_reads() as reads:
        later = sweep(sweeper, NOW + HOUR)
    assert (later["batches"], later["leads_checked"], later["stale"]) == (6, 60, 0)
    assert len(reads.keys_read) == 60
    # AND a run with no new window (retried at the same time) reads no batch record at all
    with recorded_reads() as reads:
        again = sweep(sweeper, NOW + HOUR)
    assert reads.operations == ["GetItem", "GetItem"]  # the checkpoint, the pause switch
    assert again["batches"] == 0


def test_a_missed_run_is_caught_up_and_a_marked_lead_is_not_counted_twice(history: History, make_sweeper: Any) -> None:
    # GIVEN a lead sent 27 hours ago without a callback, one sent 25 hours ago, and a sweep that last ran
    # three hours ago (two hourly runs failed)
    history.batch("b-old", NOW - 27 * HOUR, ["ld_a"])
    history.batch("b-new", NOW - 25 * HOUR, ["ld_b"])
    StateStore(history.state).update(CHECKPOINT_KEY, {"swept_to": NOW - 28 * HOUR})
    sweeper = make_sweeper()
    # WHEN it runs THEN its window is the three missed hours, and both leads are stale
    report = sweep(sweeper)
    assert (report["start"], report["end"]) == (iso(NOW - 28 * HOUR), iso(NOW - 24 * HOUR))
    assert report["stale"] == 2
    # WHEN the same window is swept again (as after a crash before the checkpoint write) THEN nothing is
    # marked or counted twice
    StateStore(history.state).update(CHECKPOINT_KEY, {"swept_to": NOW - 28 * HOUR})
    report = sweep(sweeper)
    assert (report["stale"], report["already_marked"]) == (0, 2)


def test_a_late_callback_clears_the_stale_mark(history: History, make_sweeper: Any) -> None:
    # GIVEN a lead marked stale
    history.batch("b1", NOW - 24 * HOUR - 60, ["ld_late"])
    assert sweep(make_sweeper())["stale"] == 1
    # WHEN Clay finally calls it back
    history.callback("ld_late", time.time())
    # THEN the lead is received again (to be routed), its callbacks counted, and a later sweep leaves it alone
    item = history.item("ld_late")
    assert (item["routing_status"], item["callbacks"]) == ("received", 1)
    StateStore(history.state).delete(CHECKPOINT_KEY)
    assert sweep(make_sweeper(clock=NOW + 30))["stale"] == 0


def test_a_stale_lead_is_requeued_to_clay_once_when_enabled(
    history: History, load_function: Any, stack: Any, http_stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN STALE_REQUEUE on: the sender keeps the bodies it sends, and Clay never calls this lead back
    sender = load_function(
        "SenderFunction",
        CLAY_WEBHOOK_URLS=f"{http_stub.url}/hook",
        STALE_REQUEUE="true",
        CLAY_SEND_RATE_PER_SECOND="100",
    )
    queue_url = stack.queue_urls["LeadQueue"]
    client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps({"email": "quiet@acme.com"}))

    def send_one() -> None:
        [message] = client("sqs").receive_message(QueueUrl=queue_url, AttributeNames=["All"])["Messages"]
        event = from_received([message], str(stack.resolver.attributes[("LeadQueue", "Arn")]))
        assert sender.lambda_handler(event, LambdaContextStub("sender", 60_000))["batchItemFailures"] == []
        client("sqs").delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    send_one()
    [first] = http_stub.received("/hook")
    lead = first.json()["lead_id"]
    sweeper = load_function("StaleSweeperFunction", STALE_REQUEUE="true")
    # WHEN the sweep finds it stale a day later
    report = sweep(sweeper, time.time() + 24 * HOUR + 1)
    # THEN it is marked, its dedupe mark removed, and the very body Clay got is queued once more
    assert (report["stale"], report["requeued"]) == (1, 1)
    assert StateStore(history.state).get(f"dedupe#{lead}") is None
    assert history.item(lead)["requeued_at"]
    [requeued] = client("sqs").receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(requeued["Body"]) == first.json()
    assert requeued["MessageAttributes"]["requeued_by"]["StringValue"] == "stale-sweeper"
    client("sqs").change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=requeued["ReceiptHandle"], VisibilityTimeout=0
    )
    # WHEN the sender sends it again (a minute later, by the batch record's clock) and Clay is silent again
    later = time.time() + 60
    monkeypatch.setattr(batch_records, "time", SimpleNamespace(time=lambda: later))
    send_one()
    assert len(http_stub.received("/hook")) == 2
    StateStore(history.state).delete(CHECKPOINT_KEY)
    report = sweep(sweeper, later + 24 * HOUR + 1)
    # THEN it is stale again but not re-queued a second time
    assert (report["stale"], report["requeued"]) == (1, 0)
    assert client("sqs").receive_message(QueueUrl=queue_url).get("Messages", []) == []


# -- a callback that died between its claim and queueing ------------------------------------------
def post_callback(app: Any, lead: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(lead).encode()
    headers = {"content-type": "application/json", "x-clay-signature": SECRET}
    answer: dict[str, Any] = app.lambda_handler(
        http_event("POST", "/clay/callback", body, headers), LambdaContextStub()
    )
    return answer


def die_after_the_claim(app: Any, lead: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The callback writes its claim, then its process dies before the routing message is queued (a timeout or
    out of memory: API Gateway answers Clay 5xx, which Clay does not retry, and no release runs)."""
    real_queue = app.acceptor.routing_queue
    monkeypatch.setattr(app.acceptor, "routing_queue", DyingQueue())
    with pytest.raises(ProcessDied):
        post_callback(app, lead)
    monkeypatch.setattr(app.acceptor, "routing_queue", real_queue)


def test_a_callback_that_died_before_queueing_is_queued_by_the_sweep_and_delivered_once(
    history: History,
    make_sweeper: Any,
    load_function: Any,
    stack: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN two leads sent to Clay a day ago: one whose callback claimed it and died before queueing it; one
    # whose first callback died the same way and whose second, newer callback (another body) was routed
    superseded = {"lead_id": "ld_newer", "email": "newer@acme.com", "icp_score": "77"}
    history.batch("b1", NOW - 24 * HOUR - 60, [LEAD["lead_id"], superseded["lead_id"]])
    callback = load_function("CallbackFunction", CALLBACK_SECRETS=SECRET)
    die_after_the_claim(callback, LEAD, monkeypatch)
    die_after_the_claim(callback, superseded, monkeypatch)
    assert queued(stack) == 0 and f"pending_{VERSION}" in history.item(LEAD["lead_id"])
    assert json.loads(post_callback(callback, {**superseded, "icp_score": "91"})["body"])["duplicate"] is False
    assert routed_to_zapier(load_function, stack) == 1
    older_claim = f"pending_{body_hash(superseded)[:32]}"
    assert older_claim in history.item(superseded["lead_id"])
    # WHEN the sweep runs before the claim is CALLBACK_UNQUEUED_AFTER_SECONDS old THEN it leaves it (in flight?)
    assert sweep(make_sweeper(clock=time.time() + 60))["unqueued_routed"] == 0
    assert queued(stack) == 0
    # WHEN the same window is swept 16 minutes after the claim, twice (the first sweep failed before its
    # checkpoint write)
    capsys.readouterr()
    for _ in range(2):
        StateStore(history.state).delete(CHECKPOINT_KEY)
        report = sweep(make_sweeper(clock=time.time() + 16 * 60))
        # THEN each queued the dead callback's own routing message; the other lead's older claim needs nothing
        assert report["unqueued_routed"] == 1 and report["stale"] == 0
    assert queued(stack) == 2
    # AND counted and logged it, by ids only
    metrics = emitted_metrics(capsys.readouterr().out, "LeadsUnqueuedRouted")
    assert [metric["LeadsUnqueuedRouted"] for metric in metrics] == [[1.0], [1.0]]
    logged = [record for record in caplog.records if "queued for routing" in record.getMessage()]
    assert [record.__dict__["lead_id"] for record in logged] == [LEAD["lead_id"]] * 2
    assert LEAD["email"] not in str([record.__dict__ for record in logged])
    # AND routing what RoutingQueue holds (both copies) delivers the lead once and completes the claim
    assert routed_to_zapier(load_function, stack) == 1
    item = history.item(LEAD["lead_id"])
    assert VERSION in item["versions"] and f"pending_{VERSION}" not in item and item["routing_status"] == "routed"
    newer = history.item(superseded["lead_id"])
    assert newer["enrichment"]["icp_score"] == 91 and older_claim in newer
    # AND the window swept once more queues nothing: the claim is completed, the other superseded
    StateStore(history.state).delete(CHECKPOINT_KEY)
    assert sweep(make_sweeper(clock=time.time() + 16 * 60))["unqueued_routed"] == 0 and queued(stack) == 0
