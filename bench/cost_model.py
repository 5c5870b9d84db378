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

The stale-lead sweep (services/sweeper.py) runs once over the run's window at the end, with its clock moved
past STALE_AFTER_HOURS: its reads are priced per lead swept (a Query of the batch records, billed
by the bytes returned per page, and a BatchGetItem of each lead's item, billed per item's size, a
missing item at the minimum) and per run (the checkpoint and the pause switch).

Duration is modelled, not measured on Lambda: the invoking thread's CPU time in the run, scaled
by the vCPU share Lambda gives the memory size (1 vCPU at 1769 MB), plus an assumed round trip
per AWS call and per HTTP call (ASSUMED_* below; the router sends a batch's webhooks concurrently:
a probe round trip, then ceil((batch - 1) / WEBHOOK_FAN_OUT) more), plus the sender's pacing wait.

With `--crm salesforce` (or `both`) the router also upserts to the Salesforce simulator (local/salesforce_sim.py)
and the report adds Salesforce's API calls per 1,000 leads and the share of an org's documented 24-hour API
request allocation a day at Clay's rate uses (Salesforce's calls cost no AWS money: see salesforce_calls_note).

    python bench/cost_model.py [--leads 200] [--crm salesforce]   (the routine path: python bench/routine_cost.py)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
from harness import Section, Target
from pipeline import CLAY_PATH, DESTINATION_PATHS, Pipeline, enrichment_for, sample_leads

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.dynamodb import from_item, item_size
from clay_pipeline.core.salesforce_records import MAX_RECORDS as SALESFORCE_MAX_RECORDS
from clay_pipeline.services.delivery import WEBHOOK_FAN_OUT
from local.aws import function_environment
from local.salesforce_sim import SalesforceSim
from local.template import functions, parameter_defaults, resources_of_type, sqs_batch_size

# -- prices: AWS public on-demand list prices, us-east-1, as published on 2026-11-22 ----------------
# https://aws.amazon.com/lambda/pricing/ (arm64: $0.0000133334 per GB-s, first 7.5B GB-s a month;
#   $0.20 per 1M requests; the INIT phase is billed as duration since 2025-08-01),
#   https://aws.amazon.com/api-gateway/pricing/ (HTTP API: $1.00 per 1M requests, first 300M a month),
#   https://aws.amazon.com/sqs/pricing/ (standard queue: $0.40 per 1M requests, each 64 KB chunk a
#   request, a batch of up to 10 one request),
#   https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per 1M write request units, $0.125 per
#   1M read request units since the November 2024 price cut; Standard table class storage $0.25 per
#   GB-month, each item's size plus 100 bytes of overhead; continuous backups (PITR) $0.20 per GB-month),
#   https://aws.amazon.com/cloudwatch/pricing/ (Logs: ingestion $0.50 per GB (Standard class),
#   archival $0.03 per GB-month; metrics: $0.30 per custom metric a month (first 10,000), EMF
#   metrics are log lines, billed as ingestion too; alarms: $0.10 per standard-resolution alarm
#   metric a month; dashboards: $3.00 per dashboard a month),
#   https://aws.amazon.com/xray/pricing/ ($5.00 per 1M traces recorded, $0.50 per 1M traces
#   retrieved or scanned), https://aws.amazon.com/secrets-manager/pricing/ ($0.40 per secret a
#   month, $0.05 per 10,000 API calls), https://aws.amazon.com/kms/pricing/ ($1.00 per customer
#   managed key a month; the alarm topic's few requests are within the free 20,000 a month).
# Free tiers are ignored. Checked against third-party mirrors of the Lambda arm64 rate
# (1333340e-10 per GB-s) and DynamoDB's on-demand rates; update here when AWS changes them.
PRICES_DATE = "2026-11-22"
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
HTTP_API_REQUEST = 1.00 / 1e6
SQS_REQUEST = 0.40 / 1e6
DYNAMODB_WRU = 0.625 / 1e6
DYNAMODB_RRU = 0.125 / 1e6
DYNAMODB_STORAGE_GB_MONTH = 0.25
DYNAMODB_PITR_GB_MONTH = 0.20
DYNAMODB_ITEM_OVERHEAD = 100  # bytes DynamoDB adds to each item's (and each index entry's) billed size
LOGS_GB = 0.50
LOGS_ARCHIVE_GB_MONTH = 0.03
CUSTOM_METRIC_MONTH = 0.30
ALARM_METRIC_MONTH = 0.10
DASHBOARD_MONTH = 3.00
XRAY_TRACE = 5.00 / 1e6
KMS_KEY_MONTH = 1.00
SECRET_MONTH = 0.40
SECRET_CALL = 0.05 / 10_000
# Provisioned capacity (https://aws.amazon.com/dynamodb/pricing/provisioned/, same date): $0.00065
# per WCU-hour and $0.00013 per RCU-hour. A unit used at the auto scaling target utilisation
# carries 3600 x utilisation requests an hour; the template uses on-demand, so this is a what-if
# for a steady load (the pipeline's load is steady: Clay caps it at 10 rows/s per table).
DYNAMODB_WCU_HOUR = 0.00065
DYNAMODB_RCU_HOUR = 0.00013
PROVISIONED_UTILISATION = 0.7
DEFAULTS_TARGET = 6.0  # USD per million leads, template defaults, the whole bill (issue 23)
HIGH_VOLUME_TARGET = 4.0  # USD per million leads, the documented high-volume profile
BULK_LEADS_PER_REQUEST = 100  # POST /leads with {"leads": [...]}: the documented path for integrations
BIG_ROW_EXTRA_KB = 1.5  # what-if: enriched rows of about 2 KB instead of the run's ~0.5 KB
HOURS_PER_MONTH = 730
SMALL_VOLUME = 1_000_000  # leads a month: the fixed costs spread over a small user's volume too

# -- assumptions for the duration model ---------------------------------------------------------
FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1769 MB, proportionally less below
ASSUMED_AWS_ROUND_TRIP = {"dynamodb": 0.006, "sqs": 0.010, "secretsmanager": 0.020}  # seconds, in-region
ASSUMED_HTTP_ROUND_TRIP = {"clay": 0.300, "hubspot": 0.400, "webhook": 0.200}  # seconds, over the internet
# Lambda CPU: the handlers' CPU in the run is expressed in units of a fixed calibration workload run in the
# same process before and after the drive (calibration_cpu), times what that workload took on the machine the
# figures were first taken on. A busy or slower host stretches both alike, so the bill does not follow the host.
CALIBRATION_SECONDS = 0.020  # calibration_cpu() on the 2-core Xeon of bench/RESULTS.md, 2026-12-06
# Cold starts (the INIT phase is billed): each function keeps this many instances at the reference rate (the
# sender SenderMaxConcurrency), each replaced this often (Lambda does not document an environment's lifetime;
# hours is what is commonly observed), each init taking the built artifact's CPU (bench/cold_start.py).
ASSUMED_ENVIRONMENT_HOURS = 2.0
INIT_CPU_SECONDS = 0.40  # import + clients at one full vCPU, the slowest function (bench/cold_start.py, rounded up)
# X-Ray with Tracing Active: Lambda samples each function's invocations with X-Ray's default rule, 1 a second
# then 5 % (Lambda does not apply custom sampling rules; HTTP APIs do not trace), modelled per function.
XRAY_RESERVOIR_PER_SECOND = 1.0
# Salesforce (--crm): a REST call to the org's My Domain (assumed, like the other round trips); the client
# credentials token lasts the org's session timeout, two hours by default (adapters/salesforce.py), and each router
# instance fetches its own: at most RouterFunction's MaximumConcurrency instances, each fetching one per session
# and repeating the one call the expired session refused.
ASSUMED_SALESFORCE_ROUND_TRIP = 0.300
SALESFORCE_SESSION_HOURS = 2.0
# Salesforce Developer Limits and Allocations Quick Reference, "API Request Limits and Allocations"
# (developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/
#   salesforce-app-limits-platform-api.html):
# the org's total API requests in a rolling 24 hours are 15,000 for a Developer Edition org, and 100,000 plus,
# per license, 1,000 (Enterprise and Professional with API access, a Salesforce license) or 5,000 (Unlimited and
# Performance) for a production org; calls past it are refused with REQUEST_LIMIT_EXCEEDED until usage drops.
SALESFORCE_ALLOCATIONS = (
    ("Developer Edition", 15_000),
    ("Enterprise Edition, 50 Salesforce licenses", 100_000 + 50 * 1_000),
    ("Enterprise Edition, 200 Salesforce licenses", 100_000 + 200 * 1_000),
    ("Unlimited Edition, 50 Salesforce licenses", 100_000 + 50 * 5_000),
)
XRAY_FIXED_RATE = 0.05
# Idle queue polling: Lambda long-polls (20 s) each SQS event source with about five pollers.
SQS_IDLE_POLLERS = 5
SQS_IDLE_REQUESTS_PER_POLLER_MINUTE = 3
SECRET_CACHE_SECONDS = 300  # config.py's cache: one GetSecretValue per warm instance per 5 minutes
# Lambda's platform log lines with LogFormat JSON, as documented (monitoring-cloudwatchlogs-logformat):
# platform.start and platform.report per invocation (SystemLogLevel INFO; WARN drops them).
PLATFORM_LINES = (
    '{"time":"2026-12-06T10:00:00.000Z","type":"platform.start","record":{"requestId":'
    '"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","version":"$LATEST"}}',
    '{"time":"2026-12-06T10:00:00.025Z","type":"platform.report","record":{"requestId":'
    '"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","metrics":{"durationMs":24.81,"billedDurationMs":25,'
    '"memorySizeMB":128,"maxMemoryUsedMB":62},"tracing":{"spanId":"1b2c3d4e5f607182","type":"X-Amzn-Trace-Id",'
    '"value":"Root=1-6752cc1a-0bb7d2e63e4f1a2b3c4d5e6f;Parent=1b2c3d4e5f607182;Sampled=0"},"status":"success"}}',
)
LAMBDA_TRACE_HEADER = "Root=1-6752cc1a-0bb7d2e63e4f1a2b3c4d5e6f;Parent=1b2c3d4e5f607182;Sampled=0"
PLATFORM_LOG_BYTES = sum(len(line) + 1 for line in PLATFORM_LINES)
ACCESS_LOG_VALUES = {  # what HttpApi's access log format expands to for a typical callback
    "$context.requestId": "JjzJ1gLgoAMEV3Q=",
    "$context.identity.sourceIp": "203.0.113.10",
    "$context.routeKey": "POST /clay/callback",
    "$context.status": "200",
    "$context.responseLatency": "24",
    "$context.integrationErrorMessage": "-",
}

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
READ_OPERATIONS = frozenset({"GetItem"})
POLLER = "poller"  # the event source mapping's own ReceiveMessage / DeleteMessageBatch
SWEEPER = "StaleSweeperFunction"
INDEXED = {"sent_bucket": ("SentByHour", ("pk", "sent_bucket", "sent_at", "leads"))}  # index key -> its projection
LEADS_PER_SWEEP = 36_000  # an hourly sweep at the template's 10 rows/s to Clay
SALESFORCE_KINDS = ("token", "query", "upsert")  # SalesforceSim.calls
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
    """A write-only stream that counts bytes (what CloudWatch Logs would ingest): log lines and EMF metric lines
    apart, by the function running (`current`), and the distinct custom metrics the EMF lines publish."""

    def __init__(self) -> None:
        self.bytes = 0
        self.metric_bytes = 0
        self.current = POLLER
        self.by_function: Counter[str] = Counter()
        self.metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()

    def write(self, text: str) -> int:
        size = len(text.encode())
        if '"_aws"' in text:
            self.metric_bytes += size
            self._publish(text)
        else:
            self.bytes += size
            self.by_function[self.current] += size
        return len(text)

    def _publish(self, text: str) -> None:
        document = json.loads(text)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = tuple((name, str(document.get(name))) for name in dimension_set)
                for metric in directive["Metrics"]:
                    self.metrics.add((directive["Namespace"], metric["Name"], dimensions))

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def flush(self) -> None:
        return None


def calibration_cpu(rounds: int = 5) -> float:
    """CPU seconds of a fixed workload (JSON, hashing, dicts: the handlers' kind of work), median of `rounds`."""
    lead = {"email": "jane@acme.com", "first_name": "Jane", "company": "Acme", "icp_score": 85, "tags": ["a", "b"]}
    samples = []
    for _ in range(rounds):
        started = time.thread_time()
        for number in range(3000):
            text = json.dumps({**lead, "n": number}, sort_keys=True)
            hashlib.sha256(text.encode()).hexdigest()
            json.loads(text)
        samples.append(time.thread_time() - started)
    return sorted(samples)[rounds // 2]


def stored_items(reader: Any, table_names: dict[str, str]) -> list[tuple[str, str, int, float | None]]:
    """(table, key prefix, billed bytes, days until its TTL or None) of every item and index entry in the tables."""
    now = time.time()
    found = []
    for table_id, name in table_names.items():
        for page in reader.get_paginator("scan").paginate(TableName=name):
            for raw in page["Items"]:
                item = from_item(raw)
                key = str(item.get("pk") or item.get("lead_key") or "")
                prefix = key.split("#", 1)[0] + "#" if "#" in key else "<lead>"
                expires = item.get("expires_at")
                days = (float(expires) - now) / 86400 if expires is not None else None
                found.append((table_id, prefix, item_size(item) + DYNAMODB_ITEM_OVERHEAD, days))
                for attribute, (index, projected) in INDEXED.items():
                    if attribute in item:
                        entry = {field: item[field] for field in projected if field in item}
                        found.append((f"{table_id} {index}", prefix, item_size(entry) + DYNAMODB_ITEM_OVERHEAD, days))
    return found


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
    metric_bytes: int = 0  # EMF lines (metrics on, as deployed)
    metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=set)  # distinct custom metrics
    log_bytes_by_function: dict[str, int] = field(default_factory=dict)  # log line bytes (EMF apart)
    calibration: float = CALIBRATION_SECONDS  # calibration_cpu() around the run
    stored: list[tuple[str, str, int, float | None]] = field(default_factory=list)  # see stored_items
    leads_stored: int = 0  # leads whose items `stored` holds (the warm-up's too)
    salesforce_calls: Counter[str] = field(default_factory=Counter)  # --crm: token, query, upsert in the run
    salesforce_share: float = 0.0  # leads upserted to Salesforce / leads


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


def salesforce_settings(org: SalesforceSim | None, crm: str) -> dict[str, str]:
    """The router's settings for `crm` (hubspot: none; salesforce: HubSpot's token left out; both)."""
    if org is None:
        return {}
    hubspot_off = {"HUBSPOT_ACCESS_TOKEN": ""} if crm == "salesforce" else {}
    return {"SALESFORCE_LOGIN_URL": org.url, **org.secrets(), **hubspot_off}


def salesforce_counts(org: SalesforceSim | None) -> Counter[str]:
    """The simulator's requests so far by kind, and the records it wrote."""
    if org is None:
        return Counter()
    return Counter({kind: len(org.calls(kind)) for kind in SALESFORCE_KINDS} | {"writes": len(org.writes())})


def measure(
    leads: int,
    pipeline: Pipeline | None = None,
    drive: Drive = drive_table,
    meter: Meter | None = None,
    crm: str = "hubspot",
) -> Measured:
    """crm salesforce or both: the router upserts to the Salesforce simulator too (HubSpot off with salesforce)."""
    from clay_pipeline.observability import logger

    org = SalesforceSim() if crm != "hubspot" else None
    if org is not None:
        org.start()
    # the template's log level: its bytes count
    settings = salesforce_settings(org, crm)
    pipeline = (pipeline or Pipeline(prefix="bench-cost", log_level="INFO", extra_secrets=settings)).start()
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"  # metrics on, as deployed: their EMF lines are logs too
    os.environ["_X_AMZN_TRACE_ID"] = LAMBDA_TRACE_HEADER  # Lambda sets it (sampled or not); Powertools logs it
    sink = CountingSink()
    handler = logger.registered_handler
    previous = handler.setStream(sink)  # type: ignore[attr-defined]
    try:
        # Cold starts are a per-instance cost (bench/cold_start.py), not a per-lead one: warm every function first.
        with contextlib.redirect_stdout(sink):
            drive(pipeline, WARM_UP_LEADS, "warm-up")
        pipeline.usage.clear()
        pipeline.web.clear()
        sink.reset()
        salesforce_before = salesforce_counts(org)  # the warm-up's calls (each instance's token) left out
        meter = (meter or Meter()).install()
        calibration = [calibration_cpu()]
        with contextlib.redirect_stdout(sink):
            original_invoke = pipeline.invoke

            def invoke(logical_id: str, event: dict[str, Any]) -> Any:
                meter.current = sink.current = logical_id
                try:
                    return original_invoke(logical_id, event)
                finally:
                    meter.current = sink.current = POLLER

            pipeline.invoke = invoke  # type: ignore[method-assign]
            http = drive(pipeline, leads, "cost")
            sweep = measure_sweep(pipeline, meter) if drive is drive_table else {}  # table path's batch records
        calibration.append(calibration_cpu())
        salesforce = salesforce_counts(org)
        salesforce.subtract(salesforce_before)
        tables = {name: pipeline.stack.table_names[name] for name in ("StateTable", "LeadsTable")}
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
            metric_bytes=sink.metric_bytes,
            metrics=sink.metrics,
            log_bytes_by_function=dict(sink.by_function),
            calibration=sum(calibration) / len(calibration),
            stored=stored_items(meter._reader, tables),
            leads_stored=leads + WARM_UP_LEADS,
            salesforce_calls=Counter({kind: salesforce[kind] for kind in SALESFORCE_KINDS}),
            salesforce_share=salesforce["writes"] / leads,
        )
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
        pipeline.stop()
        if org is not None:
            org.stop()


def measure_sweep(pipeline: Pipeline, meter: Meter) -> dict[str, float]:
    """One stale sweep over the whole run, a day later by its clock: its read units and what it read."""
    from clay_pipeline.config import SweeperSettings
    from clay_pipeline.services.sweeper import HOUR, StaleSweeper

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
    tracing_active: bool = False  # TracingMode=Active: Lambda samples every function's invocations for X-Ray
    platform_logs: bool = True  # SystemLogLevel INFO: Lambda's platform.start / platform.report lines per invocation
    lead_retention_days: int = 90  # LeadRetentionDays: how long a lead's item is stored (0: kept, priced per year)
    log_retention_days: int = 30  # LogRetentionDays
    function_log_share: float = 1.0  # what-if: this share of the measured function log lines (metrics kept)
    # what-if: write units per lead added to the measured ones (the lever table's "before" of a write taken out)
    extra_wru: float = 0.0


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
    init_gb_seconds = 0.0
    per_function: dict[str, float] = {}
    leads_per_hour = s.send_rate * 3600
    for name in m.invocations:
        spec = functions()[name]
        memory = s.memory_mb or spec.memory
        share = max(1.0, FULL_VCPU_MB / memory)
        # CPU in calibration units (CALIBRATION_SECONDS): the same on a quiet and a busy host
        cpu = m.cpu_seconds[name] / m.calibration * CALIBRATION_SECONDS / m.leads * share
        instances = s.sender_concurrency if name == "SenderFunction" else 1
        init_gb_seconds += (
            instances / ASSUMED_ENVIRONMENT_HOURS / leads_per_hour * INIT_CPU_SECONDS * share * memory / 1024
        )
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
        http_waits += [salesforce_wait(m, s)] if name == "RouterFunction" else []
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
    api_requests = sum(invocations.get(name, 0) for name in HTTP_FUNCTIONS)
    return {
        "lambda_requests": sum(invocations.values()),
        "gb_seconds": gb_seconds,
        "init_gb_seconds": init_gb_seconds,
        **{f"gb_seconds:{name}": value for name, value in per_function.items()},
        "api_requests": api_requests,
        "sqs_requests": sqs,
        "wru": sum(units_by_write(m.write_sizes, s.extra_row_kb * 1024).values()) / m.leads + s.extra_wru,
        "rru": sum(m.rru.values()) / m.leads + sweep_per_lead(m),
        **observability_units(m, s, invocations, api_requests),
        "storage_gb_months": storage_gb_months(m, s),
        "dynamodb_provisioned": float(s.dynamodb_provisioned),
    }


def salesforce_wait(m: Measured, s: Scenario) -> float:
    """The router's wait per lead on Salesforce (--crm): a query, then an upsert, per batch holding a lead of it."""
    size = min(s.batch_size, SALESFORCE_MAX_RECORDS)
    return 2 * (1 - (1 - m.salesforce_share) ** size) / size * ASSUMED_SALESFORCE_ROUND_TRIP


def observability_units(
    m: Measured, s: Scenario, invocations: dict[str, float], api_requests: float
) -> dict[str, float]:
    """Log bytes (function lines, EMF metric lines, platform and access lines), their archive, X-Ray traces per lead."""
    lambda_requests = sum(invocations.values())
    # EMF lines are written once per invocation: they scale with invocations, the log lines with leads.
    metric_bytes = m.metric_bytes / m.leads * lambda_requests / max(1e-9, measured_requests(m))
    # The intake logs per request (bulk requests carry many leads); the others per lead or per batch, as measured.
    intake_share = invocations.get("IntakeFunction", 0) * m.leads / max(1, m.invocations.get("IntakeFunction", 0))
    lines = sum(
        size * (intake_share if name == "IntakeFunction" else 1) for name, size in m.log_bytes_by_function.items()
    )
    function_log_bytes = lines / m.leads * s.function_log_share + metric_bytes
    platform_bytes = PLATFORM_LOG_BYTES * lambda_requests if s.platform_logs else 0.0
    access_bytes = access_log_bytes() * api_requests
    traces = 0.0
    if s.tracing_active:
        for per_lead_invocations in invocations.values():
            rate = per_lead_invocations * s.send_rate  # invocations a second at the reference rate
            reservoir = min(rate, XRAY_RESERVOIR_PER_SECOND)
            traces += (reservoir + XRAY_FIXED_RATE * (rate - reservoir)) / s.send_rate
    log_bytes = function_log_bytes + platform_bytes + access_bytes
    return {
        "function_log_bytes": function_log_bytes,
        "metric_bytes": metric_bytes,
        "platform_log_bytes": platform_bytes,
        "access_log_bytes": access_bytes,
        "log_archive_gb_months": log_bytes / 1e9 * s.log_retention_days / 30,
        "xray_traces": traces,
    }


def measured_requests(m: Measured) -> float:
    """Lambda invocations per lead in the measured run (one lead per intake request)."""
    return sum(m.invocations.values()) / m.leads


def access_log_bytes() -> int:
    """One HTTP API access log line: the template's format with a typical callback's values."""
    api = resources_of_type("AWS::Serverless::HttpApi")["HttpApi"]["Properties"]
    line = str(api["AccessLogSettings"]["Format"])
    for variable, value in sorted(ACCESS_LOG_VALUES.items(), key=lambda item: -len(item[0])):
        line = line.replace(variable, value)
    return len(line) + 1


def storage_gb_months(m: Measured, s: Scenario) -> float:
    """GB-months of table storage per lead: each item (and index entry) for as long as it is kept.

    Items with a TTL are kept until it (DynamoDB deletes expired items within days, not counted); a lead's
    LeadsTable item for LeadRetentionDays, or a year when kept for good (0: the figure grows by a twelfth
    each month after). Items shared by all leads (pool, pacing, checkpoints) are per table, not per lead.
    """
    retention = s.lead_retention_days or 365
    total = 0.0
    for table, prefix, size, days in m.stored:
        if table == "LeadsTable":
            kept = retention
        elif days is not None and prefix in ("dedupe#", "sent#", "run#", "run-done#", "run-webhook#"):
            kept = max(0.0, days)
        else:
            continue
        total += size / 1e9 * kept / 30
    return total / m.leads_stored


@dataclass(frozen=True)
class LineItem:
    """One line of the bill: what is counted, how many per lead, at what unit price."""

    name: str
    unit: str
    per_lead: float
    price: float  # USD per unit

    @property
    def per_million(self) -> float:
        return self.per_lead * self.price * 1e6


def bill(units: dict[str, float]) -> list[LineItem]:
    """The variable bill, line by line, for one scenario's units per lead."""
    wru_price, rru_price = DYNAMODB_WRU, DYNAMODB_RRU
    if units["dynamodb_provisioned"]:
        wru_price = DYNAMODB_WCU_HOUR / (3600 * PROVISIONED_UTILISATION)
        rru_price = DYNAMODB_RCU_HOUR / (3600 * PROVISIONED_UTILISATION)
    return [
        LineItem("Lambda requests", "requests", units["lambda_requests"], LAMBDA_REQUEST),
        LineItem("Lambda duration (modelled)", "GB-s", units["gb_seconds"], LAMBDA_GB_SECOND),
        LineItem("Lambda init (cold starts, modelled)", "GB-s", units["init_gb_seconds"], LAMBDA_GB_SECOND),
        LineItem("HTTP API requests", "requests", units["api_requests"], HTTP_API_REQUEST),
        LineItem("SQS requests", "requests", units["sqs_requests"], SQS_REQUEST),
        LineItem("DynamoDB writes", "WRU", units["wru"], wru_price),
        LineItem("DynamoDB reads", "RRU", units["rru"], rru_price),
        LineItem("DynamoDB storage", "GB-months", units["storage_gb_months"], DYNAMODB_STORAGE_GB_MONTH),
        LineItem("DynamoDB PITR backups", "GB-months", units["storage_gb_months"], DYNAMODB_PITR_GB_MONTH),
        LineItem("Logs: function lines", "bytes", units["function_log_bytes"] - units["metric_bytes"], LOGS_GB / 1e9),
        LineItem("Logs: EMF metric lines", "bytes", units["metric_bytes"], LOGS_GB / 1e9),
        LineItem("Logs: Lambda platform lines", "bytes", units["platform_log_bytes"], LOGS_GB / 1e9),
        LineItem("Logs: HTTP API access lines", "bytes", units["access_log_bytes"], LOGS_GB / 1e9),
        LineItem(
            "Logs: archive (LogRetentionDays)", "GB-months", units["log_archive_gb_months"], LOGS_ARCHIVE_GB_MONTH
        ),
        LineItem("X-Ray traces recorded", "traces", units["xray_traces"], XRAY_TRACE),
    ]


def fixed_monthly(m: Measured, s: Scenario) -> list[tuple[str, str, float]]:
    """(item, what is counted, USD a month) of what the stack costs whatever its volume."""
    alarms = resources_of_type("AWS::CloudWatch::Alarm")
    alarm_metrics = sum(
        len([q for q in alarm["Properties"].get("Metrics", []) if "MetricStat" in q]) or 1
        for alarm in alarms.values()
        if alarm.get("Condition") is None or (alarm.get("Condition") == "IsProvisioned" and s.dynamodb_provisioned)
    )
    keys = resources_of_type("AWS::KMS::Key")
    queues = [name for name in functions() if queue_source(name)]
    # The functions that read a secret, each one warm instance but the sender (SenderMaxConcurrency of them);
    # SecretSeedFunction runs once per deploy that changes the secrets.
    readers = [name for name, spec in functions().items() if "CONFIG_SECRET_ID" in spec.environment]
    instances = len(readers) - 1 + s.sender_concurrency
    other_path = "UseTablePath" if s.routine else "UseRoutines"  # one secret per concern, some per path only
    secrets = [
        name
        for name, res in resources_of_type("AWS::SecretsManager::Secret").items()
        if res.get("Condition") != other_path
    ]
    secret_calls = instances * 3600 / SECRET_CACHE_SECONDS * HOURS_PER_MONTH
    idle_polls = len(queues) * SQS_IDLE_POLLERS * SQS_IDLE_REQUESTS_PER_POLLER_MINUTE * 60 * HOURS_PER_MONTH
    rows = [
        (
            "CloudWatch custom metrics",
            f"{len(m.metrics)} metric and dimension sets the run published",
            len(m.metrics) * CUSTOM_METRIC_MONTH,
        ),
        ("CloudWatch alarms", f"{len(alarms)} alarms, {alarm_metrics} metrics", alarm_metrics * ALARM_METRIC_MONTH),
        ("CloudWatch dashboard", "1", DASHBOARD_MONTH),
        ("KMS customer managed keys", f"{len(keys)} (the alarm topic's)", len(keys) * KMS_KEY_MONTH),
        (
            "Secrets Manager",
            f"{len(secrets)} secrets (one per concern), {secret_calls:,.0f} GetSecretValue"
            " (one per warm instance per 5 min)",
            len(secrets) * SECRET_MONTH + secret_calls * SECRET_CALL,
        ),
        (
            "SQS idle polling",
            f"{len(queues)} event sources, {idle_polls:,.0f} empty receives",
            idle_polls * SQS_REQUEST,
        ),
    ]
    if s.dynamodb_provisioned:  # the floor auto scaling never goes under, whatever the volume
        floor_wcu, floor_rcu = 2 * 5 + 2, 2 * 2 + 5  # TableWriteCapacityMin x 2 tables + SentByHour's, reads alike
        rows.append(
            (
                "DynamoDB provisioned floor (below the reference volume)",
                f"{floor_wcu} WCU, {floor_rcu} RCU",
                (floor_wcu * DYNAMODB_WCU_HOUR + floor_rcu * DYNAMODB_RCU_HOUR) * HOURS_PER_MONTH,
            )
        )
    return rows


def queue_source(logical_id: str) -> bool:
    return logical_id in ("SenderFunction", "RouterFunction", "RunCollectorFunction")


def reference_volume(s: Scenario) -> float:
    """Leads a month at the configured rate around the clock: the volume the fixed costs are spread over."""
    return s.send_rate * 3600 * HOURS_PER_MONTH


def total_per_million(m: Measured, s: Scenario, volume: float | None = None) -> float:
    """The whole bill per million leads: the variable lines plus the fixed monthly costs spread over `volume`."""
    volume = volume or reference_volume(s)
    variable = sum(item.per_million for item in bill(per_lead(m, s)))
    fixed = sum(cost for _, _, cost in fixed_monthly(m, s))
    if s.dynamodb_provisioned and volume < reference_volume(s):
        # under the floor's volume the provisioned capacity is the floor, not the per-request what-if
        items = bill(per_lead(m, s))
        variable -= sum(
            item.per_million
            for item in items
            if item.name.startswith("DynamoDB w") or item.name.startswith("DynamoDB r")
        )
    else:
        fixed -= sum(cost for name, _, cost in fixed_monthly(m, s) if name.startswith("DynamoDB provisioned floor"))
    return variable + fixed / volume * 1e6


def stale_lookup_note(m: Measured, writes: Counter[tuple[str, str, str, str]]) -> str:
    """What the stale-lead lookup costs: the sender's batch records, and one sweep per lead and per hourly run."""
    sweep = m.sweep
    per_lead_rru = sweep_per_lead(m)
    hourly_rru = per_lead_rru * LEADS_PER_SWEEP + sweep["fixed_rru"]
    sent_units = sum(units for (_, _, _, prefix), units in writes.items() if prefix == "sent#")
    return (
        f"stale-lead lookup (services/sweeper.py): the sender's batch records cost {sent_units / m.leads:.2f} WRU "
        "per lead "
        "(the record and its SentByHour index entry, one each per batch); one sweep over this run's "
        f"{sweep['leads']:.0f} leads read {sweep['batches']:.0f} batch records with {sweep['queries']:.0f} "
        f"Query and {sweep['batch_gets']:.0f} BatchGetItem calls: {sweep['rru']:.1f} RRU, of which "
        f"{sweep['fixed_rru']:g} per run (checkpoint, pause switch) and {per_lead_rru:.3f} per lead swept "
        f"(${per_lead_rru * DYNAMODB_RRU * 1e6:.3f} per million leads); an hourly run at 10 leads/s "
        f"({LEADS_PER_SWEEP:,} leads) reads about {hourly_rru:,.0f} RRU (${hourly_rru * DYNAMODB_RRU:.4f}) and "
        f"writes {sweep['wru']:.0f} WRU (the checkpoint) plus one per stale lead; it never reads the rest of the "
        "table"
    )


def router_instances() -> int:
    """RouterFunction's most concurrent instances: its SQS event source's MaximumConcurrency."""
    return next(
        int((event["Properties"].get("ScalingConfig") or {}).get("MaximumConcurrency", 1000))
        for event in functions()["RouterFunction"].events.values()
        if event["Type"] == "SQS"
    )


def salesforce_calls_note(m: Measured, s: Scenario) -> str:
    """Salesforce's API calls per 1,000 leads and per day at Clay's rate, against documented org allocations.

    They cost no AWS money; they count against the org's rolling 24-hour API request allocation, which every
    integration of the org shares. Queries and upserts are counted in the run (the router's batches as deployed);
    token fetches, and the call an expired session refuses before each, are modelled: each router instance fetches
    one per session (SALESFORCE_SESSION_HOURS), at most MaximumConcurrency instances. The allocation page covers the
    SOAP and REST APIs; it does not say whether the OAuth token endpoint counts: counted here, to be safe."""
    from harness import table

    leads_per_day = s.send_rate * 86_400
    instances = router_instances()
    sessions_per_day = instances * 24 / SALESFORCE_SESSION_HOURS
    per_lead = {kind: m.salesforce_calls[kind] / m.leads for kind in ("query", "upsert")}
    per_lead["token (modelled)"] = sessions_per_day / leads_per_day
    per_lead["refused by an expired session (modelled)"] = sessions_per_day / leads_per_day
    total = sum(per_lead.values())
    rows = [[kind, f"{value * 1000:.1f}", f"{value * leads_per_day:,.0f}"] for kind, value in per_lead.items()]
    rows.append(["total", f"{total * 1000:.1f}", f"{total * leads_per_day:,.0f}"])
    shares = [
        [name, f"{allocation:,}", f"{total * leads_per_day / allocation:.0%}", f"{allocation / total:,.0f}"]
        for name, allocation in SALESFORCE_ALLOCATIONS
    ]
    return (
        f"Salesforce API calls (no AWS charge; they count against the org's 24-hour API request allocation): "
        f"{m.salesforce_share:.0%} of the run's leads upserted, the router's batches of {s.batch_size} (RoutingQueue's "
        f"BatchSize: a query and an upsert per batch holding a Salesforce lead); a day at Clay's rate is "
        f"{leads_per_day:,.0f} leads ({s.send_rate:g}/s all day), {instances} router instances at most:\n\n"
        + table(["call", "per 1,000 leads", "a day at Clay's rate"], rows)
        + '\n\nshare of documented allocations (Salesforce\'s "API Request Limits and Allocations": 15,000 for a '
        "Developer Edition org, 100,000 + 1,000 per Salesforce license in Enterprise, + 5,000 in Unlimited) a day "
        "at Clay's rate uses, and the leads a day that allocation would carry if Salesforce had it to itself:\n\n"
        + table(["org", "calls per 24 h", "share used", "leads a day it carries"], shares)
    )


def template_scenario(mode: str, parameters: dict[str, str] | None = None) -> Scenario:
    """The template's defaults (with `parameters` over them), leads in bulk intake requests."""
    values = {**parameter_defaults(), **(parameters or {})}
    routine = mode == "routine"
    return Scenario(
        "template defaults, leads in bulk requests" + (", routine path" if routine else ""),
        sender_concurrency=int(values["SenderMaxConcurrency"]),
        send_rate=float(values["ClaySendRatePerSecond"]),
        sender_batch_size=sqs_batch_size("SenderFunction", {"ClayEnrichmentPath": mode}),
        routine=routine,
        leads_per_intake_request=BULK_LEADS_PER_REQUEST,
        tracing_active=values["TracingMode"] == "Active",
        platform_logs=values["SystemLogLevel"] != "WARN",
        lead_retention_days=int(values["LeadRetentionDays"]),
        log_retention_days=int(values["LogRetentionDays"]),
    )


def run(leads: int = 200, mode: str = "table", crm: str = "hubspot", measured: Measured | None = None) -> Section:
    """The bill of `measured`, else of a run of the table path measured here. mode routine
    (ClayEnrichmentPath=routine) is measured by routine_cost.py (runs of 100, webhook and poller), which
    passes its measurement in. crm salesforce or both: Salesforce on in the router, its API calls in a note
    (salesforce_calls_note)."""
    routine = mode == "routine"
    if measured is None and routine:
        raise ValueError("the routine path is measured by routine_cost.py: python bench/routine_cost.py")
    m = measure(leads, crm=crm) if measured is None else measured
    current = template_scenario(mode)
    single = replace(
        current, name="template defaults, one lead per intake request (a web form)", leads_per_intake_request=1
    )
    high_volume = replace(
        current,
        name="high-volume profile: TableBillingMode=PROVISIONED, FunctionMemorySize=128, LeadRetentionDays=30, "
        "SystemLogLevel=WARN, bulk intake, steady load",
        memory_mb=128,
        dynamodb_provisioned=True,
        steady_load=True,  # the steady 10 rows/s that provisioned capacity is sized for
        lead_retention_days=30,
        platform_logs=False,
    )
    units = per_lead(m, current)
    items = bill(units)
    variable = sum(item.per_million for item in items)
    fixed = fixed_monthly(m, current)
    fixed_total = sum(cost for _, _, cost in fixed)
    volume = reference_volume(current)
    total = total_per_million(m, current)
    rows: list[list[Any]] = [
        [item.name, item.unit, f"{item.per_lead:.4g}", f"{item.price:.4g}", f"{item.per_million:.3f}"] for item in items
    ]
    rows += [
        ["variable, per lead", "", "", "", f"{variable:.2f}"],
        [
            f"fixed, {fixed_total:.2f} USD a month over {volume / 1e6:.1f}M leads (the configured rate, all month)",
            "",
            "",
            "",
            f"{fixed_total / volume * 1e6:.3f}",
        ],
        ["total (Clay excluded)", "", "", "", f"{total:.2f}"],
        [
            f"total at {SMALL_VOLUME / 1e6:g}M leads a month (the fixed costs over fewer leads)",
            "",
            "",
            "",
            f"{total_per_million(m, current, SMALL_VOLUME):.2f}",
        ],
    ]
    per_function = {
        name: ", ".join(
            f"{service}:{operation} {count / m.leads:.2f}"
            for (function, service, operation), count in sorted(m.calls.items())
            if function == name
        )
        + (f"; WRU {m.wru[name] / m.leads:.2f}" if m.wru.get(name) else "")
        + (f"; RRU {m.rru[name] / m.leads:.2f}" if m.rru.get(name) else "")
        + (
            f"; GB-s {units[f'gb_seconds:{name}']:.4f} (${units[f'gb_seconds:{name}'] * LAMBDA_GB_SECOND * 1e6:.2f}/M)"
            if f"gb_seconds:{name}" in units
            else ""
        )
        for name in (*m.invocations, POLLER)
    }
    alternatives = [
        current,
        single,
        high_volume,
        Scenario("batch 1", batch_size=1),
        Scenario("batch 100 (needs a batching window)", batch_size=100),
        Scenario("memory 128 MB", memory_mb=128),
        Scenario("memory 512 MB", memory_mb=512),
        Scenario(f"DynamoDB provisioned, {PROVISIONED_UTILISATION:.0%} utilised", dynamodb_provisioned=True),
        Scenario("enriched rows 1.5 KB larger (a wide Clay table)", extra_row_kb=BIG_ROW_EXTRA_KB),
    ]
    # Every what-if keeps the path, the template's sender batch and observability settings; on the table path
    # the batch what-ifs change the sender's batch with the router's (the routine path's sender always takes 100).
    alternatives = [
        alternatives[0],
        alternatives[1],
        alternatives[2],
        *[
            replace(
                scenario,
                routine=routine,
                tracing_active=current.tracing_active,
                platform_logs=current.platform_logs,
                lead_retention_days=current.lead_retention_days,
                log_retention_days=current.log_retention_days,
                send_rate=current.send_rate,
                sender_concurrency=current.sender_concurrency,
                sender_batch_size=scenario.batch_size
                if scenario.name.startswith("batch ") and not routine
                else current.sender_batch_size,
            )
            for scenario in alternatives[3:]
        ],
    ]
    # The what-ifs change one thing from the measured run (one lead per intake request) unless they say so.
    alternative_rows = []
    totals: dict[str, float] = {}
    for scenario in alternatives:
        scenario_units = per_lead(m, scenario)
        lines = {item.name: item.per_million for item in bill(scenario_units)}
        totals[scenario.name] = total_per_million(m, scenario)
        alternative_rows.append(
            [
                scenario.name,
                f"{scenario_units['lambda_requests']:.2f}",
                f"{scenario_units['gb_seconds']:.4f}",
                f"{scenario_units['sqs_requests']:.2f}",
                f"{sum(v for k, v in lines.items() if k.startswith('Lambda')):.2f}",
                f"{lines['DynamoDB writes'] + lines['DynamoDB reads']:.2f}",
                f"{totals[scenario.name]:.2f}",
            ]
        )
    lever_rows = lever_table(m, current)
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
    log_lines = ", ".join(
        f"{name} {m.log_bytes_by_function.get(name, 0) / m.leads:.0f}" for name in (*m.invocations, POLLER)
    )
    lead_sizes = [row[2] for row in m.stored if row[0] == "LeadsTable"]
    notes = [stale_lookup_note(m, writes)] if m.sweep else []
    notes += [salesforce_calls_note(m, current)] if crm != "hubspot" and not routine else []
    notes += [
        floor_note(m, [current, high_volume]),
        "fixed monthly costs, spread over the leads of the month:\n\n"
        + table(["item", "counted", "USD a month"], [[name, what, f"{cost:.2f}"] for name, what, cost in fixed]),
        "levers, each measured or modelled on this run with only it changed (before: as the template was before "
        "issue 23):\n\n" + table(["lever", "before", "after", "USD per million, before", "after"], lever_rows),
        f"logs per lead, measured from what the handlers wrote with metrics on: {m.log_bytes / m.leads:.0f} B of log "
        f"lines and {m.metric_bytes / m.leads:.0f} B of EMF metric lines (one lead per request); by function, "
        f"bytes per lead: {log_lines}; platform lines {PLATFORM_LOG_BYTES} B per invocation (platform.start and "
        f"platform.report as Lambda documents them), access lines {access_log_bytes()} B per HTTP API request (the "
        "template's format)",
        f"X-Ray: {'Active' if current.tracing_active else 'PassThrough'} tracing; with Active, each function's "
        f"invocations at the reference rate are sampled {XRAY_RESERVOIR_PER_SECOND:g} a second, then "
        f"{XRAY_FIXED_RATE:.0%} (X-Ray's default rule, which Lambda applies; it does not apply custom sampling "
        "rules and HTTP APIs do not trace, so PassThrough records nothing unless a caller sampled)",
        f"storage: LeadsTable items for LeadRetentionDays ({current.lead_retention_days or 'kept; a year shown'}), "
        "StateTable dedupe marks and batch records until their TTL, each item's size + 100 B, the SentByHour index "
        f"entries too; {len(lead_sizes)} lead items, {sum(lead_sizes) / max(1, len(lead_sizes)):.0f} B on average",
        "DynamoDB writes per lead (WRU, billed by item size: one unit per started KB of the larger of the item "
        f"before and after the write; the run's LeadsTable items {sum(lead_items) / max(1, len(lead_items)):.2f} KB "
        f"on average, {max(lead_items, default=0):.2f} KB at most; the last column with every enriched row "
        f"{BIG_ROW_EXTRA_KB:g} KB larger, as a wide Clay table sends):\n\n"
        + table(["function", "table", "operation", "key", "WRU per lead", big_row], write_rows),
        f"{m.leads} leads, one per intake request, {enrichment}; invocations: "
        + ", ".join(f"{name} {count}" for name, count in m.invocations.items()),
        "calls per lead by function: " + " | ".join(f"{name}: {text}" for name, text in per_function.items() if text),
        f"prices: us-east-1 list prices as of {PRICES_DATE}, cited in bench/cost_model.py (the unit price column); "
        "provisioned what-if: $0.00065/WCU-hour, $0.00013/RCU-hour at "
        f"{PROVISIONED_UTILISATION:.0%} utilisation; free tiers ignored",
        f"duration model: handler CPU in units of a calibration workload (this run: {m.calibration * 1000:.1f} ms, "
        f"priced as {CALIBRATION_SECONDS * 1000:.0f} ms) x {FULL_VCPU_MB}/memory (vCPU share) + assumed round trips "
        f"{ASSUMED_AWS_ROUND_TRIP} and {ASSUMED_HTTP_ROUND_TRIP} s; sender at least SenderMaxConcurrency / rate "
        "per lead (a backlog: every sender instance waits its turn for a pacing slot, and the wait is billed), "
        f"1 / rate at a steady load; init: {INIT_CPU_SECONDS} s of vCPU per cold start, one instance per function "
        f"(the sender SenderMaxConcurrency) replaced every {ASSUMED_ENVIRONMENT_HOURS:g} h",
        "what batch size, memory, bulk intake and DynamoDB capacity mode change (whole bill, fixed costs at the "
        "reference volume):\n\n"
        + table(
            ["scenario", "Lambda req/lead", "GB-s/lead", "SQS req/lead", "Lambda $/M", "DynamoDB $/M", "total $/M"],
            alternative_rows,
        ),
    ]
    return Section(
        title=f"Cost model, the whole bill{', routine path' if routine else ''}"
        f"{'' if crm == 'hubspot' else f', CRM: {crm}'} (per lead, and USD per million leads; "
        f"prices of {PRICES_DATE})",
        headers=["item", "unit", "per lead", "USD per unit", "USD per million leads"],
        rows=rows,
        targets=[
            Target(
                f"template defaults at most {DEFAULTS_TARGET:g} USD per million leads, whole bill (leads in bulk "
                "requests, Clay excluded)",
                total <= DEFAULTS_TARGET,
                f"({total:.2f} USD; one lead per request: {totals[single.name]:.2f})",
            ),
            Target(
                f"high-volume profile at most {HIGH_VOLUME_TARGET:g} USD per million leads, whole bill",
                totals[high_volume.name] <= HIGH_VOLUME_TARGET,
                f"({totals[high_volume.name]:.2f} USD; at {SMALL_VOLUME / 1e6:g}M leads a month: "
                f"{total_per_million(m, high_volume, SMALL_VOLUME):.2f})",
            ),
        ],
        notes=notes,
    )


def lever_table(m: Measured, current: Scenario) -> list[list[str]]:
    """The whole bill's levers: each setting before issue 23 (or now) against the change, all else as now."""
    levers: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
        (
            "callback writes per lead (its completion in the router's claim)",
            "2: claim, completion (before)",
            {"extra_wru": 1.0},
            "1: claim",
            {},
        ),
        ("TracingMode", "Active (before)", {"tracing_active": True}, "PassThrough (default)", {}),
        ("LeadRetentionDays", "kept for good (before; a year shown)", {"lead_retention_days": 0}, "90 (default)", {}),
        ("LeadRetentionDays", "90 (default)", {}, "30 (high-volume profile)", {"lead_retention_days": 30}),
        ("SystemLogLevel", "INFO (default)", {}, "WARN (high-volume profile)", {"platform_logs": False}),
        ("LogRetentionDays", "30 (default)", {}, "7", {"log_retention_days": 7}),
    ]
    rows = []
    for name, before_label, before, after_label, after in levers:
        rows.append(
            [
                name,
                before_label,
                after_label,
                f"{total_per_million(m, replace(current, **before)):.2f}",
                f"{total_per_million(m, replace(current, **after)):.2f}",
            ]
        )
    return rows


def floor_note(m: Measured, scenarios: list[Scenario]) -> str:
    """What this architecture costs at the least, and so whether the targets can be met by settings and trims.

    The architecture (DESIGN.md): each Clay callback is an HTTP API request to a Lambda function that hands it
    to an SQS queue, and the router claims and records each lead on its item; the sender claims each lead
    before its POST to Clay. Those requests and writes stay whatever the settings: the floor keeps every line
    as measured but the function log lines and Lambda's platform lines (both set to none), then also without
    the lead's stored item (what the LeadsTable destination keeps for LeadRetentionDays, with PITR backups).
    """
    from harness import table

    rows = []
    floors: list[tuple[float, float]] = []  # (target, the floor without storage) per scenario
    for scenario, target in zip(scenarios, (DEFAULTS_TARGET, HIGH_VOLUME_TARGET), strict=True):
        quiet = replace(scenario, function_log_share=0.0, platform_logs=False)
        lines = {item.name: item.per_million for item in bill(per_lead(m, quiet))}
        bound = sum(lines[name] for name in ("HTTP API requests", "SQS requests", "DynamoDB writes", "DynamoDB reads"))
        floor = total_per_million(m, quiet)
        storage = lines["DynamoDB storage"] + lines["DynamoDB PITR backups"]
        floors.append((target, floor - storage))
        rows.append(
            [
                scenario.name.split(":")[0],
                f"{total_per_million(m, scenario):.2f}",
                f"{bound:.2f}",
                f"{floor:.2f}",
                f"{floor - storage:.2f}",
            ]
        )
    return (
        "the floor of this architecture (a callback is an HTTP API request handed to SQS, the sender claims each "
        "lead before Clay, the callback claims each version, the router claims and records each lead): the HTTP "
        "API, SQS and DynamoDB lines are per-lead requests and conditional writes the design makes whatever the "
        "settings; the floor is the whole bill with no function log line and no platform line at all, then also "
        f"without storing the lead. {floor_verdict(floors)}:\n\n"
        + table(
            [
                "profile",
                "total",
                "HTTP API + SQS + DynamoDB requests",
                "floor: no function or platform log lines",
                "floor, lead not stored either",
            ],
            rows,
        )
    )


def floor_verdict(floors: list[tuple[float, float]]) -> str:
    """Whether a target is out of this architecture's reach: above its floor even without storage or logs."""
    out_of_reach = [f"{target:g}" for target, floor in floors if floor > target]
    if not out_of_reach:
        return "Every target is above the floor: settings and trims can still meet it"
    return (
        f"The target{'s' if len(out_of_reach) > 1 else ''} {' and '.join(out_of_reach)} "
        f"{'are' if len(out_of_reach) > 1 else 'is'} below even the floor without a stored lead: meeting "
        f"{'them' if len(out_of_reach) > 1 else 'it'} takes another architecture (no HTTP API request or no "
        "queue message per callback, fewer conditional writes than one claim per step), not a setting"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument(
        "--crm",
        choices=("hubspot", "salesforce", "both"),
        default="hubspot",
        help="the CRM destinations on (salesforce: the Salesforce simulator instead of HubSpot; table path only)",
    )
    options = parser.parse_args()
    run(options.leads, crm=options.crm).show()


if __name__ == "__main__":
    main()
