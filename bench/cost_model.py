"""Cost model: the AWS requests one lead costs, counted in an instrumented local run, priced per million leads.

The run (pipeline.py) posts leads to IntakeFunction one per request, drains LeadQueue through
SenderFunction like Lambda's poller, answers every Clay row with one enriched callback, and
drains RoutingQueue through RouterFunction. botocore hooks on the library's clients count
every AWS call per operation (the poller's ReceiveMessage and DeleteMessageBatch included) and
ask DynamoDB for ReturnConsumedCapacity=TOTAL; a write that reports no capacity (a failed
conditional write, or moto not reporting) is counted as 1 WRU, a read as 1 RRU (strongly
consistent, under 4 KB). Log and metric bytes the handlers write are counted too.

Duration is modelled, not measured on Lambda: the invoking thread's CPU time in the run, scaled
by the vCPU share Lambda gives the memory size (1 vCPU at 1769 MB), plus an assumed round trip
per AWS call and per HTTP call (ASSUMED_* below; the router's webhooks for one lead go out
concurrently, so one round trip per lead), plus the sender's pacing wait.

    python bench/cost_model.py [--leads 200]
"""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from harness import Section, Target
from pipeline import CLAY_PATH, DESTINATION_PATHS, Pipeline, enrichment_for, sample_leads

from clay_pipeline.aws import client
from local.template import functions, parameter_defaults

# -- prices: AWS public on-demand list prices, us-east-1, as published on 2026-11-22 ----------------
# https://aws.amazon.com/lambda/pricing/ (arm64: $0.0000133334 per GB-s, first 7.5B GB-s a month;
#   $0.20 per 1M requests), https://aws.amazon.com/api-gateway/pricing/ (HTTP API: $1.00 per 1M
#   requests, first 300M a month), https://aws.amazon.com/sqs/pricing/ (standard queue: $0.40 per
#   1M requests, each 64 KB chunk a request, a batch of up to 10 one request),
#   https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per 1M write request units,
#   $0.125 per 1M read request units, since the November 2024 price cut),
#   https://aws.amazon.com/cloudwatch/pricing/ (logs ingestion $0.50 per GB).
# Free tiers are ignored. Checked against third-party mirrors of the Lambda arm64 rate
# (1333340e-10 per GB-s) and DynamoDB's on-demand rates; update here when AWS changes them.
PRICES_DATE = "2026-11-22"
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
HTTP_API_REQUEST = 1.00 / 1e6
SQS_REQUEST = 0.40 / 1e6
DYNAMODB_WRU = 0.625 / 1e6
DYNAMODB_RRU = 0.125 / 1e6
LOGS_GB = 0.50
# Provisioned capacity (https://aws.amazon.com/dynamodb/pricing/provisioned/, same date): $0.00065
# per WCU-hour and $0.00013 per RCU-hour. A unit used at the auto scaling target utilisation
# carries 3600 x utilisation requests an hour; the template uses on-demand, so this is a what-if
# for a steady load (the pipeline's load is steady: Clay caps it at 10 rows/s per table).
DYNAMODB_WCU_HOUR = 0.00065
DYNAMODB_RCU_HOUR = 0.00013
PROVISIONED_UTILISATION = 0.7
TARGET_PER_MILLION = 5.0

# -- assumptions for the duration model ---------------------------------------------------------
FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1769 MB, proportionally less below
ASSUMED_AWS_ROUND_TRIP = {"dynamodb": 0.006, "sqs": 0.010, "secretsmanager": 0.020}  # seconds, in-region
ASSUMED_HTTP_ROUND_TRIP = {"clay": 0.300, "hubspot": 0.400, "webhook": 0.200}  # seconds, over the internet

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
READ_OPERATIONS = frozenset({"GetItem"})
POLLER = "poller"  # the event source mapping's own ReceiveMessage / DeleteMessageBatch
HTTP_FUNCTIONS = ("IntakeFunction", "CallbackFunction", "RunWebhookFunction")  # billed as HTTP API requests


@dataclass
class Meter:
    """Counts AWS calls per (function, service, operation) and DynamoDB capacity units per function."""

    current: str = POLLER
    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    wru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _consistent: bool = False

    def install(self) -> Meter:
        dynamodb = client("dynamodb")
        dynamodb.meta.events.register("before-parameter-build.dynamodb", self._ask_capacity)
        for service in ("dynamodb", "sqs", "secretsmanager"):
            client(service).meta.events.register("after-call", self._count)
        return self

    def _ask_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")
        self._consistent = bool(params.get("ConsistentRead"))  # the calls of one flow are sequential

    def _count(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        service, operation = model.service_model.endpoint_prefix, model.name
        if operation == "ReceiveMessage" and not parsed.get("Messages"):
            return  # idle polling costs by the hour, not per lead (see the notes)
        self.calls[(self.current, service, operation)] += 1
        if service != "dynamodb":
            return
        capacity = parsed.get("ConsumedCapacity") or {}
        reported = float(capacity.get("CapacityUnits") or 0.0)
        # DynamoDB bills at least 1 WRU per write (up to 1 KB) and 1 RRU per strongly consistent read
        # (0.5 eventually consistent) up to 4 KB, failed conditional writes included; moto may report less.
        if operation in WRITE_OPERATIONS:
            self.wru[self.current] += max(1.0, reported)
        elif operation in READ_OPERATIONS:
            self.rru[self.current] += max(1.0 if self._consistent else 0.5, reported)


class CountingSink:
    """A write-only stream that counts bytes (what CloudWatch Logs would ingest)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)

    def flush(self) -> None:
        return None


@dataclass
class Measured:
    leads: int
    invocations: dict[str, int]
    cpu_seconds: dict[str, float]
    calls: Counter[tuple[str, str, str]]
    wru: dict[str, float]
    rru: dict[str, float]
    http_calls: dict[str, Counter[str]]  # function -> kind -> count
    log_bytes: int
    hubspot_share: float  # leads upserted to HubSpot / leads


Drive = Callable[[Pipeline, int], dict[str, Counter[str]]]  # runs the leads through; HTTP calls per function


def drive_table(pipeline: Pipeline, leads: int) -> dict[str, Counter[str]]:
    """The table path: one callback per Clay row."""
    pipeline.post_leads(sample_leads(leads, "cost"))
    pipeline.poll("LeadQueue", "SenderFunction")
    for number, row in enumerate(pipeline.clay_rows()):
        pipeline.call_back(row, enrichment_for(number))
    pipeline.poll("RoutingQueue", "RouterFunction")
    return {
        "SenderFunction": Counter({"clay": len(pipeline.web.received(CLAY_PATH))}),
        "RouterFunction": router_http_calls(pipeline),
    }


def router_http_calls(pipeline: Pipeline) -> Counter[str]:
    return Counter(
        {
            "hubspot": len(pipeline.web.received(DESTINATION_PATHS["hubspot"])),
            "webhook": sum(
                len(pipeline.web.received(path)) for name, path in DESTINATION_PATHS.items() if name != "hubspot"
            ),
        }
    )


def measure(
    leads: int, pipeline: Pipeline | None = None, drive: Drive = drive_table, meter: Meter | None = None
) -> Measured:
    from clay_pipeline.observability import logger

    # the template's log level: its bytes count
    pipeline = (pipeline or Pipeline(prefix="bench-cost", log_level="INFO")).start()
    meter = (meter or Meter()).install()
    sink = CountingSink()
    handler = logger.registered_handler
    previous = handler.setStream(sink)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(sink):
            original_invoke = pipeline.invoke

            def invoke(logical_id: str, event: dict[str, Any]) -> Any:
                meter.current = logical_id
                try:
                    return original_invoke(logical_id, event)
                finally:
                    meter.current = POLLER

            pipeline.invoke = invoke  # type: ignore[method-assign]
            http = drive(pipeline, leads)
        usage = pipeline.usage
        return Measured(
            leads=leads,
            invocations={name: u.invocations for name, u in usage.items()},
            cpu_seconds={name: u.cpu_seconds for name, u in usage.items()},
            calls=meter.calls,
            wru=meter.wru,
            rru=meter.rru,
            http_calls=http,
            log_bytes=sink.bytes,
            hubspot_share=len(pipeline.deliveries()["hubspot"]) / leads,
        )
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
        pipeline.stop()


# ------------------------------------------------------------------------------------------ pricing
@dataclass(frozen=True)
class Scenario:
    name: str
    batch_size: int = 10  # SenderFunction's and RouterFunction's SQS BatchSize
    memory_mb: int = 256  # every function
    leads_per_intake_request: int = 1
    sender_concurrency: int = 2
    send_rate: float = 10.0
    dynamodb_provisioned: bool = False  # what-if: provisioned capacity at PROVISIONED_UTILISATION
    sender_batch_size: int = 0  # SenderFunction's own BatchSize when it differs (the routine path's 100)


def queue_consumer(logical_id: str) -> bool:
    return logical_id in ("SenderFunction", "RouterFunction")


def per_lead(m: Measured, s: Scenario) -> dict[str, float]:
    """Requests, units and GB-seconds per lead in scenario `s`, scaled from the measured run."""
    measured_batch = {name: m.leads / m.invocations[name] if m.invocations.get(name) else 1.0 for name in m.invocations}
    invocations: dict[str, float] = {}
    for name, count in m.invocations.items():
        if queue_consumer(name):
            size = (s.sender_batch_size or s.batch_size) if name == "SenderFunction" else s.batch_size
            invocations[name] = 1 / size * (count * measured_batch[name] / m.leads)
        elif name == "IntakeFunction":
            invocations[name] = 1 / s.leads_per_intake_request
        else:
            invocations[name] = count / m.leads
    # SQS: the poller's receive and delete calls take at most 10 messages each, whatever the batch size.
    sqs = 0.0
    for (function, service, _), count in m.calls.items():
        if service != "sqs":
            continue
        if function == POLLER:
            sqs += count / m.leads * (10 / min(10, s.batch_size))
        elif function == "IntakeFunction":
            sqs += count / m.leads / s.leads_per_intake_request * min(10, s.leads_per_intake_request)
        else:
            sqs += count / m.leads
    gb_seconds = 0.0
    for name in m.invocations:
        spec = functions()[name]
        memory = s.memory_mb or spec.memory
        cpu = m.cpu_seconds[name] / m.leads * max(1.0, FULL_VCPU_MB / memory)
        io = sum(
            count / m.leads * ASSUMED_AWS_ROUND_TRIP.get(service, 0.01)
            for (function, service, _), count in m.calls.items()
            if function == name
        )
        for kind, count in m.http_calls.get(name, Counter()).items():
            calls = count / m.leads
            if kind == "hubspot":  # one upsert per batch holding at least one HubSpot lead (up to 100 inputs)
                size = min(s.batch_size, 100)
                calls = (1 - (1 - m.hubspot_share) ** size) / size
            elif kind == "webhook" and name == "RouterFunction":  # a lead's webhooks go out concurrently
                calls = min(calls, 1.0)
            io += calls * ASSUMED_HTTP_ROUND_TRIP[kind]
        seconds = cpu + io
        if name == "SenderFunction":  # each instance waits for its share of the shared rate
            seconds = max(seconds, s.sender_concurrency / s.send_rate)
        gb_seconds += seconds * memory / 1024
    return {
        "lambda_requests": sum(invocations.values()),
        "gb_seconds": gb_seconds,
        "api_requests": sum(invocations.get(name, 0) for name in HTTP_FUNCTIONS),
        "sqs_requests": sqs,
        "wru": sum(m.wru.values()) / m.leads,
        "rru": sum(m.rru.values()) / m.leads,
        "log_gb": m.log_bytes / m.leads / 1e9,
        "dynamodb_provisioned": float(s.dynamodb_provisioned),
    }


def dollars_per_million(units: dict[str, float]) -> dict[str, float]:
    million = 1e6
    wru_price, rru_price = DYNAMODB_WRU, DYNAMODB_RRU
    if units["dynamodb_provisioned"]:
        wru_price = DYNAMODB_WCU_HOUR / (3600 * PROVISIONED_UTILISATION)
        rru_price = DYNAMODB_RCU_HOUR / (3600 * PROVISIONED_UTILISATION)
    return {
        "Lambda requests": units["lambda_requests"] * LAMBDA_REQUEST * million,
        "Lambda GB-s": units["gb_seconds"] * LAMBDA_GB_SECOND * million,
        "HTTP API": units["api_requests"] * HTTP_API_REQUEST * million,
        "SQS": units["sqs_requests"] * SQS_REQUEST * million,
        "DynamoDB writes": units["wru"] * wru_price * million,
        "DynamoDB reads": units["rru"] * rru_price * million,
    }


def run(leads: int = 200, mode: str = "table") -> Section:
    """mode routine: ClayEnrichmentPath=routine, measured by routine_cost.py (runs of 100, webhook and poller)."""
    routine = mode == "routine"
    if routine:
        from routine_cost import measure_routine

        m = measure_routine(leads)
    else:
        m = measure(leads)
    defaults = parameter_defaults()
    current = Scenario(
        "template defaults" + (", routine path" if routine else ""),
        sender_concurrency=int(defaults.get("SenderMaxConcurrency", 2)),
        send_rate=float(defaults.get("ClaySendRatePerSecond", 10)),
        sender_batch_size=100 if routine else 0,  # the template's BatchSize on the routine path
    )
    units = per_lead(m, current)
    costs = dollars_per_million(units)
    total = sum(costs.values())
    logs = units["log_gb"] * LOGS_GB * 1e6
    per_function = {
        name: ", ".join(
            f"{service}:{operation} {count / m.leads:.2f}"
            for (function, service, operation), count in sorted(m.calls.items())
            if function == name
        )
        + (f"; WRU {m.wru[name] / m.leads:.2f}" if m.wru.get(name) else "")
        + (f"; RRU {m.rru[name] / m.leads:.2f}" if m.rru.get(name) else "")
        for name in (*m.invocations, POLLER)
    }
    rows: list[list[Any]] = [
        ["Lambda requests", f"{units['lambda_requests']:.3f}", f"{costs['Lambda requests']:.3f}"],
        ["Lambda GB-s (modelled)", f"{units['gb_seconds']:.4f}", f"{costs['Lambda GB-s']:.3f}"],
        ["HTTP API requests", f"{units['api_requests']:.3f}", f"{costs['HTTP API']:.3f}"],
        ["SQS requests", f"{units['sqs_requests']:.3f}", f"{costs['SQS']:.3f}"],
        ["DynamoDB write request units", f"{units['wru']:.2f}", f"{costs['DynamoDB writes']:.3f}"],
        ["DynamoDB read request units", f"{units['rru']:.2f}", f"{costs['DynamoDB reads']:.3f}"],
        ["total (Clay excluded)", "", f"{total:.2f}"],
        ["CloudWatch Logs ingestion (extra)", f"{m.log_bytes / m.leads:.0f} B", f"{logs:.3f}"],
    ]
    alternatives = [
        current,
        Scenario("batch 1", batch_size=1),
        Scenario("batch 100 (needs a batching window)", batch_size=100),
        Scenario("memory 128 MB", memory_mb=128),
        Scenario("memory 512 MB", memory_mb=512),
        Scenario("memory 1024 MB", memory_mb=1024),
        Scenario("intake: 100 leads per request", leads_per_intake_request=100),
        Scenario(f"DynamoDB provisioned, {PROVISIONED_UTILISATION:.0%} utilised (what-if)", dynamodb_provisioned=True),
        Scenario(
            "bulk intake + 128 MB + provisioned DynamoDB (what-if)",
            leads_per_intake_request=100,
            memory_mb=128,
            dynamodb_provisioned=True,
        ),
    ]
    if routine:  # every what-if keeps the routine path's sender batch of 100
        alternatives = [replace(scenario, sender_batch_size=100) for scenario in alternatives]
    alternative_rows = []
    for scenario in alternatives:
        scenario_units = per_lead(m, scenario)
        scenario_costs = dollars_per_million(scenario_units)
        alternative_rows.append(
            [
                scenario.name,
                f"{scenario_units['lambda_requests']:.2f}",
                f"{scenario_units['gb_seconds']:.4f}",
                f"{scenario_units['sqs_requests']:.2f}",
                f"{scenario_costs['Lambda requests'] + scenario_costs['Lambda GB-s']:.2f}",
                f"{scenario_costs['DynamoDB writes'] + scenario_costs['DynamoDB reads']:.2f}",
                f"{sum(scenario_costs.values()):.2f}",
            ]
        )
    from harness import table

    enrichment = "runs of 100 items, each with one signed webhook and one poll" if routine else "one callback each"
    notes = [
        f"{m.leads} leads, one per intake request, {enrichment}; invocations: "
        + ", ".join(f"{name} {count}" for name, count in m.invocations.items()),
        "calls per lead by function: " + " | ".join(f"{name}: {text}" for name, text in per_function.items() if text),
        f"prices: us-east-1 on-demand list prices as of {PRICES_DATE} (Lambda arm64 $0.0000133334/GB-s and "
        "$0.20/M requests, HTTP API $1.00/M, SQS $0.40/M, DynamoDB $0.625/M WRU and $0.125/M RRU, logs $0.50/GB; "
        "provisioned what-if: $0.00065/WCU-hour, $0.00013/RCU-hour); free tiers ignored",
        f"duration model: run CPU x {FULL_VCPU_MB}/memory (vCPU share) + assumed round trips "
        f"{ASSUMED_AWS_ROUND_TRIP} and {ASSUMED_HTTP_ROUND_TRIP} s; sender at least concurrency / rate per lead "
        "(waiting for a pacing slot is billed)",
        "not per lead: idle SQS long polls (about 5 pollers x 3 requests/min per queue, ~$0.35 a month each), "
        "Secrets Manager (one GetSecretValue per instance per 5 minutes), alarms and custom metrics (per month)",
        "what batch size, memory, bulk intake and DynamoDB capacity mode change:\n\n"
        + table(
            ["scenario", "Lambda req/lead", "GB-s/lead", "SQS req/lead", "Lambda $/M", "DynamoDB $/M", "total $/M"],
            alternative_rows,
        ),
    ]
    return Section(
        title=f"Cost model{', routine path' if routine else ''} (per lead, and USD per million leads; "
        f"prices of {PRICES_DATE})",
        headers=["item", "per lead", "USD per million leads"],
        rows=rows,
        targets=[
            Target(
                f"under {TARGET_PER_MILLION:g} USD per million leads, Clay excluded",
                total < TARGET_PER_MILLION,
                f"({total:.2f} USD; DynamoDB writes {costs['DynamoDB writes']:.2f})",
            )
        ],
        notes=notes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--mode", choices=("table", "routine"), default="table", help="enrichment path")
    options = parser.parse_args()
    run(options.leads, options.mode).show()


if __name__ == "__main__":
    main()
