"""The whole pipeline on the embedded local stack: intake -> sender -> Clay -> callback -> router -> sinks.

Each test starts a LocalStack on the session's moto server, configured for speed (short
visibility timeouts, fast pacing and backoffs), drives it through its HTTP gateway or queues,
waits until it is idle and asserts on what every part recorded (the reconciliation included).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from clay_pipeline.adapters.aws import client
from clay_pipeline.core.leads import Lead
from clay_pipeline.services.router import IN_FLIGHT_WAIT_SECONDS
from cli.commands.run import LOG_PATH, SAMPLE_LEADS, read_leads, run_command
from cli.main import main
from local.aws import Emulator
from local.clay_enrichment import score_band
from local.clay_retry import RECOMMENDED_RETRY
from local.reconciliation import reconcile
from local.stack import LocalStack, StackOptions

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT = 60.0
# Short, yet longer than a batching window plus a batch: shorter would let a second poller take a message in work.
VISIBILITY_TIMEOUT = 5
FAST_ENV = {
    "SenderFunction": {"CLAY_SEND_RATE_PER_SECOND": "50", "CLAY_RETRY_BACKOFF_SECONDS": "0.05"},
    "RouterFunction": {
        "SLACK_MIN_INTERVAL_SECONDS": "0.02",
        "DESTINATION_RETRY_ATTEMPTS": "1",
        "DESTINATION_RETRY_BACKOFF_SECONDS": "0.05",
    },
}


def fast_options(**overrides: Any) -> StackOptions:
    clay = {"rate_per_second": 100.0, "burst": 100.0, **overrides.pop("clay", {})}
    extra_env = overrides.pop("function_env", {})
    env = {name: {**FAST_ENV.get(name, {}), **extra_env.get(name, {})} for name in {*FAST_ENV, *extra_env}}
    return StackOptions(visibility_timeout=VISIBILITY_TIMEOUT, function_env=env, clay=clay, **overrides)


StackFactory = Callable[..., LocalStack]


@pytest.fixture
def start_stack(emulator: Emulator) -> Iterator[StackFactory]:
    started: list[LocalStack] = []

    def start(**overrides: Any) -> LocalStack:
        stack = LocalStack(fast_options(**overrides), emulator=emulator)
        started.append(stack)
        return stack.start()

    yield start
    for stack in started:
        stack.stop()


def generated_leads(count: int, bands: tuple[Any, ...] | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Distinct leads; with `bands`, only leads the Clay simulator scores in those bands (None: no score)."""
    leads: list[dict[str, Any]] = []
    number = offset
    while len(leads) < count:
        row = {"email": f"person{number}@company{number}.example", "first_name": f"P{number}", "company_name": "Co"}
        if bands is None or score_band(str(Lead.model_validate(row).lead_id)) in bands:
            leads.append(row)
        number += 1
    return leads


def settle(stack: LocalStack) -> None:
    assert stack.wait_idle(IDLE_TIMEOUT), f"the pipeline did not settle: {stack.busy()}"


def test_sample_flows_end_to_end_and_reconciles(start_stack: StackFactory) -> None:
    # GIVEN the stack and the sample file (invalid rows, duplicates, every score band)
    stack = start_stack()
    # WHEN it is posted to /leads and the pipeline settles
    [answer] = stack.post_leads(read_leads(SAMPLE_LEADS))
    settle(stack)
    summary = reconcile(stack)
    # THEN every count reconciles: each distinct lead reached Clay once, was called back once and routed
    assert summary.problems == []
    assert answer["status"] == 202
    assert summary.counts["rejected by intake"] == 3
    assert summary.counts["duplicates skipped before Clay"] == 3
    assert summary.counts["sent to Clay"] == 33
    assert summary.counts["callbacks accepted"] == 33
    assert summary.counts["routed"] + summary.counts["skipped (no destination)"] == 33
    # AND every destination got leads, each by its rule
    assert all(summary.routed[name] > 0 for name in ("outreach", "hubspot", "nurture", "slack", "zapier"))
    table = stack.leads_table()
    for item in table.values():
        score = float(item["icp_score"])
        routes = set(item.get("routes", []))
        assert ("slack" in routes) == (score >= 90)
        assert ("nurture" in routes) == (50 <= score < 80)
    assert {str(item["enrichment"]["lead_id"]) for item in table.values()} == set(stack.clay.lead_ids())


def test_clay_duplicates_and_retries_reach_each_destination_once(start_stack: StackFactory) -> None:
    # GIVEN Clay sends half the rows twice and loses a third of its first answers (so it retries),
    # and the API answers the first callbacks with 503, 503 and 429 (the column retries 5xx as README recommends)
    stack = start_stack(clay={"duplicate_share": 0.5, "lost_response_share": 0.35, "retry": RECOMMENDED_RETRY})
    stack.gateway.inject("POST /clay/callback", 503, 503, 429)
    leads = generated_leads(12, bands=((90, 99), (80, 89)))
    # WHEN the leads go through
    stack.post_leads(leads)
    settle(stack)
    summary = reconcile(stack)
    # THEN Clay did repeat itself, and we dropped the repeats
    assert summary.counts["duplicates dropped"] > 0
    assert summary.counts["callbacks retried by Clay"] >= 3
    assert summary.counts["callbacks accepted"] == 12
    # AND each destination got each lead exactly once
    assert summary.problems == []
    for destination in ("outreach", "hubspot", "slack", "zapier"):
        keys = [delivery.key for delivery in stack.sinks.delivered(destination)]
        assert len(keys) == len(set(keys))
    assert len(stack.sinks.delivered("outreach")) == 12


def test_clay_resending_rows_enrols_each_lead_once_and_updates_hubspot_per_change(start_stack: StackFactory) -> None:
    # GIVEN Clay calling rows back again as it does for real: re-run columns, retried bodies, re-scores and
    # per-column partial callbacks, for most rows
    resends = {
        "rerun_share": 0.5,
        "resend_share": 0.3,
        "rescore_share": 0.5,
        "per_column_share": 0.4,
        "duplicate_share": 0.2,
        "resend_delay_seconds": 0.5,
    }
    stack = start_stack(clay=resends)
    leads = generated_leads(16, bands=((90, 99), (80, 89), (70, 79), (50, 69)))
    # WHEN the leads go through and every later callback has been routed
    stack.post_leads(leads)
    settle(stack)
    summary = reconcile(stack)
    # THEN Clay did send rows again in every way
    assert all(stack.clay.resent[kind] > 0 for kind in ("rerun", "resend", "rescore", "partial"))
    assert summary.counts["callbacks accepted"] > 16
    # AND it reconciles: no once-per-lead destination got a lead twice, HubSpot one call per distinct payload
    assert summary.problems == []
    assert summary.counts["once-per-lead deliveries doubled"] == 0
    for destination in ("outreach", "nurture", "slack", "zapier"):
        leads_reached = [delivery.key for delivery in stack.sinks.delivered(destination)]
        assert len(leads_reached) == len(set(leads_reached)), destination
    assert summary.routed["hubspot"] == summary.distinct_payloads["hubspot"]
    # AND the printed summary says so
    table = summary.table()
    assert re.search(r"once-per-lead deliveries doubled +0\n", table)
    calls = summary.routed["hubspot"]
    assert re.search(rf"routed to hubspot \(on_change\): calls / distinct +{calls} / {calls}\n", table)
    # AND the leads table counted every callback it accepted per lead
    table_items = stack.leads_table()
    assert sum(int(item["callbacks"]) for item in table_items.values()) == summary.counts["callbacks accepted"]


def test_per_column_callbacks_with_required_fields_enrol_each_lead_on_its_complete_row(
    start_stack: StackFactory,
) -> None:
    # GIVEN a Clay table with one HTTP API column per enrichment (every row called back in parts, the last
    # complete, parts and rows in parallel) and the router told a row is complete when it carries icp_score
    stack = start_stack(
        clay={"per_column_share": 1.0}, function_env={"RouterFunction": {"ROUTING_REQUIRED_FIELDS": "icp_score"}}
    )
    leads = generated_leads(12, bands=((90, 99), (80, 89), (50, 69)))
    # WHEN they go through
    stack.post_leads(leads)
    settle(stack)
    summary = reconcile(stack)
    assert stack.clay.resent["partial"] >= 24
    assert summary.problems == []
    # THEN no lead was enrolled on a partial row: none in both nurture and outreach, nurture only for the leads
    # the complete row scores 50-79, and every once-per-lead webhook carried the complete row
    reached = {name: {d.payload["lead_id"] for d in stack.sinks.delivered(name)} for name in ("outreach", "nurture")}
    assert reached["outreach"] and reached["nurture"]
    assert reached["outreach"] & reached["nurture"] == set()
    for name in ("outreach", "nurture", "zapier"):
        payloads = [delivery.payload for delivery in stack.sinks.delivered(name)]
        assert all("job_title" in payload and "industry" in payload for payload in payloads), name
        assert all(payload["icp_score"] >= (80 if name == "outreach" else 0) for payload in payloads), name
    assert len(stack.sinks.delivered("zapier")) == 12
    assert summary.counts["routed"] == 12


def test_messy_clay_columns_are_answered_with_warnings_and_every_lead_is_still_routed(
    start_stack: StackFactory,
) -> None:
    # GIVEN a Clay table whose columns are messy for every row, as real enrichment fills them ("51-200",
    # "1.2K", "$1.2M", "N/A", a score of "101" or "1,000", a date nobody can read)
    stack = start_stack(clay={"messy_share": 1.0})
    leads = generated_leads(18, bands=((90, 99), (80, 89), (70, 79), (50, 69)))
    # WHEN they go through
    stack.post_leads(leads)
    settle(stack)
    summary = reconcile(stack)
    # THEN every callback was accepted (200), none refused for a column, and the unreadable ones said so
    assert stack.clay.messy == {str(Lead.model_validate(lead).lead_id) for lead in leads}
    assert all(c.status == 200 for c in stack.clay.callbacks)
    warned = set(stack.clay.warned())
    assert 0 < len(warned) < 18  # some sets are read without a warning, some are not
    answers = [c.answer or {} for c in stack.clay.callbacks if c.lead_id in warned]
    fields = {w["field"] for answer in answers for w in answer.get("warnings", [])}
    assert fields <= {"icp_score", "_clay_enriched_at"} and fields
    # AND nothing was lost: each lead routed (a score kept as sent is missing, so routed as unscored)
    assert summary.problems == []
    assert summary.counts["callbacks accepted"] == 18
    assert summary.counts["callbacks answered with warnings"] == len(stack.clay.warned()) >= len(warned)
    assert summary.counts["their leads routed or skipped"] == len(warned)
    assert summary.counts["dead-lettered (RoutingDLQ)"] == 0
    table = stack.leads_table()
    assert all(table[lead]["routing_status"] in ("routed", "skipped") for lead in warned)
    for lead in warned:
        unparsed = table[lead]["enrichment"].get("_unparsed") or {}
        assert unparsed, f"{lead}: the value Clay sent is kept"
    assert re.search(rf"their leads routed or skipped +{len(warned)}\n", summary.table())


def test_destination_down_then_up_loses_nothing(start_stack: StackFactory) -> None:
    # GIVEN outreach and HubSpot are down
    stack = start_stack()
    stack.sinks.down("outreach")
    stack.sinks.down("hubspot")
    leads = generated_leads(6, bands=((80, 89),))
    # WHEN leads are routed while they are down, and they come back after refusing some
    stack.post_leads(leads)
    deadline = time.monotonic() + 30
    while min(stack.sinks.refused["outreach"], stack.sinks.refused["hubspot"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.sinks.refused["outreach"] > 0
    stack.sinks.up("outreach")
    stack.sinks.up("hubspot")
    settle(stack)
    # THEN every lead reached both, once, and nothing was dead-lettered
    summary = reconcile(stack)
    assert summary.problems == []
    assert len(stack.sinks.delivered("outreach")) == 6
    assert len(stack.sinks.delivered("hubspot")) == 6
    assert summary.counts["dead-lettered (RoutingDLQ)"] == 0
    # AND the zapier deliveries made before the outage ended were not repeated by the retries
    assert len(stack.sinks.delivered("zapier")) == 6


def test_a_destination_paused_during_the_run_holds_its_deliveries_until_resumed(
    start_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the stack (its router rereads the pause switch every 0.2 s and holds a paused delivery 1 s per
    # receive), and an operator pausing HubSpot with the command line
    quick = {"DESTINATION_PAUSE_CACHE_SECONDS": "0.2", "DESTINATION_PAUSE_WAIT_SECONDS": "1"}
    stack = start_stack(function_env={"RouterFunction": quick})
    assert main(["destination", "pause", "hubspot", "--reason", "HubSpot maintenance"]) == 0
    leads = generated_leads(8, bands=((90, 99), (80, 89), (70, 79)))
    # WHEN the leads go through while it is paused
    stack.post_leads(leads)
    deadline = time.monotonic() + IDLE_TIMEOUT
    while time.monotonic() < deadline:
        statuses = [item.get("routing_status") for item in stack.leads_table().values()]
        if statuses.count("paused") == len(leads):
            break
        time.sleep(0.2)
    # THEN every lead reached its other destinations, HubSpot got nothing, and the held deliveries wait in
    # RoutingQueue, not in the DLQ
    assert statuses.count("paused") == len(leads), statuses
    assert stack.sinks.counts()["hubspot"] == 0
    assert len(stack.sinks.delivered("zapier")) == len(leads)
    assert stack.dead_letters("RoutingDLQ") == []
    assert sum(stack.queue_counts("RoutingQueue").values()) > 0
    # WHEN HubSpot is resumed
    assert main(["destination", "resume", "hubspot"]) == 0
    settle(stack)
    # THEN every held delivery arrives, once per lead, nothing was sent twice elsewhere, nothing dead-lettered
    summary = reconcile(stack)
    assert summary.problems == []
    hubspot = [delivery.key for delivery in stack.sinks.delivered("hubspot")]
    assert sorted(hubspot) == sorted(str(Lead.model_validate(row).email) for row in leads)
    assert len(stack.sinks.delivered("zapier")) == len(leads)
    assert summary.counts["dead-lettered (RoutingDLQ)"] == 0
    assert {item["routing_status"] for item in stack.leads_table().values()} == {"routed"}
    assert "hubspot paused" in capsys.readouterr().out


def test_clay_rate_limit_slows_the_sender_without_losing_or_repeating_rows(start_stack: StackFactory) -> None:
    # GIVEN Clay allows 4 rows/s with a burst of 2, and the sender may try 50/s
    stack = start_stack(clay={"rate_per_second": 4.0, "burst": 2.0})
    leads = generated_leads(12)
    # WHEN the leads are sent
    stack.post_leads(leads)
    settle(stack)
    # THEN Clay refused some with 429, and still got every row exactly once
    summary = reconcile(stack)
    assert stack.clay.inbound[429] > 0
    assert Counter(stack.clay.lead_ids()) == Counter({str(Lead.model_validate(row).lead_id): 1 for row in leads})
    assert summary.problems == []
    assert summary.counts["dead-lettered (LeadDLQ)"] == 0


def test_poison_messages_reach_the_dead_letter_queues(start_stack: StackFactory) -> None:
    # GIVEN a producer puts unparseable messages straight on both queues, next to good leads
    stack = start_stack()
    sqs = client("sqs")
    sqs.send_message(QueueUrl=stack.resources.queue_urls["LeadQueue"], MessageBody='{"email": "cut-off@')
    sqs.send_message(QueueUrl=stack.resources.queue_urls["RoutingQueue"], MessageBody='{"lead": "not an object"}')
    stack.post_leads(generated_leads(3))
    settle(stack)
    # THEN each poison message is in its DLQ with the reason, byte for byte
    [lead_dead] = stack.dead_letters("LeadDLQ")
    assert (lead_dead["body"], lead_dead["reason"]) == ('{"email": "cut-off@', "malformed_json")
    [routing_dead] = stack.dead_letters("RoutingDLQ")
    assert routing_dead["body"] == '{"lead": "not an object"}'
    assert routing_dead["reason"] == "not_routing_message"
    # AND the good leads went through untouched
    summary = reconcile(stack)
    assert summary.problems == []
    assert summary.counts["callbacks accepted"] == 3


def test_jwt_mode_clay_fetches_a_token_and_calls_back_with_it(start_stack: StackFactory) -> None:
    # GIVEN the callback in jwt mode
    stack = start_stack(callback_auth_mode="jwt")
    # WHEN leads go through
    stack.post_leads(generated_leads(4))
    settle(stack)
    # THEN Clay got a token once and every callback was accepted with it
    assert stack.clay.token_requests == 1
    assert reconcile(stack).problems == []
    assert len(stack.clay.answered(duplicate=False)) == 4
    # AND a call without the bearer token is refused
    refused = requests.post(f"{stack.gateway.url}/clay/callback", json={"email": "x@y.co"}, timeout=10)
    assert refused.status_code == 401


def test_gateway_maps_requests_and_answers_like_api_gateway(start_stack: StackFactory) -> None:
    stack = start_stack(pollers=False)
    # unknown route: API Gateway's own 404
    missing = requests.get(f"{stack.gateway.url}/nowhere", timeout=10)
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    # the routine path's run webhook is not deployed on the table path (ClayEnrichmentPath=table)
    run_webhook = requests.post(f"{stack.gateway.url}/clay/routine-webhook", json={"data": {}}, timeout=10)
    assert (run_webhook.status_code, run_webhook.json()) == (404, {"message": "Not Found"})
    assert "RunWebhookFunction" not in stack.functions
    # a binary body reaches the handler base64-encoded and is refused by its content type
    binary = requests.post(
        f"{stack.gateway.url}/leads",
        data=b"\x00\x01",
        headers={"content-type": "application/octet-stream", "X-Api-Key": "local-intake-key-not-for-production"},
        timeout=10,
    )
    assert binary.status_code == 415
    # the handler's status, headers and JSON body come back as they were
    accepted = requests.post(
        f"{stack.gateway.url}/leads",
        json={"email": "a@b.example"},
        headers={"X-Api-Key": "local-intake-key-not-for-production"},
        timeout=10,
    )
    assert (accepted.status_code, accepted.json()) == (202, {"accepted": 1, "rejected": []})
    assert accepted.headers["content-type"] == "application/json"


def test_run_command_reports_a_reconciled_sample(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no other stack holds the emulator's state (moto's backends are shared by the process)
    emulator.reset()
    monkeypatch.setattr("cli.commands.run.LocalStack", lambda options: LocalStack(fast_options(), emulator))
    # WHEN `clay-pipeline run` runs the sample
    code = run_command(argparse.Namespace(serve=False, leads=None))
    # THEN it exits 0 and prints the reconciled summary table
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reconciled: nothing lost, nothing twice" in out
    assert "sent to Clay" in out
    assert '"level"' not in out  # the functions' logs went to the log file
    # AND the rows intake refused are named with their reason; progress is in words, not a Python dict
    assert "lead 10 (email=not-an-email, first_name=Bad, last_name=Email): email: not a valid email address" in out
    assert "{'Visible'" not in out
    # AND each function's lines name it, each line once
    log = LOG_PATH.read_text().splitlines()
    services = {json.loads(line).get("service") for line in log if line.startswith('{"level"')}
    assert services == {"intake", "sender", "callback", "router"}
    assert not [line for line in log if line.startswith("INFO:")]


def test_salesforce_as_the_crm_upserts_each_qualifying_lead_once_per_distinct_payload(
    start_stack: StackFactory,
) -> None:
    # GIVEN the stack with Salesforce's simulator as the CRM (HubSpot off), and Clay calling rows back again
    resends = {"rerun_share": 0.5, "resend_share": 0.3, "rescore_share": 0.5, "duplicate_share": 0.2}
    stack = start_stack(crm="salesforce", clay={**resends, "resend_delay_seconds": 0.5})
    leads = generated_leads(16, bands=((90, 99), (80, 89), (70, 79), (50, 69)))
    # WHEN the leads go through and every later callback has been routed
    stack.post_leads(leads)
    # Clay's re-run and re-score of a row reach RoutingQueue together (its identical re-send is dropped as a
    # duplicate): three versions of a lead at most. The router's five concurrent batches may split them, and each
    # version that finds the lead's lease held waits IN_FLIGHT_WAIT_SECONDS x its receive count (10 s, then 20 s
    # when two meet again): up to 30 s on top of a run without collisions, which under load alone can take most
    # of IDLE_TIMEOUT. That schedule, not a guess, is what settling may take longer.
    lease_waits = IN_FLIGHT_WAIT_SECONDS * (1 + 2)
    assert stack.wait_idle(IDLE_TIMEOUT + lease_waits), f"the pipeline did not settle: {stack.busy()}"
    summary = reconcile(stack)
    # THEN it reconciles: Salesforce got one upsert per distinct payload of each lead, none with a rep's field
    # on an update, and what its ledger says each lead got last is what Salesforce has
    assert summary.problems == []
    assert summary.routed["hubspot"] == 0
    calls = summary.routed["salesforce"]
    assert calls > 0 and calls == summary.distinct_payloads["salesforce"]
    assert re.search(rf"routed to salesforce \(on_change\): calls / distinct +{calls} / {calls}\n", summary.table())
    # AND every lead the rules sent to Salesforce has its record, keyed by its lead_id
    routed = {key for key, item in stack.leads_table().items() if "salesforce" in (item.get("deliveries") or {})}
    assert routed and routed == {key for key in routed if stack.sinks.salesforce.record(key) is not None}
    assert len(stack.sinks.salesforce.calls("token")) >= 1
