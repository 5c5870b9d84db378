"""Sender pacing: two concurrent SenderFunction instances against a loopback Clay at a set rate.

Both instances share the limit through STATE_TABLE (moto's server); each processes its own
SQS batches of 10 in a thread. Figures come from the server's own request log: the achieved
rate as a share of the limit, and the busiest one-second window, which the pacer bounds by
the rate plus its slots per window (one 0.1 s window's worth: the most a second can straddle).

The Clay simulator (local/clay_sim.py) is used when present; otherwise a recording StubServer.

    python bench/pacing.py [--leads 200] [--rate 10]
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

from harness import LambdaContext, Section, Target, quiet_logs

from local.aws import Emulator, function_environment, provision
from local.http_stub import StubServer
from local.sqs_events import sqs_event, sqs_record
from local.template import environment, load_handler_module

INSTANCES = 2
BATCH = 10
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
    clay = StubServer()
    clay.start()
    try:
        stack = provision(prefix="bench-pacing")
        env = {
            **function_environment("SenderFunction", stack),
            "CLAY_WEBHOOK_URLS": clay.url + WEBHOOK_PATH,
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
            slots = senders[0].sender.pacer.slots
    finally:
        clay.stop()
        emulator.stop()
    arrivals = sorted(request.received_at for request in clay.received(WEBHOOK_PATH))
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    achieved = (len(arrivals) - 1) / span if span else float("nan")
    busiest = busiest_second(arrivals)
    bound = rate + slots
    return Section(
        title=f"Sender pacing ({INSTANCES} concurrent senders, limit {rate:g}/s, {leads} leads)",
        headers=["sent", "handed back", "seconds", "achieved /s", "share of limit", "busiest 1 s", "bound"],
        rows=[
            [
                len(arrivals),
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
            Target(f"busiest second never above limit + pacer burst ({bound:g})", busiest <= bound),
        ],
        notes=[
            f"pacer: {slots} send(s) per {slots / rate:.2f} s window, shared through moto's DynamoDB",
            "Clay itself documents a burst of 20 above its 10/s: the pacer stays well inside it",
            "server: recording StubServer on loopback answering 200 (local/clay_sim.py when it lands)",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10)
    options = parser.parse_args()
    run(options.leads, options.rate).show()


if __name__ == "__main__":
    main()
