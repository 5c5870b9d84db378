"""In-process AWS emulator (moto's server on loopback) and the resources template.yaml declares."""

from __future__ import annotations

import functools
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client, reset_clients
from clay_pipeline.adapters.secret_store import seed
from clay_pipeline.config import SECRET_RESOURCES, SHARED_SECRET_RESOURCE, clear_secret_cache
from local.template import Resolver, load_template, parameter_defaults, resources_of_type

# moto accepts any credentials; these keep tests and local runs away from real ones.
FAKE_CREDENTIALS = dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), "testing") | {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
ACCOUNT = "123456789012"
LOCAL_PREFIX = "clay-local"  # names of the local stack's resources: clay-local-LeadQueue, ...


@functools.cache
def make_item_writes_atomic() -> None:
    """DynamoDB checks a condition, writes the item and returns what ReturnValues asked for as one atomic step;
    moto's threaded server does not: its backend reads, checks and writes in separate steps (two threads can both
    pass one condition), and its request handler reads the item for ALL_OLD (and UPDATED_OLD) before the write,
    so a write that lands in between is missing from the "old" item returned (a router's claim then sees a
    ledger without the deliveries just recorded, and sends them again). The pipeline's exactly-once guarantees
    rest on that atomicity, so moto's item writes are serialised, the handler's read of the old item with them
    (once per process), for the local stack and the tests."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()  # the handler's write holds it around the backend's, which takes it again
    for owner, name in (
        *((DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")),
        *((DynamoHandler, name) for name in ("put_item", "update_item", "delete_item")),
    ):
        original = getattr(owner, name)

        def atomic(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(owner, name, atomic)


@functools.cache
def size_updated_items_as_written() -> None:
    """DynamoDB limits an item to 400 KB as it is after a write; moto's item dict adds a replaced attribute's
    new value to the size with the old one still in it, so a 250 KB lead cannot be re-enriched with another
    250 KB (ItemSizeToUpdateTooLarge). The old value leaves before the new one is measured (once per process)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    measured_set = LimitedSizeDict.__setitem__

    def replace(self: LimitedSizeDict, key: str, value: Any) -> None:
        if key not in self:
            measured_set(self, key, value)
            return
        old = dict.pop(self, key)
        try:
            measured_set(self, key, value)
        except ItemSizeTooLarge:
            dict.__setitem__(self, key, old)
            raise

    LimitedSizeDict.__setitem__ = replace  # type: ignore[method-assign]


@functools.cache
def keep_connections_alive() -> None:
    """AWS keeps HTTPS connections open between calls; moto's dev server answers HTTP/1.0 and closes each one,
    so every call would pay a TCP connect and close in the client: about a third of a call's CPU, which the
    cost model (bench/cost_model.py) would bill the functions for. HTTP/1.1 keeps them open (once per process)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    MotoRequestHandler.protocol_version = "HTTP/1.1"


@functools.cache
def read_the_sqs_clock_cheaply() -> None:
    """moto's SQS checks each message's visibility against the clock through datetime arithmetic, and every
    SendMessage reads the queue's attributes, which counts the queue's messages that way: O(queue) datetime
    work per message, so queueing a 2,000-row file spent most of its time there (measured by
    bench/send_throughput.py). The same epoch milliseconds from time.time() (once per process)."""
    import time

    from moto.sqs import models

    through_datetime = models.unix_time_millis

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else through_datetime(dt)

    models.unix_time_millis = unix_time_millis


class Emulator:
    """moto's threaded server bound to 127.0.0.1 on a free port, with DynamoDB's atomic conditional writes."""

    def __init__(self, port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        make_item_writes_atomic()
        size_updated_items_as_written()
        keep_connections_alive()
        read_the_sqs_clock_cheaply()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint = ""

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        os.environ.update(FAKE_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint
        reset_clients()
        clear_secret_cache()
        return self.endpoint

    def reset(self) -> None:
        """Drop every resource (moto's reset API), for test isolation."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 - loopback
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310  # nosec B310

    def stop(self) -> None:
        self._server.stop()


@dataclass
class Provisioned:
    resolver: Resolver
    queue_urls: dict[str, str]
    table_names: dict[str, str]
    secret_id: str | None


def provision(
    prefix: str = LOCAL_PREFIX,
    secrets: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
    parameters: dict[str, str] | None = None,
) -> Provisioned:
    """Create the template's tables, queues (DLQs first) and secrets in the emulator, and seed the secrets.

    `parameters` override the template's parameter defaults (what `sam deploy --parameter-overrides` does).
    """
    template = template or load_template()
    resolver = Resolver(
        refs={**parameter_defaults(template), **(parameters or {})}, conditions=template.get("Conditions", {})
    )
    resolver.refs.update(
        {
            "AWS::Region": "us-east-1",
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": prefix,
        }
    )
    table_names: dict[str, str] = {}
    for logical_id, resource in resources_of_type("AWS::DynamoDB::Table", template).items():
        name = f"{prefix}-{logical_id}"
        props = resolver.resolve(resource["Properties"])
        dynamodb = client("dynamodb")
        optional = {key: props[key] for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes") if key in props}
        if "ProvisionedThroughput" in optional:  # template parameters resolve to text
            optional["ProvisionedThroughput"] = {k: int(v) for k, v in optional["ProvisionedThroughput"].items()}
        dynamodb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            **optional,
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        table_names[logical_id] = name
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{name}"

    queues = resources_of_type("AWS::SQS::Queue", template)
    ordered = sorted(queues.items(), key=lambda item: "RedrivePolicy" in item[1].get("Properties", {}))
    queue_urls: dict[str, str] = {}
    for logical_id, resource in ordered:
        props = resource.get("Properties", {})
        attributes = {
            key: str(props[key])
            for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")
            if key in props
        }
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(resolver.resolve(props["RedrivePolicy"]))
        name = f"{prefix}-{logical_id}"
        url = client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        queue_urls[logical_id] = url
        resolver.refs[logical_id] = url
        resolver.attributes[(logical_id, "Arn")] = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"
        resolver.attributes[(logical_id, "QueueName")] = name

    # `secrets` go into the shared ConfigSecret, as a stack deployed before the split kept them, and `seed`
    # copies each into the per-concern secret holding it, as a deploy's SecretSeed does. The process reads the
    # shared one (CONFIG_SECRET_ID): one process runs every local function, and it keeps every value.
    secret_id = None
    for logical_id in resources_of_type("AWS::SecretsManager::Secret", template):
        name = f"{prefix}/{logical_id}"
        shared = logical_id == SHARED_SECRET_RESOURCE
        client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(secrets or {}) if shared else "{}")
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = name
        secret_id = name if shared else secret_id
    if secret_id:
        # every one, whatever the enrichment path: `invoke` and the tests run either path's functions
        others = {name: names for name, names in SECRET_RESOURCES.items() if name != SHARED_SECRET_RESOURCE}
        seed(secret_id, {resolver.refs[name]: names for name, names in others.items() if name in resolver.refs})
    return Provisioned(resolver=resolver, queue_urls=queue_urls, table_names=table_names, secret_id=secret_id)


def function_environment(logical_id: str, provisioned: Provisioned) -> dict[str, str]:
    """The environment template.yaml gives a function, with references resolved locally."""
    from local.template import functions

    spec = functions()[logical_id]
    return {name: str(provisioned.resolver.resolve(value)) for name, value in spec.environment.items()}


def attach(prefix: str) -> Provisioned | None:
    """The resources `provision(prefix)` created in the emulator, or None when they are not all there."""
    resolver = Resolver(refs={**parameter_defaults(), "AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT})
    found = Provisioned(resolver=resolver, queue_urls={}, table_names={}, secret_id=None)
    try:
        for logical_id in resources_of_type("AWS::DynamoDB::Table"):
            name = f"{prefix}-{logical_id}"
            client("dynamodb").describe_table(TableName=name)
            found.table_names[logical_id] = resolver.refs[logical_id] = name
        for logical_id in resources_of_type("AWS::SQS::Queue"):
            name = f"{prefix}-{logical_id}"
            url = client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
            found.queue_urls[logical_id] = resolver.refs[logical_id] = url
            resolver.attributes[(logical_id, "Arn")] = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"
        for logical_id in resources_of_type("AWS::SecretsManager::Secret"):
            secret_id = f"{prefix}/{logical_id}"
            client("secretsmanager").describe_secret(SecretId=secret_id)
            resolver.refs[logical_id] = resolver.attributes[(logical_id, "Arn")] = secret_id
            if logical_id == SHARED_SECRET_RESOURCE:
                found.secret_id = secret_id
    except ClientError:
        return None
    return found
