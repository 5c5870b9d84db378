"""Cost model of the routine path (ClayEnrichmentPath=routine): `python bench/routine_cost.py`.

The same meter, prices and duration model as cost_model.py, on a one-thread pipeline whose Clay is
the Public API simulator (local/clay_api_sim.py): leads are POSTed to the intake one per request,
SenderFunction drains LeadQueue in batches of 100 (the template's BatchSize on this path) and
starts runs of 100; each run's signed webhook is delivered to RunWebhookFunction; RunCollectorFunction
takes RunPollQueue one message per invocation (the webhook's message and the run's first poll arrive
apart in time): the webhook's message collects the run, the first poll finds it ended; RouterFunction
drains RoutingQueue. Clay's runs finish before their first poll, so a run costs one poll here; each
further poll of a slow run adds about 0.005 DynamoDB reads, 0.02 SQS requests and 0.01 Lambda
requests per lead. Writes are billed by item size as in cost_model.py (it matters for the run record).

    python bench/routine_cost.py [--leads 200]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from cost_model import Measured, measure, router_http_calls
from cost_model import run as cost_run
from harness import Section
from pipeline import Pipeline, sample_leads

from local.apigw import http_event
from local.clay_api_sim import ClayApiSimulator
from local.clay_run_webhooks import sign

API_KEY = "bench-clay-api-key-0123456789"
SIGNING_SECRET = "whsec_bench-signing-secret-0123456789"  # noqa: S105 - a benchmark-only value
FUNCTIONS = ("IntakeFunction", "SenderFunction", "RunWebhookFunction", "RunCollectorFunction", "RouterFunction")
FIRST_POLL_SECONDS = 1


def measure_routine(leads: int) -> Measured:
    clay = ClayApiSimulator(api_key=API_KEY, run_seconds=0.0)
    clay.start()
    pipeline = Pipeline(
        prefix="bench-cost-routine",
        log_level="INFO",
        parameters={
            "ClayEnrichmentPath": "routine",
            "ClayApiBaseUrl": clay.base_url,
            "ClayRoutineId": clay.routine_id,
            "ClayRunFirstPollSeconds": str(FIRST_POLL_SECONDS),
        },
        functions=FUNCTIONS,
        extra_secrets={
            "CLAY_API_KEY": API_KEY,
            "CLAY_WEBHOOK_SIGNING_SECRETS": SIGNING_SECRET,
            "CLAY_SEND_RATE_PER_SECOND": "1000",  # pacing waits are modelled, not slept through
        },
    )

    signalled: set[str] = set()  # runs whose webhook an earlier drive (the warm-up) delivered

    def drive(pipeline: Pipeline, count: int, tag: str) -> dict[str, Counter[str]]:
        pipeline.web.clear()
        clay.responses.clear()
        pipeline.post_leads(sample_leads(count, tag))
        pipeline.poll("LeadQueue", "SenderFunction")
        for run in [run for run in clay.runs() if run.run_id not in signalled]:
            signalled.add(run.run_id)  # Clay's run-finished webhook, as `clay webhooks create` registered it
            body = json.dumps(
                {"webhookId": "wh_bench", "createdAt": "2026-11-22T00:00:00Z", "data": {"routine_run_id": run.run_id}}
            )
            headers = {"content-type": "application/json", "x-clay-signature": sign(SIGNING_SECRET, body.encode())}
            answer = pipeline.invoke("RunWebhookFunction", http_event("POST", "/clay/routine-webhook", body, headers))
            assert answer["statusCode"] == 200, answer
        time.sleep(FIRST_POLL_SECONDS + 0.2)  # the runs' first polls become visible
        pipeline.poll("RunPollQueue", "RunCollectorFunction", batch_size=1)
        pipeline.poll("RoutingQueue", "RouterFunction")
        return {
            "SenderFunction": Counter({"clay": clay.responses[("run", 202)]}),
            "RunCollectorFunction": Counter(
                {"clay": sum(n for (kind, _), n in clay.responses.items() if kind == "results")}
            ),
            "RouterFunction": router_http_calls(pipeline),
        }

    try:
        return measure(leads, pipeline, drive)
    finally:
        clay.stop()


def run(leads: int = 200) -> Section:
    return cost_run(leads, mode="routine", measured=measure_routine(leads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=200)
    run(parser.parse_args().leads).show()


if __name__ == "__main__":
    main()
