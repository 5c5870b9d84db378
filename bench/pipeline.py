"""The whole pipeline in one process for benchmarks: moto's server, loopback Clay and destinations.

Leads go in through IntakeFunction (API Gateway events), SenderFunction consumes LeadQueue as
Lambda's poller would (ReceiveMessage, the handler, DeleteMessageBatch of the successes), the
loopback Clay records each row, each row comes back enriched through CallbackFunction, and
RouterFunction consumes RoutingQueue into loopback destinations. Every invocation's thread
CPU time and wall time are recorded per function, for the cost model.

Used by cost_model.py only: counting every call per lead needs one thread driving each step in
turn, which the local stack (local/stack.py, used by end_to_end.py) does not give: its pollers,
gateway and Clay simulator run concurrently and retry on their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness import LambdaContext, quiet_logs

from clay_pipeline.adapters.aws import client
from local.apigw import http_event
from local.aws import Emulator, Provisioned, function_environment, provision
from local.http_stub import StubServer
from local.sqs_events import from_received
from local.template import FunctionSpec, functions, load_handler_module

INTAKE_KEY = "bench-intake-key-0123456789abcdef"
CALLBACK_TOKEN = "bench-callback-token-0123456789abcdef"  # noqa: S105 - a benchmark-only value
CLAY_PATH = "/v3/sources/webhook/pull-in-data-from-a-webhook-bench"
DESTINATION_PATHS = {
    "outreach": "/outreach",
    "nurture": "/nurture",
    "slack": "/slack",
    "zapier": "/zapier",
    "hubspot": "/crm/v3/objects/contacts/batch/upsert",
}
FUNCTIONS = ("IntakeFunction", "SenderFunction", "CallbackFunction", "RouterFunction")


@dataclass
class Usage:
    """What one function did during a run."""

    invocations: int = 0
    cpu_seconds: float = 0.0  # the invoking thread's CPU (moto's server threads excluded)


@contextlib.contextmanager
def worker_threads_counted(usage: Usage) -> Iterator[None]:
    """The CPU of work a function hands to its own thread pools (the router's deliveries) counts as its own."""
    original = ThreadPoolExecutor.submit
    lock = threading.Lock()

    def submit(executor: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    usage.cpu_seconds += time.thread_time() - started

        return original(executor, counted)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
    try:
        yield
    finally:
        ThreadPoolExecutor.submit = original  # type: ignore[method-assign]


@dataclass
class Pipeline:
    prefix: str = "bench"
    log_level: str = "WARNING"
    usage: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides (routine path)
    functions: tuple[str, ...] = FUNCTIONS
    extra_secrets: dict[str, str] = field(default_factory=dict)

    def start(self) -> Pipeline:
        quiet_logs()
        self.emulator = Emulator()
        self.emulator.start()
        self.web = StubServer()
        self.web.start()
        self.stack: Provisioned = provision(prefix=self.prefix, parameters=self.parameters)
        secrets = {
            "INTAKE_API_KEYS": INTAKE_KEY,
            "CALLBACK_SECRETS": CALLBACK_TOKEN,
            "CLAY_WEBHOOK_URLS": self.web.url + CLAY_PATH,
            "OUTREACH_WEBHOOK_URL": self.web.url + DESTINATION_PATHS["outreach"],
            "NURTURE_WEBHOOK_URL": self.web.url + DESTINATION_PATHS["nurture"],
            "SLACK_WEBHOOK_URL": self.web.url + DESTINATION_PATHS["slack"],
            "ZAPIER_WEBHOOK_URL": self.web.url + DESTINATION_PATHS["zapier"],
            "HUBSPOT_ACCESS_TOKEN": "bench-hubspot-token",
            "HUBSPOT_BASE_URL": self.web.url,
            "SLACK_MIN_INTERVAL_SECONDS": "0",  # Slack's 1/s pacing is a wait, not work: keep runs short
            "POWERTOOLS_LOG_LEVEL": self.log_level,
            **self.extra_secrets,
        }
        self.handlers: dict[str, Any] = {}
        for logical_id in self.functions:
            env = {**function_environment(logical_id, self.stack), **secrets}
            env.pop("CONFIG_SECRET_ID", None)  # secrets come from the variables above
            os.environ.update(env)  # kept: handlers read secrets at invocation time
            self.handlers[logical_id] = load_handler_module(logical_id).lambda_handler
        return self

    def stop(self) -> None:
        self.web.stop()
        self.emulator.stop()

    def spec(self, logical_id: str) -> FunctionSpec:
        return functions()[logical_id]

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        usage = self.usage[logical_id]
        context = LambdaContext(logical_id, self.spec(logical_id).memory, self.spec(logical_id).timeout * 1000)
        cpu = time.thread_time()
        try:
            with worker_threads_counted(usage):
                return self.handlers[logical_id](event, context)
        finally:
            usage.invocations += 1
            usage.cpu_seconds += time.thread_time() - cpu

    # -- the pieces of a run -------------------------------------------------------------------
    def post_leads(self, leads: list[dict[str, Any]], per_request: int = 1) -> int:
        """POST /leads in requests of `per_request` leads; the number accepted."""
        accepted = 0
        for start in range(0, len(leads), per_request):
            chunk = leads[start : start + per_request]
            body = json.dumps(chunk[0] if per_request == 1 else chunk)
            event = http_event("POST", "/leads", body, {"content-type": "application/json", "x-api-key": INTAKE_KEY})
            answer = self.invoke("IntakeFunction", event)
            assert answer["statusCode"] == 202, answer
            accepted += json.loads(answer["body"])["accepted"]
        return accepted

    def poll(self, queue: str, logical_id: str, idle_rounds: int = 3, batch_size: int | None = None) -> int:
        """Lambda's poller: receive up to BatchSize (the template's, or `batch_size`), invoke, delete the successes."""
        url = self.stack.queue_urls[queue]
        arn = self.stack.resolver.attributes[(queue, "Arn")]
        batch_size = batch_size or next(
            int(self.stack.resolver.resolve(e["Properties"]).get("BatchSize", 10))
            for e in self.spec(logical_id).events.values()
            if e["Type"] == "SQS"
        )
        processed, idle = 0, 0
        while idle < idle_rounds:
            messages: list[dict[str, Any]] = []
            while len(messages) < batch_size:
                got = (
                    client("sqs")
                    .receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=min(10, batch_size - len(messages)),
                        AttributeNames=["All"],
                        MessageAttributeNames=["All"],
                        WaitTimeSeconds=0,
                    )
                    .get("Messages", [])
                )
                if not got:
                    break
                messages.extend(got)
            if not messages:
                idle += 1
                time.sleep(0.2)
                continue
            idle = 0
            answer = self.invoke(logical_id, from_received(messages, arn))
            failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
            done = [m for m in messages if m["MessageId"] not in failed]
            for start in range(0, len(done), 10):
                client("sqs").delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + 10])
                    ],
                )
            processed += len(done)
        return processed

    def clay_rows(self) -> list[dict[str, Any]]:
        return [request.json() for request in self.web.received(CLAY_PATH)]

    def call_back(self, row: dict[str, Any], enrichment: dict[str, Any]) -> dict[str, Any]:
        """Clay's HTTP API column POSTing the enriched row to /clay/callback."""
        body = json.dumps({**row, **enrichment})
        event = http_event(
            "POST", "/clay/callback", body, {"content-type": "application/json", "x-clay-signature": CALLBACK_TOKEN}
        )
        answer = self.invoke("CallbackFunction", event)
        return {"status": answer["statusCode"], **json.loads(answer["body"])}

    def deliveries(self) -> dict[str, list[dict[str, Any]]]:
        """What each destination received: webhook bodies, and HubSpot's inputs one by one."""
        received: dict[str, list[dict[str, Any]]] = {}
        for name, path in DESTINATION_PATHS.items():
            bodies = [request.json() for request in self.web.received(path)]
            received[name] = [item for body in bodies for item in body["inputs"]] if name == "hubspot" else bodies
        return received

    def dead_letters(self, queue: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url = self.stack.queue_urls[queue]
        while True:
            messages = (
                client("sqs")
                .receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0)
                .get("Messages", [])
            )
            if not messages:
                return found
            for message in messages:
                found.append({k: v.get("StringValue") for k, v in message.get("MessageAttributes", {}).items()})
                client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def enrichment_for(number: int) -> dict[str, Any]:
    """Scores spread over 0-99 so every rule fires for some leads, with Clay's string-typed columns."""
    score = (number * 37) % 100
    return {
        "icp_score": str(score),
        "company_name": f"Company {number}",
        "employee_count": "1,200",
        "industry": "Software",
        "job_title": "VP Sales",
        "tier": "",
    }


def sample_leads(count: int, tag: str = "bench") -> list[dict[str, Any]]:
    return [
        {"email": f"{tag}.{n}@acme{n % 7}.com", "first_name": "Pat", "last_name": f"Lead{n}", "source": "web-form"}
        for n in range(count)
    ]
