"""Upgrading a stack deployed with one shared secret to one secret per concern loses no lead.

CloudFormation's order on the upgrade, replayed in moto: the per-concern secrets are created empty, SecretSeed
runs (the real SecretSeedFunction, answering a loopback ResponseURL), then the functions switch to their own
secret (they DependsOn SecretSeed). Then the operator's `clay-pipeline secret prune`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from clay_pipeline import config
from clay_pipeline.adapters.aws import client
from cli.main import main
from local.apigw import http_event
from local.aws import Provisioned
from local.http_stub import StubServer
from local.template import load_template
from tests.conftest import LambdaContextStub
from tests.integration.test_intake import leads_event
from tests.integration.test_router import UPSERT, Router, Sinks, event_file, set_up_crm, started_sinks

pytestmark = pytest.mark.integration

OLD_KEY = "producer-key-from-before-the-split-0123456789"
OLD_TOKEN = "pat-na1-from-before-the-split"  # nosec B105 - a dummy token
CALLBACK_SECRET = "callback-secret-from-before-the-split-0123456789"
STACK = "clay-pipeline-dev"


@pytest.fixture
def sinks() -> Iterator[Sinks]:
    crm = set_up_crm()
    crm.token = OLD_TOKEN  # HubSpot answers 401 to any other token
    yield from started_sinks(crm)


@pytest.fixture
def old_stack(stack: Provisioned, sinks: Sinks, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A stack deployed before the split: every value in the shared ConfigSecret (none in the environment),
    the per-concern secrets just created empty by the upgrade, and its `<resource>Name` outputs."""
    for name in config.SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    shared = {
        "CALLBACK_SECRETS": CALLBACK_SECRET,
        "INTAKE_API_KEYS": OLD_KEY,
        "CLAY_WEBHOOK_URLS": "",
        "HUBSPOT_ACCESS_TOKEN": OLD_TOKEN,
        "SLACK_WEBHOOK_URL": f"{sinks.slack.url}/services/T0/B0/X",
        "OUTREACH_WEBHOOK_URL": f"{sinks.outreach.url}/outreach",
        "ZAPIER_WEBHOOK_URL": f"{sinks.zapier.url}/hooks/catch/1/abc",
        "NURTURE_WEBHOOK_URL": f"{sinks.nurture.url}/nurture",
    }
    secret_ids = {resource: str(stack.resolver.refs[resource]) for resource in config.SECRET_RESOURCES}
    client("secretsmanager").put_secret_value(SecretId=secret_ids["ConfigSecret"], SecretString=json.dumps(shared))
    for resource, secret_id in secret_ids.items():
        if resource != "ConfigSecret":
            assert json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]) == {}
    outputs = {f"{resource}Name": {"Value": secret_id} for resource, secret_id in secret_ids.items()}
    outputs.pop("RunWebhookSecretName")  # the default (table) path does not deploy it
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}, "Outputs": outputs}
    client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    config.clear_secret_cache()
    return secret_ids


def router_settings(sinks: Sinks) -> dict[str, str]:
    """The router's non-secret settings (its secrets come from Secrets Manager only)."""
    return {
        "HUBSPOT_BASE_URL": sinks.hubspot.url,
        "DESTINATION_RETRY_ATTEMPTS": "1",
        "DESTINATION_RETRY_BACKOFF_SECONDS": "0.01",
        "DESTINATION_TIMEOUT_SECONDS": "2",
        "SLACK_MIN_INTERVAL_SECONDS": "0.05",
    }


def run_secret_seed(stack: Provisioned, load_function: Any) -> dict[str, Any]:
    """CloudFormation creating SecretSeed: the provider's answer at the ResponseURL."""
    seed = load_function("SecretSeedFunction")
    properties = stack.resolver.resolve(load_template()["Resources"]["SecretSeed"]["Properties"])
    with StubServer() as cloudformation:
        event = {
            "RequestType": "Create",
            "ResponseURL": f"{cloudformation.url}/response",
            "StackId": f"arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK}/1",
            "RequestId": "upgrade-1",
            "ResourceType": "Custom::SecretSeed",
            "LogicalResourceId": "SecretSeed",
            "ResourceProperties": properties,
        }
        seed.lambda_handler(event, LambdaContextStub("secret-seed"))
        answer: dict[str, Any] = cloudformation.received("/response")[0].json()
    config.clear_secret_cache()  # the functions start after the seed: nothing read before it is cached
    return answer


def intake_status(load_function: Any, **env: str) -> int:
    intake = load_function("IntakeFunction", **env)
    status: int = intake.lambda_handler(leads_event({"email": "a@acme.com"}, key=OLD_KEY), LambdaContextStub())[
        "statusCode"
    ]
    return status


def test_without_the_seed_the_switched_functions_would_refuse_and_skip(
    old_stack: dict[str, str], stack: Provisioned, load_function: Any, sinks: Sinks
) -> None:
    # GIVEN the old functions, reading the shared secret: the producer's key works
    assert intake_status(load_function, CONFIG_SECRET_ID=old_stack["ConfigSecret"]) == 202
    # WHEN the functions switched to their own (still empty) secrets without SecretSeed
    # THEN the producer's key is refused and HubSpot is skipped: what the seed exists to prevent
    assert intake_status(load_function) == 401
    router = Router(load_function("RouterFunction", **router_settings(sinks)), stack)
    assert router.run(event_file("router-hot.json")) == []
    outcome = router.outcome("ld_hot_jane_acme")
    assert outcome["routing_status"] == "skipped"
    assert set(outcome["destinations"].values()) == {"off"}
    assert sinks.calls()["hubspot"] == 0


def test_the_upgrade_keeps_every_key_and_destination_and_prune_then_empties_the_shared_secret(
    old_stack: dict[str, str],
    stack: Provisioned,
    load_function: Any,
    sinks: Sinks,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the upgrade's SecretSeed has run
    assert run_secret_seed(stack, load_function)["Status"] == "SUCCESS"
    # WHEN the functions read their own secrets
    # THEN the intake accepts the producer's old key (no 401)
    assert intake_status(load_function) == 202
    # AND the router still delivers to HubSpot with the old token, and to every other destination (none skipped)
    router = Router(load_function("RouterFunction", **router_settings(sinks)), stack)
    assert router.run(event_file("router-hot.json")) == []
    outcome = router.outcome("ld_hot_jane_acme")
    assert outcome["routes"] == ["slack", "outreach", "hubspot", "zapier"]
    assert set(outcome["destinations"].values()) == {"delivered"}
    [upsert] = sinks.hubspot.received(UPSERT)
    assert upsert.headers["authorization"] == f"Bearer {OLD_TOKEN}"

    # WHEN the operator prunes the shared secret
    assert main(["secret", "prune", "--stack", STACK]) == 0
    out = capsys.readouterr().out
    assert OLD_KEY not in out and OLD_TOKEN not in out and "HUBSPOT_ACCESS_TOKEN" in out
    # THEN it keeps only the callback's secret, which the callback still accepts
    shared = json.loads(client("secretsmanager").get_secret_value(SecretId=old_stack["ConfigSecret"])["SecretString"])
    assert shared == {"CALLBACK_SECRETS": CALLBACK_SECRET}
    config.clear_secret_cache()
    callback = load_function("CallbackFunction")
    body = json.dumps({"lead_id": "ld_upgrade", "email": "u@acme.com"})
    event = http_event("POST", "/clay/callback", body, {"x-clay-signature": CALLBACK_SECRET})
    assert callback.lambda_handler(event, LambdaContextStub())["statusCode"] == 200
    # AND the intake and the router work as before, from their own secrets alone
    assert intake_status(load_function) == 202
    router = Router(load_function("RouterFunction", **router_settings(sinks)), stack)
    hot = router.record({**event_file_lead(), "lead_id": "ld_after_prune", "email": "after@acme.com"})
    assert router.run({"Records": [hot]}) == []
    assert len(sinks.hubspot.received(UPSERT)) == 2


def event_file_lead() -> dict[str, Any]:
    """The hot lead of events/router-hot.json."""
    lead: dict[str, Any] = json.loads(event_file("router-hot.json")["Records"][0]["body"])["lead"]
    return lead
