"""`clay-pipeline trace` on moto: a lead sent, called back and routed by the real handlers, one delivery refused;
and on the routine path, a lead sent in a run of the Clay API simulator."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.routines import PollMessage
from clay_pipeline.services.pause import DestinationSwitch
from clay_pipeline.services.routines import RunStore
from cli.main import main
from local.clay_api_sim import ClayApiSimulator
from local.http_stub import Reply, StubServer
from tests.integration import test_routine_sender as routine_path
from tests.integration.test_routine_sender import lease_passed, sent_with_its_confirm_failing
from tests.integration.test_run_collector import Pipeline
from tests.integration.test_sender import lead
from tests.lead_journey import LeadJourney
from tests.unit.services.test_routine_sender import API_KEY, lead_id

pytestmark = pytest.mark.integration

# the routine path's fixtures: the Clay API simulator and a SenderFunction with CLAY_ENRICHMENT_PATH=routine on it
clay = routine_path.clay
make_sender = routine_path.make_sender

JANE = {"email": "Jane.Doe@Acme.com", "first_name": "Jane", "last_name": "Doe", "source": "web-form"}


@pytest.fixture
def journey(load_function: Any, stack: Any, http_stub: StubServer) -> LeadJourney:
    """Jane sent to Clay, called back with a 95 score and routed; Zapier refused her (400): she is in RoutingDLQ."""
    journey = LeadJourney(load_function, stack, http_stub)
    journey.send(JANE)
    [row] = journey.clay_rows()
    journey.call_back({**row, "icp_score": "95", "job_title": "VP Sales"})
    http_stub.script("/zapier", Reply(400, {"error": "bad field"}))
    journey.route()
    return journey


def trace(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["trace", *args])
    return code, capsys.readouterr().out


def test_trace_tells_a_leads_story_in_order(journey: LeadJourney, capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN an operator traces Jane by her email (any case)
    code, out = trace(capsys, "jane.doe@ACME.com")
    # THEN every stage is there, in the pipeline's order
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("lead ld_")
    stages = [line[23:36].strip() for line in lines[1:]]
    assert stages[:4] == ["intake", "dedupe mark", "sent to Clay", "callback"]
    assert "submitted by web-form" in lines[1]
    assert "webhook #0, attempt 1 (SQS receive), 1 POST" in out
    assert "1 received; latest body" in out and "score 95" in out and "tier A" in out
    assert "partial: hubspot delivered, outreach delivered, slack delivered, zapier permanent:rejected_400" in out
    assert [stage for stage in stages if stage == "delivered"] == ["delivered"] * 3  # one line per delivery
    assert stages[-2:] == ["outcome", "in RoutingDLQ"]
    assert "permanent_failure zapier: rejected_400" in lines[-1]


def test_trace_json_names_each_fact(journey: LeadJourney, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = trace(capsys, "jane.doe@acme.com", "--json")
    assert code == 0
    document = json.loads(out)
    assert (document["query"], document["kind"]) == ("jane.doe@acme.com", "email")
    [lead] = document["leads"]
    assert lead["intake"]["source"] == "web-form"
    assert lead["dedupe"]["status"] == "sent"
    assert (lead["clay"]["webhook_index"], lead["clay"]["receives"], lead["clay"]["posts"]) == (0, 1, 1)
    assert lead["clay"]["batch"] == lead["dedupe"]["batch"]
    assert lead["callbacks"]["count"] == 1
    assert len(lead["callbacks"]["latest_body_hash"]) == 32
    assert (lead["callbacks"]["icp_score"], lead["callbacks"]["tier"]) == (95, "A")
    assert lead["routing"]["status"] == "partial"
    assert set(lead["routing"]["deliveries"]) == {"slack", "outreach", "hubspot"}
    assert lead["routing"]["destinations"]["zapier"].startswith("permanent:")
    [dead] = lead["dead_letters"]
    assert (dead["queue"], dead["reason"]) == ("RoutingDLQ", "permanent_failure")
    assert dead["destinations"]["zapier"].startswith("permanent:")
    # AND reading the DLQ left the message there for the next reader
    code, out = trace(capsys, lead["lead_id"], "--json")
    assert len(json.loads(out)["leads"][0]["dead_letters"]) == 1


def test_trace_by_domain_scans_and_says_so(journey: LeadJourney, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = trace(capsys, "www.acme.com", "--no-dlq")
    assert code == 0
    assert out.startswith("(domain lookup: scanned 1 leads table items)")
    assert "lead ld_" in out and "(www.acme.com)" in out
    assert "dead letters  none" in out  # --no-dlq: not read


def test_trace_shows_a_pause_holding_the_leads_destination(
    journey: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    DestinationSwitch(StateStore(stack.table_names["StateTable"])).pause("hubspot", by="oncall", reason="maintenance")
    _, out = trace(capsys, "jane.doe@acme.com", "--no-dlq")
    assert "hubspot is paused, its deliveries wait: maintenance" in out


def test_an_unknown_lead_is_reported_and_exits_1(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = trace(capsys, "nobody@nowhere.io")
    assert code == 1
    assert "nothing recorded (not sent, no callback, not dead-lettered)" in out


def test_trace_finds_a_deployed_stack_by_its_outputs(
    journey: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a CloudFormation stack whose outputs name the tables and queues, and no other hint
    outputs = {
        "StateTableName": stack.table_names["StateTable"],
        "LeadsTableName": stack.table_names["LeadsTable"],
        "RoutingDLQUrl": stack.queue_urls["RoutingDLQ"],
        "RoutingQueueUrl": stack.queue_urls["RoutingQueue"],
        "LeadDLQUrl": stack.queue_urls["LeadDLQ"],
        "LeadQueueUrl": stack.queue_urls["LeadQueue"],
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "clay-prod-marker"}}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.session.Session().client("cloudformation").create_stack(
        StackName="clay-prod", TemplateBody=json.dumps(template)
    )
    # WHEN traced with --stack THEN the names come from its outputs
    code, out = trace(capsys, "jane.doe@acme.com", "--stack", "clay-prod", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["pipeline"] == "stack clay-prod"
    assert document["leads"][0]["callbacks"]["count"] == 1
    # AND a stack that does not exist is a usage error naming it
    assert main(["trace", "jane.doe@acme.com", "--stack", "no-such-stack"]) == 2
    assert "cannot read stack no-such-stack" in capsys.readouterr().err


# ------------------------------------------------------------------ the routine path (CLAY_ENRICHMENT_PATH=routine)
def test_trace_shows_the_routine_run_named_on_the_leads_mark(
    make_sender: Any, clay: ClayApiSimulator, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lead sent in a routine run that was then collected
    make_sender().send(lead(1), lead(2))
    [run] = clay.runs()
    RunStore(StateStore(stack.table_names["StateTable"])).end(run.run_id, "collected", 1)
    capsys.readouterr()  # the sender's metrics
    # WHEN it is traced
    code, out = trace(capsys, "person1@example.com", "--no-dlq")
    # THEN the run is shown: its id, its items, when Clay accepted it, how it ended, what confirms the send
    assert code == 0
    assert "no batch record" not in out
    [line] = [line for line in out.splitlines() if line[23:36].strip() == "sent to Clay"]
    assert f"routine run {run.run_id} (2 items), started 20" in line
    assert line.endswith(", collected; the sender set the dedupe mark sent when it recorded the run")
    code, out = trace(capsys, "person1@example.com", "--no-dlq", "--json")
    [traced] = json.loads(out)["leads"]
    assert traced["dedupe"]["status"] == "sent"
    assert traced["clay"] is None
    routine_run = traced["routine_run"]
    assert (routine_run["routine_run_id"], routine_run["items"]) == (run.run_id, 2)
    assert (routine_run["ending"], routine_run["confirmed_by"]) == ("collected", "mark")
    assert routine_run["started_at"].startswith("20")


def test_trace_finds_the_run_through_the_senders_list_when_the_mark_could_not_be_set(
    make_sender: Any, clay: ClayApiSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Clay accepted the lead's run and it was recorded, but writing the lead's 'sent' mark failed:
    # the mark stays 'sending' and the sender's run-leads#<batch> list names the run
    sender = make_sender()
    key = sent_with_its_confirm_failing(sender, lead(1))
    capsys.readouterr()  # the sender's metrics
    [run] = clay.runs()
    mark = sender.state.get(key)
    assert mark is not None and mark["status"] == "sending"
    # WHEN it is traced
    code, out = trace(capsys, "person1@example.com", "--no-dlq")
    # THEN the lead counts as sent, in that run, not yet collected, confirmed by the list
    assert code == 0
    assert "dedupe mark   sent" in out
    assert "no batch record" not in out
    assert f"routine run {run.run_id} (1 items), started 20" in out
    listed = f"the sender could not set the dedupe mark sent: its list run-leads#{mark['batch']} names the run"
    assert f", not collected yet; {listed}" in out
    # AND after a later copy was skipped on that list (the mark then says sent, with no run on it) the same
    lease_passed(sender, key)
    sender.send(lead(1))
    assert [r.run_id for r in clay.runs()] == [run.run_id]
    capsys.readouterr()  # the sender's metrics
    code, out = trace(capsys, "person1@example.com", "--no-dlq", "--json")
    [traced] = json.loads(out)["leads"]
    assert traced["dedupe"]["status"] == "sent"
    assert (traced["routine_run"]["routine_run_id"], traced["routine_run"]["confirmed_by"]) == (run.run_id, "run_list")
    assert traced["routine_run"]["batch"] == mark["batch"]


def test_trace_names_the_run_of_a_lead_the_collector_dead_lettered(
    make_sender: Any, clay: ClayApiSimulator, stack: Any, load_function: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a lead sent in a run whose item Clay failed: the collector dead-lettered it and released its mark
    clay.failed_share = 1.0
    make_sender().send(lead(1))
    [run] = clay.runs()
    clay.finish(run.run_id)
    Pipeline(stack, load_function, clay, CLAY_API_KEY=API_KEY).collect(PollMessage(run.run_id))
    capsys.readouterr()  # the functions' metrics
    assert StateStore(stack.table_names["StateTable"]).get(f"dedupe#{lead_id(lead(1))}") is None
    # WHEN it is traced
    code, out = trace(capsys, "person1@example.com")
    # THEN the run is named from its dead letter, with how it ended, next to the dead letter itself
    assert code == 0
    assert f"routine run {run.run_id} (1 items), started 20" in out
    assert ", collected; its result went to LeadDLQ with the run's id (the dedupe mark was released" in out
    assert "in LeadDLQ    routine_item_failed No enrichment data found for this person" in out
