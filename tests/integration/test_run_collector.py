"""RunWebhookFunction and RunCollectorFunction against the Clay Public API simulator.

Runs are started on the simulator and recorded as the sender records them; the collector is fed
RunPollQueue messages as Lambda's event source would (SQS events built here, called directly). What it decides
(collect, poll later, give up, dead-letter) runs on the in-memory state table, leads table and queues of
tests/fakes (held to DynamoDB and SQS by their contract suites); two collectors racing and the webhook-to-routing
path end to end run against moto's server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.clay_api import ClayApiClient, run_item
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.leads import Lead
from clay_pipeline.core.routines import PollMessage
from clay_pipeline.services.callback import CallbackAcceptor
from clay_pipeline.services.dedupe import Deduper
from clay_pipeline.services.routines import RunStore
from clay_pipeline.services.run_collector import RunCollector
from local.apigw import http_event
from local.clay_api_sim import ClayApiSimulator
from local.clay_run_webhooks import sign
from local.http_stub import Reply, StubServer
from local.sqs_events import sqs_event, sqs_record
from tests.conftest import LambdaContextStub
from tests.fakes.callback_claims import FakeCallbackClaims
from tests.fakes.leads_table import FakeLeadsTable, LeadItems
from tests.fakes.queues import FakeQueue
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.integration

API_KEY = "clay-api-key-for-collector-tests"
SECRET = "whsec_collector-tests-0123456789"


@pytest.fixture
def clay() -> Iterator[ClayApiSimulator]:
    simulator = ClayApiSimulator(api_key=API_KEY, run_seconds=0.0)
    simulator.start()
    yield simulator
    simulator.stop()


class Pipeline:
    """Starts runs as the sender does, and drives the collector and the webhook function."""

    def __init__(self, stack: Any, load: Any, clay: ClayApiSimulator | StubServer, **overrides: str) -> None:
        self.stack = stack
        self.load = load
        base_url = clay.base_url if isinstance(clay, ClayApiSimulator) else clay.url
        self.env = {
            "CLAY_API_BASE_URL": base_url,
            "CLAY_API_KEY": API_KEY,
            "CLAY_WEBHOOK_SIGNING_SECRETS": SECRET,
            "CLAY_RUN_FIRST_POLL_SECONDS": "5",
            "CLAY_RETRY_BACKOFF_SECONDS": "0",
            **overrides,
        }
        self.collector = load("RunCollectorFunction", **self.env)
        self.api = ClayApiClient(base_url, 5, 0, 0, api_key=lambda: API_KEY)
        self.arn = "arn:aws:sqs:us-east-1:123456789012:RunPollQueue"
        if stack is not None:  # None: PipelineOnFakes sets its own stores
            self.state: Any = StateStore(stack.table_names["StateTable"])
            self.runs = RunStore(self.state)
            self.arn = str(stack.resolver.attributes[("RunPollQueue", "Arn")])
            self.leads: Any = LeadsTable(stack.table_names["LeadsTable"])

    def start_run(self, *rows: dict[str, Any], routine_id: str = "function:t_local_enrich") -> str:
        leads = [Lead.model_validate(row).to_message() for row in rows]
        run_id = self.api.start_run(routine_id, [run_item(str(lead["lead_id"]), lead) for lead in leads])
        self.runs.record(run_id, routine_id, {str(lead["lead_id"]): lead for lead in leads})
        for lead in leads:  # the sender's dedupe marks, as after a run start
            Deduper(self.state, 30).confirm(str(lead["lead_id"]))
        return run_id

    def collect(self, *messages: PollMessage | str, collector: Any = None) -> dict[str, Any]:
        bodies = [m if isinstance(m, str) else json.dumps(m.to_message()) for m in messages]
        event = sqs_event([sqs_record(body, self.arn) for body in bodies])
        return dict((collector or self.collector).lambda_handler(event, LambdaContextStub("collector", 60_000)))

    def drain(self, queue_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url = self.stack.queue_urls[queue_id]
        while (
            messages := client("sqs")
            .receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
            )
            .get("Messages", [])
        ):
            for message in messages:
                attributes = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
                found.append({"body": json.loads(message["Body"]), **attributes})
                client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return found

    def collect_retries(self) -> None:
        """Collect what is (or becomes, within a few seconds) visible on RunPollQueue."""
        url = self.stack.queue_urls["RunPollQueue"]
        while messages := client("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=3).get("Messages", []):
            for message in messages:
                client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                self.collect(message["Body"])

    def delayed_polls(self) -> int:
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=self.stack.queue_urls["RunPollQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesDelayed"])


class PipelineOnFakes(Pipeline):
    """The same, the RunCollectorFunction cold-started without AWS and its collector rebuilt on the fakes of
    tests/fakes: one in-memory state table (runs, marks, dedupe), leads table and queue per SQS queue."""

    def __init__(
        self, load: Any, monkeypatch: pytest.MonkeyPatch, clay: ClayApiSimulator | StubServer, **overrides: str
    ) -> None:
        super().__init__(None, load, clay, **overrides)
        settings = self.collector.settings
        self.queues = {name: FakeQueue(name) for name in ("RoutingQueue", "LeadDLQ", "RunPollQueue")}
        items = LeadItems()
        acceptor = CallbackAcceptor(
            settings.callback_settings(),
            max_wait_seconds=2.0,
            claims=FakeCallbackClaims(items, settings.lead_retention_days),
            routing_queue=self.queues["RoutingQueue"],
        )
        self.state = FakeStateStore()
        self.runs = RunStore(self.state)
        self.leads = FakeLeadsTable(items)
        collector = RunCollector(
            settings,
            acceptor=acceptor,
            store=self.state,
            poll_queue=self.queues["RunPollQueue"],
            dead_letters=self.queues["LeadDLQ"],
        )
        monkeypatch.setattr(self.collector, "collector", collector)

    def drain(self, queue_id: str) -> list[dict[str, Any]]:
        return [{"body": json.loads(m.body), **m.attributes} for m in self.queues[queue_id].drain()]

    def delayed_polls(self) -> int:
        return self.queues["RunPollQueue"].delayed()


@pytest.fixture
def pipeline(stack: Any, load_function: Any, clay: ClayApiSimulator) -> Pipeline:
    return Pipeline(stack, load_function, clay)


@pytest.fixture
def on_fakes(load_function_without_aws: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., PipelineOnFakes]:
    def start(clay: ClayApiSimulator | StubServer, **overrides: str) -> PipelineOnFakes:
        return PipelineOnFakes(load_function_without_aws, monkeypatch, clay, **overrides)

    return start


@pytest.fixture
def pipeline_on_fakes(on_fakes: Callable[..., PipelineOnFakes], clay: ClayApiSimulator) -> Pipeline:
    return on_fakes(clay)


def person(number: int) -> dict[str, Any]:
    return {"email": f"person{number}@company{number}.example", "first_name": f"P{number}", "source": "api"}


def lead_id(row: dict[str, Any]) -> str:
    return str(Lead.model_validate(row).lead_id)


# ------------------------------------------------------------------------------------- collecting
def test_a_complete_run_becomes_routing_messages_like_callbacks(pipeline_on_fakes: Pipeline) -> None:
    pipeline = pipeline_on_fakes
    # GIVEN a run of three leads that Clay has finished
    rows = [person(n) for n in range(3)]
    run_id = pipeline.start_run(*rows)
    # WHEN its first poll is collected
    assert pipeline.collect(PollMessage(run_id)) == {"batchItemFailures": []}
    # THEN each lead is one routing message in the callback's shape: the enriched columns over the lead's inputs
    messages = pipeline.drain("RoutingQueue")
    assert sorted(m["body"]["lead_key"] for m in messages) == sorted(lead_id(row) for row in rows)
    for message in (m["body"] for m in messages):
        assert set(message) == {"callback_id", "lead_key", "lead", "received_at"}
        assert message["callback_id"].startswith(message["lead_key"] + "#")
        lead = message["lead"]
        assert lead["lead_id"] == message["lead_key"]
        assert lead["first_name"].startswith("P")  # from the inputs
        assert isinstance(lead["employee_count"], int)  # Clay's "1,200" parsed as a callback's would be
        assert "industry" in lead
        stored = pipeline.leads.get(message["lead_key"])
        assert stored is not None
        assert stored["callback_id"] == message["callback_id"]
    # AND the run ended as collected, with no further poll
    assert pipeline.runs.ending(run_id) == "collected"
    assert pipeline.delayed_polls() == 0


def test_webhook_and_poller_both_reading_a_run_route_each_lead_once(pipeline_on_fakes: Pipeline) -> None:
    pipeline = pipeline_on_fakes
    # GIVEN a finished run
    rows = [person(n) for n in range(4)]
    run_id = pipeline.start_run(*rows)
    # WHEN its webhook message and its poll both arrive, in one batch and again separately
    pipeline.collect(PollMessage(run_id, "webhook"), PollMessage(run_id))
    pipeline.collect(PollMessage(run_id, "poll", 3))
    # THEN each lead was queued for routing exactly once
    assert sorted(m["body"]["lead_key"] for m in pipeline.drain("RoutingQueue")) == sorted(map(lead_id, rows))


def test_collecting_again_after_a_crash_accepts_nothing_twice(pipeline_on_fakes: Pipeline) -> None:
    pipeline = pipeline_on_fakes
    # GIVEN a run collected, whose ending mark was then lost (a crash just before it was written)
    rows = [person(n) for n in range(3)]
    run_id = pipeline.start_run(*rows)
    pipeline.collect(PollMessage(run_id))
    first = pipeline.drain("RoutingQueue")
    pipeline.state.delete(f"run-done#{run_id}")
    # WHEN the run is collected again (the poll's retry, or the webhook) before the router took the first messages
    pipeline.collect(PollMessage(run_id, "webhook"))
    # THEN no item is accepted twice: each is queued again only as a copy of its version (its callback id and
    # received_at), which the router's ledger delivers once
    assert len(first) == 3
    assert sorted(json.dumps(m["body"], sort_keys=True) for m in pipeline.drain("RoutingQueue")) == sorted(
        json.dumps(m["body"], sort_keys=True) for m in first
    )
    assert pipeline.runs.ending(run_id) == "collected"
    # AND once the router's write has accepted them, collecting again queues nothing
    for message in first:
        pipeline.leads.accept(message["body"]["lead_key"], [message["body"]["callback_id"]])
    pipeline.state.delete(f"run-done#{run_id}")
    pipeline.collect(PollMessage(run_id, "webhook"))
    assert pipeline.drain("RoutingQueue") == []


def test_two_collectors_reading_one_run_at_once_route_each_lead_once(
    pipeline: Pipeline, stack: Any, load_function: Any
) -> None:
    # GIVEN a finished run of 10 leads and two collector instances (the webhook's and the poll's)
    rows = [person(n) for n in range(10)]
    run_id = pipeline.start_run(*rows)
    other = load_function("RunCollectorFunction", **pipeline.env)
    answers: list[dict[str, Any]] = []

    def collect(collector: Any, trigger: str) -> None:
        answers.append(pipeline.collect(PollMessage(run_id, trigger), collector=collector))  # type: ignore[arg-type]

    # WHEN both collect it at the same time
    threads = [
        threading.Thread(target=collect, args=(pipeline.collector, "poll")),
        threading.Thread(target=collect, args=(other, "webhook")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # THEN neither failed
    assert answers == [{"batchItemFailures": []}] * 2
    pipeline.collect_retries()
    # AND every lead was queued for routing as one version (an item both accepted at once: the second queues a
    # copy of the first's, which the router's ledger delivers once)
    queued: dict[str, set[str]] = {}
    for message in pipeline.drain("RoutingQueue"):
        queued.setdefault(message["body"]["lead_key"], set()).add(json.dumps(message["body"], sort_keys=True))
    assert sorted(queued) == sorted(map(lead_id, rows))
    assert all(len(versions) == 1 for versions in queued.values())


def test_failed_items_go_to_the_lead_dlq_once_with_clays_message(
    on_fakes: Callable[..., Pipeline], clay: ClayApiSimulator
) -> None:
    # GIVEN Clay fails every item
    clay.failed_share = 1.0
    pipeline = on_fakes(clay)
    rows = [person(1), person(2)]
    run_id = pipeline.start_run(*rows)
    # WHEN the run is collected, and (after a lost ending mark) collected again
    pipeline.collect(PollMessage(run_id))
    pipeline.state.delete(f"run-done#{run_id}")
    pipeline.collect(PollMessage(run_id, "webhook"))
    # THEN each lead is in the DLQ once, as the lead Clay got, with Clay's message and the run
    dead = pipeline.drain("LeadDLQ")
    assert sorted(d["lead_id"] for d in dead) == sorted(map(lead_id, rows))
    for message in dead:
        assert message["reason"] == "routine_item_failed"
        assert message["detail"] == "No enrichment data found for this person"
        assert message["routine_run_id"] == run_id
        assert Lead.model_validate(message["body"]).lead_id == message["lead_id"]
        # AND its dedupe mark is released, so a redrive sends it again
        assert pipeline.state.get(f"dedupe#{message['lead_id']}") is None
    assert pipeline.drain("RoutingQueue") == []


def test_a_run_in_progress_is_polled_again_later_but_not_on_its_webhook(
    on_fakes: Callable[..., Pipeline], clay: ClayApiSimulator
) -> None:
    # GIVEN a run that takes a minute
    clay.run_seconds = 60
    pipeline = on_fakes(clay)
    run_id = pipeline.start_run(person(1))
    # WHEN its webhook message comes early, then its poll
    pipeline.collect(PollMessage(run_id, "webhook"))
    assert pipeline.delayed_polls() == 0  # the webhook never starts a poll chain of its own
    pipeline.collect(PollMessage(run_id, "poll", 0))
    # THEN only the poll queued the next poll, later, and nothing was accepted
    assert pipeline.delayed_polls() == 1
    assert pipeline.drain("RoutingQueue") == []
    assert pipeline.runs.ending(run_id) is None


def test_a_run_past_its_give_up_time_dead_letters_its_leads_and_alarms(
    on_fakes: Callable[..., Pipeline], clay: ClayApiSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run that never finishes, and a give-up time of one second
    clay.stuck_runs = frozenset({1})
    pipeline = on_fakes(clay, CLAY_RUN_GIVE_UP_SECONDS="1")
    rows = [person(1), person(2)]
    run_id = pipeline.start_run(*rows)
    time.sleep(1.1)  # past the give-up time (not a measurement)
    capsys.readouterr()
    # WHEN it is polled
    pipeline.collect(PollMessage(run_id, "poll", 5))
    # THEN its leads are in the DLQ with the reason, the run ended, no poll follows, and the alarm's metric is out
    dead = pipeline.drain("LeadDLQ")
    assert sorted(d["lead_id"] for d in dead) == sorted(map(lead_id, rows))
    assert {d["reason"] for d in dead} == {"routine_run_gave_up"}
    assert pipeline.runs.ending(run_id) == "gave_up"
    assert pipeline.delayed_polls() == 0
    assert '"RoutineRunGaveUp":[1.0]' in capsys.readouterr().out.replace(" ", "")
    # AND a late webhook for it changes nothing
    pipeline.collect(PollMessage(run_id, "webhook"))
    assert pipeline.drain("LeadDLQ") == []
    assert pipeline.drain("RoutingQueue") == []


def test_a_give_up_interrupted_part_way_is_finished_and_a_late_collection_routes_nothing(
    pipeline_on_fakes: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = pipeline_on_fakes
    # GIVEN a finished run whose give-up held it and then crashed before dead-lettering its leads
    rows = [person(1), person(2)]
    run_id = pipeline.start_run(*rows)
    pipeline.runs.hold(run_id, "giving_up", 1, reason="routine_run_gave_up", detail="no results within 3600 s")
    capsys.readouterr()
    # WHEN its webhook brings a collection, with Clay's complete results
    pipeline.collect(PollMessage(run_id, "webhook"))
    # THEN nothing is routed: the give-up is finished instead, with the reason it started with
    assert pipeline.drain("RoutingQueue") == []
    dead = pipeline.drain("LeadDLQ")
    assert sorted(d["lead_id"] for d in dead) == sorted(map(lead_id, rows))
    assert {(d["reason"], d["detail"]) for d in dead} == {("routine_run_gave_up", "no results within 3600 s")}
    assert pipeline.runs.ending(run_id) == "gave_up"
    assert '"RoutineRunGaveUp":[1.0]' in capsys.readouterr().out.replace(" ", "")


def test_a_give_up_meeting_a_collection_of_the_run_dead_letters_nothing(
    on_fakes: Callable[..., Pipeline], clay: ClayApiSimulator
) -> None:
    # GIVEN a run past its give-up time that a collector holds (the webhook's collection, accepting items)
    clay.stuck_runs = frozenset({1})
    pipeline = on_fakes(clay, CLAY_RUN_GIVE_UP_SECONDS="1")
    rows = [person(1), person(2)]
    run_id = pipeline.start_run(*rows)
    pipeline.runs.hold(run_id, "collecting", 1)
    time.sleep(1.1)  # past the give-up time (not a measurement)
    # WHEN the run's poll chain reaches the give-up time
    pipeline.collect(PollMessage(run_id, "poll", 5))
    # THEN it does not give up: no lead is dead-lettered, no poll follows, and the collection's hold stays
    assert pipeline.drain("LeadDLQ") == []
    assert pipeline.delayed_polls() == 0
    assert pipeline.runs.ending(run_id) == "collecting"
    # AND when the collection is retried with Clay's results, each lead is routed once and the run ends collected
    clay.finish(run_id)
    pipeline.collect(PollMessage(run_id, "webhook"))
    assert sorted(m["body"]["lead_key"] for m in pipeline.drain("RoutingQueue")) == sorted(map(lead_id, rows))
    assert pipeline.drain("LeadDLQ") == []
    assert pipeline.runs.ending(run_id) == "collected"


def test_a_429_brings_the_same_poll_back_after_retry_after(pipeline_on_fakes: Pipeline, clay: ClayApiSimulator) -> None:
    pipeline = pipeline_on_fakes
    run_id = pipeline.start_run(person(1))
    clay.throttle(1)
    pipeline.collect(PollMessage(run_id, "poll", 2))
    assert pipeline.delayed_polls() == 1
    messages = [{"Body": message.body} for message in pipeline_on_fakes.queues["RunPollQueue"].sent]
    assert PollMessage.parse(messages[0]["Body"]) == PollMessage(run_id, "poll", 2)  # the same attempt
    assert pipeline.drain("RoutingQueue") == []


def test_a_run_clay_does_not_know_is_given_up(pipeline_on_fakes: Pipeline) -> None:
    pipeline = pipeline_on_fakes
    # GIVEN a recorded run Clay answers 404 for
    pipeline.runs.record("run_gone", "function:t_local_enrich", {lead_id(person(1)): person(1)})
    pipeline.collect(PollMessage("run_gone"))
    [dead] = pipeline.drain("LeadDLQ")
    assert dead["reason"] == "routine_run_not_found"
    assert "Run not found" in dead["detail"]


def test_a_workspace_not_provisioned_keeps_polling_and_says_why(
    pipeline_on_fakes: Pipeline, clay: ClayApiSimulator, captured_logs: Any
) -> None:
    pipeline = pipeline_on_fakes
    run_id = pipeline.start_run(person(1))
    clay.provisioned = False
    pipeline.collect(PollMessage(run_id))
    assert pipeline.delayed_polls() == 1
    assert pipeline.drain("LeadDLQ") == []
    assert "not provisioned for the Public API" in captured_logs.getvalue()


def test_results_are_read_page_by_page(on_fakes: Callable[..., Pipeline], clay: ClayApiSimulator) -> None:
    # GIVEN Clay pages results 3 at a time
    clay.page_limit = 3
    pipeline = on_fakes(clay)
    rows = [person(n) for n in range(7)]
    run_id = pipeline.start_run(*rows)
    # WHEN the run is collected
    pipeline.collect(PollMessage(run_id))
    # THEN all seven leads were read over three pages and routed
    assert clay.responses[("results", 200)] == 3
    assert sorted(m["body"]["lead_key"] for m in pipeline.drain("RoutingQueue")) == sorted(map(lead_id, rows))


def test_a_result_that_fails_validation_is_dead_lettered(
    on_fakes: Callable[..., Pipeline], http_stub: StubServer
) -> None:
    # GIVEN Clay's result for the lead holds a value the leads table cannot store (nested 20 levels)
    pipeline = on_fakes(http_stub)
    key = lead_id(person(1))
    pipeline.runs.record("run_x", "r", {key: Lead.model_validate(person(1)).to_message()})
    deep: Any = "leaf"
    for _ in range(20):
        deep = [deep]
    item = {"id": key, "status": "complete", "result": {"icp_score": "90", "history": deep}}
    page = {"routine_run_id": "run_x", "status": "complete", "total": 1, "finished": 1, "data": [item]}
    http_stub.script("/routines/run/run_x/results", Reply(200, page))
    # WHEN it is collected
    pipeline.collect(PollMessage("run_x"))
    # THEN it goes to the DLQ naming the field, and is not routed
    [dead] = pipeline.drain("LeadDLQ")
    assert dead["reason"] == "invalid_result"
    assert "history" in dead["detail"]
    assert pipeline.drain("RoutingQueue") == []


def test_a_result_with_a_score_that_cannot_be_read_is_routed_without_it(
    on_fakes: Callable[..., Pipeline], http_stub: StubServer
) -> None:
    # GIVEN Clay's result for the lead has an ICP score that is not a number
    pipeline = on_fakes(http_stub)
    key = lead_id(person(1))
    pipeline.runs.record("run_y", "r", {key: Lead.model_validate(person(1)).to_message()})
    item = {"id": key, "status": "complete", "result": {"icp_score": "very high"}}
    page = {"routine_run_id": "run_y", "status": "complete", "total": 1, "finished": 1, "data": [item]}
    http_stub.script("/routines/run/run_y/results", Reply(200, page))
    # WHEN it is collected THEN the lead is routed as a callback would be: the score kept as sent, missing
    pipeline.collect(PollMessage("run_y"))
    [message] = pipeline.drain("RoutingQueue")
    assert "icp_score" not in message["body"]["lead"]
    assert message["body"]["lead"]["_unparsed"] == {"icp_score": "very high"}
    assert pipeline.drain("LeadDLQ") == []


def test_unknown_runs_and_bad_messages_are_dropped(pipeline_on_fakes: Pipeline) -> None:
    pipeline = pipeline_on_fakes
    answer = pipeline.collect(PollMessage("run_never_recorded"), "{not json", '{"routine_run_id": 5}')
    assert answer == {"batchItemFailures": []}
    assert pipeline.drain("RoutingQueue") == pipeline.drain("LeadDLQ") == []


# ------------------------------------------------------------------------------------- the webhook route
def webhook_event(run_id: str, secret: str = SECRET, **headers: str) -> dict[str, Any]:
    body = json.dumps({"webhookId": "wh_1", "createdAt": "2026-11-22T10:00:00Z", "data": {"routine_run_id": run_id}})
    signature = {"x-clay-signature": sign(secret, body.encode())} if secret else {}
    return http_event(
        "POST", "/clay/routine-webhook", body, {"content-type": "application/json", **signature, **headers}
    )


def answer_of(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return response["statusCode"], json.loads(response["body"])


def test_signed_webhook_then_collection_routes_the_run(pipeline: Pipeline, load_function: Any) -> None:
    # GIVEN a finished run and the webhook function
    webhook = load_function("RunWebhookFunction", **pipeline.env)
    rows = [person(1), person(2)]
    run_id = pipeline.start_run(*rows)
    # WHEN Clay's signed webhook arrives twice
    first = answer_of(webhook.lambda_handler(webhook_event(run_id), LambdaContextStub()))
    second = answer_of(webhook.lambda_handler(webhook_event(run_id), LambdaContextStub()))
    # THEN the first queued the run's collection and the second was a duplicate
    assert first == (200, {"received": True, "routine_run_id": run_id, "duplicate": False})
    assert second == (200, {"received": True, "routine_run_id": run_id, "duplicate": True})
    [poll] = pipeline.drain("RunPollQueue")
    assert poll["body"] == {"routine_run_id": run_id, "trigger": "webhook", "attempt": 0}
    # AND collecting it routes each lead once
    pipeline.collect(json.dumps(poll["body"]))
    assert sorted(m["body"]["lead_key"] for m in pipeline.drain("RoutingQueue")) == sorted(map(lead_id, rows))


@pytest.mark.parametrize("secret", ["", "whsec_forged"])
def test_unsigned_or_forged_webhooks_get_401_and_queue_nothing(load_function_without_aws: Any, secret: str) -> None:
    """Nothing is queued: without AWS, a mark or a message would have been a refused call, not this answer."""
    webhook = load_function_without_aws("RunWebhookFunction", CLAY_WEBHOOK_SIGNING_SECRETS=SECRET)
    status, body = answer_of(webhook.lambda_handler(webhook_event("run_1", secret), LambdaContextStub()))
    assert (status, body) == (401, {"error": "unauthorized"})


def test_a_test_webhook_is_answered_200(load_function_without_aws: Any) -> None:
    """Nothing is queued: without AWS, a mark or a message would have been a refused call, not this answer."""
    webhook = load_function_without_aws("RunWebhookFunction", CLAY_WEBHOOK_SIGNING_SECRETS=SECRET)
    body = '{"webhookId":"wh_1","createdAt":"2026-11-22T10:00:00Z","data":{}}'
    event = http_event("POST", "/clay/routine-webhook", body, {"x-clay-signature": sign(SECRET, body.encode())})
    assert answer_of(webhook.lambda_handler(event, LambdaContextStub())) == (200, {"received": True, "test": True})


@pytest.mark.parametrize("secrets", ["a", f"{SECRET},whsec_short"], ids=["one-character", "a-short-previous"])
def test_a_weak_signing_secret_fails_the_run_webhooks_cold_start(load_function_without_aws: Any, secrets: str) -> None:
    # GIVEN a run webhook signing secret below the callback secrets' floor THEN the function does not start
    with pytest.raises(ConfigError, match=r"CLAY_WEBHOOK_SIGNING_SECRETS entry \d is shorter than 32 characters"):
        load_function_without_aws("RunWebhookFunction", CLAY_WEBHOOK_SIGNING_SECRETS=secrets)
