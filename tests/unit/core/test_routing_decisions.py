"""The router's decisions on plain data (core/routing_plan.py, routing_outcome.py, routing_message.py): which
destinations each callback of a lead reaches, across callbacks, policies, pauses and rules. Carried over from
tests/integration/test_router.py with their assertions; the ledger's writes stay tested there, on moto."""

from __future__ import annotations

import json
import time

import pytest

from clay_pipeline.core.deliveries import DeliveryResult, Status
from local.sqs_events import sqs_event, sqs_record
from tests.integration.test_router import DAY, event_file, lead, parse_body
from tests.unit.core.plain_routing import PlainRouter, PlainSinks, PlainSwitch, hubspot_inputs

pytestmark = pytest.mark.unit


@pytest.fixture
def sinks() -> PlainSinks:
    return PlainSinks()


@pytest.fixture
def router(sinks: PlainSinks) -> PlainRouter:
    return PlainRouter(sinks)


@pytest.fixture
def pausable(router: PlainRouter) -> tuple[PlainRouter, PlainSwitch]:
    """The router and the operator's pause switch (read on every invocation)."""
    return router, PlainSwitch(router)


def test_warm_lead_goes_to_nurture_and_zapier(router: PlainRouter, sinks: PlainSinks) -> None:
    assert router.run(event_file("router-warm.json")) == []
    assert sinks.calls() == {"outreach": 0, "nurture": 1, "zapier": 1, "hubspot": 0, "slack": 0}
    outcome = router.outcome("ld_warm_omar_globex")
    assert (outcome["routing_status"], outcome["tier"], outcome["routes"]) == ("routed", "B", ["nurture", "zapier"])


def test_cold_lead_is_skipped_with_the_reason(router: PlainRouter, sinks: PlainSinks) -> None:
    # GIVEN a 20-score lead without email WHEN routed THEN nothing is sent and the leads table says why
    assert router.run(event_file("router-cold.json")) == []
    assert sum(sinks.calls().values()) == 0
    outcome = router.outcome("ld_cold_ann_tiny")
    assert outcome["routing_status"] == "skipped"
    assert outcome["routes"] == []
    assert outcome["skipped_reason"].startswith("no rule matched: slack needs icp_score >= 90;")
    assert router.dead_letters() == []


def test_scoreless_lead_is_scored_with_the_reference_formula(router: PlainRouter, sinks: PlainSinks) -> None:
    # GIVEN a Director at an 800-person IT company with email and no score from Clay
    assert router.run(event_file("router-scoreless.json")) == []
    # THEN 25 (size) + 30 (industry) + 20 (title) + 10 (email) = 85, tier A: outreach, HubSpot, Zapier; not Slack
    outcome = router.outcome("ld_scoreless_li_initech")
    assert (outcome["icp_score"], outcome["tier"]) == (85, "A")
    assert outcome["routes"] == ["outreach", "hubspot", "zapier"]
    assert hubspot_inputs(sinks)[0]["properties"]["clay_icp_score"] == "85"
    assert sinks.calls()["slack"] == 0


def test_a_delivery_older_than_the_mark_days_is_sent_again(router: PlainRouter, sinks: PlainSinks) -> None:
    # GIVEN an outreach mark 31 days old (DELIVERY_MARK_DAYS is 30) that TTL has not deleted yet
    router.put_ledger("ld_o", deliveries={"outreach": {"at": int(time.time()) - 31 * DAY}})
    # WHEN the callback is routed again THEN the stale mark does not count: outreach gets it
    assert router.run(sqs_event([router.record(lead("ld_o", 85))])) == []
    assert sinks.calls()["outreach"] == 1


def test_a_resend_whose_mapped_payload_is_unchanged_costs_no_hubspot_call(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN a routed lead
    first = lead("ld_same", 75, _clay_enriched_at="2026-01-01T00:00:00Z")
    assert router.run(sqs_event([router.callback(1, first)])) == []
    # WHEN Clay sends it again with only a column HubSpot does not receive changed (same day's timestamp)
    again = {**first, "_clay_enriched_at": "2026-01-01T09:30:00Z", "twitter": "@jane"}
    assert router.run(sqs_event([router.callback(2, again)])) == []
    # THEN no destination is called again, and the outcome says HubSpot already has this payload
    assert sinks.calls() == {"outreach": 0, "nurture": 1, "zapier": 1, "hubspot": 1, "slack": 0}
    assert router.outcome("ld_same")["destinations"]["hubspot"] == "delivered"


def test_a_lead_moving_up_a_band_reaches_only_what_it_newly_qualifies_for(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN a warm lead (60): nurture and Zapier
    assert router.run(sqs_event([router.callback(1, lead("ld_up", 60))])) == []
    assert sinks.calls() == {"outreach": 0, "nurture": 1, "zapier": 1, "hubspot": 0, "slack": 0}
    # WHEN re-scored 85 THEN outreach and HubSpot get it; nurture and Zapier are not sent again
    assert router.run(sqs_event([router.callback(2, lead("ld_up", 85))])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 1, "zapier": 1, "hubspot": 1, "slack": 0}
    # WHEN re-scored 92 THEN only Slack is new
    assert router.run(sqs_event([router.callback(3, lead("ld_up", 92))])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 1, "zapier": 1, "hubspot": 2, "slack": 1}
    assert set(router.outcome("ld_up")["deliveries"]) == {"nurture", "zapier", "outreach", "hubspot", "slack"}


def test_a_lead_dropping_a_band_is_not_unrouted_nor_sent_to_the_lower_band(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN a lead routed at 85: outreach, HubSpot, Zapier
    assert router.run(sqs_event([router.callback(1, lead("ld_down", 85))])) == []
    # WHEN a re-run scores it 60 (a nurture score)
    assert router.run(sqs_event([router.callback(2, lead("ld_down", 60))])) == []
    # THEN nurture is withheld (it qualifies only because the score dropped) and nothing else is called
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 0}
    item = router.outcome("ld_down")
    assert (item["icp_score"], item["tier"], item["routing_status"]) == (60, "B", "routed")
    assert item["destinations"] == {"nurture": "withheld", "zapier": "delivered"}
    # AND the destinations it got are kept in its ledger
    assert set(item["deliveries"]) == {"outreach", "hubspot", "zapier"}


def test_a_small_drop_within_the_band_still_reaches_a_destination_it_qualifies_for(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN a 95 lead without an email (Slack only), then 92 with an email
    assert router.run(sqs_event([router.callback(1, lead("ld_dip", 95, email=None))])) == []
    assert router.run(sqs_event([router.callback(2, lead("ld_dip", 92))])) == []
    # THEN outreach, HubSpot and Zapier get it: at 95 the rules would have chosen them too
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 1}


def test_an_older_callback_routed_after_a_newer_one_is_superseded(router: PlainRouter, sinks: PlainSinks) -> None:
    # GIVEN the second callback (score 60) routed before the first (score 85) arrives (SQS does not keep order)
    newer_record, older_record = router.callback(2, lead("ld_late", 60)), router.callback(1, lead("ld_late", 85))
    assert router.run(sqs_event([newer_record])) == []
    # WHEN the older one is routed THEN it delivers nothing and the newer outcome stays
    assert router.run(sqs_event([older_record])) == []
    assert sinks.calls() == {"outreach": 0, "nurture": 1, "zapier": 1, "hubspot": 0, "slack": 0}
    assert router.outcome("ld_late")["icp_score"] == 60


def test_per_column_callbacks_in_one_batch_route_only_the_newest(router: PlainRouter, sinks: PlainSinks) -> None:
    # GIVEN three partial callbacks of one row in one batch, the last complete (one HTTP API column per enrichment)
    partials = [
        router.callback(1, lead("ld_cols", None, job_title="VP Sales")),
        router.callback(2, lead("ld_cols", None, employee_count="1,200")),
        router.callback(3, lead("ld_cols", 88, job_title="VP Sales", employee_count="1,200")),
    ]
    # WHEN routed in one invocation THEN only the complete (newest) version is delivered
    assert router.run(sqs_event(partials)) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 0}
    assert hubspot_inputs(sinks)[0]["properties"]["clay_icp_score"] == "88"
    assert router.outcome("ld_cols")["icp_score"] == 88


def test_partial_rows_routed_apart_wait_for_the_required_column_and_enrol_the_lead_once(sinks: PlainSinks) -> None:
    # GIVEN ROUTING_REQUIRED_FIELDS=icp_score and a row whose per-column callbacks are routed one at a time:
    # two partial rows without Clay's score (the formula would put them in nurture), then the complete row
    router = PlainRouter(sinks, ROUTING_REQUIRED_FIELDS="icp_score")
    assert router.run(sqs_event([router.callback(1, lead("ld_pc", None, employee_count="1,200"))])) == []
    assert router.outcome("ld_pc")["skipped_reason"] == (
        "incomplete row: Clay has not sent icp_score yet (ROUTING_REQUIRED_FIELDS)"
    )
    assert router.run(sqs_event([router.callback(2, lead("ld_pc", None, job_title="VP Sales"))])) == []
    # THEN nothing was delivered for the partial rows
    assert sinks.calls() == {"outreach": 0, "nurture": 0, "zapier": 0, "hubspot": 0, "slack": 0}
    # WHEN the complete row is routed THEN the lead goes where its real score sends it, once, never to nurture
    complete = lead("ld_pc", 88, job_title="VP Sales", employee_count="1,200")
    assert router.run(sqs_event([router.callback(3, complete)])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 0}
    assert sinks.received("zapier")[0].json()["job_title"] == "VP Sales"  # Zapier got the whole row
    outcome = router.outcome("ld_pc")
    assert (outcome["routing_status"], outcome["icp_score"]) == ("routed", 88)
    assert "skipped_reason" not in outcome


def test_without_required_fields_a_row_clay_sent_no_score_is_routed_on_the_computed_score(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN the default (no ROUTING_REQUIRED_FIELDS): a table without a score column still gets routed
    assert router.run(sqs_event([router.callback(1, lead("ld_ns", None, job_title="CEO", employee_count=500))])) == []
    assert router.outcome("ld_ns")["routing_status"] == "routed"
    assert sum(sinks.calls().values()) > 0


def test_delivery_policies_setting_makes_zapier_follow_changes(sinks: PlainSinks) -> None:
    router = PlainRouter(sinks, DELIVERY_POLICIES="zapier=on_change")
    assert router.run(sqs_event([router.callback(1, lead("ld_z", 40, job_title="CTO"))])) == []
    assert router.run(sqs_event([router.callback(2, lead("ld_z", 40, job_title="CTO"))])) == []  # same payload
    assert router.run(sqs_event([router.callback(3, lead("ld_z", 45, job_title="CEO"))])) == []  # changed
    # THEN Zapier got one call per distinct payload, each with its own Idempotency-Key
    received = sinks.received("zapier")
    assert [request.json()["job_title"] for request in received] == ["CTO", "CEO"]
    assert len({request.headers["idempotency-key"] for request in received}) == 2


def test_a_rules_policy_field_makes_hubspot_once_per_lead(sinks: PlainSinks) -> None:
    rules = [
        {"destination": "hubspot", "policy": "once_per_lead", "when": [{"field": "email", "op": "present"}]},
    ]
    router = PlainRouter(sinks, ROUTING_RULES=json.dumps(rules))
    for number, score in enumerate((70, 80, 90), start=1):
        assert router.run(sqs_event([router.callback(number, lead("ld_h1", score))])) == []
    assert sinks.calls()["hubspot"] == 1


def test_once_per_lead_webhooks_carry_the_same_idempotency_key_for_every_callback_of_the_lead(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN outreach failing the first callback's delivery (so the second callback's routing retries it)
    sinks.script("outreach", DeliveryResult(Status.RETRYABLE, "server_error_503"))
    assert router.run(sqs_event([router.callback(1, lead("ld_k", 85))])) != []
    assert router.run(sqs_event([router.callback(2, lead("ld_k", 86))])) == []
    keys = {request.headers["idempotency-key"] for request in sinks.received("outreach")}
    assert len(keys) == 1  # a receiver that dedupes drops any repeat of the lead


def test_two_enrichments_of_one_contact_make_one_hubspot_input(router: PlainRouter, sinks: PlainSinks) -> None:
    records = [
        router.record(lead("same", 75), callback_id="same#old"),
        router.record(lead("same", 78, job_title="CTO"), callback_id="same#new"),
    ]
    assert router.run(sqs_event(records)) == []
    assert len(hubspot_inputs(sinks)) == 1  # HubSpot refuses a batch naming a contact twice


def test_a_lead_whose_only_destinations_are_off_is_skipped(sinks: PlainSinks) -> None:
    router = PlainRouter(sinks, off=("zapier",))  # ZAPIER_WEBHOOK_URL unset
    assert router.run(sqs_event([router.record(lead("z1", 30))])) == []
    outcome = router.outcome("z1")
    assert (outcome["routing_status"], outcome["skipped_reason"]) == (
        "skipped",
        "every chosen destination is off: zapier",
    )
    assert outcome["destinations"] == {"zapier": "off"}


def test_routing_rules_from_the_environment_replace_the_defaults(sinks: PlainSinks) -> None:
    rules = [{"destination": "outreach", "when": [{"field": "industry", "op": "==", "value": "Healthcare"}]}]
    router = PlainRouter(sinks, ROUTING_RULES=json.dumps(rules))
    records = [router.record(lead("c1", 99)), router.record(lead("c2", 10, industry="healthcare"))]
    assert router.run(sqs_event(records)) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 0, "hubspot": 0, "slack": 0}
    assert router.outcome("c1")["routing_status"] == "skipped"
    assert router.outcome("c2")["routes"] == ["outreach"]


def test_every_delivery_failing_on_the_last_receive_is_dead_lettered_with_what_failed(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN the fifth receive (RoutingQueue's maxReceiveCount) of a lead whose only destination keeps failing
    sinks.script("nurture", DeliveryResult(Status.RETRYABLE, "server_error_503"))
    record = router.record(lead("ld_x", 55, email=None), receive_count=5)
    # THEN it is not handed back to be redriven without reasons: the DLQ gets it with the failure
    assert router.run(sqs_event([record])) == []
    [dead] = router.dead_letters()
    assert (dead["reason"], dead["detail"]) == ("retries_exhausted", "nurture: server_error_503")
    assert json.loads(dead["destinations"]) == {"nurture": "failed"}
    assert router.outcome("ld_x")["routing_status"] == "failed"


def test_a_pause_delays_a_delivery_never_drops_it_when_a_lower_score_follows(
    pausable: tuple[PlainRouter, PlainSwitch], sinks: PlainSinks
) -> None:
    router, switch = pausable
    # GIVEN HubSpot paused while a 95 lead is routed (its HubSpot upsert is held)
    switch.pause("hubspot")
    first = router.callback(1, lead("ld_rs", 95))
    assert router.run(sqs_event([first])) == [first["messageId"]]
    assert sinks.calls()["hubspot"] == 0
    # WHEN Clay re-scores the lead to 60 (HubSpot's rule no longer chooses it) while HubSpot is still paused
    second = router.callback(2, lead("ld_rs", 60))
    assert router.run(sqs_event([second])) == [second["messageId"]]
    # THEN the newer callback takes over what the pause holds: it waits for HubSpot too
    item = router.outcome("ld_rs")
    assert item["destinations"]["hubspot"] == "paused"
    assert "hubspot" in item["routes"]
    # WHEN HubSpot resumes and both records come back, the older first
    switch.resume("hubspot")
    assert router.run(sqs_event([sqs_record(first["body"], router.arn, receive_count=2)])) == []
    assert router.run(sqs_event([sqs_record(second["body"], router.arn, receive_count=2)])) == []
    # THEN HubSpot got the lead once, its newest version, and nothing else was sent twice
    [upsert] = hubspot_inputs(sinks)
    assert upsert["properties"]["clay_icp_score"] == "60"
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 1}
    item = router.outcome("ld_rs")
    assert item["routing_status"] == "routed"
    assert not [name for name in item if name.startswith("held_")]


def test_a_callback_choosing_nothing_still_delivers_what_a_pause_held(
    pausable: tuple[PlainRouter, PlainSwitch], sinks: PlainSinks
) -> None:
    router, switch = pausable
    # GIVEN a lead whose Zapier delivery a pause held (and its other destinations delivered)
    switch.pause("zapier")
    first = router.callback(1, lead("ld_cn", 85))
    assert router.run(sqs_event([first])) == [first["messageId"]]
    # WHEN, after the resume, a newer callback without an email (no rule chooses anything) comes first
    switch.resume("zapier")
    newer = router.callback(2, lead("ld_cn", 20, email=None))
    assert router.run(sqs_event([newer])) == []
    # THEN it delivered the held Zapier call, and the older record then has nothing left to do
    assert sinks.calls()["zapier"] == 1
    assert router.run(sqs_event([sqs_record(first["body"], router.arn, receive_count=2)])) == []
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 1, "slack": 0}


# ------------------------------------------------------------------------------------- Clay sending a row again
def test_three_callbacks_of_one_lead_enrol_it_once_and_update_hubspot_per_change(
    router: PlainRouter, sinks: PlainSinks
) -> None:
    # GIVEN lead R-1 (score 85, with an email) called back as enriched
    first = lead("R-1", 85, job_title="VP Sales", _clay_enriched_at="2026-01-01T00:00:00Z")
    assert router.run(sqs_event([router.callback(1, first)])) == []
    # WHEN a re-run column changes job_title and its timestamp, then the score column re-runs to 95
    rerun = {**first, "job_title": "CRO", "_clay_enriched_at": "2026-01-01T00:05:00Z"}
    assert router.run(sqs_event([router.callback(2, rerun)])) == []
    assert router.run(sqs_event([router.callback(3, {**rerun, "icp_score": 95})])) == []
    # THEN outreach and Zapier (once per lead) got the lead once, Slack once (when it first reached 90)
    assert sinks.calls() == {"outreach": 1, "nurture": 0, "zapier": 1, "hubspot": 3, "slack": 1}
    # AND HubSpot (on change) got one upsert per distinct contact payload, each carrying the change
    inputs = hubspot_inputs(sinks)
    assert [(i["properties"]["jobtitle"], i["properties"]["clay_icp_score"]) for i in inputs] == [
        ("VP Sales", "85"),
        ("CRO", "85"),
        ("CRO", "95"),
    ]
    # AND only the upsert that created the contact set its lead status: the re-sends carry no rep-owned field
    assert [i["properties"].get("hs_lead_status") for i in inputs] == ["NEW", None, None]
    # AND the leads table has the latest score, every destination kept and how many callbacks the lead had
    item = router.outcome("R-1")
    assert (item["icp_score"], item["routing_status"], item["callbacks"]) == (95, "routed", 3)
    assert item["destinations"] == {
        "slack": "delivered",
        "outreach": "delivered",
        "hubspot": "delivered",
        "zapier": "delivered",
    }
    assert set(item["deliveries"]) == {"outreach", "hubspot", "zapier", "slack"}


# ------------------------------------------------------------------------------------- messages that cannot be routed
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "malformed_json"),
        (json.dumps({"callback_id": "c", "lead": "x"}), "not_routing_message"),
        (json.dumps({"callback_id": "c", "lead_key": "k", "lead": {"first_name": "Nobody"}}), "invalid_lead"),
    ],
)
def test_malformed_messages_are_dead_lettered(router: PlainRouter, body: str, reason: str) -> None:
    record = sqs_record(body, router.arn)
    assert router.run(sqs_event([record])) == []
    [dead] = router.dead_letters()
    assert dead["reason"] == reason
    assert dead["body"] == parse_body(body)  # kept byte for byte
