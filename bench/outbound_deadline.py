"""One deadline per request: how long a router invocation lasts when a destination drips its answer.

The destination (local/http_stub.DrippingServer) reads the lead, answers its status line and headers
at once, then one byte of its body every 0.4 s. requests' timeouts bound each read, so a per-read
timeout never fires; the router's deadline on the whole request (adapters/http.py) must end it. The
RouterFunction handler runs against moto's server with `remaining_ms` as Lambda would give it, and the
figure is the invocation's wall time against that budget (Lambda kills an invocation at its timeout,
mid-send, leaving the delivery's outcome unknown).

    python bench/outbound_deadline.py [--remaining-ms 10000] [--body-bytes 30]
"""

from __future__ import annotations

import json
import time
from typing import Any

from harness import LambdaContext, Section, Target, command_line, quiet_logs

from local.aws import Emulator, function_environment, provision
from local.http_stub import DrippingServer
from local.sqs_events import sqs_event, sqs_record
from local.template import environment, load_handler_module


def run(remaining_ms: int = 10_000, body_bytes: int = 30) -> Section:
    quiet_logs()
    emulator = Emulator()
    emulator.start()
    try:
        stack = provision(prefix="bench-deadline")
        with DrippingServer(body_bytes=body_bytes) as dripping:
            env = {
                **function_environment("RouterFunction", stack),
                "OUTREACH_WEBHOOK_URL": f"{dripping.url}/outreach",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            }
            env.pop("CONFIG_SECRET_ID", None)
            arn = str(stack.resolver.attributes[("RoutingQueue", "Arn")])
            lead: dict[str, Any] = {"lead_id": "ld_drip", "email": "drip@acme.com", "icp_score": 85}
            body = {"callback_id": "ld_drip#h1", "lead_key": "ld_drip", "lead": lead, "received_at": "2026-01-01"}
            with environment(env):
                router = load_handler_module("RouterFunction")
                started = time.monotonic()
                router.lambda_handler(
                    sqs_event([sqs_record(json.dumps(body), arn)]), LambdaContext("router", remaining_ms=remaining_ms)
                )
                took = time.monotonic() - started
    finally:
        emulator.stop()
    drip_seconds = body_bytes * dripping.interval
    budget = remaining_ms / 1000
    return Section(
        title="Outbound deadline: a destination dripping its answer",
        headers=["invocation budget (s)", "answer drips for (s)", "invocation took (s)", "requests received"],
        rows=[[budget, drip_seconds, round(took, 2), len(dripping.received)]],
        targets=[Target("invocation ends within its budget", took < budget, f"{took:.2f} s of {budget:.0f} s")],
        notes=[
            "a byte every 0.4 s after the headers; the router keeps 2 s of its budget to report the batch",
            "before the deadline per request, requests' per-read timeouts let it run for the whole drip",
        ],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
