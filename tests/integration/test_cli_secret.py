"""`clay-pipeline secret` against the config secret in moto's Secrets Manager."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

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
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["HUBSPOT_ACCESS_TOKEN"] == "set"
    assert lines["INTAKE_API_KEYS"] == "not set  (secret init makes one)"
    assert all(value not in out for value in configured.values())


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
