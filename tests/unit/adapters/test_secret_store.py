"""What the upgrade's SecretSeed copies (adapters/secret_store.values_to_seed), on plain data: into each
per-concern secret, the values of its names set in the shared secret and not already set in its own.
Secrets Manager's side (what is stored, the shared secret untouched) is tests/integration/test_secret_seed.py's."""

from __future__ import annotations

import pytest

from clay_pipeline.adapters.secret_store import values_to_seed
from clay_pipeline.config import SECRET_RESOURCES

pytestmark = pytest.mark.unit

LEGACY = {  # what a stack deployed before the split kept in its one shared secret
    "CALLBACK_SECRETS": "legacy-callback-secret-0123456789abcdef",
    "INTAKE_API_KEYS": "legacy-intake-key-0123456789abcdef012345",
    "CLAY_WEBHOOK_URLS": "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-legacy",
    "HUBSPOT_ACCESS_TOKEN": "pat-na1-legacy-token",
    "SLACK_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/legacy",
    "ZAPIER_WEBHOOK_URL": "",  # not set: nothing to copy
}


def test_each_secret_gets_only_its_own_names_that_it_lacks() -> None:
    # GIVEN a HubSpot token already set in the router's new secret (an operator who ran `secret set` first)
    own = {"DestinationSecret": {"HUBSPOT_ACCESS_TOKEN": "pat-na1-set-after-the-split"}}
    # WHEN the seed decides what each per-concern secret gets
    copied = {
        resource: values_to_seed(LEGACY, own.get(resource, {}), SECRET_RESOURCES[resource])
        for resource in ("IntakeSecret", "ClayWebhookSecret", "DestinationSecret", "ClayApiSecret")
    }
    # THEN each holds its own names, the value already set kept, a blank value not copied
    assert copied["IntakeSecret"] == {"INTAKE_API_KEYS": LEGACY["INTAKE_API_KEYS"]}
    assert copied["ClayWebhookSecret"] == {"CLAY_WEBHOOK_URLS": LEGACY["CLAY_WEBHOOK_URLS"]}
    assert copied["DestinationSecret"] == {"SLACK_WEBHOOK_URL": LEGACY["SLACK_WEBHOOK_URL"]}
    assert copied["ClayApiSecret"] == {}  # nothing of its in the shared secret
    assert sum(len(values) for values in copied.values()) == 3


def test_a_second_run_copies_nothing() -> None:
    first = {**LEGACY, **values_to_seed(LEGACY, {}, SECRET_RESOURCES["DestinationSecret"])}
    assert values_to_seed(LEGACY, first, SECRET_RESOURCES["DestinationSecret"]) == {}
