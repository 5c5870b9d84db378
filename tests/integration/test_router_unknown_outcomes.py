"""Unknown outcomes are not retries: RouterFunction on moto's server with loopback destinations that take the
request, process it, and answer too late; with a failed ledger write after the 2xx; and with the invocation killed
at each step. Each delivery to a "hold" destination (outreach, nurture, Zapier: UNKNOWN_OUTCOME_POLICIES) must
arrive exactly once across retries, redeliveries, a redrive and Clay's re-sends, once an operator has settled what
the router could not know. Each test prints the copies each destination received per lead."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clay_pipeline.adapters.aws import client
from cli.main import main
from local.http_stub import RecordedRequest, Reply
from local.hubspot_sim import HubSpotSim
from local.sqs_events import from_received, sqs_event
from tests.dynamodb_calls import before_dynamodb_calls
from tests.integration.test_router import (
    Router,
    Sinks,
    destination_settings,
    failing_complete_write,
    lead,
    set_up_crm,
    started_sinks,
)

pytestmark = pytest.mark.integration

HOLD = ("outreach", "nurture", "zapier")  # the default "hold" destinations
LEADS = {"hot": 95, "warm": 60}  # hot: slack, outreach, hubspot, zapier; warm: nurture, zapier
ALL_HELD = {"hot/outreach", "hot/zapier", "warm/nurture", "warm/zapier"}  # lead/destination pairs that hold
TIMEOUT_SECONDS = 1.0


class LateAnswers:
    """A destination that processes each request at once and answers after the router stopped waiting."""

    def __init__(self, delay: float = TIMEOUT_SECONDS + 0.5) -> None:
        self.delay = delay

    def __call__(self, request: RecordedRequest) -> Reply:
        return Reply(200, {"ok": True}, delay=self.delay)


@pytest.fixture
def crm() -> HubSpotSim:
    return set_up_crm()


@pytest.fixture
def sinks(crm: HubSpotSim) -> Iterator[Sinks]:
    yield from started_sinks(crm)


@pytest.fixture
def router(load_function: Any, stack: Any, sinks: Sinks) -> Router:
    settings = {
        **destination_settings(sinks),
        "DESTINATION_RETRY_ATTEMPTS": "2",
        "DESTINATION_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "SLACK_MIN_INTERVAL_SECONDS": "0.01",
    }
    return Router(load_function("RouterFunction", **settings), stack)


def copies(sinks: Sinks) -> dict[str, dict[str, int]]:
    """What each destination received, per lead (the lead id is in every webhook body and HubSpot input)."""
    table: dict[str, dict[str, int]] = {key: {} for key in LEADS}
    for name, server in vars(sinks).items():
        for request in server.received():
            body = request.json()
            ids = [item["id"].split("@")[0] for item in body["inputs"]] if name == "hubspot" else [body.get("lead_id")]
            if name == "slack":  # the alert carries the name, not the id: only "hot" is hot
                ids = ["hot"]
            for key in ids:
                table[key][name] = table[key].get(name, 0) + 1
    return table


def show(capsys: pytest.CaptureFixture[str], title: str, table: dict[str, dict[str, int]]) -> None:
    """Print the copies (past the capture, which the CLI helper reads): `pytest -s` shows them."""
    with capsys.disabled():
        print(f"\n{title}: copies received per lead per destination")
        for key, received in table.items():
            print(f"  lead {key}: " + ", ".join(f"{name} {n}" for name, n in sorted(received.items())))


def unknown_of(router: Router, key: str) -> dict[str, Any]:
    return {name.removeprefix("unknown_"): v for name, v in router.ledger(key).items() if name.startswith("unknown_")}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()  # the router's own log lines so far
    code = main(list(args))
    return code, capsys.readouterr().out


def route_queued(router: Router) -> None:
    """Route what RoutingQueue holds (a settle --resend, a replay), as Lambda's poller would."""
    url = router.stack.queue_urls["RoutingQueue"]
    messages = client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    if messages.get("Messages"):
        assert router.run(from_received(messages["Messages"], router.arn)) == []


def lapse_leases(router: Router) -> None:
    """Time passes: the leases of invocations that died run out (DELIVERY_LEASE_SECONDS)."""
    for key in LEADS:
        if "lease_until" in router.ledger(key):
            router.put_ledger(key, lease_until=int(time.time()) - 1)


def settle_by_looking(router: Router, sinks: Sinks, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """What an operator does: for each unknown outcome, look in the destination; arrived -> delivered, else resend."""
    answers = {}
    table = copies(sinks)
    for key in LEADS:
        for name in unknown_of(router, key):
            answer = "--delivered" if table[key].get(name) else "--resend"
            assert cli(capsys, "settle", key, name, answer)[0] == 0
            answers[f"{key}/{name}"] = answer
    route_queued(router)
    return answers


# ------------------------------------------------------------------------------------- answers after the timeout
def test_a_destination_that_processes_then_answers_late_receives_each_delivery_once(
    router: Router, sinks: Sinks, crm: HubSpotSim, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN outreach, nurture and Zapier processing each request and answering after the 1 s timeout, and
    # HubSpot down, so the hot lead keeps coming back until it is dead-lettered
    for server in (sinks.outreach, sinks.nurture, sinks.zapier):
        server.responder = LateAnswers()
    sinks.hubspot.responder = lambda request: Reply(503, {"message": "down"})
    records = {key: router.record(lead(key, score)) for key, score in LEADS.items()}
    # WHEN the batch is received five times (RoutingQueue's maxReceiveCount)
    for receive in range(1, 6):
        event = sqs_event(
            [
                {**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": str(receive)}}
                for record in records.values()
            ]
        )
        router.run(event)
    # THEN the warm lead was settled as far as the router can (its outcomes unknown), the hot one dead-lettered
    [dead] = router.dead_letters()
    assert (dead["body"]["lead_key"], dead["reason"]) == ("hot", "retries_exhausted")
    assert json.loads(dead["destinations"])["outreach"] == "unknown"
    # WHEN HubSpot is back and the dead letter is redriven, and Clay re-sends both rows
    sinks.hubspot.responder = crm.answer
    client("sqs").send_message(QueueUrl=router.stack.queue_urls["RoutingQueue"], MessageBody=json.dumps(dead["body"]))
    route_queued(router)
    assert router.run(sqs_event([router.callback(2, lead(key, score)) for key, score in LEADS.items()])) == []
    table = copies(sinks)
    show(capsys, "late answers, 5 receives, a redrive and a re-send", table)
    # THEN every hold delivery arrived once: the lost answers were never sent again
    assert {key: {name: n for name, n in received.items() if name in HOLD} for key, received in table.items()} == {
        "hot": {"outreach": 1, "zapier": 1},
        "warm": {"nurture": 1, "zapier": 1},
    }
    assert table["hot"]["slack"] == 1 and table["hot"]["hubspot"] >= 2  # the 503s, then the redrive's upsert
    # AND the ledger and the outcome say unknown, as does trace
    assert set(unknown_of(router, "hot")) == {"outreach", "zapier"}
    assert set(unknown_of(router, "warm")) == {"nurture", "zapier"}
    assert unknown_of(router, "hot")["outreach"]["reason"] == "deadline"
    assert router.outcome("warm")["routing_status"] == "unknown"
    code, out = cli(capsys, "trace", "hot", "--json", "--no-dlq")
    assert code == 0
    assert set(json.loads(out)["leads"][0]["routing"]["unknown"]) == {"outreach", "zapier"}
    # WHEN an operator finds them in the destinations and settles them as delivered
    assert set(settle_by_looking(router, sinks, capsys).values()) == {"--delivered"}
    # THEN they are deliveries, nothing is sent, and Clay's next re-send sends nothing either
    assert unknown_of(router, "hot") == {} and set(router.ledger("hot")["deliveries"]) >= {"outreach", "zapier"}
    assert router.run(sqs_event([router.callback(3, lead(key, score)) for key, score in LEADS.items()])) == []
    assert all(copies(sinks)[key][name] == 1 for key in LEADS for name in copies(sinks)[key] if name in HOLD)
    assert router.outcome("warm")["routing_status"] == "routed"


# ------------------------------------------------------------------------------------- a failed write, a killed run
class Killed(BaseException):
    """The invocation is gone (a Lambda timeout, an out-of-memory kill): no except clause of ours runs after it."""


# The invocation a delivery call belongs to: the router's threads run each task in a copy of the submitting
# context, so a task the killed invocation queued still belongs to it when it starts after the kill.
_invocation: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("invocation", default=None)


class Invocation:
    """Kills the router at one step; from then on none of its writes is made and none of its queued deliveries
    goes out, even one whose thread starts after the next invocation began (a process that is gone)."""

    def __init__(self, router: Router, step: str) -> None:
        self.router = router
        self.step = step
        self.dead = False
        self._lock = threading.Lock()

    def die(self) -> None:
        with self._lock:
            self.dead = True
        raise Killed(self.step)

    def before_write(self, params: dict[str, Any], **_: Any) -> None:
        if self.dead:
            raise Killed("the invocation is gone")
        is_claim = params.get("ReturnValues") == "ALL_OLD"
        removed = params.get("UpdateExpression", "").partition("REMOVE ")[2].split(", ")  # the complete frees the lease
        is_complete = any(
            value == "lease_owner" and name in removed
            for name, value in params.get("ExpressionAttributeNames", {}).items()
        )
        if (self.step == "claim" and is_claim) or (self.step == "complete" and is_complete):
            self.die()

    def run(self) -> None:
        """One invocation of the batch, killed at the step; then the process is gone (and a new one starts)."""
        for destination in self.router.module.router.webhooks.values():
            destination.deliver = self._deliver(destination.name, destination.deliver)  # type: ignore[method-assign]
        token = _invocation.set(self)
        try:
            with before_dynamodb_calls(self.before_write, "UpdateItem"):
                self.router.run(sqs_event([self.router.record(lead(key, score)) for key, score in LEADS.items()]))
        except (Killed, ConnectionError):
            pass
        finally:
            _invocation.reset(token)

    def _deliver(self, name: str, real: Any) -> Any:
        def deliver(*args: Any) -> Any:
            if _invocation.get() is not self:  # a later invocation's call: the process it runs in is alive
                return real(*args)
            if self.dead or self.step == "before_send":
                self.die()
            result = real(*args)
            # A hold destination processed it; the invocation dies with the answer (not on Slack's: had Slack's
            # thread finished first, the hold deliveries would all have died before sending).
            if self.step == "after_send" and name in HOLD:
                self.die()
            return result

        return deliver


@pytest.mark.parametrize("step", ["claim", "before_send", "after_send", "complete"])
def test_a_killed_invocation_never_doubles_a_hold_delivery(
    router: Router, sinks: Sinks, step: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an invocation killed at `step` (after which none of its writes is made)
    Invocation(router, step).run()
    # WHEN the batch comes back at once (the dead invocation's leases still run), then after they lapsed, and
    # again; and Clay re-sends both rows
    events = [router.record(lead(key, score)) for key, score in LEADS.items()]
    router.run(sqs_event(events))
    lapse_leases(router)
    router.run(sqs_event(events))
    router.run(sqs_event(events))
    assert router.run(sqs_event([router.callback(2, lead(key, score)) for key, score in LEADS.items()])) == []
    before = copies(sinks)
    # THEN no hold delivery arrived twice, and the ledger names what the router cannot know
    assert all(n <= 1 for key in LEADS for name, n in before[key].items() if name in HOLD)
    unknown = {f"{key}/{name}" for key in LEADS for name in unknown_of(router, key)}
    if step in ("claim",):
        assert unknown == set()  # nothing was written or sent: the retry simply delivered
    else:
        assert unknown == ALL_HELD
    # WHEN an operator settles each by looking in the destination
    answers = settle_by_looking(router, sinks, capsys)
    table = copies(sinks)
    show(capsys, f"killed at {step}, settled {answers}", table)
    # THEN every hold delivery arrived exactly once, and nothing is left unknown
    assert {name: table[key].get(name) for key in ("hot",) for name in ("outreach", "zapier")} == {
        "outreach": 1,
        "zapier": 1,
    }
    assert (table["warm"].get("nurture"), table["warm"].get("zapier")) == (1, 1)
    assert all(unknown_of(router, key) == {} for key in LEADS)
    if step == "before_send":
        assert set(answers.values()) == {"--resend"}  # nothing had left: each was sent once, after the settle
    if step == "after_send":  # what went out was processed (settled delivered); what had not left is resent
        assert "--delivered" in answers.values()


def test_a_failed_ledger_write_after_the_2xx_is_settled_both_ways(
    router: Router, sinks: Sinks, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN every destination delivered but the write recording it failing
    records = [router.record(lead(key, score)) for key, score in LEADS.items()]
    with failing_complete_write():
        router.run(sqs_event(records))
    lapse_leases(router)
    assert router.run(sqs_event(records)) == []
    assert {f"{k}/{n}" for k in LEADS for n in unknown_of(router, k)} == ALL_HELD
    # AND trace tells the operator what to run
    code, out = cli(capsys, "trace", "hot", "--no-dlq")
    assert code == 0
    assert "outreach: sent, no answer (ended_before_recording); not sent again until settled" in out
    assert "clay-pipeline settle hot outreach --delivered|--resend" in out
    # WHEN the operator says outreach arrived but (say the Zap's history shows it failed) Zapier did not
    assert cli(capsys, "settle", "hot", "outreach", "--delivered")[0] == 0
    assert cli(capsys, "settle", "hot", "zapier", "--resend")[0] == 0
    route_queued(router)
    # THEN outreach is recorded and never sent again; Zapier is sent once more, then recorded
    table = copies(sinks)
    show(capsys, "failed ledger write, settled both ways", table)
    assert (table["hot"]["outreach"], table["hot"]["zapier"]) == (1, 2)
    item = router.ledger("hot")
    assert {"outreach", "zapier"} <= set(item["deliveries"]) and unknown_of(router, "hot") == {}
    assert item["deliveries"]["outreach"]["settled"] == "delivered"
    # AND settling what is not unknown is refused
    capsys.readouterr()
    code = main(["settle", "hot", "outreach", "--delivered"])
    assert code == 2
    assert "no unknown outcome" in capsys.readouterr().err
