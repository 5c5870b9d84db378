"""SecretSeedFunction (the SecretSeed custom resource) against moto's Secrets Manager, answering CloudFormation
through a loopback server playing the presigned ResponseURL; the answers that involve no secret with no AWS at
all. Which values the seed copies, on plain data: tests/unit/adapters/test_secret_store.py."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from clay_pipeline.adapters.aws import client
from local.aws import Provisioned
from local.http_stub import Reply, StubServer
from local.template import load_template
from tests.conftest import LambdaContextStub
from tests.unit.adapters.test_secret_store import LEGACY

pytestmark = pytest.mark.integration

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/clay-pipeline-dev/1"


def values_of(secret_id: str) -> dict[str, Any]:
    return dict(json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]))


def put(secret_id: str, values: dict[str, Any]) -> None:
    client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(values))


def versions(secret_id: str) -> int:
    return len(client("secretsmanager").list_secret_version_ids(SecretId=secret_id, IncludeDeprecated=True)["Versions"])


@pytest.fixture
def cloudformation() -> Iterator[StubServer]:
    """CloudFormation's side of the presigned ResponseURL: records each answer, 200 as S3 gives."""
    with StubServer() as server:
        yield server


@pytest.fixture
def seed_function(load_function: Any) -> Any:
    return load_function("SecretSeedFunction")


def request(
    stack: Provisioned, cloudformation: StubServer, request_type: str = "Create", **fields: Any
) -> dict[str, Any]:
    """The request CloudFormation sends the provider: the template's SecretSeed properties, resolved."""
    properties = stack.resolver.resolve(load_template()["Resources"]["SecretSeed"]["Properties"])
    return cfn_request(cloudformation, request_type, properties, **fields)


def cfn_request(
    cloudformation: StubServer, request_type: str, properties: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": f"{cloudformation.url}/cfn-response?X-Amz-Signature=presigned",
        "StackId": STACK_ID,
        "RequestId": f"req-{request_type.lower()}",
        "ResourceType": "Custom::SecretSeed",
        "LogicalResourceId": "SecretSeed",
        "ResourceProperties": properties,
        **fields,
    }


def answered(cloudformation: StubServer) -> dict[str, Any]:
    [response] = cloudformation.received("/cfn-response")
    assert response.method == "PUT"
    assert response.headers.get("content-type", "") == ""  # the URL is presigned without a content type
    assert len(response.body) <= 4096  # CloudFormation's limit on the answer
    document: dict[str, Any] = response.json()
    return document


def refs(stack: Provisioned, *resources: str) -> list[str]:
    return [str(stack.resolver.refs[resource]) for resource in resources]


def test_create_copies_only_what_each_secret_lacks_and_never_changes_the_shared_one(
    stack: Provisioned, cloudformation: StubServer, seed_function: Any
) -> None:
    # GIVEN the shared secret as a stack deployed before the split left it, and a HubSpot token already set in
    # the router's new secret (an operator who ran `secret set` first)
    shared, intake, webhook, destinations = refs(
        stack, "ConfigSecret", "IntakeSecret", "ClayWebhookSecret", "DestinationSecret"
    )
    put(shared, LEGACY)
    put(destinations, {"HUBSPOT_ACCESS_TOKEN": "pat-na1-set-after-the-split"})
    # WHEN CloudFormation creates SecretSeed
    seed_function.lambda_handler(request(stack, cloudformation), LambdaContextStub("secret-seed"))
    # THEN each per-concern secret holds its own names, the value already set kept
    assert values_of(intake) == {"INTAKE_API_KEYS": LEGACY["INTAKE_API_KEYS"]}
    assert values_of(webhook) == {"CLAY_WEBHOOK_URLS": LEGACY["CLAY_WEBHOOK_URLS"]}
    assert values_of(destinations) == {
        "HUBSPOT_ACCESS_TOKEN": "pat-na1-set-after-the-split",
        "SLACK_WEBHOOK_URL": LEGACY["SLACK_WEBHOOK_URL"],
    }
    assert values_of(str(stack.resolver.refs["ClayApiSecret"])) == {}  # nothing of its in the shared secret
    # AND the shared secret is untouched: a rollback finds it as it was
    assert values_of(shared) == LEGACY
    # AND CloudFormation got SUCCESS with every field its protocol asks for
    document = answered(cloudformation)
    assert document == {
        "Status": "SUCCESS",
        "Reason": "copied 3 value(s)",
        "PhysicalResourceId": "SecretSeed-req-create",
        "StackId": STACK_ID,
        "RequestId": "req-create",
        "LogicalResourceId": "SecretSeed",
    }


def test_an_update_run_again_copies_nothing_and_keeps_its_physical_id(
    stack: Provisioned, cloudformation: StubServer, seed_function: Any
) -> None:
    # GIVEN a seed already run
    shared, intake, destinations = refs(stack, "ConfigSecret", "IntakeSecret", "DestinationSecret")
    put(shared, LEGACY)
    seed_function.lambda_handler(request(stack, cloudformation), LambdaContextStub("secret-seed"))
    before = {secret_id: versions(secret_id) for secret_id in (intake, destinations)}
    cloudformation.clear()
    # WHEN CloudFormation sends an Update (the same properties again, as a rollback does)
    update = request(stack, cloudformation, "Update", PhysicalResourceId="SecretSeed-req-create")
    seed_function.lambda_handler(update, LambdaContextStub("secret-seed"))
    # THEN no secret got a new version, and the answer names the same physical resource (not a replacement)
    assert {secret_id: versions(secret_id) for secret_id in (intake, destinations)} == before
    document = answered(cloudformation)
    assert (document["Status"], document["Reason"]) == ("SUCCESS", "copied 0 value(s)")
    assert document["PhysicalResourceId"] == "SecretSeed-req-create"


@pytest.fixture
def seed_without_aws(load_function_without_aws: Any) -> Any:
    """The provider with no AWS at all: a secret read or write fails loudly (connection refused)."""
    return load_function_without_aws("SecretSeedFunction")


def request_without_aws(cloudformation: StubServer, request_type: str = "Create", **fields: Any) -> dict[str, Any]:
    """A request naming secrets by placeholder ids (the provider cannot reach any)."""
    properties = {"SharedSecret": "shared", "Secrets": [{"SecretId": "intake", "Names": ["INTAKE_API_KEYS"]}]}
    return cfn_request(cloudformation, request_type, properties, **fields)


def test_delete_changes_nothing_and_answers_success(cloudformation: StubServer, seed_without_aws: Any) -> None:
    # WHEN CloudFormation deletes SecretSeed THEN it answers SUCCESS without touching a secret: with no AWS
    # reachable, any read or write would have failed the seed and answered FAILED
    delete = request_without_aws(cloudformation, "Delete", PhysicalResourceId="SecretSeed-req-create")
    seed_without_aws.lambda_handler(delete, LambdaContextStub("secret-seed"))
    assert answered(cloudformation)["Status"] == "SUCCESS"


def denied(operation: str) -> Any:
    """Secrets Manager's answer to a role without the permission, for every call of `operation`."""

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "AccessDeniedException", "Message": f"not authorized to perform secretsmanager:{operation}"}
        return AWSResponse("https://secretsmanager", 400, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    return answer


@pytest.mark.parametrize("operation", ["GetSecretValue", "PutSecretValue"])
def test_a_secret_it_may_not_read_or_write_answers_failed_so_the_update_rolls_back(
    stack: Provisioned, cloudformation: StubServer, seed_function: Any, operation: str
) -> None:
    # GIVEN a role denied this Secrets Manager action
    shared, intake = refs(stack, "ConfigSecret", "IntakeSecret")
    put(shared, LEGACY)
    secrets = client("secretsmanager")
    secrets.meta.events.register(f"before-call.*.{operation}", denied(operation), unique_id="denied")
    try:
        # WHEN CloudFormation creates SecretSeed
        seed_function.lambda_handler(request(stack, cloudformation), LambdaContextStub("secret-seed"))
    finally:
        secrets.meta.events.unregister(f"before-call.*.{operation}", unique_id="denied")
    # THEN it answers FAILED with the reason, and nothing was written
    document = answered(cloudformation)
    assert document["Status"] == "FAILED"
    assert "AccessDeniedException" in document["Reason"] and operation in document["Reason"]
    assert document["PhysicalResourceId"] == "SecretSeed-req-create"
    assert values_of(intake) == {} and values_of(shared) == LEGACY


def test_neither_a_value_nor_the_response_url_is_logged(
    stack: Provisioned,
    cloudformation: StubServer,
    seed_function: Any,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a seed that copies, and one that fails
    put(str(stack.resolver.refs["ConfigSecret"]), LEGACY)
    seed_function.lambda_handler(request(stack, cloudformation), LambdaContextStub("secret-seed"))
    broken = request(stack, cloudformation, "Update", PhysicalResourceId="SecretSeed-req-create")
    broken["ResourceProperties"]["SharedSecret"] = "no-such-secret"
    seed_function.lambda_handler(broken, LambdaContextStub("secret-seed"))
    # THEN what it logged names the settings it copied and the failure, never a value or the presigned URL
    captured = captured_logs.getvalue() + capsys.readouterr().out
    assert "INTAKE_API_KEYS" in captured and "ResourceNotFoundException" in captured
    assert all(value not in captured for value in LEGACY.values() if value)
    assert "X-Amz-Signature" not in captured
    assert [answer.json()["Status"] for answer in cloudformation.received("/cfn-response")] == ["SUCCESS", "FAILED"]


def test_an_answer_cloudformation_did_not_take_fails_the_invocation_so_lambda_retries_it(
    cloudformation: StubServer, seed_without_aws: Any
) -> None:
    # GIVEN the presigned URL refusing the answer (expired) WHEN the seed runs THEN the invocation fails: Lambda
    # invokes the asynchronous request again, and the seed, being idempotent, answers again (whatever the
    # seed's own outcome: here FAILED, no AWS being reachable)
    cloudformation.script("/cfn-response", Reply(403))
    with pytest.raises(Exception, match="403"):
        seed_without_aws.lambda_handler(request_without_aws(cloudformation), LambdaContextStub("secret-seed"))
    assert answered(cloudformation)["Status"] == "FAILED"
