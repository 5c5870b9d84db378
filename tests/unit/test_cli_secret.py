"""`clay-pipeline secret`'s decisions on plain data (cli/commands/secret.py): which names `init` generates,
which secret holds a name, what `list` shows, what `rotate` keeps and what `prune` may remove. Secrets
Manager itself (what a write stores, the values kept beside it) is tests/integration/test_cli_secret.py's.

The targets here hold their values already read; any AWS call the code makes goes to a closed loopback
port and fails loudly, so an action that would write cannot pass by writing nothing."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from clay_pipeline.adapters.aws import reset_clients
from clay_pipeline.config import SECRET_RESOURCES
from cli.commands.secret import (
    GENERATED,
    Secrets,
    _get,
    _list,
    _prune,
    init_report,
    not_deployed,
    rotated,
    stack_holders,
    to_generate,
)
from tests.conftest import CLOSED_AWS_ENDPOINT

pytestmark = pytest.mark.unit

ONE = "clay-pipeline/dev/config"  # --secret-id: one secret taken to hold every name
IDS = {resource: f"clay-pipeline/dev/{resource}" for resource in SECRET_RESOURCES}  # a stack, one per concern
# The secret as a first deploy leaves it (a random CALLBACK_SECRETS), plus a HubSpot token already set.
CONFIGURED = {"CALLBACK_SECRETS": "deployed-callback-secret-0123456789abcdef", "HUBSPOT_ACCESS_TOKEN": "pat-na1-xyz"}
LEGACY = {  # a stack deployed before the split: every value in the shared ConfigSecret
    "CALLBACK_SECRETS": "deployed-callback-secret-0123456789abcdef",
    "INTAKE_API_KEYS": "producer-key-0123456789abcdef0123456789",
    "SLACK_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/x",
    "HUBSPOT_ACCESS_TOKEN": "pat-old",
    "CLAY_WEBHOOK_URLS": "",  # as the old GenerateSecretString left it: not set
}


@pytest.fixture(autouse=True)
def no_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", CLOSED_AWS_ENDPOINT)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    reset_clients()
    yield
    monkeypatch.undo()
    reset_clients()


def one_secret(values: dict[str, str]) -> Secrets:
    return Secrets(dict.fromkeys(SECRET_RESOURCES, ONE), values={ONE: dict(values)})


def stack(ids: dict[str, str], values: dict[str, dict[str, str]]) -> Secrets:
    """A deployed stack's secrets (by its outputs) and what each holds; a secret not named holds nothing."""
    holders = stack_holders(ids)
    return Secrets(holders, values={secret_id: dict(values.get(secret_id, {})) for secret_id in holders.values()})


def test_init_fills_only_what_is_missing_and_a_second_init_changes_nothing() -> None:
    # WHEN init runs THEN the intake key and JWT user are generated, strong; what was set stays as it was
    made = to_generate(one_secret(CONFIGURED))
    first = {**CONFIGURED, **{name: GENERATED[name]() for name in made}}
    out = "\n".join(init_report(one_secret(first), made))
    assert out.startswith("generated INTAKE_API_KEYS, CALLBACK_JWT_USERS in ")
    assert {name: first[name] for name in CONFIGURED} == CONFIGURED
    assert len(first["INTAKE_API_KEYS"]) >= 32 and "," not in first["INTAKE_API_KEYS"]
    user, _, password = first["CALLBACK_JWT_USERS"].partition(":")
    assert user == "clay" and len(password) >= 24
    assert "still to set" in out and "CLAY_WEBHOOK_URLS" in out and "HUBSPOT_ACCESS_TOKEN" not in out
    # AND run again (to fill in something else) it regenerates nothing: no producer gets a 401
    assert to_generate(one_secret(first)) == []
    assert init_report(one_secret(first), [])[0] == "generated nothing (all were set)"


def test_list_names_what_is_set_and_never_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    code = _list(argparse.Namespace(), one_secret(CONFIGURED))
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == ONE  # one secret named: it holds every name
    lines = dict(line.split(None, 1) for line in out.splitlines()[1:])
    assert lines["HUBSPOT_ACCESS_TOKEN"] == "set"
    assert lines["INTAKE_API_KEYS"] == "not set  (secret init makes one)"
    assert all(value not in out for value in CONFIGURED.values())


def test_a_name_whose_secret_the_stack_does_not_deploy_is_refused() -> None:
    # GIVEN a routine-path stack: no ClayWebhookSecretName output
    target = stack({resource: secret_id for resource, secret_id in IDS.items() if resource != "ClayWebhookSecret"}, {})
    assert target.secret_id("CLAY_WEBHOOK_URLS") == ""
    assert "CLAY_WEBHOOK_URLS is not used by this stack" in not_deployed("CLAY_WEBHOOK_URLS", target)
    assert not_deployed("CLAY_API_KEY", target) == ""


def test_rotate_keeps_the_current_value_after_the_new_one() -> None:
    value = rotated(CONFIGURED["CALLBACK_SECRETS"], GENERATED["CALLBACK_SECRETS"]())
    new, old = value.split(",")
    assert old == CONFIGURED["CALLBACK_SECRETS"] and len(new) >= 32
    # AND `get` then reads both, the new one first
    assert one_secret({**CONFIGURED, "CALLBACK_SECRETS": value}).value("CALLBACK_SECRETS") == f"{new},{old}"


def test_prune_refuses_while_a_value_is_only_in_the_shared_secret_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an upgraded stack whose intake secret was filled but not the router's
    target = stack(
        IDS, {IDS["ConfigSecret"]: LEGACY, IDS["IntakeSecret"]: {"INTAKE_API_KEYS": LEGACY["INTAKE_API_KEYS"]}}
    )
    # WHEN pruned THEN it exits 1, names what is missing where, never a value, and writes nothing (no AWS here)
    code = _prune(argparse.Namespace(), target)
    captured = capsys.readouterr()
    assert code == 1
    assert f"HUBSPOT_ACCESS_TOKEN (not in {IDS['DestinationSecret']})" in captured.err
    assert f"SLACK_WEBHOOK_URL (not in {IDS['DestinationSecret']})" in captured.err
    assert "nothing was changed" in captured.err
    assert all(value not in captured.out + captured.err for value in LEGACY.values() if value)
    assert target.values(IDS["ConfigSecret"]) == LEGACY


def test_prune_keeps_a_value_whose_secret_the_stack_does_not_deploy(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a routine-path stack (no ClayWebhookSecret) whose shared secret still holds the table webhooks
    ids = {resource: secret_id for resource, secret_id in IDS.items() if resource != "ClayWebhookSecret"}
    shared = {"CALLBACK_SECRETS": LEGACY["CALLBACK_SECRETS"], "CLAY_WEBHOOK_URLS": "https://api.clay.com/v3/x"}
    target = stack(ids, {IDS["ConfigSecret"]: shared})
    # WHEN pruned THEN it is kept (needed if the stack goes back to the table path), and said so
    assert _prune(argparse.Namespace(), target) == 0
    out = capsys.readouterr().out
    assert "kept in" in out and "not deployed on this stack's path: CLAY_WEBHOOK_URLS" in out
    assert target.values(IDS["ConfigSecret"]) == shared


def test_a_stack_deployed_before_the_split_keeps_every_name_in_its_one_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a stack not upgraded yet: its only secret output is ConfigSecretName
    shared = IDS["ConfigSecret"]
    target = stack({"ConfigSecret": shared}, {shared: {"HUBSPOT_ACCESS_TOKEN": "pat-na1-old-stack"}})
    # THEN every name is in that one secret, read from there, and prune has nothing to do there
    assert {target.secret_id(name) for names in SECRET_RESOURCES.values() for name in names} == {shared}
    assert _get(argparse.Namespace(name="HUBSPOT_ACCESS_TOKEN"), target) == 0
    assert _prune(argparse.Namespace(), target) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "pat-na1-old-stack"
    assert out.splitlines()[1] == f"nothing to prune: {shared} is the one secret every function reads here"
