"""SenderFunction on the routine path, against moto's server and the Clay Public API simulator on loopback: the
pacing writes per run, RunPollQueue gone after Clay started a run, and the crash windows between Clay's 202 and the
run's record and dedupe confirm. What Clay's answers, dedupe and the budget do to the leads runs on the in-memory
state table and queues in tests/unit/services/test_routine_sender.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.services.routines import RunStore
from local.clay_api_sim import ClayApiSimulator
from tests.dynamodb_calls import before_dynamodb_calls, recorded_dynamodb_calls
from tests.integration.test_sender import Sender, emitted_metrics, ids, lead
from tests.unit.services import test_routine_sender as on_fakes
from tests.unit.services.test_routine_sender import lead_id, routine_settings

pytestmark = pytest.mark.integration


clay = on_fakes.clay  # the Clay Public API simulator, a fixture


@pytest.fixture
def make_sender(load_function: Any, stack: Any, clay: ClayApiSimulator) -> Any:
    def make(**overrides: str) -> Sender:
        return Sender(load_function("SenderFunction", **routine_settings(clay, **overrides)), stack)

    return make


def delayed_polls(stack: Any) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_urls["RunPollQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def runs_of(stack: Any) -> RunStore:
    return RunStore(StateStore(stack.table_names["StateTable"]))


def test_run_starts_are_paced_per_run_at_the_lead_rate(make_sender: Any, clay: ClayApiSimulator) -> None:
    # GIVEN 10 leads a second and runs of 5: each run start takes the shared pacer's slot of half a second
    sender = make_sender(CLAY_SEND_RATE_PER_SECOND="10", CLAY_ROUTINE_RUN_SIZE="5")
    assert sender.module.sender.sending.pacer.rate_per_second == 2.0
    # WHEN 10 leads are sent
    with recorded_dynamodb_calls() as calls:
        _, failures = sender.send(*(lead(n) for n in range(10)))
    # THEN two runs took two pacing slots (one write each), not ten
    assert failures == []
    assert len(clay.runs()) == 2
    assert calls.on("rate#", "UpdateItem") == 2


def test_a_run_whose_poll_cannot_be_queued_is_abandoned_and_its_leads_go_back(
    make_sender: Any, clay: ClayApiSimulator, stack: Any
) -> None:
    # GIVEN RunPollQueue is gone (SQS fails after Clay started the run and it was recorded)
    sender = make_sender()
    client("sqs").delete_queue(QueueUrl=stack.queue_urls["RunPollQueue"])
    # WHEN a lead is sent
    event, failures = sender.send(lead(1))
    # THEN the lead goes back to be sent in a new run, and the run is marked ended so a late webhook ignores it
    assert failures == ids(event)
    [run] = clay.runs()
    assert runs_of(stack).ending(run.run_id) == "abandoned"
    assert sender.state.get(f"dedupe#{lead_id(lead(1))}") is None


# ------------------------------------------------------------------ the dedupe mark between claim and confirm
def failing_writes_of(key: str, operation: str) -> Any:
    """DynamoDB failing `operation` on `key` (throttled past botocore's retries), every other call going through."""

    def fail(params: dict[str, Any], **_: Any) -> None:
        if (params.get("Key") or params.get("Item") or {}).get("pk", {}).get("S") == key:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}
            raise ClientError({"Error": error}, operation)

    return before_dynamodb_calls(fail, operation)


def sent_with_its_confirm_failing(sender: Sender, row: dict[str, Any]) -> str:
    """The lead's run is started and recorded, but writing its 'sent' mark fails; the mark's key."""
    key = f"dedupe#{lead_id(row)}"
    with failing_writes_of(key, "UpdateItem"):
        _, failures = sender.send(row)
    assert failures == []
    return key


def lease_passed(sender: Sender, key: str) -> None:
    """Time passing: the invocation that took the claim can no longer be running."""
    sender.state.update(key, {"lease_until": int(time.time()) - 1})


def test_a_lead_whose_confirm_failed_after_its_run_was_recorded_is_skipped_later_not_held_or_sent_again(
    make_sender: Any, clay: ClayApiSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Clay accepted a lead's run and it was recorded, but writing the lead's 'sent' mark failed
    sender = make_sender()
    key = sent_with_its_confirm_failing(sender, lead(1))
    [run] = clay.runs()
    capsys.readouterr()
    # WHEN a later copy of the lead comes after the claiming invocation's lease
    lease_passed(sender, key)
    _, failures = sender.send(lead(1))
    # THEN it is skipped: the recorded run has it, so no second run, no wait and no lost answer
    assert failures == []
    assert [r.run_id for r in clay.runs()] == [run.run_id]
    output = capsys.readouterr().out
    assert emitted_metrics(output, "ClaySendUnknown") == []
    assert len(emitted_metrics(output, "ClaySkippedDuplicate")) == 1
    mark = sender.state.get(key)
    assert mark is not None
    assert mark["status"] == "sent"


def test_a_lead_whose_claimant_died_before_recording_its_run_is_sent_again_without_a_lost_answer(
    make_sender: Any, clay: ClayApiSimulator, stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an invocation killed after Clay's 202 and before it recorded the run (nothing collects that run)
    crashed = make_sender()

    class Killed(BaseException):
        pass

    def kill(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["pk"]["S"].startswith("run#"):
            raise Killed

    with before_dynamodb_calls(kill, "PutItem"), pytest.raises(Killed):
        crashed.send(lead(1))
    [orphan] = clay.runs()
    assert runs_of(stack).get(orphan.run_id) is None
    capsys.readouterr()
    # WHEN a later copy of the lead comes after that invocation's lease
    key = f"dedupe#{lead_id(lead(1))}"
    lease_passed(crashed, key)
    sender = make_sender()
    _, failures = sender.send(lead(1))
    # THEN it goes in a new, recorded run at once: Clay's 202 was not lost, the run was just never recorded
    assert failures == []
    runs = clay.runs()
    assert len(runs) == 2
    assert runs_of(stack).get(runs[1].run_id) is not None
    assert emitted_metrics(capsys.readouterr().out, "ClaySendUnknown") == []
    mark = sender.state.get(key)
    assert mark is not None
    assert mark["status"] == "sent"


def test_routine_path_needs_a_routine_id(load_function_without_aws: Any) -> None:
    with pytest.raises(Exception, match="CLAY_ROUTINE_ID"):
        load_function_without_aws("SenderFunction", CLAY_ENRICHMENT_PATH="routine", CLAY_ROUTINE_ID="")
