"""One batch's deliveries (services/delivery.py) on loopback destinations, without AWS: the webhooks sent
concurrently (a probe, then the fan-out; Slack's pacing and 429s) and the batched CRM's upserts (HubSpot's
simulator: per-contact results, refusals, its limits). Each lead's deliveries are carried from run to run as
plain data (a LeadHistory per lead, as the complete write leaves it); the ledger's writes themselves (leases,
conditions, what is stored) are tested on moto in tests/integration/test_router.py. Carried over from there
with their assertions."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.adapters.queues import origin_attributes
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.deliveries import DeliveryResult
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.policies import LeadHistory, Lease
from clay_pipeline.core.routing_message import parse_message
from clay_pipeline.core.routing_outcome import Outcome, build_outcome, delivered_entries, ending
from clay_pipeline.core.routing_plan import LEADS_TABLE_DESTINATION, Attempt, PlanContext
from clay_pipeline.queue_batch import QueueRecord, records_of
from clay_pipeline.services.delivery import BatchDeliveries, DeliveryPools
from clay_pipeline.services.pause import DestinationSwitch
from clay_pipeline.services.router import SAFETY_MARGIN_SECONDS
from local.http_stub import RecordedRequest, Reply, answering_together
from local.hubspot_sim import HubSpotSim
from local.sqs_events import sqs_event, sqs_record
from tests.integration.test_router import (
    READ,
    RECEIVED_AT,
    UPSERT,
    Sinks,
    destination_settings,
    event_file,
    lead,
    routing_record,
    set_up_crm,
    started_sinks,
)
from tests.integration.test_router_unknown_outcomes import LEADS, LateAnswers
from tests.unit.core.plain_routing import ARN, PLACEHOLDERS, routing_setup

pytestmark = pytest.mark.unit


class DeliveryBatch:
    """BatchDeliveries for each batch `run` is given, each lead claimed with what its earlier runs delivered
    (plain data, no lease held by anyone else); each record's outcome and ending as the router makes them
    (core/routing_outcome.py)."""

    arn = ARN

    def __init__(self, environ: dict[str, str]) -> None:
        self.config, self.destinations = routing_setup(environ)
        self.pools = DeliveryPools.for_destinations(self.destinations)
        self.switch = DestinationSwitch(StateStore(PLACEHOLDERS["STATE_TABLE"]))  # no AWS here: its write fails
        self.paused: list[str] = []  # destinations the batch paused (the pause hook)
        self.outcomes: dict[str, Outcome] = {}
        self.sent: dict[str, tuple[Attempt, dict[str, DeliveryResult]]] = {}  # by lead key
        self.dead: list[dict[str, Any]] = []
        self.histories: dict[str, LeadHistory] = {}  # by lead key: what was delivered, carried to the next run

    def record(self, lead: dict[str, Any], receive_count: int = 1) -> dict[str, Any]:
        return routing_record(lead, f"{lead['lead_id']}#h1", RECEIVED_AT, ARN, receive_count)

    def run(self, event: dict[str, Any], remaining_ms: int = 20_000) -> list[str]:
        """The batch's sends, then each record's ending; the ids of the records that go back to the queue."""
        records = {record.message_id: record for record in records_of(event)}
        deadline = time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_SECONDS
        enabled = self.destinations.configured() | {LEADS_TABLE_DESTINATION}
        deliveries = BatchDeliveries(
            self.destinations, self.config, self.pools, self.switch, deadline, self.paused.append
        )
        attempts = {record_id: self._claimed(record, enabled) for record_id, record in records.items()}
        deliveries.send(attempts, frozenset(self.destinations.crms) & enabled)
        failed = []
        for record_id, attempt in attempts.items():
            sent: dict[str, Any] = {}
            try:
                deliveries.collect(record_id, attempt, sent)
            except Exception:  # as RoutingBatch._route: what was delivered is recorded, the record goes back
                self._remember(attempt, sent)
                failed.append(record_id)
                continue
            outcome = build_outcome(attempt, sent, enabled)
            self.outcomes[attempt.message.lead_key] = outcome
            self.sent[attempt.message.lead_key] = (attempt, sent)
            self._remember(attempt, sent)
            end = ending(outcome, records[record_id].receive_count, 5)
            if isinstance(end, DeadLetter):
                statuses = dump_json(outcome.destination_statuses())
                body = json.loads(records[record_id].body)  # as it came: a redrive replays it
                dead = {"reason": end.reason, "detail": end.detail, "destinations": statuses, "body": body}
                self.dead.append({**dead, **origin_attributes(records[record_id])})
            elif isinstance(end, Wait) or end == "paused":
                failed.append(record_id)
        return failed

    def _remember(self, attempt: Attempt, sent: dict[str, DeliveryResult]) -> None:
        """The complete write's deliveries, as plain data: the lead's next run is claimed with them."""
        history = self.histories.get(attempt.message.lead_key, LeadHistory({}))
        delivered = {**history.delivered, **delivered_entries(attempt, sent, int(time.time()))}
        self.histories[attempt.message.lead_key] = LeadHistory(delivered, attempt.message.received_at)

    def _claimed(self, record: QueueRecord, enabled: frozenset[str]) -> Attempt:
        message = parse_message(record.body, datetime.now(UTC))
        choice = self.config.choose(message, enabled, frozenset())
        lease = Lease(message.lead_key, "test", self.histories.get(message.lead_key, LeadHistory({})), "")

        def hash_of(name: str) -> str:
            return self.destinations.payload_hash(message, name)

        context = PlanContext(enabled, frozenset(), hash_of, time.time())
        attempt, _ = self.config.plan(choice, lease, self.config.intents(choice, hash_of, int(time.time())), context)
        return attempt

    def outcome(self, lead_key: str) -> dict[str, Any]:
        """The lead's outcome and its ledger's deliveries, as the integration tests read the lead's item."""
        history = self.histories.get(lead_key, LeadHistory({}))
        deliveries = {name: entry.to_value() for name, entry in history.delivered.items()}
        written = self.outcomes[lead_key].record("") if lead_key in self.outcomes else {}  # none when a send raised
        outcome = {name: value for name, value in written.items() if value is not None}  # None: the write removes it
        return {"routing_status": "received", **outcome, "deliveries": deliveries}

    def ledger(self, lead_key: str) -> dict[str, Any]:
        """The lead's item: its delivery ledger beside the outcome (no lease: each run's claim is freed)."""
        return self.outcome(lead_key)

    def dead_letters(self) -> list[dict[str, Any]]:
        return list(self.dead)

    def unknown_marks(self, lead_key: str) -> dict[str, Any]:
        """The unknown_<destination> marks the complete write would set for the lead."""
        attempt, sent = self.sent[lead_key]
        assert attempt.lease is not None
        marks = self.config.unknown_marks(attempt, attempt.lease, sent, int(time.time()))
        return {name: value for name, value in marks.unknown.items() if value is not None}


BatchFactory = Callable[..., DeliveryBatch]


@pytest.fixture
def crm() -> HubSpotSim:
    return set_up_crm()


@pytest.fixture
def sinks(crm: HubSpotSim) -> Iterator[Sinks]:
    yield from started_sinks(crm)


@pytest.fixture
def batch(sinks: Sinks, monkeypatch: pytest.MonkeyPatch, load_function_without_aws: Any) -> BatchFactory:
    """A DeliveryBatch with the router's settings on the loopback sinks (overrides as keyword arguments). No AWS
    at all (load_function_without_aws's closed loopback endpoint): the pause hook's switch write fails."""

    def make(**overrides: str) -> DeliveryBatch:
        environ = {**destination_settings(sinks), **overrides}
        for name, value in environ.items():
            monkeypatch.setenv(name, value)  # the destinations read their URL and token per call
        return DeliveryBatch(environ)

    return make


@pytest.fixture
def router(batch: BatchFactory) -> DeliveryBatch:
    return batch()


def test_slack_429_retry_after_is_waited_out_within_the_invocation(router: DeliveryBatch, sinks: Sinks) -> None:
    sinks.slack.script("/services/T0/B0/X", Reply(429, {"ok": False}, headers={"retry-after": "1"}))
    record = router.record(lead("ld_s", 95))
    assert router.run(sqs_event([record])) == []
    first, second = sinks.slack.received()
    assert second.received_at - first.received_at >= 0.9  # Slack's Retry-After was respected
    assert router.outcome("ld_s")["destinations"]["slack"] == "delivered"


def test_slack_429_longer_than_the_time_left_fails_back_without_sleeping(router: DeliveryBatch, sinks: Sinks) -> None:
    # GIVEN Slack asking for 10 minutes WHEN 20 s remain THEN no wait: the record goes back to the queue
    sinks.slack.script("/services/T0/B0/X", Reply(429, {"ok": False}, headers={"retry-after": "600"}))
    record = router.record(lead("ld_t", 95))
    assert router.run(sqs_event([record]), remaining_ms=20_000) == [record["messageId"]]
    assert sinks.calls()["slack"] == 1
    assert router.outcome("ld_t")["destinations"]["slack"] == "failed"


def test_a_destination_failing_after_its_retries_is_not_retried_for_the_rest_of_the_batch(
    router: DeliveryBatch, sinks: Sinks
) -> None:
    # GIVEN outreach down (503) and two outreach-bound leads in one batch
    sinks.outreach.responder = lambda request: Reply(503)
    records = [router.record(lead("ld_u1", 85)), router.record(lead("ld_u2", 85))]
    # WHEN routed THEN both wait in the queue, but only the first lead spent calls (1 + 1 retry) on outreach
    assert router.run(sqs_event(records)) == [record["messageId"] for record in records]
    assert sinks.calls()["outreach"] == 2
    assert sinks.calls()["zapier"] == 2  # the healthy destinations still got both leads
    assert router.outcome("ld_u2")["destinations"]["outreach"] == "failed"


def test_slack_paces_several_hot_leads_in_one_batch(batch: BatchFactory, sinks: Sinks) -> None:
    router = batch(SLACK_MIN_INTERVAL_SECONDS="0.3")
    records = [router.record(lead(f"ld_h{i}", 92)) for i in range(3)]
    assert router.run(sqs_event(records)) == []
    arrivals = [request.received_at for request in sinks.slack.received()]
    assert len(arrivals) == 3
    assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(arrivals))


def test_a_leads_webhooks_are_sent_concurrently(router: DeliveryBatch, sinks: Sinks) -> None:
    # GIVEN Slack, outreach and Zapier each answering only once all three requests have arrived
    after_the_others = answering_together(3, timeout=1.5, reply=Reply(200))
    for server in (sinks.slack, sinks.outreach, sinks.zapier):
        server.responder = after_the_others
    # WHEN a hot lead is routed THEN all three are delivered at the first attempt
    assert router.run(sqs_event([router.record(lead("ld_cc", 95))])) == []
    assert set(router.outcome("ld_cc")["destinations"].values()) == {"delivered"}
    assert (sinks.calls()["slack"], sinks.calls()["outreach"], sinks.calls()["zapier"]) == (1, 1, 1)


def test_a_batch_probes_each_destination_with_one_lead_then_fans_out(router: DeliveryBatch, sinks: Sinks) -> None:
    # GIVEN five outreach-bound leads in one batch; outreach notes whether its first request was alone, and
    # answers the other four only if all four are in flight together
    lock, in_flight, first_alone = threading.Lock(), [0], []
    together = threading.Barrier(4, timeout=2)

    def outreach(request: RecordedRequest) -> Reply:
        with lock:
            in_flight[0] += 1
            first = not first_alone
            if first:
                first_alone.append(None)
        try:
            if first:
                time.sleep(0.2)
                first_alone[0] = in_flight[0] == 1
                return Reply(200)
            together.wait()
            return Reply(200)
        except threading.BrokenBarrierError:
            return Reply(503)
        finally:
            with lock:
                in_flight[0] -= 1

    sinks.outreach.responder = outreach
    records = [router.record(lead(f"ld_fan{i}", 85)) for i in range(5)]
    # WHEN routed THEN the first lead went alone, then the other four at once, each delivered at the first try
    assert router.run(sqs_event(records)) == []
    assert first_alone == [True]
    assert sinks.calls()["outreach"] == 5


def test_a_lead_takes_as_long_as_its_slowest_destination_not_the_sum(router: DeliveryBatch, sinks: Sinks) -> None:
    # GIVEN outreach and Zapier each taking 0.5 s to answer
    delay = 0.5
    for server in (sinks.outreach, sinks.zapier):
        server.responder = lambda request: Reply(200, delay=delay)
    assert router.run(sqs_event([router.record(lead("ld_sl", 85))])) == []
    # THEN the second request did not wait for the first answer: they arrived well within one delay
    [outreach], [zapier] = sinks.outreach.received(), sinks.zapier.received()
    apart = abs(outreach.received_at - zapier.received_at)
    assert apart / delay < 0.5, f"requests {apart:.2f} s apart: sent one after the other"


@pytest.mark.parametrize("multi_status", [False, True], ids=["refused-whole", "207-per-input"])
def test_one_contact_hubspot_refuses_is_dead_lettered_alone_with_hubspots_message(
    router: DeliveryBatch, sinks: Sinks, crm: HubSpotSim, multi_status: bool
) -> None:
    # GIVEN ten HubSpot-bound leads in one batch, one with an email HubSpot refuses (a comma: valid to Clay,
    # not to HubSpot), and HubSpot refusing the whole batch for it (or, with multi-status, just that input)
    crm.multi_status = multi_status
    leads = [lead(f"c{n}", 75) for n in range(10)]
    leads[6]["email"] = "jane,doe@acme.com"
    assert router.run(sqs_event([router.record(item) for item in leads])) == []
    # THEN the nine valid contacts are in HubSpot, and only the refused lead is dead-lettered, with HubSpot's message
    assert sorted(crm.contacts) == sorted(f"c{n}@acme.com" for n in range(10) if n != 6)
    [dead] = router.dead_letters()
    assert dead["body"]["lead_key"] == "c6"
    assert dead["reason"] == "permanent_failure"
    assert dead["detail"] == (
        "hubspot: hubspot_validation_error (Property values were not valid: Email address jane,doe@acme.com is invalid)"
    )
    assert router.outcome("c6")["destinations"]["hubspot"] == "permanent:hubspot_validation_error"
    assert [router.outcome(f"c{n}")["routing_status"] for n in range(10) if n != 6] == ["routed"] * 9
    # AND isolating it cost a few calls: one 207, or log2(10) rounds of halves when HubSpot refuses the batch whole
    upserts = sinks.hubspot.received(UPSERT)
    print(f"\nHubSpot upserts for 10 contacts, 1 refused ({'207' if multi_status else 'split'}): {len(upserts)}")
    assert len(upserts) == (1 if multi_status else 7)


def test_hubspot_retries_only_the_items_it_rate_limited(router: DeliveryBatch, sinks: Sinks) -> None:
    throttled = {
        "status": "COMPLETE",
        "results": [{"id": "1", "properties": {"email": "a1@acme.com"}}],
        "errors": [
            {"status": "error", "category": "RATE_LIMITS", "message": "slow", "context": {"ids": ["a2@acme.com"]}}
        ],
    }
    sinks.hubspot.script(UPSERT, Reply(207, throttled))
    assert router.run(sqs_event([router.record(lead("a1", 75)), router.record(lead("a2", 75))])) == []
    first, second = sinks.hubspot.received(UPSERT)
    assert len(first.json()["inputs"]) == 2
    assert [item["id"] for item in second.json()["inputs"]] == ["a2@acme.com"]


def test_a_resend_of_an_existing_contact_carries_none_of_the_rep_owned_fields(
    router: DeliveryBatch, sinks: Sinks, crm: HubSpotSim
) -> None:
    # GIVEN a contact HubSpot already has, whose lead status and lifecycle stage a rep set
    crm.contacts["rep@acme.com"] = {
        "id": "77",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "properties": {"email": "rep@acme.com", "hs_lead_status": "CONNECTED", "lifecyclestage": "opportunity"},
    }
    # WHEN Clay sends the lead again
    assert router.run(sqs_event([router.record(lead("rep", 75, job_title="CTO"))])) == []
    # THEN the upsert carries the enrichment but none of the rep-owned fields, and the rep's values stay
    [upsert] = sinks.hubspot.received(UPSERT)
    properties = upsert.json()["inputs"][0]["properties"]
    assert not {"hs_lead_status", "lifecyclestage", "hubspot_owner_id"} & set(properties)
    assert properties["jobtitle"] == "CTO"
    kept = crm.contacts["rep@acme.com"]["properties"]
    assert (kept["hs_lead_status"], kept["lifecyclestage"], kept["jobtitle"]) == ("CONNECTED", "opportunity", "CTO")


def test_owned_fields_a_mapping_names_go_only_to_contacts_hubspot_creates(
    batch: BatchFactory, sinks: Sinks, crm: HubSpotSim
) -> None:
    # GIVEN a mapping that also sends Clay's owner column as hubspot_owner_id (rep-owned by default) and a
    # lifecycle stage for new contacts; one contact exists, one does not
    router = batch(
        HUBSPOT_PROPERTY_MAP="hubspot_owner_id=owner_id",
        HUBSPOT_NEW_CONTACT_VALUES="hs_lead_status=NEW,lifecyclestage=lead",
    )
    crm.contacts["old@acme.com"] = {"id": "5", "createdAt": "", "properties": {"email": "old@acme.com"}}
    records = [router.record(lead(name, 75, owner_id="4242")) for name in ("old", "new")]
    assert router.run(sqs_event(records)) == []
    # THEN one batch read, one upsert: the new contact gets the owner and the starting values, the old one neither
    assert len(sinks.hubspot.received(READ)) == 1
    [upsert] = sinks.hubspot.received(UPSERT)
    by_email = {item["id"]: item["properties"] for item in upsert.json()["inputs"]}
    assert {k: by_email["new@acme.com"][k] for k in ("hubspot_owner_id", "hs_lead_status", "lifecyclestage")} == {
        "hubspot_owner_id": "4242",
        "hs_lead_status": "NEW",
        "lifecyclestage": "lead",
    }
    assert not {"hubspot_owner_id", "hs_lead_status", "lifecyclestage"} & set(by_email["old@acme.com"])


def test_a_ten_secondly_429_is_retried_and_does_not_pause_hubspot(
    router: DeliveryBatch, sinks: Sinks, crm: HubSpotSim
) -> None:
    # GIVEN HubSpot's ten-second window full for the next request, and too little time left to wait it out
    crm.limit("TEN_SECONDLY_ROLLING", times=1)
    event = sqs_event([router.record(lead("t1", 75))])
    # WHEN routed THEN the lead goes back to the queue as retryable, HubSpot is not paused
    assert router.run(event, remaining_ms=8000) == [event["Records"][0]["messageId"]]
    assert "hubspot" not in router.paused
    assert router.outcome("t1")["destinations"]["hubspot"] == "failed"
    # AND its next receive delivers it
    again = sqs_record(event["Records"][0]["body"], router.arn, receive_count=2)
    assert router.run(sqs_event([again])) == []
    assert "t1@acme.com" in crm.contacts


def test_after_a_daily_429_the_batchs_other_chunks_are_not_sent_to_be_refused(
    batch: BatchFactory, sinks: Sinks, crm: HubSpotSim
) -> None:
    # GIVEN HubSpot's daily limit reached and a batch of five HubSpot leads upserted two at a time
    router = batch(HUBSPOT_BATCH_SIZE="2")
    crm.limit("DAILY")
    records = [router.record(lead(f"k{n}", 75)) for n in range(5)]
    failed = router.run(sqs_event(records))
    # THEN one request reached HubSpot, and every lead waits for the reset (none dead-lettered)
    assert len(sinks.hubspot.received()) == 2  # the refused batch read, and the account's time zone
    assert [r.path for r in sinks.hubspot.received()] == [READ, "/account-info/v3/details"]
    assert sorted(failed) == sorted(record["messageId"] for record in records)
    assert {router.outcome(f"k{n}")["destinations"]["hubspot"] for n in range(5)} == {"paused"}
    assert router.dead_letters() == []


# ------------------------------------------------------------------------------------- a lead's deliveries across runs
def test_hot_lead_goes_to_slack_outreach_hubspot_zapier_and_the_leads_table(
    router: DeliveryBatch, sinks: Sinks
) -> None:
    # GIVEN events/router-hot.json: a 95-score VP with email WHEN routed
    failed = router.run(event_file("router-hot.json"))
    # THEN every destination of the default table got it exactly once
    assert failed == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 1}
    assert sinks.outreach.received()[0].json()["email"] == "jane.doe@acme.com"
    assert "*Jane Doe*, VP Sales at Acme (ICP 95, tier A)" in sinks.slack.received()[0].json()["text"]
    [upsert] = sinks.hubspot.received(UPSERT)
    assert upsert.headers["authorization"] == "Bearer pat-na1-test"
    assert upsert.json()["inputs"] == [
        {
            "idProperty": "email",
            "id": "jane.doe@acme.com",
            "objectWriteTraceId": "jane.doe@acme.com",
            "properties": {  # every value a string; a new contact: its lead status is set
                "email": "jane.doe@acme.com",
                "firstname": "Jane",
                "lastname": "Doe",
                "company": "Acme",
                "jobtitle": "VP Sales",
                "clay_icp_score": "95",
                "clay_enrichment_date": "2026-01-01",
                "hs_lead_status": "NEW",
            },
        }
    ]
    outcome = router.outcome("ld_hot_jane_acme")
    assert outcome["routing_status"] == "routed"
    assert (outcome["tier"], outcome["icp_score"]) == ("A", 95)
    assert outcome["routes"] == ["slack", "outreach", "hubspot", "zapier"]
    assert set(outcome["destinations"].values()) == {"delivered"}
    assert "skipped_reason" not in outcome


def test_partial_failure_then_retry_delivers_only_the_missing_destination(router: DeliveryBatch, sinks: Sinks) -> None:
    # GIVEN Slack failing (500 on the call and its in-invocation retry) while the others succeed
    sinks.slack.script("/services/T0/B0/X", Reply(500), Reply(500))
    record = router.record(lead("ld_p", 95))
    # WHEN routed THEN the record goes back to the queue and the leads table shows what is missing
    assert router.run(sqs_event([record])) == [record["messageId"]]
    outcome = router.outcome("ld_p")
    assert outcome["routing_status"] == "partial"
    assert outcome["destinations"] == {
        "slack": "failed",
        "outreach": "delivered",
        "hubspot": "delivered",
        "zapier": "delivered",
    }
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 2}
    # AND the successes are in the ledger, whose lease is freed for the retry
    ledger = router.ledger("ld_p")
    assert set(ledger["deliveries"]) == {"outreach", "hubspot", "zapier"}
    assert "lease_owner" not in ledger
    # WHEN the same batch is retried (Slack recovered) THEN only Slack is sent to
    assert router.run(sqs_event([record])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 3}
    assert router.outcome("ld_p")["routing_status"] == "routed"
    # AND a third delivery of the message sends nothing at all
    router.run(sqs_event([record]))
    assert sinks.calls()["slack"] == 3 and sinks.calls()["outreach"] == 1
    assert router.dead_letters() == []


def test_permanent_error_goes_to_the_dlq_with_reasons_and_statuses(router: DeliveryBatch, sinks: Sinks) -> None:
    sinks.outreach.script("/outreach", Reply(400, {"message": "sequence id missing"}))
    record = router.record(lead("ld_d", 85))
    # WHEN outreach refuses the lead with a 400 THEN the record is processed (not retried) and dead-lettered
    assert router.run(sqs_event([record])) == []
    [dead] = router.dead_letters()
    assert dead["reason"] == "permanent_failure"
    assert dead["detail"] == "outreach: rejected_400 (sequence id missing)"
    assert json.loads(dead["destinations"]) == {
        "outreach": "permanent:rejected_400",
        "hubspot": "delivered",
        "zapier": "delivered",
    }
    assert dead["body"]["lead"]["lead_id"] == "ld_d"  # the original message: a redrive replays it
    assert dead["source_message_id"] == record["messageId"]
    assert sinks.calls()["outreach"] == 1  # a 4xx is not retried
    assert router.outcome("ld_d")["routing_status"] == "partial"


def test_a_callback_with_an_impossible_date_no_longer_fails_its_batch(router: DeliveryBatch, sinks: Sinks) -> None:
    # GIVEN a batch of 10 hot leads, one of them enriched "at" a moment past the last one Python can hold
    # (before: OverflowError in start(), and all 10 went to RoutingDLQ without a reason)
    leads = [lead(f"ld_b{n}", 95) for n in range(9)] + [
        lead("ld_year9999", 95, _clay_enriched_at="9999-12-31T23:59:59-23:59")
    ]
    assert router.run(sqs_event([router.record(item) for item in leads])) == []
    # THEN all 10 are routed; the odd date is kept aside and HubSpot's enrichment date is the day it arrived
    assert {router.outcome(item["lead_id"])["routing_status"] for item in leads} == {"routed"}
    assert sinks.calls()["outreach"] == 10
    [upsert] = sinks.hubspot.received(UPSERT)
    dates = {i["id"]: i["properties"]["clay_enrichment_date"] for i in upsert.json()["inputs"]}
    assert dates["ld_year9999@acme.com"] == "2026-01-01"
    assert router.dead_letters() == []


def test_a_batch_hubspot_upsert_that_raises_fails_only_its_leads_and_records_their_webhooks(
    router: DeliveryBatch, sinks: Sinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN HubSpot's upsert raising (a bug, not an answer) while two hot leads and a warm one are routed
    def broken(*args: Any) -> None:
        raise RuntimeError("a bug in the upsert")

    monkeypatch.setattr(router.destinations.crms["hubspot"], "upsert", broken)
    records = [router.record(lead("ld_u1", 85)), router.record(lead("ld_u2", 85)), router.record(lead("ld_w", 55))]
    # WHEN routed THEN the invocation does not fail: only the leads owing HubSpot go back to the queue
    assert router.run(sqs_event(records)) == [records[0]["messageId"], records[1]["messageId"]]
    assert router.outcome("ld_w")["routing_status"] == "routed"
    # AND what they were delivered is in their ledger, so the retry sends only HubSpot
    assert set(router.ledger("ld_u1")["deliveries"]) == {"outreach", "zapier"}
    assert router.outcome("ld_u1")["destinations"]["hubspot"] == "failed"
    assert router.dead_letters() == []


def test_an_unexpected_error_records_the_other_deliveries_before_failing_the_record(
    router: DeliveryBatch, sinks: Sinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Slack's delivery raising (a bug, not a destination's answer; Slack resends after a lost answer)
    def broken(*args: Any) -> None:
        raise RuntimeError("a bug in a destination")

    slack = router.destinations.webhooks["slack"]
    working = slack.deliver
    monkeypatch.setattr(slack, "deliver", broken)
    record = router.record(lead("ld_e", 95))
    assert router.run(sqs_event([record])) == [record["messageId"]]
    # THEN what succeeded is recorded and the lease freed, so the retry sends only to Slack
    ledger = router.ledger("ld_e")
    assert set(ledger["deliveries"]) == {"zapier", "outreach", "hubspot"}
    assert "lease_owner" not in ledger
    monkeypatch.setattr(slack, "deliver", working)
    assert router.run(sqs_event([record])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 1}


# ------------------------------------------------------------------------------------- unknown outcomes
def test_a_destination_that_never_answers_is_unknown_and_the_batch_waits(batch: BatchFactory, sinks: Sinks) -> None:
    # (from tests/integration/test_router_unknown_outcomes.py, with its router's settings)
    router = batch(DESTINATION_RETRY_ATTEMPTS="2", DESTINATION_TIMEOUT_SECONDS="1.0", SLACK_MIN_INTERVAL_SECONDS="0.01")
    # GIVEN Zapier taking the request and never answering within the invocation
    sinks.zapier.responder = LateAnswers(delay=5)
    records = [router.record(lead(key, score)) for key, score in LEADS.items()]
    # WHEN routed THEN the first lead's Zapier call is unknown; the second lead's was never sent (the probe failed)
    assert router.run(sqs_event(records)) == [records[1]["messageId"]]
    assert len(sinks.zapier.received()) == 1
    assert router.outcome("hot")["destinations"]["zapier"] == "unknown"
    assert router.outcome("warm")["destinations"]["zapier"] == "failed"
    assert router.unknown_marks("warm") == {}
    assert set(router.unknown_marks("hot")) == {"zapier"}  # marked unknown: never sent again unseen
