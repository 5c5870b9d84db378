"""Warm path: CPU time per event of the callback, sender and router handlers against minimal references.

Every AWS call is answered at once by a botocore before-send hook (the request is still built,
signed and its answer parsed) and every HTTP call by a socket-less requests adapter (stubs.py).
The real handlers run as Lambda runs them (Powertools logging and metrics on, written to
/dev/null; tracing off, as there is no X-Ray daemon). Each reference handler does only the same
parsing, the same auth check and the same AWS and HTTP calls, with plain boto3 and requests;
the benchmark checks that both made the same calls. CPU is time.process_time over many events,
real and reference interleaved in blocks of 50 messages, the ratio the median of the blocks'. SQS
(sender 20, router 10): their figure is per message.

    python bench/warm_path.py [--events 1500]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from harness import LambdaContext, Section, Target, command_line, logs_to_devnull

from clay_pipeline.adapters.aws import client
from clay_pipeline.core import state_keys
from local.apigw import http_event
from local.aws import FAKE_CREDENTIALS
from local.sqs_events import sqs_event, sqs_record
from local.template import load_handler_module, placeholder_environment, sqs_batch_size

RATIO_TARGET = 1.5
SENDER_BATCH = sqs_batch_size("SenderFunction")  # the template's BatchSizes
ROUTER_BATCH = sqs_batch_size("RouterFunction")
BLOCK_MESSAGES = 50  # messages per timed block; real and reference blocks alternate
CALLBACK_SECRET = "bench-callback-secret-0123456789abcdefghij"  # noqa: S105 - a benchmark-only value
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:bench"
SECRETS = {
    "CALLBACK_SECRETS": CALLBACK_SECRET,
    # .invalid never resolves: should a stub ever be bypassed, nothing leaves the machine.
    "CLAY_WEBHOOK_URLS": "https://clay.invalid/v3/sources/webhook/pull-in-data-from-a-webhook-bench",
    "OUTREACH_WEBHOOK_URL": "https://outreach.invalid/hooks/bench",
    "NURTURE_WEBHOOK_URL": "https://nurture.invalid/hooks/bench",
    "SLACK_WEBHOOK_URL": "https://slack.invalid/services/bench",
    "ZAPIER_WEBHOOK_URL": "https://zapier.invalid/hooks/catch/bench",
    "HUBSPOT_ACCESS_TOKEN": "bench-hubspot-token",
}


def configure() -> None:
    """One process hosts all three functions: their template environments plus the secrets as variables."""
    os.environ.update(FAKE_CREDENTIALS)
    for logical_id in ("CallbackFunction", "SenderFunction", "RouterFunction"):
        os.environ.update(placeholder_environment(logical_id))
    os.environ.update(SECRETS)
    os.environ["HUBSPOT_BASE_URL"] = "https://hubspot.invalid"
    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    # Instant stubs would make the pacer wait for each 0.1 s window: sleep is not CPU, but it would
    # make this benchmark take minutes. At 1000/s a window holds 100 sends; each still costs its write.
    os.environ["CLAY_SEND_RATE_PER_SECOND"] = "1000"
    for name in ("CONFIG_SECRET_ID", "AWS_ENDPOINT_URL"):  # secrets come from the variables; no endpoint is reached
        os.environ.pop(name, None)


# ------------------------------------------------------------------------------------------ events
def callback_events(count: int, mode: str) -> list[dict[str, Any]]:
    events = []
    for number in range(count):
        body = json.dumps(
            {
                "lead_id": f"ld_bench_{number}",
                "email": f"person{number}@acme.com",
                "company_name": "Acme",
                "employee_count": "1,200",
                "industry": "Software",
                "icp_score": "85",
                "tags": '["saas", "b2b"]',
            }
        )
        if mode == "hmac":
            signature = hmac.new(CALLBACK_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        else:
            signature = CALLBACK_SECRET
        events.append(
            http_event(
                "POST", "/clay/callback", body, {"content-type": "application/json", "x-clay-signature": signature}
            )
        )
    return events


def lead_batches(count: int) -> list[dict[str, Any]]:
    return [
        sqs_event(
            [
                sqs_record(
                    json.dumps(
                        {"email": f"p{n}.{i}@acme.com", "first_name": "Pat", "last_name": f"N{i}", "source": "api"}
                    ),
                    QUEUE_ARN,
                )
                for i in range(SENDER_BATCH)
            ]
        )
        for n in range(count)
    ]


def routing_batches(count: int) -> list[dict[str, Any]]:
    # icp 85 with an email: outreach, HubSpot and Zapier (no Slack: its 1/s pacing would dominate), plus the record.
    def message(n: int, i: int) -> str:
        lead = {"lead_id": f"ld_{n}_{i}", "email": f"p{n}.{i}@acme.com", "icp_score": 85, "company_name": "Acme"}
        return json.dumps(
            {"callback_id": f"ld_{n}_{i}#c0ffee", "lead_key": f"ld_{n}_{i}", "lead": lead, "received_at": "2026-11-22"}
        )

    return [sqs_event([sqs_record(message(n, i), QUEUE_ARN) for i in range(ROUTER_BATCH)]) for n in range(count)]


# ------------------------------------------------------------------------------------------ references
def reference_callback(mode: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Token or HMAC check, JSON parse, a conditional claim-and-store on the lead, queue (the router's first write
    completes the claim: the callback writes once)."""
    dynamodb, sqs = client("dynamodb"), client("sqs")
    leads, queue = os.environ["LEADS_TABLE"], os.environ["ROUTING_QUEUE_URL"]
    secret = CALLBACK_SECRET.encode()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        body = event["body"].encode()
        presented = event["headers"].get("x-clay-signature", "").encode()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode() if mode == "hmac" else secret
        if not hmac.compare_digest(presented, expected):
            return {"statusCode": 401, "body": '{"error":"unauthorized"}'}
        lead = json.loads(body)
        version = hashlib.sha256(body).hexdigest()[:32]
        key = {"lead_key": {"S": lead["lead_id"]}}
        dynamodb.update_item(
            TableName=leads,
            Key=key,
            UpdateExpression="SET enrichment = :lead, #pending = :received_at",
            ConditionExpression="attribute_not_exists(#pending) AND NOT contains(versions, :version)",
            ExpressionAttributeNames={"#pending": f"pending_{version}"},
            ExpressionAttributeValues={
                ":lead": {"S": body.decode()},
                ":received_at": {"S": "2026-11-22T00:00:00+00:00"},
                ":version": {"S": version},
            },
        )
        sqs.send_message(QueueUrl=queue, MessageBody=body.decode())
        return {"statusCode": 200, "body": json.dumps({"received": True, "lead_key": lead["lead_id"]})}

    return handler


def _increment(table: str, key: str, amount: int = 1) -> None:
    client("dynamodb").update_item(
        TableName=table,
        Key={"pk": {"S": key}},
        UpdateExpression="ADD #c :n",
        ConditionExpression="attribute_not_exists(#c) OR #c <= :room",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":n": {"N": str(amount)}, ":room": {"N": str(50000 - amount)}},
        ReturnValues="UPDATED_NEW",
    )


def _mark(table: str, key: str, attributes: dict[str, Any] | None = None) -> None:
    client("dynamodb").put_item(
        TableName=table,
        Item={"pk": {"S": key}, **(attributes or {})},
        ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
    )


def _set(table: str, key: dict[str, Any], value: str) -> None:
    client("dynamodb").update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #s = :v",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":v": {"S": value}},
    )


def reference_sender() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Per batch: one pool reservation, one pacing reservation (and, once per instance, the webhook-retired
    check); per message, four at a time on a thread pool as the sender posts them: parse, dedupe claim,
    POST; per batch: the record of what was sent."""
    import requests

    session = requests.Session()
    session.trust_env = False  # as the library's sessions: no proxy lookups per request
    state, url = os.environ["STATE_TABLE"], SECRETS["CLAY_WEBHOOK_URLS"]
    retired_checked: list[bool] = []

    def send(record: dict[str, Any], batch: str) -> tuple[str, dict[str, Any]]:
        lead = json.loads(record["body"])
        lead_id = "ld_" + hashlib.sha256(lead["email"].lower().encode()).hexdigest()[:24]
        now = int(time.time())
        # the mark's own fields: expiry, lease, status, and where the lead came from (what a trace shows)
        _mark(
            state,
            state_keys.dedupe(lead_id),
            {
                "expires_at": {"N": str(now + 30 * 86400)},
                "created_at": {"N": str(now)},
                "status": {"S": "sending"},
                "lease_until": {"N": str(now + 60)},
                "batch": {"S": batch},
                "source": {"S": lead.get("source", "")},
                "submitted_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))},
            },
        )
        session.post(url, data=json.dumps({**lead, "lead_id": lead_id}), timeout=10).close()
        return lead_id, {"M": {"t": {"N": str(int(time.time()))}}}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not retired_checked:
            client("dynamodb").get_item(
                TableName=state, Key={"pk": {"S": state_keys.webhook_dead("x")}}, ConsistentRead=True
            )
            retired_checked.append(True)
        _increment(state, state_keys.pool("x"), len(event["Records"]))
        _increment(state, state_keys.rate(2000, int(time.time() // 2)), len(event["Records"]))
        batch = uuid.uuid4().hex
        with ThreadPoolExecutor(max_workers=4) as pool:
            sent = dict(pool.map(lambda record: send(record, batch), event["Records"]))
        client("dynamodb").put_item(TableName=state, Item={"pk": {"S": state_keys.sent(batch)}, "leads": {"M": sent}})
        return {"batchItemFailures": []}

    return handler


def reference_router() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Once per instance: the pause switch; per message: parse, one lead claim; then the batch's HubSpot
    read and upsert and every webhook at once on a thread pool, as the router sends them; per message one write
    recording the deliveries and the outcome on the lead's item."""
    import requests

    session = requests.Session()
    session.trust_env = False  # as the library's sessions: no proxy lookups per request
    leads, state = os.environ["LEADS_TABLE"], os.environ["STATE_TABLE"]
    pause_read: list[bool] = []
    pool = ThreadPoolExecutor(max_workers=16)

    def post(url: str, payload: Any, headers: dict[str, str] | None = None) -> None:
        session.post(url, json=payload, headers=headers or {}, timeout=10).close()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not pause_read:  # the destination pause switch, cached by each instance
            client("dynamodb").get_item(TableName=state, Key={"pk": {"S": state_keys.pause()}})
            pause_read.append(True)
        messages = [json.loads(record["body"]) for record in event["Records"]]
        for message in messages:
            _set(leads, {"lead_key": {"S": message["lead_key"]}}, "leased")
        inputs = [{"idProperty": "email", "id": m["lead"]["email"], "properties": m["lead"]} for m in messages]
        hubspot = os.environ["HUBSPOT_BASE_URL"] + "/crm/v3/objects/contacts/batch"
        auth = {"authorization": f"Bearer {SECRETS['HUBSPOT_ACCESS_TOKEN']}"}

        def read_then_upsert() -> None:  # which contacts exist (rep-owned fields only on create), then the upsert
            post(hubspot + "/read", {"idProperty": "email", "inputs": [{"id": i["id"]} for i in inputs]}, auth)
            post(hubspot + "/upsert", {"inputs": inputs}, auth)

        sends = [pool.submit(read_then_upsert)]
        for message in messages:
            if message["lead"]["icp_score"] >= 80:
                for name in ("outreach", "zapier"):
                    sends.append(pool.submit(post, SECRETS[f"{name.upper()}_WEBHOOK_URL"], message["lead"]))
        for sent in sends:
            sent.result()
        now = str(int(time.time()))
        for message in messages:
            routed = ["outreach", "zapier"] if message["lead"]["icp_score"] >= 80 else ["nurture"]
            delivered = {"M": {name: {"M": {"at": {"N": now}, "status": {"S": "delivered"}}} for name in routed}}
            client("dynamodb").update_item(
                TableName=leads,
                Key={"lead_key": {"S": message["lead_key"]}},
                UpdateExpression="SET #s = :s, #o = :o, #d = :d",
                ExpressionAttributeNames={"#s": "status", "#o": "outcome", "#d": "deliveries"},
                ExpressionAttributeValues={
                    ":s": {"S": "routed"},
                    ":o": {"M": {"routes": {"L": [{"S": n} for n in routed]}, "version": {"S": message["lead_key"]}}},
                    ":d": delivered,
                },
            )
        return {"batchItemFailures": []}

    return handler


# ------------------------------------------------------------------------------------------ timing
@dataclass
class Case:
    name: str
    real: Callable[[dict[str, Any], Any], dict[str, Any]]
    reference: Callable[[dict[str, Any], Any], dict[str, Any]]
    events: list[dict[str, Any]]
    context: LambdaContext
    per_event: int = 1  # messages per event
    check: Callable[[dict[str, Any]], bool] = lambda answer: True


def calls_of(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], case: Case, aws: Any, http: Counter[str]
) -> Counter[str]:
    aws.calls.clear()
    http.clear()
    answer = handler(case.events[0], case.context)
    if not case.check(answer):
        raise RuntimeError(f"{case.name}: unexpected answer {str(answer)[:300]}")
    return Counter(aws.calls) + Counter({f"http:{host}": n for host, n in http.items()})


def cpu_per_event(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], events: list[dict[str, Any]], context: Any
) -> float:
    started = time.process_time()
    for event in events:
        handler(event, context)
    return time.process_time() - started


def measure(case: Case, aws: Any, http: Counter[str]) -> list[Any]:
    real_calls, reference_calls = calls_of(case.real, case, aws, http), calls_of(case.reference, case, aws, http)
    if real_calls != reference_calls:
        raise RuntimeError(f"{case.name}: the reference makes other calls: {real_calls} vs {reference_calls}")
    size = max(1, BLOCK_MESSAGES // case.per_event)  # events per block
    for handler in (case.real, case.reference):  # warm-up
        cpu_per_event(handler, case.events[:size], case.context)
    real = reference = 0.0
    ratios = []
    for number, start in enumerate(range(0, len(case.events), size)):
        block = case.events[start : start + size]
        # Each pair of blocks runs in alternating order, so neither side always follows the other's garbage.
        pair = (case.real, case.reference) if number % 2 == 0 else (case.reference, case.real)
        first, second = (cpu_per_event(handler, block, case.context) for handler in pair)
        block_real, block_reference = (first, second) if number % 2 == 0 else (second, first)
        real += block_real
        reference += block_reference
        ratios.append(block_real / block_reference)
    messages = len(case.events) * case.per_event
    real_ms, reference_ms = 1000 * real / messages, 1000 * reference / messages
    ratio = statistics.median(ratios)  # a block the machine slowed down does not decide the figure
    calls = ", ".join(f"{name} {count / case.per_event:g}" for name, count in sorted(real_calls.items()))
    return [case.name, f"{real_ms:.3f}", f"{reference_ms:.3f}", f"{ratio:.2f}", calls]


def run(events: int = 1500) -> Section:
    from stubs import CannedAWS, instant_http

    configure()
    callbacks = {  # by auth mode
        "token": load_handler_module("CallbackFunction"),
        "hmac": load_handler_module("CallbackFunction", {"CALLBACK_AUTH_MODE": "hmac"}),
    }
    sender = load_handler_module("SenderFunction")
    router = load_handler_module("RouterFunction")
    aws = CannedAWS().install()
    batches = max(20, events // ROUTER_BATCH)  # each queue's batches carry about as many messages as callbacks
    ok = lambda status: lambda answer: answer.get("statusCode") == status  # noqa: E731
    no_failures = lambda answer: answer.get("batchItemFailures") == []  # noqa: E731
    cases = [
        *(
            Case(
                f"callback ({mode})",
                callback.lambda_handler,
                reference_callback(mode),
                callback_events(events, mode),
                LambdaContext("callback", remaining_ms=10_000),
                check=ok(200),
            )
            for mode, callback in callbacks.items()
        ),
        Case(
            "sender (per message)",
            sender.lambda_handler,
            reference_sender(),
            lead_batches(max(10, events // SENDER_BATCH)),
            LambdaContext("sender", remaining_ms=60_000),
            SENDER_BATCH,
            no_failures,
        ),
        Case(
            "router (per message)",
            router.lambda_handler,
            reference_router(),
            routing_batches(batches),
            LambdaContext("router", remaining_ms=30_000),
            ROUTER_BATCH,
            no_failures,
        ),
    ]
    rows = []
    with instant_http() as http, logs_to_devnull():
        for case in cases:
            rows.append(measure(case, aws, http))
    aws.uninstall()
    worst = max(rows, key=lambda row: float(row[3]))
    return Section(
        title=f"Warm path (CPU per message, stubs answer AWS and HTTP at once; {events} callbacks and leads)",
        headers=["handler", "real ms", "reference ms", "ratio", "calls per message (same in both)"],
        rows=rows,
        targets=[
            Target(
                f"every handler at most {RATIO_TARGET}x its reference",
                float(worst[3]) <= RATIO_TARGET,
                f"(worst: {worst[0]}, {worst[3]}x)",
            )
        ],
        notes=[
            "real handlers log and emit metrics as deployed (to /dev/null); tracing is off (no X-Ray daemon)",
            "references: plain boto3 and requests doing the same auth check, JSON parse and the same calls",
            "router leads score 85 with an email: outreach, HubSpot (one upsert per batch of 10) and Zapier",
            f"ms: totals over every block; ratio: the median of the ratios of blocks of {BLOCK_MESSAGES} messages, "
            "real and reference run back to back in alternating order",
        ],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
