"""`clay-pipeline dlq` on moto, with dead letters the sender and the router wrote themselves."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dead_letter_queues import REDRIVEN, DeadLetterQueue, queue_pair
from cli.main import main
from local.http_stub import Reply, StubServer
from local.salesforce_sim import SalesforceSim
from tests.integration.test_cli_failures import CLI, cli_env
from tests.lead_journey import LeadJourney

pytestmark = pytest.mark.integration

HOT = {"email": "vip@acme.com", "first_name": "Val", "source": "crm-event"}


@pytest.fixture
def journey(load_function: Any, stack: Any, http_stub: StubServer) -> LeadJourney:
    return LeadJourney(load_function, stack, http_stub)


@pytest.fixture
def dead_letters(journey: LeadJourney, stack: Any, http_stub: StubServer) -> LeadJourney:
    """LeadDLQ: a malformed body and a lead over 100 KB (the sender's reasons) and one SQS moved itself
    (no reason attribute). RoutingDLQ: a hot lead Zapier refused (400) and a malformed routing message."""
    journey.send("{not json", {"email": "big@acme.com", "notes": "x" * 120_000}, HOT)
    client("sqs").send_message(QueueUrl=stack.queue_urls["LeadDLQ"], MessageBody=json.dumps({"email": "old@x.io"}))
    [row] = journey.clay_rows()
    journey.call_back({**row, "icp_score": 95})
    client("sqs").send_message(QueueUrl=stack.queue_urls["RoutingQueue"], MessageBody="[1, 2]")
    http_stub.script("/zapier", Reply(400, {"error": "bad field"}))
    journey.route()
    return journey


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["dlq", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def visible(stack: Any, queue_id: str) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls[queue_id], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def not_visible(stack: Any, queue_id: str) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls[queue_id], AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"])


def messages_in(stack: Any, queue_id: str) -> list[Any]:
    pair = queue_pair(queue_id)
    return DeadLetterQueue(pair, stack.queue_urls[pair.dlq], stack.queue_urls[pair.source]).peek(wait_seconds=0)


# ------------------------------------------------------------------------------------- list
def test_list_groups_both_queues_by_reason_and_leaves_the_messages(
    dead_letters: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "list")
    assert code == 0
    lead_part, routing_part = out.split("RoutingDLQ")
    assert lead_part.startswith("LeadDLQ: 3 message(s); replays go to LeadQueue")
    assert {line.split()[0] for line in lead_part.splitlines()[1:]} == {"malformed_json", "oversize", REDRIVEN}
    assert routing_part.startswith(": 2 message(s); replays go to RoutingQueue")
    assert "permanent_failure" in routing_part and "zapier: rejected_400" in routing_part
    # AND listing them took nothing away
    assert (visible(stack, "LeadDLQ"), visible(stack, "RoutingDLQ")) == (3, 2)


def test_list_filters_by_reason_text_and_age(dead_letters: LeadJourney, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "list", "routing", "--grep", "400", "--json")
    assert code == 0
    report = json.loads(out)
    assert list(report) == ["RoutingDLQ"]
    assert (report["RoutingDLQ"]["messages"], report["RoutingDLQ"]["selected"]) == (2, 1)
    [group] = report["RoutingDLQ"]["reasons"]
    assert (group["reason"], group["count"]) == ("permanent_failure", 1)
    _, out, _ = cli(capsys, "list", "lead", "--reason", "oversize", "--reason", "malformed_json", "--json")
    assert json.loads(out)["LeadDLQ"]["selected"] == 2
    _, out, _ = cli(capsys, "list", "--older-than", "1h", "--json")
    assert [queue["selected"] for queue in json.loads(out).values()] == [0, 0]
    _, out, _ = cli(capsys, "list", "--newer-than", "1h", "--json")
    assert [queue["selected"] for queue in json.loads(out).values()] == [3, 2]


def test_an_unknown_queue_or_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "list", "billing")[0] == 2
    with pytest.raises(SystemExit):
        main(["dlq", "list", "--older-than", "yesterday"])


# ------------------------------------------------------------------------------------- show
def test_show_decodes_one_message(dead_letters: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    [refused] = [m for m in messages_in(stack, "RoutingDLQ") if m.reason == "permanent_failure"]
    code, out, _ = cli(capsys, "show", refused.message_id)
    assert code == 0
    assert f"message {refused.message_id} in RoutingDLQ (replays to RoutingQueue)" in out
    assert "reason         permanent_failure" in out
    assert '"zapier": "permanent:rejected_400"' in out
    assert '"email": "vip@acme.com"' in out  # the body, pretty-printed
    code, out, _ = cli(capsys, "show", refused.message_id, "--queue", "routing", "--json")
    decoded = json.loads(out)
    assert decoded["destinations"]["slack"] == "delivered"
    assert decoded["lead_id"] == refused.lead_id
    assert decoded["attributes"]["source_message_id"] == refused.original_message_id
    code, _, err = cli(capsys, "show", "no-such-id")
    assert code == 2 and "no message no-such-id in LeadDLQ or RoutingDLQ" in err


# ------------------------------------------------------------------------------------- replay
def test_replay_dry_run_changes_nothing(
    dead_letters: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "replay", "lead", "--dry-run")
    assert code == 0
    assert out.startswith("would replay 3 of 3 message(s) from LeadDLQ to LeadQueue")
    assert (visible(stack, "LeadDLQ"), visible(stack, "LeadQueue")) == (3, 0)


def test_replay_sends_the_selection_back_with_its_original_id(
    dead_letters: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    [malformed] = [m for m in messages_in(stack, "LeadDLQ") if m.reason == "malformed_json"]
    # WHEN only the malformed one is replayed, with the progress bar
    code, out, err = cli(capsys, "replay", "lead", "--reason", "malformed_json")
    # THEN it is back in LeadQueue, unchanged, carrying the id it had there first; the others stay, visible
    assert code == 0
    assert out.startswith("replayed 1 of 3 message(s) from LeadDLQ to LeadQueue")
    assert "replaying" in err and "1/1" in err
    [message] = client("sqs").receive_message(QueueUrl=stack.queue_urls["LeadQueue"], MessageAttributeNames=["All"])[
        "Messages"
    ]
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert message["Body"] == "{not json"
    assert attributes["original_message_id"] == malformed.attributes["source_message_id"]
    assert attributes["replayed_from"] == f"LeadDLQ:{malformed.message_id}"
    assert attributes["replay_reason"] == "malformed_json"
    assert visible(stack, "LeadDLQ") == 2


def test_replaying_a_routing_message_delivers_only_what_is_missing(
    dead_letters: LeadJourney, stack: Any, http_stub: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    journey = dead_letters
    before = {name: journey.calls(name) for name in ("slack", "outreach", "hubspot", "zapier")}
    assert before == {"slack": 1, "outreach": 1, "hubspot": 1, "zapier": 1}  # Zapier's was the refused one
    [first] = [m for m in messages_in(stack, "RoutingDLQ") if m.reason == "permanent_failure"]
    # WHEN it is replayed while Zapier still refuses THEN it comes back to the DLQ with the same original id,
    # and nothing else was sent again
    http_stub.script("/zapier", Reply(400, {"error": "bad field"}))
    assert cli(capsys, "replay", "routing", "--grep", "zapier", "--no-progress")[0] == 0
    journey.route()
    [second] = [m for m in messages_in(stack, "RoutingDLQ") if m.reason == "permanent_failure"]
    assert second.message_id != first.message_id
    assert second.original_message_id == first.original_message_id
    assert {name: journey.calls(name) for name in before} == {"slack": 1, "outreach": 1, "hubspot": 1, "zapier": 2}
    # WHEN Zapier is fixed and it is replayed again THEN Zapier alone gets it, and the lead is routed
    assert cli(capsys, "replay", "routing", "--id", first.original_message_id, "--no-progress")[0] == 0
    journey.route()
    assert {name: journey.calls(name) for name in before} == {"slack": 1, "outreach": 1, "hubspot": 1, "zapier": 3}
    assert [m.reason for m in messages_in(stack, "RoutingDLQ")] == ["not_routing_message"]
    item = journey.router.router.leads.get(first.lead_id)
    assert item["routing_status"] == "routed"
    assert set(item["deliveries"]) == {"slack", "outreach", "hubspot", "zapier"}


def test_a_lead_salesforce_refused_is_replayed_after_the_fix_to_salesforce_alone_once(
    load_function: Any, stack: Any, http_stub: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Salesforce on beside the other destinations, in an org whose admin made Clay_Tier__c Text(5),
    # and a hot lead whose Clay row carries a longer tier
    with SalesforceSim() as org:
        org.custom_fields["Clay_Tier__c"] = 5
        journey = LeadJourney(load_function, stack, http_stub, SALESFORCE_LOGIN_URL=org.url, **org.secrets())
        journey.send(HOT)
        [row] = journey.clay_rows()
        journey.call_back({**row, "icp_score": 95, "tier": "Enterprise"})
        journey.route()
        # THEN Salesforce refused that record alone (STRING_TOO_LONG): the lead is dead-lettered for Salesforce,
        # every other destination got it once
        [refused] = messages_in(stack, "RoutingDLQ")
        assert refused.reason == "permanent_failure" and "salesforce_string_too_long" in refused.attributes["detail"]
        others = ("slack", "outreach", "hubspot", "zapier")
        assert {name: journey.calls(name) for name in others} == dict.fromkeys(others, 1)
        assert (len(org.calls("upsert")), org.writes()) == (1, [])
        # WHEN the admin widens the field (the README's Text(10)) and the lead is replayed
        org.custom_fields["Clay_Tier__c"] = 10
        capsys.readouterr()  # the functions' metric lines so far
        code, out, _ = cli(capsys, "replay", "routing", "--grep", "salesforce", "--no-progress")
        assert code == 0 and out.startswith("replayed 1 of 1 message(s) from RoutingDLQ to RoutingQueue")
        journey.route()
        # THEN Salesforce created the record once, keyed by the lead_id; nothing else was sent again
        [written] = org.writes()
        assert (written.lead_id, written.created) == (refused.lead_id, True)
        assert written.fields["Clay_Tier__c"] == "Enterprise"
        assert len(org.calls("upsert")) == 2
        assert {name: journey.calls(name) for name in others} == dict.fromkeys(others, 1)
        assert messages_in(stack, "RoutingDLQ") == []
        item = journey.router.router.leads.get(refused.lead_id)
        assert item["routing_status"] == "routed" and item["destinations"]["salesforce"] == "delivered"
        assert set(item["deliveries"]) == {*others, "salesforce"}
        # AND another replay of the same lead (an operator's second try) costs Salesforce no call
        calls = len(org.requests)
        client("sqs").send_message(QueueUrl=stack.queue_urls["RoutingDLQ"], MessageBody=refused.body)
        assert cli(capsys, "replay", "routing", "--no-progress")[0] == 0
        journey.route()
        assert len(org.requests) == calls and len(org.writes()) == 1
        assert {name: journey.calls(name) for name in others} == dict.fromkeys(others, 1)


def test_a_run_poll_that_kept_failing_is_listed_by_its_run_and_replayed_to_resume_polling(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a routine run's poll that SQS moved to RunPollDLQ after it kept failing
    poll = json.dumps({"routine_run_id": "run_stalled", "trigger": "poll", "attempt": 3})
    client("sqs").send_message(QueueUrl=stack.queue_urls["RunPollDLQ"], MessageBody=poll)
    urls = stack.queue_urls
    flags = ("--run-poll-dlq-url", urls["RunPollDLQ"], "--run-poll-queue-url", urls["RunPollQueue"])
    # WHEN RunPollDLQ is listed with its messages
    code, out, _ = cli(capsys, "list", "run-poll", "--messages", *flags)
    # THEN its poll is grouped under SQS's own reason and named by its run
    assert code == 0
    assert out.startswith("RunPollDLQ: 1 message(s); replays go to RunPollQueue")
    assert REDRIVEN in out and "run_stalled" in out
    # AND the lead DLQs listed without a name leave the run polls out
    assert "RunPollDLQ" not in cli(capsys, "list", *flags)[1]
    # WHEN it is replayed
    code, out, _ = cli(capsys, "replay", "run-poll", "--no-progress", *flags)
    # THEN the same poll is back in RunPollQueue for the collector to resume the run, and RunPollDLQ is empty
    assert code == 0
    assert out.startswith("replayed 1 of 1 message(s) from RunPollDLQ to RunPollQueue")
    [message] = client("sqs").receive_message(QueueUrl=urls["RunPollQueue"], MessageAttributeNames=["All"])["Messages"]
    assert message["Body"] == poll
    assert message["MessageAttributes"]["replayed_from"]["StringValue"].startswith("RunPollDLQ:")
    assert visible(stack, "RunPollDLQ") == 0


# ------------------------------------------------------------------------------------- purge
def test_purge_refuses_without_yes_and_deletes_only_the_selection(
    dead_letters: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "purge", "lead")
    assert code == 2
    assert "refusing to delete 3 of 3 message(s) from LeadDLQ without --yes" in err
    assert visible(stack, "LeadDLQ") == 3
    code, out, _ = cli(capsys, "purge", "lead", "--reason", "oversize", "--yes")
    assert (code, out.strip()) == (0, "deleted 1 of 3 message(s) from LeadDLQ")
    assert sorted(m.reason for m in messages_in(stack, "LeadDLQ")) == sorted(["malformed_json", REDRIVEN])


# ------------------------------------------------------------------------------------- reads hide nothing
def fill_lead_dlq(stack: Any, count: int) -> None:
    for number in range(count):
        client("sqs").send_message(
            QueueUrl=stack.queue_urls["LeadDLQ"],
            MessageBody=json.dumps({"email": f"dead{number}@acme.com"}),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": "oversize"}},
        )


def test_interrupted_list_leaves_every_message_visible(stack: Any, emulator: Any) -> None:
    # GIVEN five dead letters, one of them held by another reader, so `dlq list` keeps reading for it
    fill_lead_dlq(stack, 5)
    held = client("sqs").receive_message(QueueUrl=stack.queue_urls["LeadDLQ"], VisibilityTimeout=120)["Messages"]
    assert len(held) == 1
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "dlq", "list", "lead"], env=cli_env(emulator.endpoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # WHEN Ctrl-C arrives while it holds the others (or between its reads)
    deadline = time.monotonic() + 30  # the CLI may take seconds to start on a loaded machine
    while time.monotonic() < deadline and not_visible(stack, "LeadDLQ") < 5:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    # THEN it exits 130 with one line, and at once the four it read are visible again to every reader and alarm
    assert process.returncode == 130, err
    assert err.decode().strip().splitlines() == ["error: interrupted"]
    assert (visible(stack, "LeadDLQ"), not_visible(stack, "LeadDLQ")) == (4, 1)


def test_two_lists_at_once_both_see_every_message(stack: Any, emulator: Any) -> None:
    fill_lead_dlq(stack, 6)
    command = [*CLI, "dlq", "list", "lead", "--json"]
    processes = [
        subprocess.Popen(command, env=cli_env(emulator.endpoint), stdout=subprocess.PIPE)  # noqa: S603
        for _ in range(2)
    ]
    reports = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    assert [report["LeadDLQ"]["messages"] for report in reports] == [6, 6]
    assert visible(stack, "LeadDLQ") == 6


def test_show_reports_deliveries_before_dead_lettering_not_reads(
    dead_letters: LeadJourney, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the sender's malformed lead (dead-lettered on its first delivery) and one SQS moved itself
    messages = messages_in(stack, "LeadDLQ")
    [malformed] = [m for m in messages if m.reason == "malformed_json"]
    [redriven] = [m for m in messages if m.reason == REDRIVEN]
    # WHEN each is shown three times THEN the attempts stay what the source queue did
    for _ in range(3):
        _, out, _ = cli(capsys, "show", malformed.message_id)
        assert "attempts       1 delivery from LeadQueue\n" in out
    _, out, _ = cli(capsys, "show", redriven.message_id, "--json")
    assert json.loads(out)["delivery_attempts"] == 10  # LeadQueue's maxReceiveCount
