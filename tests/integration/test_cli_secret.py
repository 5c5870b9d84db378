"""`clay-pipeline secret` against the secrets in moto's Secrets Manager: one given secret, or a stack's: what a
write stores, beside the values it keeps. Its decisions on plain data are tests/unit/test_cli_secret.py's."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from clay_pipeline import config
from clay_pipeline.adapters.aws import client
from cli.main import main
from tests.unit.test_cli_secret import LEGACY

pytestmark = pytest.mark.integration


def stored(stack: Any) -> dict[str, str]:
    return dict(json.loads(client("secretsmanager").get_secret_value(SecretId=stack.secret_id)["SecretString"]))


def secret(capsys: pytest.CaptureFixture[str], stack: Any, *args: str) -> tuple[int, str, str]:
    code = main(["secret", *args, "--secret-id", stack.secret_id])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def configured(stack: Any) -> dict[str, str]:
    """The secret as a first deploy leaves it (a random CALLBACK_SECRETS), plus a HubSpot token already set."""
    values = {"CALLBACK_SECRETS": "deployed-callback-secret-0123456789abcdef", "HUBSPOT_ACCESS_TOKEN": "pat-na1-xyz"}
    client("secretsmanager").put_secret_value(SecretId=stack.secret_id, SecretString=json.dumps(values))
    return values


def deploy(stack: Any, name: str = "clay-pipeline-dev") -> dict[str, str]:
    """A deployed stack's secret outputs (moto's CloudFormation), one per concern as template.yaml has them."""
    secret_ids = {resource: stack.resolver.refs[resource] for resource in config.SECRET_RESOURCES}
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-marker"}}},
        "Outputs": {f"{resource}Name": {"Value": secret_id} for resource, secret_id in secret_ids.items()},
    }
    client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return secret_ids


def values_of(secret_id: str) -> dict[str, str]:
    return dict(json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]))


def test_with_a_stack_each_name_goes_to_the_secret_that_holds_it_and_list_shows_each_secret(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a deployed stack (secrets split per concern) and the callback's secret as a deploy before the
    # split left it: every value in one secret
    secret_ids = deploy(stack)
    legacy = {"CALLBACK_SECRETS": "deployed-callback-secret-0123456789abcdef", "HUBSPOT_ACCESS_TOKEN": "pat-na1-xyz"}
    client("secretsmanager").put_secret_value(SecretId=secret_ids["ConfigSecret"], SecretString=json.dumps(legacy))
    # WHEN init and set run against the stack
    assert main(["secret", "init", "--stack", "clay-pipeline-dev"]) == 0
    assert main(["secret", "set", "HUBSPOT_ACCESS_TOKEN", "pat-na1-new", "--stack", "clay-pipeline-dev"]) == 0
    capsys.readouterr()
    # THEN each value is in the secret config.SECRET_RESOURCES names, and only there
    assert len(values_of(secret_ids["IntakeSecret"])["INTAKE_API_KEYS"]) >= 32
    assert values_of(secret_ids["DestinationSecret"]) == {"HUBSPOT_ACCESS_TOKEN": "pat-na1-new"}
    config_values = values_of(secret_ids["ConfigSecret"])
    assert set(config_values) == {"CALLBACK_SECRETS", "CALLBACK_JWT_USERS", "HUBSPOT_ACCESS_TOKEN"}
    assert config_values["CALLBACK_SECRETS"] == legacy["CALLBACK_SECRETS"]  # kept: Clay tables send it
    # AND list shows per secret which of its names are set, and the value left where no function reads it
    code = main(["secret", "list", "--stack", "clay-pipeline-dev"])
    out = capsys.readouterr().out
    assert code == 0 and "pat-na1" not in out
    sections: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith("  "):
            sections[current].append(" ".join(line.split()))
        else:
            current = line
            sections[current] = []
    assert set(sections) == set(secret_ids.values())
    assert sections[secret_ids["IntakeSecret"]] == ["INTAKE_API_KEYS set"]
    assert "HUBSPOT_ACCESS_TOKEN set" in sections[secret_ids["DestinationSecret"]]
    assert (
        f"HUBSPOT_ACCESS_TOKEN set, but no function reads it here; it belongs in {secret_ids['DestinationSecret']} "
        "(secret prune removes it here once it is there)"
    ) in sections[secret_ids["ConfigSecret"]]
    # AND get reads from the secret holding the name
    assert main(["secret", "get", "HUBSPOT_ACCESS_TOKEN", "--stack", "clay-pipeline-dev"]) == 0
    assert capsys.readouterr().out.strip() == "pat-na1-new"


def test_set_keeps_the_others_and_refuses_what_a_function_would_refuse(
    configured: dict[str, str], stack: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # WHEN a weak intake key is set THEN nothing changes and one line says why
    code, _, err = secret(capsys, stack, "set", "INTAKE_API_KEYS", "a")
    assert code == 2 and "INTAKE_API_KEYS entry 1 is shorter than 32 characters" in err and "nothing was changed" in err
    assert stored(stack) == configured
    # WHEN a value comes from stdin THEN it is stored, the others kept, and it is not printed
    monkeypatch.setattr("sys.stdin", io.StringIO("https://hooks.example.test/services/team/channel/secretpart\n"))
    code, out, _ = secret(capsys, stack, "set", "SLACK_WEBHOOK_URL", "-")
    assert code == 0 and "secretpart" not in out
    assert stored(stack) == {
        **configured,
        "SLACK_WEBHOOK_URL": "https://hooks.example.test/services/team/channel/secretpart",
    }
    code, _, err = secret(capsys, stack, "set", "NOT_A_SETTING", "x")
    assert code == 2 and "is not a secret setting" in err


def test_prune_removes_the_moved_values_once_each_own_secret_holds_them(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an upgraded stack: each value also in its own secret (HubSpot's token changed there since)
    secret_ids = deploy(stack)
    secrets = client("secretsmanager")
    secrets.put_secret_value(SecretId=secret_ids["ConfigSecret"], SecretString=json.dumps(LEGACY))
    secrets.put_secret_value(
        SecretId=secret_ids["IntakeSecret"], SecretString=json.dumps({"INTAKE_API_KEYS": LEGACY["INTAKE_API_KEYS"]})
    )
    destinations = {"SLACK_WEBHOOK_URL": LEGACY["SLACK_WEBHOOK_URL"], "HUBSPOT_ACCESS_TOKEN": "pat-new"}
    secrets.put_secret_value(SecretId=secret_ids["DestinationSecret"], SecretString=json.dumps(destinations))
    # WHEN pruned
    code = main(["secret", "prune", "--stack", "clay-pipeline-dev"])
    out = capsys.readouterr().out
    # THEN the shared secret keeps only the callback's values, the others are untouched, and only names are printed
    assert code == 0
    assert values_of(secret_ids["ConfigSecret"]) == {"CALLBACK_SECRETS": LEGACY["CALLBACK_SECRETS"]}
    assert values_of(secret_ids["DestinationSecret"]) == destinations
    assert values_of(secret_ids["IntakeSecret"]) == {"INTAKE_API_KEYS": LEGACY["INTAKE_API_KEYS"]}
    assert out == (
        f"pruned from {secret_ids['ConfigSecret']}: CLAY_WEBHOOK_URLS, HUBSPOT_ACCESS_TOKEN, INTAKE_API_KEYS, "
        "SLACK_WEBHOOK_URL\n"
    )
    # AND a second prune has nothing to do
    assert main(["secret", "prune", "--stack", "clay-pipeline-dev"]) == 0
    assert capsys.readouterr().out == f"nothing to prune in {secret_ids['ConfigSecret']}\n"
