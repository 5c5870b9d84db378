"""Sender pacing: two concurrent SenderFunction instances against a loopback Clay at a set rate.

Both instances share the limit through STATE_TABLE (moto's server); each processes its own
SQS batches of the template's BatchSize (20) in a thread, with the template's concurrent sends.
Figures come from the server's own request log: the achieved rate as a share of the limit, and
the busiest one-second window, which must stay within Clay's burst of 20 rows (the pacer's
bound: sending_limits.Pacer skips a slot reached more than max_late after its time).

Clay is the simulator (local/clay_sim.py; its table webhook, local/clay_table_webhook.py, answers
429 above its rate and burst, like Clay), its callbacks going to a recording sink; without it, a
recording StubServer answering 200.

    python bench/pacing.py [--leads 200] [--rate 10]
"""

from __future__ import annotations

import json
import threading
from typing import Any

from harness import LambdaContext, Section, Target, command_line, quiet_logs

from clay_pipeline.core.pacing import CLAY_BURST
from local.aws import Emulator, function_environment, provision
from local.http_stub import StubServer
from local.sqs_events import sqs_event, sqs_record
from local.template import environment, load_handler_module, sqs_batch_size

INSTANCES = 2
BATCH = sqs_batch_size("SenderFunction")  # the template's
RATE_SHARE_TARGET = 0.9
WEBHOOK_PATH = "/v3/sources/webhook/pull-in-data-from-a-webhook-bench"


def busiest_second(arrivals: list[float]) -> int:
    """Most requests in any one-second window [t, t + 1) that starts at a request."""
    ordered = sorted(arrivals)
    best, end = 0, 0
    for start, moment in enumerate(ordered):
        while end < len(ordered) and ordered[end] < moment + 1.0:
            end += 1
        best = max(best, end - start)
    return best


def start_clay(callback_url: str, rate: float) -> tuple[Any, str, StubServer]:
    """The Clay simulator at `rate` (burst twice that, as Clay's 10/20), else a plain recording server."""
    try:
        from local.clay_sim import ClaySimulator
    except ImportError:
        stub = StubServer()
        stub.start()
        return stub, stub.url + WEBHOOK_PATH, stub
    simulator = ClaySimulator(callback_url=callback_url, rate_per_second=rate, burst=2 * rate)
    simulator.start()
    return simulator, simulator.create_webhook(), simulator.server


def batches_for(instance: int, leads: int, queue_arn: str) -> list[dict[str, Any]]:
    bodies = [
        json.dumps({"email": f"pace{instance}.{n}@acme.com", "first_name": "Pat", "source": "api"})
        for n in range(leads)
    ]
    return [
        sqs_event([sqs_record(body, queue_arn) for body in bodies[start : start + BATCH]])
        for start in range(0, len(bodies), BATCH)
    ]


def run(leads: int = 200, rate: float = 10) -> Section:
    quiet_logs()
    emulator = Emulator()
    emulator.start()
    callbacks = StubServer()  # where the simulator's HTTP API column posts its enriched rows
    callbacks.start()
    clay, webhook_url, server = start_clay(callbacks.url, rate)
    try:
        stack = provision(prefix="bench-pacing")
        env = {
            **function_environment("SenderFunction", stack),
            "CLAY_WEBHOOK_URLS": webhook_url,
            "CLAY_SEND_RATE_PER_SECOND": str(rate),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        env.pop("CONFIG_SECRET_ID", None)
        queue_arn = stack.resolver.attributes[("LeadQueue", "Arn")]
        with environment(env):
            senders = [load_handler_module("SenderFunction") for _ in range(INSTANCES)]
            work = [batches_for(i, leads // INSTANCES, queue_arn) for i in range(INSTANCES)]
            failures: list[int] = [0] * INSTANCES

            def drive(index: int) -> None:
                for event in work[index]:
                    answer = senders[index].lambda_handler(event, LambdaContext("sender", remaining_ms=60_000))
                    failures[index] += len(answer["batchItemFailures"])

            threads = [threading.Thread(target=drive, args=(i,)) for i in range(INSTANCES)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            slots = senders[0].sender.sending.pacer.slots
            max_late = senders[0].sender.sending.pacer.max_late
    finally:
        clay.stop()
        callbacks.stop()
        emulator.stop()
    log = [request for request in server.received() if request.path == webhook_url.removeprefix(server.url)]
    throttled = int(getattr(clay, "inbound", {}).get(429, 0))  # the simulator's own count of 429 answers
    arrivals = sorted(request.received_at for request in log)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    achieved = (len(arrivals) - throttled - 1) / span if span else float("nan")
    busiest = busiest_second(arrivals)
    bound = CLAY_BURST
    return Section(
        title=f"Sender pacing ({INSTANCES} concurrent senders, limit {rate:g}/s, {leads} leads)",
        headers=["requests", "429s", "handed back", "seconds", "rows /s", "share of limit", "busiest 1 s", "bound"],
        rows=[
            [
                len(arrivals),
                throttled,
                sum(failures),
                f"{span:.2f}",
                f"{achieved:.2f}",
                f"{achieved / rate:.0%}",
                busiest,
                f"{bound:g}",
            ]
        ],
        targets=[
            Target(
                f"achieved rate at least {RATE_SHARE_TARGET:.0%} of the limit", achieved / rate >= RATE_SHARE_TARGET
            ),
            Target(f"busiest second never above Clay's burst ({bound:g})", busiest <= bound),
        ],
        notes=[
            f"pacer: {slots} send(s) per {slots / rate:.2f} s window, shared through moto's DynamoDB; a slot "
            f"reached more than {max_late:.2f} s late is skipped, so no second can hold more than "
            f"{rate:g} x (1 + {max_late:.2f}) + 1 = {rate * (1 + max_late) + 1:.0f} sends",
            f"bound: Clay's burst ({CLAY_BURST} rows in a second; 10/s sustained), which its simulator enforces with "
            "429s",
            f"server: {type(clay).__name__} on loopback; figures from its own request log",
        ],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
