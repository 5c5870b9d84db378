"""Settings validated at cold start; secrets from the environment (the JSON secret read from Secrets Manager:
tests/integration/test_config.py)."""

from __future__ import annotations

import pytest

from clay_pipeline import config
from clay_pipeline.config import CallbackSettings, RouterSettings
from clay_pipeline.core.errors import ConfigError

pytestmark = pytest.mark.unit

BASE = {"STATE_TABLE": "state", "LEADS_TABLE": "leads", "ROUTING_QUEUE_URL": "https://queue"}


def test_callback_defaults() -> None:
    settings = CallbackSettings.from_env(BASE)
    assert settings.callback_auth_mode == "token"
    assert settings.callback_secret_header == "X-Clay-Signature"
    assert settings.callback_tolerance_seconds == 300
    assert settings.callback_max_body_bytes == 204_800  # not 1 MiB: DynamoDB items hold 400 KB


def test_missing_required_setting_names_it() -> None:
    with pytest.raises(ConfigError, match="ROUTING_QUEUE_URL"):
        CallbackSettings.from_env({"STATE_TABLE": "state", "LEADS_TABLE": "leads"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("CALLBACK_AUTH_MODE", "basic"), ("CALLBACK_TOLERANCE_SECONDS", "soon"), ("CALLBACK_MAX_BODY_BYTES", "10")],
)
def test_invalid_values_fail_the_cold_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        CallbackSettings.from_env({**BASE, name: value})


def test_blank_values_mean_default() -> None:
    assert CallbackSettings.from_env({**BASE, "CALLBACK_AUTH_MODE": " "}).callback_auth_mode == "token"


def test_only_declared_secrets_can_be_read() -> None:
    with pytest.raises(KeyError):
        config.secret("STATE_TABLE")


def test_environment_wins_over_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_API_KEYS", " k1, ,k2 ")
    monkeypatch.setenv("CONFIG_SECRET_ID", "does-not-matter")
    assert config.secret_list("INTAKE_API_KEYS") == ["k1", "k2"]


def test_unset_without_secret_id_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTAKE_API_KEYS", raising=False)
    monkeypatch.delenv("CONFIG_SECRET_ID", raising=False)
    assert config.secret("INTAKE_API_KEYS") == ""


def test_a_base_url_must_be_https_except_to_loopback() -> None:
    base = {"STATE_TABLE": "s", "LEADS_TABLE": "l", "ROUTING_QUEUE_URL": "q", "ROUTING_DLQ_URL": "d"}
    with pytest.raises(ConfigError, match=r"HUBSPOT_BASE_URL: .*must be an https URL"):
        RouterSettings.from_env({**base, "HUBSPOT_BASE_URL": "http://api.hubapi.com"})
    local = RouterSettings.from_env({**base, "HUBSPOT_BASE_URL": "http://127.0.0.1:8080"})
    assert local.hubspot_base_url == "http://127.0.0.1:8080"
