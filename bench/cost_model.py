"""Cost model: the AWS requests one lead costs, counted in an instrumented local run, priced per million leads.

The run (pipeline.py) posts leads to IntakeFunction one per request, drains LeadQueue through
SenderFunction like Lambda's poller, answers every Clay row with one enriched callback, and
drains RoutingQueue through RouterFunction. botocore hooks on the library's clients count
every AWS call per operation (the poller's ReceiveMessage and DeleteMessageBatch included).
DynamoDB write units are computed as DynamoDB bills them, from the item's size (moto reports a
flat 0.5): each write, failed conditional writes included, costs one WRU per started KB of the
larger of the item before and after it, read by an uncounted client around the call; a read
costs 1 RRU strongly consistent (0.5 eventually) per 4 KB. A write of an item that carries a
global secondary index's key (the sender's sent# batch records: SentByHour) is billed once more,
by its projected size. The per-lead write table lists the writes by function, table and key
prefix. Log and metric bytes the handlers write are counted too.

The stale-lead sweep (stale.py) runs once over the run's window at the end, with its clock moved
past STALE_AFTER_HOURS: its reads are priced per lead swept (a Query of the batch records, billed
by the bytes returned per page, and a BatchGetItem of each lead's item, billed per item's size, a
missing item at the minimum) and per run (the checkpoint and the pause switch).

Duration is modelled, not measured on Lambda: the invoking thread's CPU time in the run, scaled
by the vCPU share Lambda gives the memory size (1 vCPU at 1769 MB), plus an assumed round trip
per AWS call and per HTTP call (ASSUMED_* below; the router sends a batch's webhooks concurrently:
a probe round trip, then ceil((batch - 1) / WEBHOOK_FAN_OUT) more), plus the sender's pacing wait.

    python bench/cost_model.py [--leads 200]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
from harness import Section, Target
from pipeline import CLAY_PATH, DESTINATION_PATHS, Pipeline, enrichment_for, sample_leads

from clay_pipeline.aws import client
from clay_pipeline.router import WEBHOOK_FAN_OUT
from clay_pipeline.stores import from_item, item_size
from local.aws import function_environment
from local.template import functions, parameter_defaults, sqs_batch_size

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
DEFAULTS_TARGET = 6.0  # USD per million leads, template defaults (issue 14)
HIGH_VOLUME_TARGET = 4.0  # USD per million leads, the documented high-volume profile
BULK_LEADS_PER_REQUEST = 100  # POST /leads with {"leads": [...]}: the documented path for integrations
BIG_ROW_EXTRA_KB = 1.5  # what-if: enriched rows of about 2 KB instead of the run's ~0.5 KB

# -- assumptions for the duration model ---------------------------------------------------------
FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1769 MB, proportionally less below
ASSUMED_AWS_ROUND_TRIP = {"dynamodb": 0.006, "sqs": 0.010, "secretsmanager": 0.020}  # seconds, in-region
ASSUMED_HTTP_ROUND_TRIP = {"clay": 0.300, "hubspot": 0.400, "webhook": 0.200}  # seconds, over the internet

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
READ_OPERATIONS = frozenset({"GetItem"})
POLLER = "poller"  # the event source mapping's own ReceiveMessage / DeleteMessageBatch
SWEEPER = "StaleSweeperFunction"
INDEXED = {"sent_bucket": ("SentByHour", ("pk", "sent_bucket", "sent_at", "leads"))}  # index key -> its projection
LEADS_PER_SWEEP = 36_000  # an hourly sweep at the template's 10 rows/s to Clay
HTTP_FUNCTIONS = ("IntakeFunction", "CallbackFunction", "RunWebhookFunction")  # billed as HTTP API requests


def write_units(size: float) -> int:
    return max(1, math.ceil(size / 1024))


def units_by_write(
    write_sizes: list[tuple[str, str, str, str, int]], extra_lead_bytes: float = 0
) -> Counter[tuple[str, str, str, str]]:
    """WRU by (function, table, operation, key prefix); extra_lead_bytes grows every LeadsTable item (bigger rows)."""
    units: Counter[tuple[str, str, str, str]] = Counter()
    for function, table, operation, prefix, size in write_sizes:
        grown = size + extra_lead_bytes if table == "LeadsTable" else size
        units[(function, table, operation, prefix)] += write_units(grown)
    return units


@dataclass
class Meter:
    """Counts AWS calls per (function, service, operation) and DynamoDB capacity units per function.

    write_sizes: (function, table, operation, key prefix, bytes billed) of every write, for the write table.
    """

    current: str = POLLER
    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    wru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    write_sizes: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    overhead: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # the meter's own CPU
    _call: threading.local = field(default_factory=threading.local)  # the call in flight, per thread
    _lock: threading.Lock = field(default_factory=threading.Lock)  # sends and deliveries run in threads
    _reader: Any = None

    def install(self) -> Meter:
        dynamodb = client("dynamodb")
        # Sizes are read by a client of the meter's own: those reads are not the pipeline's, and the CPU
        # they take in the function's threads is subtracted from the function's (overhead).
        self._reader = boto3.session.Session().client("dynamodb", endpoint_url=dynamodb.meta.endpoint_url)
        dynamodb.meta.events.register("before-parameter-build.dynamodb", self._timed(self._before_dynamodb))
        for service in ("dynamodb", "sqs", "secretsmanager"):
            client(service).meta.events.register("after-call", self._timed(self._count))
        return self

    def _timed(self, hook: Callable[..., None]) -> Callable[..., None]:
        def run(*args: Any, **kwargs: Any) -> None:
            started = time.thread_time()
            try:
                hook(*args, **kwargs)
            finally:
                with self._lock:
                    self.overhead[self.current] += time.thread_time() - started

        return run

    def _before_dynamodb(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        call = self._call
        call.consistent = bool(params.get("ConsistentRead"))
        call.params = params
        call.write = None  # table, key, size before of the write in flight
        if model.name in WRITE_OPERATIONS:
            key = params.get("Key") or {
                name: params["Item"][name] for name in ("pk", "lead_key") if name in params["Item"]
            }
            call.write = (params["TableName"], key, self._size(params["TableName"], key))

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any]:
        return dict(self._reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item") or {})

    def _size(self, table: str, key: dict[str, Any]) -> int:
        return item_size(from_item(self._item(table, key)))

    def _count(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        service, operation = model.service_model.endpoint_prefix, model.name
        if operation == "ReceiveMessage" and not parsed.get("Messages"):
            return  # idle polling costs by the hour, not per lead (see the notes)
        with self._lock:
            self.calls[(self.current, service, operation)] += 1
        if service != "dynamodb":
            return
        with self._lock:
            self._count_dynamodb(operation, parsed, getattr(self._call, "write", None))

    def _count_dynamodb(self, operation: str, parsed: dict[str, Any], write: Any) -> None:
        call = self._call
        if operation in WRITE_OPERATIONS and write is not None:
            table, key, before = write
            after = self._item(table, key)
            size = max(before, item_size(from_item(after)))
            self.wru[self.current] += write_units(size)
            key_text = next(iter(next(iter(key.values())).values()), "")
            prefix = key_text.split("#", 1)[0] + "#" if "#" in key_text else "<lead>"
            table_id = table.rsplit("-", 1)[-1]
            self.write_sizes.append((self.current, table_id, operation, prefix, size))
            for attribute, (index, projected) in INDEXED.items():
                if attribute in after:  # a sparse index: only items with its key are written to it
                    index_size = item_size(from_item({name: after[name] for name in projected if name in after}))
                    self.wru[self.current] += write_units(index_size)
                    self.write_sizes.append((self.current, f"{table_id} {index}", operation, prefix, index_size))
        elif operation in READ_OPERATIONS:
            self.rru[self.current] += 1.0 if getattr(call, "consistent", False) else 0.5
        elif operation == "Query":  # billed per page by the bytes it returned, eventually consistent from an index
            returned = sum(item_size(from_item(item)) for item in parsed.get("Items", []))
            self.rru[self.current] += math.ceil(returned / 4096) * 0.5
        elif operation == "BatchGetItem":  # billed per item by its whole size (not the projection); missing: minimum
            for table, request in getattr(call, "params", {}).get("RequestItems", {}).items():
                for key in request["Keys"]:
                    self.rru[self.current] += max(1, math.ceil(self._size(table, key) / 4096)) * 0.5


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
    write_sizes: list[tuple[str, str, str, str, int]] = field(default_factory=list)  # see Meter
    sweep: dict[str, float] = field(default_factory=dict)  # the stale sweep's reads: see measure_sweep


WARM_UP_LEADS = 20  # a first pass through every function, not measured: the run then bills warm invocations


# Runs `count` leads tagged `tag` through; the HTTP calls each function made.
Drive = Callable[[Pipeline, int, str], dict[str, Counter[str]]]


def drive_table(pipeline: Pipeline, leads: int, tag: str) -> dict[str, Counter[str]]:
    """The table path: one callback per Clay row."""
    pipeline.web.clear()  # the rows and deliveries of this drive only
    pipeline.post_leads(sample_leads(leads, tag))
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
    sink = CountingSink()
    handler = logger.registered_handler
    previous = handler.setStream(sink)  # type: ignore[attr-defined]
    try:
        # Cold starts are a per-instance cost (bench/cold_start.py), not a per-lead one: warm every function first.
        with contextlib.redirect_stdout(sink):
            drive(pipeline, WARM_UP_LEADS, "warm-up")
        pipeline.usage.clear()
        pipeline.web.clear()
        sink.bytes = 0
        meter = (meter or Meter()).install()
        with contextlib.redirect_stdout(sink):
            original_invoke = pipeline.invoke

            def invoke(logical_id: str, event: dict[str, Any]) -> Any:
                meter.current = logical_id
                try:
                    return original_invoke(logical_id, event)
                finally:
                    meter.current = POLLER

            pipeline.invoke = invoke  # type: ignore[method-assign]
            http = drive(pipeline, leads, "cost")
            sweep = measure_sweep(pipeline, meter) if drive is drive_table else {}  # table path's batch records
        usage = pipeline.usage
        return Measured(
            leads=leads,
            invocations={name: u.invocations for name, u in usage.items()},
            cpu_seconds={name: max(0.0, u.cpu_seconds - meter.overhead[name]) for name, u in usage.items()},
            calls=meter.calls,
            wru=meter.wru,
            rru=meter.rru,
            http_calls=http,
            log_bytes=sink.bytes,
            hubspot_share=len(pipeline.deliveries()["hubspot"]) / leads,
            write_sizes=meter.write_sizes,
            sweep=sweep,
        )
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
        pipeline.stop()


def measure_sweep(pipeline: Pipeline, meter: Meter) -> dict[str, float]:
    """One stale sweep over the whole run, a day later by its clock: its read units and what it read."""
    from clay_pipeline.config import SweeperSettings
    from clay_pipeline.stale import HOUR, StaleSweeper

    settings = SweeperSettings.from_env(function_environment(SWEEPER, pipeline.stack))
    sweeper = StaleSweeper(settings, clock=lambda: time.time() + settings.stale_after_hours * HOUR + 60)
    meter.current = SWEEPER
    try:
        report = sweeper.run()
    finally:
        meter.current = POLLER
    calls = {operation: count for (function, _, operation), count in meter.calls.items() if function == SWEEPER}
    meter.write_sizes = [write for write in meter.write_sizes if write[0] != SWEEPER]  # per run: in the notes
    return {
        "leads": report.leads_checked,
        "batches": report.batches,
        "stale": report.stale,
        "rru": meter.rru.pop(SWEEPER, 0.0),
        "wru": meter.wru.pop(SWEEPER, 0.0),
        "queries": calls.get("Query", 0),
        "batch_gets": calls.get("BatchGetItem", 0),
        "fixed_rru": 1.0 + 0.5,  # the checkpoint (consistent) and the pause switch (eventually consistent)
    }


def sweep_per_lead(m: Measured) -> float:
    """Read units per lead swept, the per-run reads (checkpoint, switch) left out."""
    if not m.sweep:
        return 0.0
    return (m.sweep["rru"] - m.sweep["fixed_rru"]) / max(1, m.sweep["leads"])


# ------------------------------------------------------------------------------------------ pricing
@dataclass(frozen=True)
class Scenario:
    name: str
    batch_size: int = 10  # SenderFunction's and RouterFunction's SQS BatchSize
    memory_mb: int = 0  # every function; 0 keeps each function's template memory
    leads_per_intake_request: int = 1
    sender_concurrency: int = 2  # concurrent SenderFunction instances (SenderMaxConcurrency)
    send_concurrency: int = 4  # POSTs in flight within one instance (CLAY_SEND_CONCURRENCY)
    steady_load: bool = False  # leads arrive at the send rate (one sender busy), not in backlogs
    send_rate: float = 10.0
    dynamodb_provisioned: bool = False  # what-if: provisioned capacity at PROVISIONED_UTILISATION
    extra_row_kb: float = 0.0  # enriched rows this much larger than the run's (every LeadsTable item grows)
    sender_batch_size: int = 0  # SenderFunction's own BatchSize when it differs from batch_size (the template's)
    routine: bool = False  # the routine path: the sender starts runs of a whole batch, no per-lead POSTs


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
    per_function: dict[str, float] = {}
    for name in m.invocations:
        spec = functions()[name]
        memory = s.memory_mb or spec.memory
        cpu = m.cpu_seconds[name] / m.leads * max(1.0, FULL_VCPU_MB / memory)
        # The intake's SendMessageBatch carries ten leads of a bulk request, one of a single-lead request.
        batched = min(10, s.leads_per_intake_request) / s.leads_per_intake_request if name == "IntakeFunction" else 1
        io = sum(
            count / m.leads * ASSUMED_AWS_ROUND_TRIP.get(service, 0.01) * (batched if service == "sqs" else 1)
            for (function, service, _), count in m.calls.items()
            if function == name
        )
        http_waits = []
        for kind, count in m.http_calls.get(name, Counter()).items():
            calls = count / m.leads
            if kind == "hubspot":  # per batch holding a HubSpot lead: a batch read by email, then one upsert
                size = min(s.batch_size, 100)
                calls = 2 * (1 - (1 - m.hubspot_share) ** size) / size
            elif kind == "webhook" and name == "RouterFunction":
                # All destinations at once; each sends the batch's first lead alone, then WEBHOOK_FAN_OUT at a time.
                calls = (1 + math.ceil((s.batch_size - 1) / WEBHOOK_FAN_OUT)) / s.batch_size
            http_waits.append(calls * ASSUMED_HTTP_ROUND_TRIP[kind])
        # The router's HubSpot upserts go out alongside its webhooks: a batch waits for the slower of the two.
        io += max(http_waits, default=0.0) if name == "RouterFunction" else sum(http_waits)
        if name == "SenderFunction" and not s.routine:
            io /= s.send_concurrency  # a batch's sends, and their state-table calls, overlap (CLAY_SEND_CONCURRENCY)
        seconds = cpu + io
        if name == "SenderFunction":  # each instance waits for its share of the shared rate
            # A backlog keeps every allowed instance busy waiting its turn; a steady inflow at the rate keeps one.
            busy = 1 if s.steady_load else s.sender_concurrency
            seconds = max(seconds, busy / s.send_rate)
        gb_seconds += seconds * memory / 1024
        per_function[name] = seconds * memory / 1024
    return {
        "lambda_requests": sum(invocations.values()),
        "gb_seconds": gb_seconds,
        **{f"gb_seconds:{name}": value for name, value in per_function.items()},
        "api_requests": sum(invocations.get(name, 0) for name in HTTP_FUNCTIONS),
        "sqs_requests": sqs,
        "wru": sum(units_by_write(m.write_sizes, s.extra_row_kb * 1024).values()) / m.leads,
        "rru": sum(m.rru.values()) / m.leads + sweep_per_lead(m),
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


def stale_lookup_note(m: Measured, writes: Counter[tuple[str, str, str, str]]) -> str:
    """What the stale-lead lookup costs: the sender's batch records, and one sweep per lead and per hourly run."""
    sweep = m.sweep
    per_lead_rru = sweep_per_lead(m)
    hourly_rru = per_lead_rru * LEADS_PER_SWEEP + sweep["fixed_rru"]
    sent_units = sum(units for (_, _, _, prefix), units in writes.items() if prefix == "sent#")
    return (
        f"stale-lead lookup (stale.py): the sender's batch records cost {sent_units / m.leads:.2f} WRU per lead "
        "(the record and its SentByHour index entry, one each per batch); one sweep over this run's "
        f"{sweep['leads']:.0f} leads read {sweep['batches']:.0f} batch records with {sweep['queries']:.0f} "
        f"Query and {sweep['batch_gets']:.0f} BatchGetItem calls: {sweep['rru']:.1f} RRU, of which "
        f"{sweep['fixed_rru']:g} per run (checkpoint, pause switch) and {per_lead_rru:.3f} per lead swept "
        f"(${per_lead_rru * DYNAMODB_RRU * 1e6:.3f} per million leads); an hourly run at 10 leads/s "
        f"({LEADS_PER_SWEEP:,} leads) reads about {hourly_rru:,.0f} RRU (${hourly_rru * DYNAMODB_RRU:.4f}) and "
        f"writes {sweep['wru']:.0f} WRU (the checkpoint) plus one per stale lead; it never reads the rest of the "
        "table"
    )


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
        "template defaults, leads in bulk requests" + (", routine path" if routine else ""),
        sender_concurrency=int(defaults.get("SenderMaxConcurrency", 2)),
        send_rate=float(defaults.get("ClaySendRatePerSecond", 10)),
        sender_batch_size=sqs_batch_size("SenderFunction", {"ClayEnrichmentPath": mode}),
        routine=routine,
        leads_per_intake_request=BULK_LEADS_PER_REQUEST,
    )
    single = replace(
        current, name="template defaults, one lead per intake request (a web form)", leads_per_intake_request=1
    )
    high_volume = replace(
        current,
        name="high-volume profile: TableBillingMode=PROVISIONED, FunctionMemorySize=128, bulk intake, steady load",
        memory_mb=128,
        dynamodb_provisioned=True,
        steady_load=True,  # the steady 10 rows/s that provisioned capacity is sized for
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
        *[
            [
                f"  of which {name}",
                f"{units[f'gb_seconds:{name}']:.4f}",
                f"{units[f'gb_seconds:{name}'] * LAMBDA_GB_SECOND * 1e6:.3f}",
            ]
            for name in m.invocations
        ],
        ["HTTP API requests", f"{units['api_requests']:.3f}", f"{costs['HTTP API']:.3f}"],
        ["SQS requests", f"{units['sqs_requests']:.3f}", f"{costs['SQS']:.3f}"],
        ["DynamoDB write request units", f"{units['wru']:.2f}", f"{costs['DynamoDB writes']:.3f}"],
        ["DynamoDB read request units", f"{units['rru']:.2f}", f"{costs['DynamoDB reads']:.3f}"],
        ["total (Clay excluded)", "", f"{total:.2f}"],
        ["CloudWatch Logs ingestion (extra)", f"{m.log_bytes / m.leads:.0f} B", f"{logs:.3f}"],
    ]
    alternatives = [
        current,
        single,
        high_volume,
        Scenario("batch 1", batch_size=1),
        Scenario("batch 100 (needs a batching window)", batch_size=100),
        Scenario("memory 128 MB", memory_mb=128),
        Scenario("memory 512 MB", memory_mb=512),
        Scenario("memory 1024 MB", memory_mb=1024),
        Scenario(f"DynamoDB provisioned, {PROVISIONED_UTILISATION:.0%} utilised", dynamodb_provisioned=True),
        Scenario("enriched rows 1.5 KB larger (a wide Clay table)", extra_row_kb=BIG_ROW_EXTRA_KB),
    ]
    # Every what-if keeps the path and the template's sender batch; on the table path the batch what-ifs
    # change the sender's batch with the router's (the routine path's sender always takes 100).
    alternatives = [
        replace(
            scenario,
            routine=routine,
            sender_batch_size=scenario.batch_size
            if scenario.name.startswith("batch ") and not routine
            else current.sender_batch_size,
        )
        for scenario in alternatives
    ]
    # The what-ifs change one thing from the measured run (one lead per intake request) unless they say so.
    alternative_rows = []
    totals: dict[str, float] = {}
    for scenario in alternatives:
        scenario_units = per_lead(m, scenario)
        scenario_costs = dollars_per_million(scenario_units)
        totals[scenario.name] = sum(scenario_costs.values())
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
    writes = units_by_write(m.write_sizes)
    bigger = units_by_write(m.write_sizes, BIG_ROW_EXTRA_KB * 1024)
    write_rows = [
        [*key, f"{units / m.leads:.2f}", f"{bigger[key] / m.leads:.2f}"] for key, units in sorted(writes.items())
    ]
    write_rows.append(
        ["total", "", "", "", f"{sum(writes.values()) / m.leads:.2f}", f"{sum(bigger.values()) / m.leads:.2f}"]
    )
    lead_items = [size / 1024 for _, table_name, _, _, size in m.write_sizes if table_name == "LeadsTable"]
    big_row = f"+{BIG_ROW_EXTRA_KB:g} KB rows"
    notes = [stale_lookup_note(m, writes)] if m.sweep else []
    notes += [
        "DynamoDB writes per lead (WRU, billed by item size: one unit per started KB of the larger of the item "
        f"before and after the write; the run's LeadsTable items {sum(lead_items) / max(1, len(lead_items)):.2f} KB "
        f"on average, {max(lead_items, default=0):.2f} KB at most; the last column with every enriched row "
        f"{BIG_ROW_EXTRA_KB:g} KB larger, as a wide Clay table sends):\n\n"
        + table(["function", "table", "operation", "key", "WRU per lead", big_row], write_rows),
        f"{m.leads} leads, one per intake request, {enrichment}; invocations: "
        + ", ".join(f"{name} {count}" for name, count in m.invocations.items()),
        "calls per lead by function: " + " | ".join(f"{name}: {text}" for name, text in per_function.items() if text),
        f"prices: us-east-1 on-demand list prices as of {PRICES_DATE} (Lambda arm64 $0.0000133334/GB-s and "
        "$0.20/M requests, HTTP API $1.00/M, SQS $0.40/M, DynamoDB $0.625/M WRU and $0.125/M RRU, logs $0.50/GB; "
        "provisioned what-if: $0.00065/WCU-hour, $0.00013/RCU-hour); free tiers ignored",
        f"duration model: run CPU x {FULL_VCPU_MB}/memory (vCPU share) + assumed round trips "
        f"{ASSUMED_AWS_ROUND_TRIP} and {ASSUMED_HTTP_ROUND_TRIP} s; sender at least SenderMaxConcurrency / rate "
        "per lead (a backlog: every sender instance waits its turn for a pacing slot, and the wait is billed), "
        "1 / rate at a steady load (one instance busy)",
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
                f"template defaults at most {DEFAULTS_TARGET:g} USD per million leads (leads in bulk requests, "
                "Clay excluded)",
                total <= DEFAULTS_TARGET,
                f"({total:.2f} USD; one lead per request: {totals[single.name]:.2f})",
            ),
            Target(
                f"high-volume profile at most {HIGH_VOLUME_TARGET:g} USD per million leads",
                totals[high_volume.name] <= HIGH_VOLUME_TARGET,
                f"({totals[high_volume.name]:.2f} USD)",
            ),
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
