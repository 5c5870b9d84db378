"""What an unauthenticated POST /clay/token costs us, by body: CPU and peak memory per request.

The token endpoint is public (JWT mode): anyone can post anything. Its body is capped at
token_guard.TOKEN_MAX_BODY_BYTES before it is parsed, so a large body costs a length check; the
"parsed first" column is what the same body cost when it was parsed before any check (json.loads
through request_body.parse_json, as the endpoint did before the cap).

    python bench/token_bodies.py [--runs 3]
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from harness import LambdaContext, Section, Target, command_line, logs_to_devnull, median

from clay_pipeline.core.errors import Rejected
from clay_pipeline.core.request_body import parse_json
from clay_pipeline.http_api import answer_to
from local.apigw import http_event
from local.aws import FAKE_CREDENTIALS
from local.template import load_handler_module, placeholder_environment

USER, PASSWORD = "clay", "bench-password-0123456789"
BODIES: dict[str, bytes] = {
    "a login (wrong password)": json.dumps({"username": USER, "password": "wrong-password-000"}).encode(),
    "5.9 MB of nested arrays": b"[" + b",".join([b"[[]]"] * 1_180_000) + b"]",
    "5.9 MB deep nesting": b"[" * 2_950_000 + b"]" * 2_950_000,
    "1 MB string": json.dumps({"username": "x" * 1_000_000, "password": "y"}).encode(),
}
MAX_CPU_MS = 5.0  # what any unauthenticated body may cost: a length check and, when small, one parse


def cost(call: Callable[[], Any]) -> tuple[float, float, str]:
    """CPU milliseconds, peak RSS growth in MB (ru_maxrss: the first large body sets the peak) and the outcome."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    try:
        outcome = str(call())
    except Rejected as rejection:
        outcome = str(answer_to(rejection).status)
    cpu = (time.process_time() - started) * 1000
    return cpu, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024, outcome


def run(runs: int = 3) -> Section:
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.update(placeholder_environment("CallbackFunction"))
    os.environ.update(
        {
            "CALLBACK_AUTH_MODE": "jwt",
            "CALLBACK_SECRETS": "bench-callback-secret-0123456789abcdef0123",
            "CALLBACK_JWT_USERS": f"{USER}:{PASSWORD}",
            # No lockout table: its DynamoDB read and write are network time, not the CPU measured here (and
            # there is no AWS behind this process: with it, the wrong password would be a 503).
            "STATE_TABLE": "",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "ClayPipelineBench",
        }
    )
    callback = load_handler_module("CallbackFunction")
    context = LambdaContext("CallbackFunction")

    def handler(body: bytes) -> Callable[[], Any]:
        event = http_event("POST", "/clay/token", body)  # API Gateway's event is built before the function runs
        return lambda: callback.lambda_handler(event, context)["statusCode"]

    rows: list[list[Any]] = []
    capped_cpu: list[float] = []
    for name, body in BODIES.items():
        with logs_to_devnull():  # Powertools logging and metrics on, as Lambda runs them, written to /dev/null
            now = [cost(handler(body)) for _ in range(runs)]
        before = cost(lambda body=body: (parse_json(body), 200)[1])  # once: its memory peak is what matters
        capped_cpu.append(median([sample[0] for sample in now]))
        rows.append(
            [
                name,
                f"{len(body):,}",
                now[0][2],
                median([sample[0] for sample in now]),
                max(sample[1] for sample in now),
                before[0],
                before[1],
            ]
        )
    worst = max(capped_cpu)
    return Section(
        title=f"Unauthenticated /clay/token bodies (median of {runs}; parsed first: once)",
        headers=["body", "bytes", "status", "CPU ms", "peak RSS +MB", "parsed first: CPU ms", "parsed first: +MB"],
        rows=rows,
        notes=[
            "status and cost through CallbackFunction's handler in JWT mode, without the lockout's table (no AWS "
            "call); the API Gateway event is built outside the measurement",
            "peak RSS is the process's high-water mark: a later, smaller body shows +0 once a larger one set it",
        ],
        targets=[Target(f"every body costs at most {MAX_CPU_MS:.0f} ms of CPU", worst <= MAX_CPU_MS, f"({worst:.2f})")],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
