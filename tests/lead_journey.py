"""A lead's real journey on moto for the operator commands' tests: the sender, callback and router handlers,
cold-started from template.yaml, with one loopback server standing in for Clay and every destination.

Queues are drained as Lambda's poller would: receive, invoke, delete what the handler did not report
as failed. Scripting a path of the server (e.g. /zapier answering 400) makes a real dead letter.
"""

from __future__ import annotations

import json
from typing import Any

from clay_pipeline.adapters.aws import client
from local.apigw import http_event
from local.http_stub import StubServer
from local.sqs_events import from_received
from tests.conftest import LambdaContextStub

CALLBACK_SECRET = "journey-callback-secret-0123456789abcdef"
DESTINATION_PATHS = {"outreach": "/outreach", "nurture": "/nurture", "slack": "/slack", "zapier": "/zapier"}


class LeadJourney:
    def __init__(self, load_function: Any, stack: Any, web: StubServer, **settings: str) -> None:
        """`settings`: more environment for the three functions (Salesforce's login URL and credentials)."""
        self.stack = stack
        self.web = web
        env = {
            "CLAY_WEBHOOK_URLS": f"{web.url}/clay",
            "CLAY_SEND_RATE_PER_SECOND": "1000",
            "CLAY_RETRY_BACKOFF_SECONDS": "0",
            "CALLBACK_SECRETS": CALLBACK_SECRET,
            **{f"{name.upper()}_WEBHOOK_URL": web.url + path for name, path in DESTINATION_PATHS.items()},
            "HUBSPOT_ACCESS_TOKEN": "journey-hubspot-token",
            "HUBSPOT_BASE_URL": web.url,
            "DESTINATION_RETRY_ATTEMPTS": "0",
            "SLACK_MIN_INTERVAL_SECONDS": "0",
            "DESTINATION_PAUSE_CACHE_SECONDS": "0",
            **settings,
        }
        self.sender = load_function("SenderFunction", **env)
        self.callback = load_function("CallbackFunction", **env)
        self.router = load_function("RouterFunction", **env)

    def send(self, *leads: dict[str, Any] | str) -> None:
        """Queue leads (or raw bodies) on LeadQueue and let the sender take them."""
        url = self.stack.queue_urls["LeadQueue"]
        for body in leads:
            client("sqs").send_message(QueueUrl=url, MessageBody=body if isinstance(body, str) else json.dumps(body))
        self.drain("LeadQueue", self.sender)

    def call_back(self, row: dict[str, Any]) -> dict[str, Any]:
        """Clay's HTTP API column POSTing an enriched row."""
        event = http_event("POST", "/clay/callback", json.dumps(row), {"x-clay-signature": CALLBACK_SECRET})
        response: dict[str, Any] = self.callback.lambda_handler(event, LambdaContextStub("callback"))
        assert response["statusCode"] == 200, response
        return response

    def route(self) -> int:
        """Let the router take what RoutingQueue holds; the records it reported as failed."""
        return self.drain("RoutingQueue", self.router)

    def drain(self, queue_id: str, function: Any) -> int:
        url = self.stack.queue_urls[queue_id]
        arn = str(self.stack.resolver.attributes[(queue_id, "Arn")])
        messages = (
            client("sqs")
            .receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
            )
            .get("Messages", [])
        )
        if not messages:
            return 0
        response = function.lambda_handler(from_received(messages, arn), LambdaContextStub(queue_id, 60_000))
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(failed)

    def calls(self, destination: str) -> int:
        path = "/crm/v3/objects/contacts/batch/upsert" if destination == "hubspot" else DESTINATION_PATHS[destination]
        return len(self.web.received(path))

    def clay_rows(self) -> list[dict[str, Any]]:
        return [request.json() for request in self.web.received("/clay")]
