"""The pipeline's Secrets Manager secrets: each a JSON object of settings (config.SECRET_RESOURCES says which).

`seed` copies into each per-concern secret the values it lacks from the shared secret a stack deployed before
the split kept every value in, never over a value already set: the template's SecretSeed custom resource and
the local stack's provisioning run it before any function reads its own secret. Values never leave this
module but into Secrets Manager: what it returns and raises names settings, never their values.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from clay_pipeline.adapters.aws import client


class SecretFormatError(ValueError):
    """The secret does not hold a JSON object (its text is not repeated: it may be a value)."""


def read_values(secret_id: str) -> dict[str, Any]:
    """The secret's JSON object (its current version)."""
    text = client("secretsmanager").get_secret_value(SecretId=secret_id).get("SecretString") or "{}"
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretFormatError(f"secret {secret_id} does not hold a JSON object")
    return document


def write_values(secret_id: str, values: Mapping[str, Any]) -> None:
    """The whole JSON object, as the secret's new current version."""
    client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(dict(values)))


def is_set(value: Any) -> bool:
    """A value a function would use: present and not blank (as config.secret reads it)."""
    return value is not None and str(value).strip() != ""


def values_to_seed(shared: Mapping[str, Any], own: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """The values among `names` set in the shared secret and not in the secret's own: what `seed` copies."""
    return {name: shared[name] for name in sorted(names) if is_set(shared.get(name)) and not is_set(own.get(name))}


def seed(shared_id: str, targets: Mapping[str, Collection[str]]) -> dict[str, list[str]]:
    """Copy into each target secret (id -> the names it holds) the values it lacks from the shared secret.

    Idempotent, and never over a value already set (one `clay-pipeline secret set` after the split wins).
    Returns the names copied per target. Raises botocore's ClientError when a secret cannot be read or
    written, SecretFormatError when one is not a JSON object; a target written before the error keeps its
    copies (they are only copies: the shared secret is never changed here).
    """
    shared = read_values(shared_id)
    copied: dict[str, list[str]] = {}
    for target_id, names in targets.items():
        own = read_values(target_id)
        missing = values_to_seed(shared, own, names)
        if missing:
            write_values(target_id, {**own, **missing})
        copied[target_id] = sorted(missing)
    return copied


def seed_resource(properties: Mapping[str, Any]) -> dict[str, list[str]]:
    """`seed` as the SecretSeed custom resource's properties in template.yaml ask: SharedSecret, and Secrets
    as [{SecretId, Names}]."""
    targets = {str(target["SecretId"]): [str(name) for name in target["Names"]] for target in properties["Secrets"]}
    return seed(str(properties["SharedSecret"]), targets)
