"""SecretSeedFunction: the provider of the SecretSeed custom resource (template.yaml).

On Create and Update it copies into each per-concern secret the values it lacks from the shared ConfigSecret
(adapters.secret_store.seed_resource: never over a value already set, never the shared secret changed), so a stack
deployed before the split keeps every key, URL and token when its functions switch to their own secrets: each
of them DependsOn SecretSeed. On Delete it does nothing (the secrets are the stack's own resources).

It answers CloudFormation by a PUT of a JSON document to the request's presigned ResponseURL with Status,
Reason, PhysicalResourceId, StackId, RequestId and LogicalResourceId, the body at most 4096 bytes (AWS
CloudFormation User Guide, "Custom resource response objects", crpg-ref-responses.html). FAILED when a secret
cannot be read or written: the update then rolls back, and the functions keep the shared secret they read.
Logs and the Reason name settings and secrets, never a value; the event (its ResponseURL is a credential
to answer for this stack) is never logged.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import requests

from clay_pipeline import init_done
from clay_pipeline.adapters.secret_store import seed_resource
from clay_pipeline.config import SecretSeedSettings
from clay_pipeline.observability import logger

if TYPE_CHECKING:  # the type only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = SecretSeedSettings.from_env()  # fails the cold start on bad configuration, as every function does
RESPONSE_TIMEOUT_SECONDS = 20
MAX_REASON_CHARACTERS = 1000  # the whole answer must stay under CloudFormation's 4096 bytes


def answer(event: dict[str, Any], status: str, reason: str, physical_id: str) -> None:
    """PUT the response document to the presigned ResponseURL (no Content-Type: the URL is signed without one)."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON_CHARACTERS],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    response = requests.put(
        event["ResponseURL"],
        data=body,
        headers={"Content-Type": ""},
        timeout=RESPONSE_TIMEOUT_SECONDS,
        allow_redirects=False,
    )
    response.raise_for_status()


@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    request = event.get("RequestType")
    # Identical for every answer about this resource: CloudFormation reads a new one as a replacement.
    physical_id = event.get("PhysicalResourceId") or f"{event['LogicalResourceId']}-{event['RequestId']}"
    status, reason = "SUCCESS", ""
    if request in ("Create", "Update"):
        try:
            copied = seed_resource(event["ResourceProperties"])
        except Exception as error:  # any failure must reach CloudFormation as FAILED, not hang it
            status, reason = "FAILED", f"cannot seed the per-concern secrets from the shared one: {error}"
            logger.error("secret seed failed", extra={"request": request, "error": type(error).__name__})
        else:
            reason = f"copied {sum(len(names) for names in copied.values())} value(s)"
            logger.info("secrets seeded", extra={"request": request, "copied": copied})
    elif request != "Delete":
        status, reason = "FAILED", f"unknown RequestType {request!r}"
    try:
        answer(event, status, reason, physical_id)
    except requests.RequestException as error:
        # Raised, so Lambda's retries of this asynchronous invocation answer again (seeding is idempotent).
        logger.error("cannot answer CloudFormation", extra={"error": type(error).__name__})
        raise


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
