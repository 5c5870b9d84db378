"""`clay-pipeline secret` against the secrets in moto's Secrets Manager: one given secret, or a stack's."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from clay_pipeline import config
from clay_pipeline.adapters.aws import client
from cli.main import main

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


def test_init_fills_only_what_is_missing_and_a_second_init_changes_nothing(
    configured: dict[str, str], stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN init runs THEN the intake key and JWT user are generated, strong; what was set stays as it was
    code, out, _ = secret(capsys, stack, "init")
    assert code == 0 and out.startswith("generated INTAKE_API_KEYS, CALLBACK_JWT_USERS in ")
    first = stored(stack)
    assert {name: first[name] for name in configured} == configured
    assert len(first["INTAKE_API_KEYS"]) >= 32 and "," not in first["INTAKE_API_KEYS"]
    user, _, password = first["CALLBACK_JWT_USERS"].partition(":")
    assert user == "clay" and len(password) >= 24
    assert "still to set" in out and "CLAY_WEBHOOK_URLS" in out and "HUBSPOT_ACCESS_TOKEN" not in out
    # AND run again (to fill in something else) it regenerates nothing: no producer gets a 401
    code, out, _ = secret(capsys, stack, "init")
    assert code == 0 and out.startswith("generated nothing (all were set)")
    assert stored(stack) == first


def test_list_names_what_is_set_and_never_a_value(
    configured: dict[str, str], stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = secret(capsys, stack, "list")
    assert code == 0
    assert out.splitlines()[0] == stack.secret_id  # one secret named: it holds every name
    lines = dict(line.split(None, 1) for line in out.splitlines()[1:])
    assert lines["HUBSPOT_ACCESS_TOKEN"] == "set"
    assert lines["INTAKE_API_KEYS"] == "not set  (secret init makes one)"
    assert all(value not in out for value in configured.values())


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


def test_a_name_whose_secret_the_stack_does_not_deploy_is_refused(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a routine-path stack: no ClayWebhookSecretName output
    secret_ids = {resource: stack.resolver.refs[resource] for resource in config.SECRET_RESOURCES}
    outputs = {f"{r}Name": {"Value": secret_id} for r, secret_id in secret_ids.items() if r != "ClayWebhookSecret"}
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}, "Outputs": outputs}
    client("cloudformation").create_stack(StackName="routine-stack", TemplateBody=json.dumps(template))
    code = main(["secret", "set", "CLAY_WEBHOOK_URLS", "https://api.clay.com/x", "--stack", "routine-stack"])
    assert code == 2 and "CLAY_WEBHOOK_URLS is not used by this stack" in capsys.readouterr().err


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


def test_rotate_keeps_the_current_value_after_the_new_one(
    configured: dict[str, str], stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = secret(capsys, stack, "rotate", "CALLBACK_SECRETS")
    assert code == 0
    new, old = stored(stack)["CALLBACK_SECRETS"].split(",")
    assert old == configured["CALLBACK_SECRETS"] and len(new) >= 32
    code, out, _ = secret(capsys, stack, "get", "CALLBACK_SECRETS")
    assert out.strip() == f"{new},{old}"
    # AND the old one is dropped by setting the new one alone
    assert secret(capsys, stack, "set", "CALLBACK_SECRETS", new)[0] == 0
    assert stored(stack)["CALLBACK_SECRETS"] == new


LEGACY = {  # a stack deployed before the split: every value in the shared ConfigSecret
    "CALLBACK_SECRETS": "deployed-callback-secret-0123456789abcdef",
    "INTAKE_API_KEYS": "producer-key-0123456789abcdef0123456789",
    "SLACK_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/x",
    "HUBSPOT_ACCESS_TOKEN": "pat-old",
    "CLAY_WEBHOOK_URLS": "",  # as the old GenerateSecretString left it: not set
}


def test_prune_refuses_while_a_value_is_only_in_the_shared_secret_and_changes_nothing(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an upgraded stack whose intake secret was filled but not the router's
    secret_ids = deploy(stack)
    client("secretsmanager").put_secret_value(SecretId=secret_ids["ConfigSecret"], SecretString=json.dumps(LEGACY))
    client("secretsmanager").put_secret_value(
        SecretId=secret_ids["IntakeSecret"], SecretString=json.dumps({"INTAKE_API_KEYS": LEGACY["INTAKE_API_KEYS"]})
    )
    # WHEN pruned THEN it exits 1, names what is missing where, never a value, and the shared secret is as it was
    code = main(["secret", "prune", "--stack", "clay-pipeline-dev"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"HUBSPOT_ACCESS_TOKEN (not in {secret_ids['DestinationSecret']})" in captured.err
    assert f"SLACK_WEBHOOK_URL (not in {secret_ids['DestinationSecret']})" in captured.err
    assert "nothing was changed" in captured.err
    assert all(value not in captured.out + captured.err for value in LEGACY.values() if value)
    assert values_of(secret_ids["ConfigSecret"]) == LEGACY


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


def test_prune_keeps_a_value_whose_secret_the_stack_does_not_deploy(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a routine-path stack (no ClayWebhookSecret) whose shared secret still holds the table webhooks
    outputs = {
        f"{resource}Name": {"Value": stack.resolver.refs[resource]}
        for resource in config.SECRET_RESOURCES
        if resource != "ClayWebhookSecret"
    }
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}, "Outputs": outputs}
    client("cloudformation").create_stack(StackName="routine-stack", TemplateBody=json.dumps(template))
    shared = {"CALLBACK_SECRETS": LEGACY["CALLBACK_SECRETS"], "CLAY_WEBHOOK_URLS": "https://api.clay.com/v3/x"}
    client("secretsmanager").put_secret_value(
        SecretId=stack.resolver.refs["ConfigSecret"], SecretString=json.dumps(shared)
    )
    # WHEN pruned THEN it is kept (needed if the stack goes back to the table path), and said so
    assert main(["secret", "prune", "--stack", "routine-stack"]) == 0
    out = capsys.readouterr().out
    assert "kept in" in out and "not deployed on this stack's path: CLAY_WEBHOOK_URLS" in out
    assert values_of(stack.resolver.refs["ConfigSecret"]) == shared


def test_a_stack_deployed_before_the_split_keeps_every_name_in_its_one_secret(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a stack not upgraded yet: its only secret output is ConfigSecretName
    shared = stack.resolver.refs["ConfigSecret"]
    outputs = {"ConfigSecretName": {"Value": shared}}
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}, "Outputs": outputs}
    client("cloudformation").create_stack(StackName="before-the-split", TemplateBody=json.dumps(template))
    # WHEN a value is set and read back THEN it is in that one secret, and prune has nothing to do there
    assert main(["secret", "set", "HUBSPOT_ACCESS_TOKEN", "pat-na1-old-stack", "--stack", "before-the-split"]) == 0
    assert values_of(shared) == {"HUBSPOT_ACCESS_TOKEN": "pat-na1-old-stack"}
    assert main(["secret", "get", "HUBSPOT_ACCESS_TOKEN", "--stack", "before-the-split"]) == 0
    assert main(["secret", "prune", "--stack", "before-the-split"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == "pat-na1-old-stack"
    assert out.splitlines()[2] == f"nothing to prune: {shared} is the one secret every function reads here"
