"""Callback outages: callbacks lost to a DynamoDB or SQS outage under Clay's retry settings, and the lead
item's size over many re-sends.

Clay's HTTP API column retries 408, 413, 429 and ECONNREFUSED, ECONNRESET, ETIMEDOUT, once,
immediately (its defaults: local/clay_retry.py RetryPolicy); README recommends five retries with
409 and 5xx added. The real CallbackFunction handler runs against moto while an Outage
(local/outages.py) refuses every DynamoDB (or SQS) call from the outage's start for N seconds.
Time is virtual: the callback's waits advance a clock instead of sleeping, so a 120 s outage takes
seconds. Callbacks arrive once a second through the whole outage, each a lead of its own; Clay
calls each as its settings say (a retry starts the moment the previous call failed, or when Clay's
response timeout passed: the first invocation still runs on, as Lambda does). A callback is lost
when it never reaches RoutingQueue. "Longest outage survived" is the longest outage for which the
callback arriving at its very start (the one that must wait longest) still gets through.

On the virtual clock each AWS call is one attempt refused at once (botocore's own retries would sleep
real seconds; in AWS they only add attempts inside the same waits).

The lead item's size over re-sends is measured apart, with moto in-process (mock_aws): the real
callback claims code, two writes per re-send, about 30 ms each re-send (10,000 in about 5 minutes; through
the emulator's HTTP server it took about 16). moto's own work per write (parsing, the update
expression, copying the item) is most of it; --quick measures 1,000 re-sends.

    python bench/callback_outages.py [--resends 10000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

from harness import LambdaContext, Section, Target, logs_to_devnull, quiet_logs

from local.clay_retry import RECOMMENDED_RETRY, RetryPolicy

SECRET = "bench-outage-secret-0123456789abcdefghij"  # noqa: S105 - a benchmark-only value
OUTAGES = (5, 10, 30, 120)  # seconds
API_GATEWAY_SECONDS = 30.0  # an HTTP API answers 503 itself when the integration takes longer (Lambda runs on)
SETTINGS = {
    "Clay's defaults": RetryPolicy(),
    "Clay's defaults, 10 s timeout": RetryPolicy(response_timeout_ms=10_000),
    "README's settings": RECOMMENDED_RETRY,
}
TARGET_SECONDS = 10  # issue 19: no callback lost to an outage of up to 10 s with Clay's default settings


class VirtualTime:
    """The callback's clock and sleep: a wait moves the clock on at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Bench:
    app: Any
    time: VirtualTime
    routing_queue_url: str
    lambda_seconds: float
    leads: int = 0

    def call_like_clay(self, policy: RetryPolicy, arrival: float) -> tuple[str, bool]:
        """One callback of a new lead, called as Clay calls it: (lead key, whether Clay saw it accepted)."""
        from local.apigw import http_event

        self.leads += 1
        lead_key = f"ld_outage_{self.leads}"
        body = json.dumps({"lead_id": lead_key, "email": f"{lead_key}@acme.com", "icp_score": "80"})
        event = http_event(
            "POST", "/clay/callback", body, {"content-type": "application/json", "x-clay-signature": SECRET}
        )
        timeout = policy.response_timeout_ms / 1000
        start = arrival
        for _ in range(policy.attempts):
            self.time.now = start
            context = LambdaContext("CallbackFunction", remaining_ms=int(self.lambda_seconds * 1000))
            status: int | None = self.app.lambda_handler(event, context)["statusCode"]
            took = self.time.now - start
            if took > API_GATEWAY_SECONDS:
                status = 503
            error, answered_at = "", start + min(took, API_GATEWAY_SECONDS)
            if took > timeout:  # Clay stopped waiting: ETIMEDOUT, while the invocation went on
                status, error, answered_at = None, "ETIMEDOUT", start + timeout
            if status == 200:
                return lead_key, True
            if not policy.retries(status, error):
                return lead_key, False
            start = answered_at  # Clay retries at once
        return lead_key, False

    def routed(self) -> set[str]:
        from clay_pipeline.adapters.aws import client

        sqs, keys = client("sqs"), set()
        while messages := sqs.receive_message(QueueUrl=self.routing_queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                keys.add(json.loads(message["Body"])["lead_key"])
                sqs.delete_message(QueueUrl=self.routing_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return keys

    def outage(self, service: str, seconds: float, policy: RetryPolicy, every: float = 1.0) -> tuple[int, int, int]:
        """Callbacks arriving every `every` s through an outage: (sent, lost, shown to Clay as an error)."""
        from local.outages import Outage

        self.time.now = 1_000_000.0 * (self.leads + 1)  # each scenario on a stretch of the clock of its own
        start = self.time.now
        outage = Outage(service, seconds, clock=self.time.clock).start()
        try:
            sent = [self.call_like_clay(policy, start + n * every) for n in range(int(seconds / every) + 1)]
        finally:
            outage.stop()
        routed = self.routed()
        lost = sum(1 for lead_key, _ in sent if lead_key not in routed)
        return len(sent), lost, sum(1 for _, accepted in sent if not accepted)

    def longest_survived(self, service: str, policy: RetryPolicy, limit: int = 600) -> int:
        """The longest outage (whole seconds, up to `limit`) a callback arriving at its very start gets through."""
        low, high = 0, limit
        while low < high:
            middle = (low + high + 1) // 2
            _, lost, _ = self.outage(service, middle, policy, every=float(middle + 1))  # one callback, at the start
            low, high = (middle, high) if lost == 0 else (low, middle - 1)
        return low


def setup() -> tuple[Bench, Any]:
    from clay_pipeline.adapters import aws
    from local.aws import Emulator, function_environment, provision
    from local.template import functions, load_handler_module

    quiet_logs()
    # One attempt per AWS call: botocore's retries would sleep real seconds, off the virtual clock.
    aws._CONFIG_KWARGS["retries"] = {"max_attempts": 1, "mode": "standard"}
    emulator = Emulator()
    emulator.start()
    provisioned = provision("bench-outage")
    os.environ.update({**function_environment("CallbackFunction", provisioned), "CALLBACK_SECRETS": SECRET})
    app = load_handler_module("CallbackFunction")
    virtual = VirtualTime()
    app.acceptor.clock, app.acceptor.sleep = virtual.clock, virtual.sleep
    lambda_seconds = float(functions()["CallbackFunction"].timeout)
    return Bench(app, virtual, provisioned.queue_urls["RoutingQueue"], lambda_seconds), (emulator, provisioned)


def item_sizes(resends: int) -> list[list[Any]]:
    """A wide lead (about 50 KB) called back `resends` times, each a new version: its item's size as it goes.

    The real callback claims code writes the template's LeadsTable in moto in-process (mock_aws): each write
    costs moto's own work but no HTTP round trip to its server, and nothing here is concurrent.
    """
    from moto import mock_aws

    from clay_pipeline.adapters.aws import reset_clients
    from local.aws import provision

    endpoint = os.environ.pop("AWS_ENDPOINT_URL", None)  # mock_aws answers AWS's own endpoints
    with mock_aws():
        reset_clients()
        try:
            return _item_sizes(provision("bench-sizes").table_names["LeadsTable"], resends)
        finally:
            if endpoint is not None:
                os.environ["AWS_ENDPOINT_URL"] = endpoint
            reset_clients()


def _item_sizes(table_name: str, resends: int) -> list[list[Any]]:
    from clay_pipeline.adapters.callback_claims import CallbackClaims
    from clay_pipeline.adapters.dynamodb import item_size
    from clay_pipeline.adapters.leads_table import LeadsTable
    from clay_pipeline.core.callback_acceptance import Acceptance

    claims, leads = CallbackClaims(table_name), LeadsTable(table_name)
    lead = {"lead_id": "ld_wide", **{f"column_{n}": "x" * 500 for n in range(100)}}
    marks = {1, 10, 100, 1_000, 10_000, resends}
    rows, largest = [], 0
    for number in range(1, resends + 1):
        callback_id = f"ld_wide#{number:032x}"
        if claims.accept("ld_wide", callback_id, lead, f"{number:012d}").acceptance is Acceptance.ACCEPTED:
            leads.accept("ld_wide", [callback_id])  # what the router's first write on the item does
        if number in marks or number % 97 == 0:
            item = leads.get("ld_wide") or {}
            largest = max(largest, item_size(item))
            if number in marks:
                unbounded = item_size({**item, "versions": [f"{n:032x}" for n in range(number)]})
                rows.append([number, len(item.get("versions", [])), item_size(item), largest, unbounded])
    return rows


def run(resends: int = 10_000) -> Section:
    bench, (emulator, _) = setup()
    rows: list[list[Any]] = []
    targets: list[Target] = []
    try:
        with logs_to_devnull():
            for service, label in (("dynamodb", "DynamoDB"), ("sqs", "SQS")):
                longest = {name: bench.longest_survived(service, policy) for name, policy in SETTINGS.items()}
                for seconds in OUTAGES:
                    row: list[Any] = [label, seconds]
                    for name, policy in SETTINGS.items():
                        sent, lost, errors = bench.outage(service, seconds, policy)
                        row += [f"{lost} of {sent}", errors]
                        if name == "Clay's defaults" and seconds <= TARGET_SECONDS:
                            targets.append(
                                Target(f"{label} down {seconds} s, Clay's defaults: no callback lost", lost == 0)
                            )
                    rows.append(row)
                rows.append(
                    [label, "longest survived", *[cell for name in SETTINGS for cell in (f"{longest[name]} s", "")]]
                )
    finally:
        emulator.stop()
    sizes = item_sizes(resends)
    section = Section(
        title="Callback through DynamoDB and SQS outages",
        headers=["outage", "seconds", *[cell for name in SETTINGS for cell in (f"lost, {name}", "errors in Clay")]],
        rows=rows,
        targets=targets,
    )
    section.notes.append(
        "Clay's defaults: 408/413/429 and network errors retried once, at once, response timeout 100,000 ms (its"
        " documented maximum; the page states no default); with a 10 s timeout Clay gives up waiting and retries"
        " (ETIMEDOUT) while the first invocation runs on. README's settings: max retries 5, status codes"
        " 408, 409, 429, 500-504, response timeout 30,000 ms (API Gateway's limit). Callbacks arrive once a"
        " second through the outage; the callback function's"
        " timeout is the template's. 'errors in Clay': callbacks Clay's cell shows as failed (ETIMEDOUT or an"
        " error answer), lost or not (an invocation that went on may have queued it)."
    )
    size_table = Section(
        title="",
        headers=["re-sends", "versions kept", "item bytes", "largest so far", "bytes with every version kept"],
        rows=sizes,
    )
    section.notes.append(
        "Lead item over re-sends (a 50 KB lead, each re-send a new version, driven on the callback claims directly,"
        " in moto in-process):\n\n" + size_table.markdown().removeprefix("## \n\n")
    )
    largest = max(row[3] for row in sizes)
    first = sizes[0][2]
    section.targets.append(
        Target(
            f"lead item bounded over {resends} re-sends (largest {largest} bytes, first {first})",
            largest - first < 2_500,
        )
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resends", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 re-sends")
    args = parser.parse_args()
    run(resends=1_000 if args.quick else args.resends).show()


if __name__ == "__main__":
    main()
