"""RouterFunction against moto's server and loopback stand-ins for every destination: what the ledger, the queues
and the pause switch hold, their write counts, races and crash windows. Decisions and orchestration (a lapsed or
lost lease, a lead waiting in the queue, destinations off or paused, a lead dead-lettered alone, metrics, HubSpot
pausing itself) run on the in-memory stores of
tests/fakes (held to DynamoDB and SQS by their contract suites). A lead's deliveries as such (the events, retries
of what failed, permanent failures,
HubSpot's batches) are tested without AWS in tests/unit/services/test_delivery.py, the routing decisions in
tests/unit/core/test_routing_decisions.py.

Outreach, nurture and Zapier are plain recording servers; HubSpot is the stateful simulator
(local/hubspot_sim.HubSpotSim: contacts by email, batch read and upsert, HubSpot's refusals); Slack is scripted
with 429 + Retry-After where a test needs it. The delivery ledger (on the lead's LeadsTable item)
is read and written directly where a test needs another invocation's lease.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.callback_claims import CallbackClaims
from clay_pipeline.adapters.dynamodb import to_item
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.outcomes import Wait
from clay_pipeline.queue_batch import records_of
from clay_pipeline.services.pause import DestinationSwitch
from clay_pipeline.services.router import LeadRouter, RouterStores
from local.http_stub import RecordedRequest, Reply, StubServer
from local.hubspot_sim import HubSpotSim
from local.sqs_events import from_received, sqs_event, sqs_record
from tests.conftest import LambdaContextStub
from tests.dynamodb_calls import before_dynamodb_calls
from tests.fakes.callback_claims import FakeCallbackClaims
from tests.fakes.leads_table import FakeLeadsTable, LeadItems
from tests.fakes.ledger import FakeLeadLedger
from tests.fakes.queues import FakeQueue
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"
UPSERT = "/crm/v3/objects/contacts/batch/upsert"
READ = "/crm/v3/objects/contacts/batch/read"
RECEIVED_AT = "2026-01-01T00:00:00+00:00"
DAY = 86400


@dataclass
class Sinks:
    outreach: StubServer
    nurture: StubServer
    zapier: StubServer
    hubspot: StubServer
    slack: StubServer

    def calls(self) -> dict[str, int]:
        """Requests per destination (HubSpot: its upserts, not the batch reads before them)."""
        return {
            name: len(server.received(UPSERT if name == "hubspot" else None)) for name, server in vars(self).items()
        }


@pytest.fixture
def crm() -> HubSpotSim:
    return set_up_crm()


def set_up_crm() -> HubSpotSim:
    """HubSpot: the stateful simulator, with the custom properties `clay-pipeline hubspot setup` creates."""
    hubspot = HubSpotSim()
    hubspot.add_custom_properties([("clay_icp_score", "number"), ("clay_enrichment_date", "date")])
    return hubspot


@pytest.fixture
def sinks(crm: HubSpotSim) -> Iterator[Sinks]:
    yield from started_sinks(crm)


def started_sinks(crm: HubSpotSim) -> Iterator[Sinks]:
    """A loopback server per destination, HubSpot the simulator; stopped when the test ends."""
    servers = Sinks(StubServer(), StubServer(), StubServer(), StubServer(crm.answer), StubServer())
    for server in vars(servers).values():
        server.start()
    yield servers
    for server in vars(servers).values():
        server.stop()


class Router:
    """A cold-started RouterFunction plus what the tests inspect."""

    def __init__(self, module: Any, stack: Any) -> None:
        self.module = module
        self.stack = stack
        self.arn = str(stack.resolver.attributes[("RoutingQueue", "Arn")])
        self.leads: Any = LeadsTable(stack.table_names["LeadsTable"])
        self.claims: Any = CallbackClaims(self.leads.table_name)

    def record(
        self,
        lead: dict[str, Any],
        receive_count: int = 1,
        callback_id: str | None = None,
        received_at: str = RECEIVED_AT,
    ) -> dict[str, Any]:
        """A RoutingQueue record as the callback queues it (the lead is stored first, like the callback does)."""
        key = str(lead["lead_id"])
        callback_id = callback_id or f"{key}#h1"
        self.claims.save_enrichment(key, callback_id, lead, received_at)
        return routing_record(lead, callback_id, received_at, self.arn, receive_count)

    def run(self, event: dict[str, Any], remaining_ms: int = 20_000) -> list[str]:
        """Invoke the handler; the ids of the records it reported as failed."""
        response = self.module.lambda_handler(event, LambdaContextStub("router", remaining_ms))
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def callback(self, number: int, lead: dict[str, Any], receive_count: int = 1) -> dict[str, Any]:
        """The lead's `number`th callback (Clay sending the row again): its own id, received `number` minutes later."""
        received_at = (datetime.fromisoformat(RECEIVED_AT) + timedelta(minutes=number)).isoformat()
        callback_id = f"{lead['lead_id']}#h{number}"
        return self.record(lead, receive_count, callback_id=callback_id, received_at=received_at)

    def outcome(self, lead_key: str) -> dict[str, Any]:
        item = self.leads.get(lead_key)
        assert item is not None
        return item

    def ledger(self, lead_key: str) -> dict[str, Any]:
        """The lead's item: its delivery ledger (deliveries, lease) beside the enrichment and outcome."""
        return self.outcome(lead_key)

    def put_ledger(self, lead_key: str, **attributes: Any) -> None:
        """Set ledger attributes on the lead's item as another (or an earlier) invocation left them."""
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = to_item({f":v{i}": value for i, value in enumerate(attributes.values())})
        client("dynamodb").update_item(
            TableName=self.stack.table_names["LeadsTable"],
            Key={"lead_key": {"S": lead_key}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def queued(self, leads: list[dict[str, Any]]) -> dict[str, Any]:
        """Records sent to the real RoutingQueue and received from it (real receipt handles), as Lambda polls."""
        url = self.stack.queue_urls["RoutingQueue"]
        for item in leads:
            client("sqs").send_message(QueueUrl=url, MessageBody=self.record(item)["body"])
        messages = client("sqs").receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        )["Messages"]
        return from_received(messages, self.arn)

    def seconds_until_visible(self, limit: float = 30) -> float:
        """How long until a message of the routing queue can be received again (receives it)."""
        started = time.monotonic()
        while time.monotonic() - started < limit and not self.routing_queue_messages():
            time.sleep(0.25)
        return time.monotonic() - started

    def routing_queue_messages(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        response = client("sqs").receive_message(
            QueueUrl=self.stack.queue_urls["RoutingQueue"], MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        )
        return list(response.get("Messages", []))

    def dead_letters(self) -> list[dict[str, Any]]:
        messages = client("sqs").receive_message(
            QueueUrl=self.stack.queue_urls["RoutingDLQ"],
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        return [
            {"body": parse_body(m["Body"]), **{k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}}
            for m in messages.get("Messages", [])
        ]


class RouterOnFakes(Router):
    """A RouterFunction cold-started without AWS whose leads table, queues and state table are the in-memory fakes
    of tests/fakes (the handler's LeadRouter rebuilt on them); the same inspection as Router."""

    def __init__(self, module: Any, stores: RouterStores, items: LeadItems) -> None:
        self.module = module
        self.stores = stores
        self.items = items
        self.arn = "arn:aws:sqs:us-east-1:123456789012:RoutingQueue"
        self.leads = stores.leads
        self.claims = FakeCallbackClaims(items)

    def put_ledger(self, lead_key: str, **attributes: Any) -> None:
        def set_them(item: dict[str, Any]) -> bool:
            item.update(attributes)
            return True

        self.items.update(lead_key, set_them)

    def queued(self, leads: list[dict[str, Any]]) -> dict[str, Any]:
        """Records sent to the routing queue and received from it (its receipt handles), as Lambda polls."""
        queue = self.stores.routing_queue
        for item in leads:
            queue.send_raw(self.record(item)["body"])
        return sqs_event(
            [
                sqs_record(m.body, self.arn, message_id=m.message_id, receipt_handle=m.receipt_handle)
                for m in queue.receive()
            ]
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        return [{"body": parse_body(m.body), **m.attributes} for m in self.stores.dead_letters.receive()]

    def routing_queue_messages(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Receive from the routing queue, waiting up to `wait_seconds` for a message (SQS's long poll)."""
        started = time.monotonic()
        while not (messages := self.stores.routing_queue.receive()) and time.monotonic() - started < wait_seconds:
            time.sleep(0.1)
        return [{"Body": message.body} for message in messages]


def start_on_fakes(load_function_without_aws: Any, monkeypatch: pytest.MonkeyPatch, **settings: str) -> RouterOnFakes:
    """Cold-start the RouterFunction without AWS and rebuild its LeadRouter on fresh in-memory stores."""
    module = load_function_without_aws("RouterFunction", **settings)
    config, items = module.settings, LeadItems()
    stores = RouterStores(
        FakeLeadLedger(items, config.delivery_lease_seconds),
        FakeLeadsTable(items),
        FakeQueue(config.routing_queue_url),
        FakeQueue(config.routing_dlq_url),
        FakeStateStore(),
    )
    monkeypatch.setattr(module, "router", LeadRouter(config, stores=stores))
    return RouterOnFakes(module, stores, items)


@pytest.fixture
def on_fakes(load_function_without_aws: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., RouterOnFakes]:
    def load(**settings: str) -> RouterOnFakes:
        return start_on_fakes(load_function_without_aws, monkeypatch, **settings)

    return load


def routing_record(
    lead: dict[str, Any], callback_id: str, received_at: str, arn: str, receive_count: int = 1
) -> dict[str, Any]:
    """A RoutingQueue record of the lead as the callback queues it."""
    body = {"callback_id": callback_id, "lead_key": str(lead["lead_id"]), "lead": lead, "received_at": received_at}
    return sqs_record(json.dumps(body), arn, message_id=f"m-{callback_id}", receive_count=receive_count)


def parse_body(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body  # a malformed message is dead-lettered as it came


def lead(lead_id: str, score: float | None = None, **fields: Any) -> dict[str, Any]:
    values = {"lead_id": lead_id, "email": f"{lead_id}@acme.com", "first_name": "Jane", "last_name": "Doe"}
    if score is not None:
        values["icp_score"] = score
    return {**values, **fields}


@pytest.fixture
def configured(sinks: Sinks) -> dict[str, str]:
    return destination_settings(sinks)


def destination_settings(sinks: Sinks) -> dict[str, str]:
    """The router's settings with every destination on the loopback sinks."""
    return {
        "OUTREACH_WEBHOOK_URL": f"{sinks.outreach.url}/outreach",
        "NURTURE_WEBHOOK_URL": f"{sinks.nurture.url}/nurture",
        "ZAPIER_WEBHOOK_URL": f"{sinks.zapier.url}/hooks/catch/1/abc",
        "SLACK_WEBHOOK_URL": f"{sinks.slack.url}/services/T0/B0/X",
        "HUBSPOT_ACCESS_TOKEN": "pat-na1-test",
        "HUBSPOT_BASE_URL": sinks.hubspot.url,
        "DESTINATION_RETRY_ATTEMPTS": "1",
        "DESTINATION_RETRY_BACKOFF_SECONDS": "0.01",
        "DESTINATION_TIMEOUT_SECONDS": "2",
        "SLACK_MIN_INTERVAL_SECONDS": "0.05",
    }


@pytest.fixture
def router(load_function: Any, stack: Any, configured: dict[str, str]) -> Router:
    return Router(load_function("RouterFunction", **configured), stack)


@pytest.fixture
def router_on_fakes(on_fakes: Callable[..., RouterOnFakes], configured: dict[str, str]) -> RouterOnFakes:
    return on_fakes(**configured)


def event_file(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


# ------------------------------------------------------------------------------------- exactly once
def test_a_lease_held_by_another_invocation_sends_the_record_back_untouched(
    router_on_fakes: Router, sinks: Sinks
) -> None:
    router = router_on_fakes
    # GIVEN another invocation routing the same lead for 3 more seconds (another callback of it, or a duplicate)
    router.put_ledger("ld_f", lease_until=int(time.time()) + 3, lease_owner="other", deliveries={})
    event = router.queued([lead("ld_f", 95)])
    # WHEN routed THEN nothing is sent, the record waits in the queue, and the lead's item is not touched
    assert router.run(event) == [event["Records"][0]["messageId"]]
    assert sum(sinks.calls().values()) == 0
    item = router.ledger("ld_f")
    assert item["routing_status"] == "received"  # as the callback stored it
    assert (item["lease_owner"], item["deliveries"]) == ("other", {})
    # AND it comes back once that lease has lapsed, not after the queue's 6-minute visibility timeout
    assert router.routing_queue_messages() == []
    assert 1 <= router.seconds_until_visible() <= 10


def test_the_wait_the_router_raises_carries_the_delay_it_set_on_the_message(
    router_on_fakes: Router, sinks: Sinks
) -> None:
    router = router_on_fakes
    # GIVEN another invocation holding the lead's lease for 3 more seconds
    router.put_ledger("ld_wd", lease_until=int(time.time()) + 3, lease_owner="other", deliveries={})
    event = router.queued([lead("ld_wd", 95)])
    records = records_of(event)
    # WHEN the record is routed THEN the Wait's delay_seconds is what the router set on the message
    batch = router.module.router.start(records, 20_000)
    with pytest.raises(Wait) as raised:
        batch.process(records[0])
    assert 1 <= raised.value.delay_seconds <= 5
    # AND the message is out of sight for that long, not for the queue's visibility timeout
    assert abs(router.seconds_until_visible() - raised.value.delay_seconds) <= 1.5
    assert sum(sinks.calls().values()) == 0


def test_a_lease_held_elsewhere_on_the_last_receive_waits_as_a_fresh_copy_not_in_the_dlq(
    router_on_fakes: Router, sinks: Sinks
) -> None:
    router = router_on_fakes
    # GIVEN the 4th receive (one before RoutingQueue's maxReceiveCount) of a record whose lead another invocation holds
    router.put_ledger("ld_g", lease_until=int(time.time()) + 2, lease_owner="other", deliveries={})
    record = router.record(lead("ld_g", 85), receive_count=4)
    # WHEN routed THEN waiting is not a failure: the record is done and a fresh copy waits in the routing queue
    assert router.run(sqs_event([record])) == []
    assert router.dead_letters() == []
    [copy] = router.routing_queue_messages(wait_seconds=8)
    assert json.loads(copy["Body"])["lead_key"] == "ld_g"
    assert sum(sinks.calls().values()) == 0


def test_a_lapsed_lease_is_taken_over_and_sends_only_what_is_missing(router_on_fakes: Router, sinks: Sinks) -> None:
    router = router_on_fakes
    # GIVEN an invocation that delivered to Slack and then crashed: its lease has run out
    now = int(time.time())
    router.put_ledger("ld_c", lease_until=now - 1, lease_owner="crashed", deliveries={"slack": {"at": now - 60}})
    record = router.record(lead("ld_c", 95))
    # WHEN the record comes back THEN the lease is taken over and only the missing destinations are sent
    assert router.run(sqs_event([record])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 0}
    assert router.outcome("ld_c")["destinations"]["slack"] == "delivered"
    # AND the ledger holds every delivery and no lease
    ledger = router.ledger("ld_c")
    assert set(ledger["deliveries"]) == {"slack", "outreach", "hubspot", "zapier"}
    assert "lease_owner" not in ledger and "lease_until" not in ledger
    assert ledger["deliveries"]["outreach"]["at"] >= now
    assert ledger["deliveries"]["outreach"]["score"] == 95


def test_a_lease_lost_mid_delivery_is_reported_and_the_deliveries_still_recorded(
    router_on_fakes: Router, sinks: Sinks, captured_logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    router = router_on_fakes

    # GIVEN another invocation taking the lease over while outreach is being sent (ours lapsed)
    def usurp(request: RecordedRequest) -> Reply:
        router.put_ledger("ld_l", lease_until=int(time.time()) + 120, lease_owner="usurper", deliveries={})
        return Reply(200)

    sinks.outreach.responder = usurp
    assert router.run(sqs_event([router.record(lead("ld_l", 85))])) == []
    # THEN the usurper keeps its lease, our deliveries are in the map, and the loss is logged and counted
    ledger = router.ledger("ld_l")
    assert ledger["lease_owner"] == "usurper"
    assert set(ledger["deliveries"]) == {"outreach", "hubspot", "zapier"}
    assert ledger["routing_status"] == "received"  # the outcome is the usurper's to write
    warnings = [json.loads(line) for line in captured_logs.getvalue().splitlines() if "lease lost" in line]
    assert [(w["level"], w["destinations"]) for w in warnings] == [("WARNING", ["hubspot", "outreach", "zapier"])]
    assert '"DeliveryLeaseLost":[1.0]' in capsys.readouterr().out


def test_deliveries_that_end_near_the_deadline_are_recorded_not_sent_again(
    router_on_fakes: Router, sinks: Sinks
) -> None:
    router = router_on_fakes
    # GIVEN a batch whose sends (made for the whole batch before its records are processed) leave less than an
    # attempt's minimum of the invocation's time: outreach answers 1.1 s later, the deadline is 1.5 s away
    sinks.outreach.responder = lambda request: Reply(200, delay=1.1)
    record = router.record(lead("ld_late", 85))
    # WHEN the batch is routed THEN the record is done: what went out is recorded, not handed back to be sent again
    assert router.run(sqs_event([record]), remaining_ms=3500) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 0}
    ledger = router.ledger("ld_late")
    assert set(ledger["deliveries"]) == {"outreach", "hubspot", "zapier"}
    assert "lease_owner" not in ledger and ledger["routing_status"] == "routed"


# ------------------------------------------------------------------------------------- Clay sending a row again
def hubspot_inputs(sinks: Sinks) -> list[dict[str, Any]]:
    return [item for request in sinks.hubspot.received(UPSERT) for item in request.json()["inputs"]]


def test_contradicting_policies_fail_the_cold_start(load_function_without_aws: Any, configured: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"DELIVERY_POLICIES: zapier='twice' is not one of once_per_lead, on_change"):
        load_function_without_aws("RouterFunction", **configured, DELIVERY_POLICIES="zapier=twice")


def claims_meet(parties: int) -> Any:
    """Every lead claim (the lease's conditional write) waits until `parties` claims are about to be sent."""
    together = threading.Barrier(parties, timeout=10)

    def wait(params: dict[str, Any], **_: Any) -> None:
        if ":lease_until" in params.get("ExpressionAttributeValues", {}):
            together.wait()

    return before_dynamodb_calls(wait, "UpdateItem")


def test_two_callbacks_of_one_lead_routed_concurrently_enrol_it_once(
    load_function: Any, stack: Any, configured: dict[str, str], sinks: Sinks
) -> None:
    # GIVEN two router instances and two different callbacks of the same lead, claiming at the same moment
    first, second = (Router(load_function("RouterFunction", **configured), stack) for _ in range(2))
    events = [
        sqs_event([first.callback(1, lead("ld_race", 85, job_title="VP Sales"))]),
        sqs_event([first.callback(2, lead("ld_race", 85, job_title="CRO"))]),
    ]
    failed: list[list[str]] = [[], []]

    def route(number: int, router: Router) -> None:
        failed[number] = router.run(events[number])

    with claims_meet(2):
        threads = [threading.Thread(target=route, args=(n, r)) for n, r in enumerate((first, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    # THEN one invocation routed the lead and the other's record waits in the queue: outreach got it once
    assert sorted(len(ids) for ids in failed) == [0, 1]
    assert sinks.calls()["outreach"] == 1
    # WHEN the waiting record comes back THEN outreach and Zapier are not sent again, and HubSpot ends with the
    # newest title (updated if the older callback won the race; if the newer one won, the older is superseded)
    waiting = events[0] if failed[0] else events[1]
    assert first.run(waiting) == []
    assert (sinks.calls()["outreach"], sinks.calls()["zapier"]) == (1, 1)
    assert hubspot_inputs(sinks)[-1]["properties"]["jobtitle"] == "CRO"
    assert first.outcome("ld_race")["enrichment"]["job_title"] == "CRO"


def failing_complete_write() -> Any:
    """The ledger's complete write fails (as if the function crashed right after its deliveries)."""

    def fail(params: dict[str, Any], **_: Any) -> None:
        names = params.get("ExpressionAttributeNames", {})
        removed = params.get("UpdateExpression", "").partition("REMOVE ")[2].split(", ")  # the complete frees the lease
        if any(value == "lease_owner" and name in removed for name, value in names.items()):
            raise ConnectionError("the function died before recording its deliveries")

    return before_dynamodb_calls(fail, "UpdateItem")


def test_a_crash_between_delivery_and_ledger_write_leaves_held_deliveries_unknown_never_sent_twice(
    router: Router, sinks: Sinks
) -> None:
    # GIVEN outreach, HubSpot and Zapier delivered but the ledger write that records them never made
    record = router.callback(1, lead("ld_crash", 85))
    with failing_complete_write():
        assert router.run(sqs_event([record])) == [record["messageId"]]
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 0}
    item = router.ledger("ld_crash")
    assert item["deliveries"] == {} and "lease_owner" in item  # nothing recorded, the lease still held
    assert {"sending_outreach", "sending_zapier"} <= set(item)  # but the intent was written before sending
    # WHEN the record comes back before the lease lapses THEN it waits: nothing is sent twice yet
    assert router.run(sqs_event([record])) == [record["messageId"]]
    assert sinks.calls()["outreach"] == 1
    # WHEN it comes back after the lease lapsed THEN outreach and Zapier (hold) are not sent again but marked
    # unknown; HubSpot's upsert by email is idempotent, so it is simply repeated
    router.put_ledger("ld_crash", lease_until=int(time.time()) - 1)
    assert router.run(sqs_event([record])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 2, "slack": 0}
    item = router.ledger("ld_crash")
    assert item["routing_status"] == "unknown"
    assert item["destinations"] == {"outreach": "unknown", "hubspot": "delivered", "zapier": "unknown"}
    assert item["unknown_outreach"]["reason"] == "ended_before_recording"
    assert not any(name.startswith("sending_") for name in item)
    # AND a later callback of the lead sends nothing more to them
    assert router.run(sqs_event([router.callback(2, lead("ld_crash", 86))])) == []
    assert (sinks.calls()["outreach"], sinks.calls()["zapier"]) == (1, 1)


# ------------------------------------------------------------------------------------- cost and speed
@contextmanager
def dynamodb_calls() -> Iterator[list[tuple[str, str, str]]]:
    """(operation, table, key) of every DynamoDB call the library's client makes meanwhile."""
    calls: list[tuple[str, str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        key = next(iter(params.get("Key", {}).values()), {}).get("S", "")
        calls.append((model.name, params.get("TableName", ""), key))

    with before_dynamodb_calls(record):
        yield calls


def test_each_lead_costs_one_claim_and_one_complete_write_and_no_read(router: Router, sinks: Sinks, stack: Any) -> None:
    # GIVEN a batch of two hot leads (four destinations each), a warm one and a cold one (nothing to deliver)
    records = [
        router.record(lead("w1", 95)),
        router.record(lead("w2", 92)),
        router.record(lead("w3", 60)),
        router.record(lead("w4", 10, email=None)),
    ]
    with dynamodb_calls() as calls:
        assert router.run(sqs_event(records)) == []
    assert sinks.calls() == {"outreach": 2, "nurture": 1, "zapier": 3, "hubspot": 1, "slack": 2}
    # THEN each lead with deliveries wrote its item twice (claim, then deliveries + outcome), the lead with
    # nothing to deliver once (its outcome), nothing else was written, and the only read is the invocation's
    # one look at the destination pause switch
    leads, state = stack.table_names["LeadsTable"], stack.table_names["StateTable"]
    per_item = {(operation, table, key): calls.count((operation, table, key)) for operation, table, key in calls}
    assert per_item == {
        **{("UpdateItem", leads, key): 2 for key in ("w1", "w2", "w3")},
        ("UpdateItem", leads, "w4"): 1,
        ("GetItem", state, "pause#destinations"): 1,
    }
    # AND the next invocation, within the switch's cache time, reads nothing at all
    warm = router.record(lead("w5", 60))
    with dynamodb_calls() as calls:
        assert router.run(sqs_event([warm])) == []
    assert [operation for operation, _, _ in calls] == ["UpdateItem", "UpdateItem"]


# ------------------------------------------------------------------------------------- one lead, one record
def test_a_lead_that_cannot_be_routed_goes_to_the_dlq_alone_with_the_reason(
    router_on_fakes: Router, sinks: Sinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = router_on_fakes
    # GIVEN a lead whose values break the outreach payload (a value nothing guarded), in a batch of 10
    outreach = router.module.router.webhooks["outreach"]
    mapped = outreach.payload

    def breaks_on_poison(lead_fields: dict[str, Any], received_at: str) -> Any:
        if lead_fields["lead_id"] == "ld_poison":
            raise OverflowError("date value out of range")
        return mapped(lead_fields, received_at)

    monkeypatch.setattr(outreach, "payload", breaks_on_poison)
    leads = [lead(f"ld_h{n}", 85) for n in range(9)] + [lead("ld_poison", 85)]
    records = [router.record(item) for item in leads]
    # WHEN routed THEN the batch does not fail: the 9 healthy leads are delivered
    assert router.run(sqs_event(records)) == []
    assert sinks.calls()["outreach"] == 9
    assert {router.outcome(f"ld_h{n}")["routing_status"] for n in range(9)} == {"routed"}
    # AND the poison lead is in RoutingDLQ alone, as it came, with why
    [dead] = router.dead_letters()
    assert dead["body"]["lead_key"] == "ld_poison"
    assert (dead["reason"], dead["detail"]) == ("unroutable_lead", "OverflowError: date value out of range")


def test_a_dependency_failing_for_one_lead_sends_only_that_record_back_then_dead_letters_it_with_the_reason(
    router_on_fakes: Router, sinks: Sinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = router_on_fakes
    # GIVEN DynamoDB throttling the claim of one lead of three
    claim = FakeLeadLedger.claim

    def throttled(ledger: FakeLeadLedger, lead_key: str, *args: Any, **kwargs: Any) -> Any:
        if lead_key == "ld_t":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")
        return claim(ledger, lead_key, *args, **kwargs)

    monkeypatch.setattr(FakeLeadLedger, "claim", throttled)
    records = [router.record(lead(name, 85)) for name in ("ld_a", "ld_t", "ld_c")]
    # WHEN routed THEN only that record goes back to the queue (a retry may succeed); the others are delivered
    assert router.run(sqs_event(records)) == [records[1]["messageId"]]
    assert sinks.calls()["outreach"] == 2
    assert router.dead_letters() == []
    # AND on its last receive it goes to RoutingDLQ with the reason, not through SQS's redrive without one
    last = router.record(lead("ld_t", 85), receive_count=5)
    assert router.run(sqs_event([last])) == []
    [dead] = router.dead_letters()
    assert dead["reason"] == "dependency_failed" and dead["detail"].startswith("ClientError:")


# ------------------------------------------------------------------------------------- configuration
def test_unconfigured_destinations_are_off_and_say_so_once(
    on_fakes: Callable[..., Router], configured: dict[str, str], sinks: Sinks, captured_logs: io.StringIO
) -> None:
    # Without a config secret (CONFIG_SECRET_ID empty): a setting missing from the environment is not set at all
    settings = {k: v for k, v in configured.items() if k not in ("SLACK_WEBHOOK_URL", "HUBSPOT_ACCESS_TOKEN")}
    router = on_fakes(**settings, CONFIG_SECRET_ID="")
    router.run(sqs_event([router.record(lead("o1", 95))]))
    router.run(sqs_event([router.record(lead("o2", 95)), router.record(lead("o3", 96))]))
    # THEN Slack and HubSpot are never called, recorded as off, and announced once each (not per record)
    assert (sinks.calls()["slack"], sinks.calls()["hubspot"]) == (0, 0)
    assert router.outcome("o3")["destinations"] == {
        "slack": "off",
        "outreach": "delivered",
        "hubspot": "off",
        "zapier": "delivered",
    }
    assert router.outcome("o3")["routing_status"] == "routed"
    announcements = [json.loads(line) for line in captured_logs.getvalue().splitlines() if "destination is off" in line]
    assert sorted(entry["destination"] for entry in announcements) == ["hubspot", "slack"]
    assert all(entry["level"] == "INFO" for entry in announcements)


def test_invalid_routing_rules_fail_the_cold_start(load_function_without_aws: Any) -> None:
    rules = '[{"destination": "slack", "when": [{"field": "icp_score", "op": "=>", "value": 90}]}]'
    with pytest.raises(ConfigError, match=r"ROUTING_RULES\[0\] \(destination 'slack'\): when\[0\]\.op"):
        load_function_without_aws("RouterFunction", ROUTING_RULES=rules)


def test_metrics_count_routed_skipped_deliveries_and_dead_letters(
    router_on_fakes: Router, sinks: Sinks, capsys: pytest.CaptureFixture[str]
) -> None:
    router = router_on_fakes
    sinks.zapier.script("/hooks/catch/1/abc", Reply(404))
    records = [router.record(lead("m1", 65)), router.record(lead("m2", 10, email=None))]
    router.run(sqs_event(records))
    output = capsys.readouterr().out
    metrics = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    names = {
        (name, entry.get("destination") or entry.get("reason"))
        for entry in metrics
        for name in entry
        if name[0].isupper()
    }
    assert ("DeliverySucceeded", "nurture") in names
    assert ("DeliveryFailed", "zapier") in names
    assert ("RouterDeadLettered", "permanent_failure") in names
    assert any("LeadSkipped" in entry for entry in metrics)


# ------------------------------------------------------------------------------------- destination pause
@pytest.fixture
def pausable(load_function: Any, stack: Any, configured: dict[str, str]) -> tuple[Router, DestinationSwitch]:
    """A router that reads the pause switch on every invocation (no cache), and the operator's switch."""
    module = load_function("RouterFunction", **configured, DESTINATION_PAUSE_CACHE_SECONDS="0")
    return Router(module, stack), DestinationSwitch(StateStore(stack.table_names["StateTable"]))


@pytest.fixture
def pausable_on_fakes(
    on_fakes: Callable[..., RouterOnFakes], configured: dict[str, str]
) -> tuple[RouterOnFakes, DestinationSwitch]:
    """The same on the in-memory stores: the operator's switch on the router's fake state table."""
    router = on_fakes(**configured, DESTINATION_PAUSE_CACHE_SECONDS="0")
    return router, DestinationSwitch(router.stores.state)


def test_a_paused_destination_waits_in_the_queue_while_the_others_are_delivered(
    pausable_on_fakes: tuple[RouterOnFakes, DestinationSwitch], sinks: Sinks, capsys: pytest.CaptureFixture[str]
) -> None:
    router, switch = pausable_on_fakes
    # GIVEN HubSpot paused by an operator, and a hot lead (Slack, outreach, HubSpot, Zapier) on the queue
    switch.pause("hubspot", by="oncall", reason="HubSpot maintenance")
    event = router.queued([lead("ld_pz", 95)])
    # WHEN routed THEN the others are delivered and recorded, HubSpot gets nothing, and the record waits in
    # the queue (reported as failed: its visibility was handed back), not in the DLQ
    assert router.run(event) == [event["Records"][0]["messageId"]]
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 0, "slack": 1}
    item = router.outcome("ld_pz")
    assert item["routing_status"] == "paused"
    assert item["destinations"]["hubspot"] == "paused"
    assert set(item["deliveries"]) == {"slack", "outreach", "zapier"}
    assert router.dead_letters() == []
    assert router.routing_queue_messages() == []  # handed back for DESTINATION_PAUSE_WAIT_SECONDS (60)
    metrics = capsys.readouterr().out
    assert '"DestinationPaused"' in metrics and '"DeliveryHeld"' in metrics
    # WHEN HubSpot is resumed and the record comes back THEN only HubSpot is sent to
    assert switch.resume("hubspot")
    again = sqs_record(event["Records"][0]["body"], router.arn, receive_count=2)
    assert router.run(sqs_event([again])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 1}
    assert router.outcome("ld_pz")["routing_status"] == "routed"


def test_a_lead_whose_every_destination_is_paused_waits_without_its_lease(
    pausable: tuple[Router, DestinationSwitch], sinks: Sinks, stack: Any
) -> None:
    router, switch = pausable
    # GIVEN nurture and Zapier paused, and a warm lead that goes only there
    switch.pause("nurture")
    switch.pause("zapier")
    record = router.record(lead("ld_pw", 60))
    # WHEN routed THEN nothing is sent; the first receive writes only what the pause holds for the lead
    with dynamodb_calls() as calls:
        assert router.run(sqs_event([record])) == [record["messageId"]]
    assert [operation for operation, _, _ in calls] == ["GetItem", "UpdateItem"]
    item = router.outcome("ld_pw")
    assert (item["held_nurture"], item["held_zapier"]) == (RECEIVED_AT, RECEIVED_AT)
    assert "lease_owner" not in item
    # AND the next receives read the switch and nothing else
    again = sqs_record(record["body"], router.arn, message_id=record["messageId"], receive_count=2)
    with dynamodb_calls() as calls:
        assert router.run(sqs_event([again])) == [record["messageId"]]
    assert [operation for operation, _, _ in calls] == ["GetItem"]
    assert sum(sinks.calls().values()) == 0
    # AND on the receive before maxReceiveCount it waits as a fresh copy, never in the DLQ
    last = router.record(lead("ld_pw", 60), receive_count=4)
    assert router.run(sqs_event([last])) == []
    assert router.dead_letters() == []
    assert router.outcome("ld_pw")["routing_status"] == "received"


def test_an_unreadable_pause_switch_keeps_the_last_state_it_read(
    pausable_on_fakes: tuple[RouterOnFakes, DestinationSwitch],
    sinks: Sinks,
    captured_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router, switch = pausable_on_fakes
    # GIVEN HubSpot paused and seen paused by the router
    switch.pause("hubspot")
    assert router.run(sqs_event([router.record(lead("ld_s1", 75))])) != []
    # WHEN the state table cannot be read any more (here: it is gone)
    gone = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}}, "GetItem")
    monkeypatch.setattr(router.stores.state, "get", lambda *args, **kwargs: (_ for _ in ()).throw(gone))
    failures = router.run(sqs_event([router.record(lead("ld_s2", 75))]))
    # THEN HubSpot stays paused (the lead waits) and the router says why; the others were delivered
    assert len(failures) == 1
    assert sinks.calls()["hubspot"] == 0
    assert sinks.calls()["nurture"] == 2
    assert "could not read the destination pause switch" in captured_logs.getvalue()


# ------------------------------------------------------------------------------------- HubSpot as a CRM


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("HUBSPOT_PROPERTY_MAP", "Job Title=job_title", "'Job Title' is not a HubSpot property name"),
        ("HUBSPOT_PROPERTY_MAP", "email=work_email", "email is the contact's id"),
        ("HUBSPOT_PROPERTY_MAP", "jobtitle", "'jobtitle' is not property=value"),
        ("HUBSPOT_NEW_CONTACT_VALUES", "jobtitle=Unknown", "jobtitle is also mapped from a lead field"),
        ("HUBSPOT_OWNED_PROPERTIES", "email", "email is the contact's id, sent always"),
    ],
)
def test_an_invalid_hubspot_mapping_stops_the_router_at_cold_start(
    load_function_without_aws: Any, configured: dict[str, str], setting: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"{setting}: .*{message}"):
        load_function_without_aws("RouterFunction", **configured, **{setting: value})


def test_a_missing_property_pauses_hubspot_with_the_command_to_run_and_no_lead_is_dead_lettered(
    pausable_on_fakes: tuple[RouterOnFakes, DestinationSwitch],
    sinks: Sinks,
    crm: HubSpotSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, switch = pausable_on_fakes
    # GIVEN a portal without the custom properties (nobody ran the setup command)
    del crm.properties["clay_icp_score"], crm.properties["clay_enrichment_date"]
    event = router.queued([lead(f"m{n}", 85) for n in range(3)])
    # WHEN the batch is routed
    failed = router.run(event)
    # THEN nothing is dead-lettered: the leads wait in the queue, the others destinations are delivered
    assert sorted(failed) == sorted(record["messageId"] for record in event["Records"])
    assert router.dead_letters() == []
    assert sinks.calls() == {"outreach": 3, "nurture": 0, "zapier": 3, "hubspot": 1, "slack": 0}
    assert router.outcome("m0")["destinations"]["hubspot"] == "paused"
    # AND HubSpot is paused by the router, saying which properties are missing and what to run, for 15 minutes
    state = switch.states()["hubspot"]
    reason = "HubSpot has no contact properties clay_enrichment_date, clay_icp_score: create them with"
    assert (state["paused"], state["by"]) == (True, "router")
    assert state["reason"] == reason + " `clay-pipeline hubspot setup`"
    assert 890 <= state["until"] - time.time() <= 900
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]  # the router's error log says it too
    assert reason in logged.getMessage()
    # WHEN the properties are created and the pause is lifted THEN the leads come back and reach HubSpot
    crm.add_custom_properties([("clay_icp_score", "number"), ("clay_enrichment_date", "date")])
    assert switch.resume("hubspot")
    again = [sqs_record(r["body"], router.arn, message_id=r["messageId"], receive_count=2) for r in event["Records"]]
    assert router.run(sqs_event(again)) == []
    assert sorted(crm.contacts) == ["m0@acme.com", "m1@acme.com", "m2@acme.com"]
    assert sinks.calls()["outreach"] == 3  # not sent again


def test_a_daily_429_pauses_hubspot_until_midnight_in_the_accounts_time_zone(
    pausable_on_fakes: tuple[RouterOnFakes, DestinationSwitch], sinks: Sinks, crm: HubSpotSim
) -> None:
    router, switch = pausable_on_fakes
    # GIVEN HubSpot's daily limit reached, in an account at UTC-5
    crm.limit("DAILY")
    event = router.queued([lead("d1", 75)])
    # WHEN routed THEN one call, not a retry every few seconds: HubSpot is paused and the lead waits
    assert router.run(event) == [event["Records"][0]["messageId"]]
    assert len(sinks.hubspot.received(UPSERT)) == 0  # the batch read was refused: no upsert tried
    assert len(sinks.hubspot.received(READ)) == 1
    assert router.dead_letters() == []
    state = switch.states()["hubspot"]
    now = datetime.now(UTC)
    local = now - timedelta(hours=5)
    midnight = datetime(local.year, local.month, local.day, tzinfo=UTC) + timedelta(days=1, hours=5)
    assert state["paused"] and state["by"] == "router"
    assert abs(state["until"] - (midnight.timestamp() + 120)) < 2  # two minutes past the reset
    assert "daily API limit" in state["reason"] and "midnight in the account's time zone" in state["reason"]


def test_a_daily_429_without_the_accounts_time_zone_rechecks_in_15_minutes(
    pausable_on_fakes: tuple[RouterOnFakes, DestinationSwitch], crm: HubSpotSim
) -> None:
    router, switch = pausable_on_fakes
    crm.limit("DAILY")
    crm.utc_offset_ms = None  # the account details call is refused
    event = router.queued([lead("d2", 75)])
    assert router.run(event) == [event["Records"][0]["messageId"]]
    state = switch.states()["hubspot"]
    assert 890 <= state["until"] - time.time() <= 900
    assert "time zone could not be read" in state["reason"]


@pytest.mark.parametrize(
    ("refuse", "reason", "said"),
    [
        (lambda crm: setattr(crm, "token", "a-token-rotated-in-hubspot"), "refused HUBSPOT_ACCESS_TOKEN (401", ""),
        (
            lambda crm: setattr(crm, "missing_scopes", ("crm.objects.contacts.write",)),
            "lack of a scope (403)",
            "hasn't been granted all required scopes",
        ),
    ],
    ids=["revoked_token_401", "missing_scope_403"],
)
def test_a_refused_token_pauses_hubspot_naming_the_setting_and_scopes_and_no_lead_is_dead_lettered(
    pausable_on_fakes: tuple[RouterOnFakes, DestinationSwitch],
    sinks: Sinks,
    crm: HubSpotSim,
    refuse: Any,
    reason: str,
    said: str,
) -> None:
    router, switch = pausable_on_fakes
    # GIVEN HubSpot refusing the private app (a revoked token, or a scope the app was not granted)
    refuse(crm)
    event = router.queued([lead(f"tk{n}", 85) for n in range(5)])
    # WHEN the batch is routed
    failed = router.run(event)
    # THEN one refused call, not one per lead: nothing dead-lettered, the leads wait, the others are delivered
    assert sorted(failed) == sorted(record["messageId"] for record in event["Records"])
    assert router.dead_letters() == []
    assert sinks.calls() == {"outreach": 5, "nurture": 0, "zapier": 5, "hubspot": 0, "slack": 0}
    assert len(sinks.hubspot.received(READ)) == 1 and sinks.hubspot.received(UPSERT) == []
    assert router.outcome("tk0")["destinations"]["hubspot"] == "paused"
    # AND HubSpot is paused by the router for a 15-minute re-check, naming the setting and the scopes to fix
    state = switch.states()["hubspot"]
    assert (state["paused"], state["by"]) == (True, "router")
    assert 890 <= state["until"] - time.time() <= 900
    assert reason in state["reason"] and "HUBSPOT_ACCESS_TOKEN" in state["reason"]
    assert "crm.objects.contacts.write" in state["reason"] and said in state["reason"]
    assert "a-token-rotated-in-hubspot" not in state["reason"]
    # WHEN the token is fixed and the pause ends THEN the waiting leads reach HubSpot, nothing else is sent again
    crm.token, crm.missing_scopes = "", ()
    assert switch.resume("hubspot")
    again = [sqs_record(r["body"], router.arn, message_id=r["messageId"], receive_count=2) for r in event["Records"]]
    assert router.run(sqs_event(again)) == []
    assert sorted(crm.contacts) == [f"tk{n}@acme.com" for n in range(5)]
    assert sinks.calls()["outreach"] == 5
