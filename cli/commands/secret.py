"""`clay-pipeline secret list|init|set|get|rotate`: the pipeline's config secret, one value at a time.

The stack keeps every secret setting in one Secrets Manager secret, a JSON object
(`clay-pipeline/<stage>/config`, output ConfigSecretName). These commands change one value and
keep the others, so filling in HUBSPOT_ACCESS_TOKEN never regenerates the intake keys:
- `init` fills only what is missing: strong random values for the ones the pipeline itself checks
  (INTAKE_API_KEYS, CALLBACK_SECRETS, CALLBACK_JWT_USERS), and names the ones only you can give;
- `set NAME VALUE` (VALUE `-` reads it from stdin, out of the shell's history) refuses a value the
  functions would refuse (a key shorter than 32 characters, a JWT user without a strong password);
- `rotate NAME` puts a new random value first and keeps the current one after it (both accepted),
  for INTAKE_API_KEYS and CALLBACK_SECRETS; `set NAME NEW` later drops the old one;
- `list` shows which are set, never a value; `get NAME` prints one value, for a script.
Which secret: --secret-id, else --stack NAME (its ConfigSecretName output), else CONFIG_SECRET_ID,
else the local stack's. Functions read a changed value within 5 minutes (their cache).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Callable

from clay_pipeline.adapters.aws import client
from clay_pipeline.config import SECRET_NAMES
from clay_pipeline.core import auth
from clay_pipeline.core.errors import ConfigError
from cli.commands.common import Exit, fail, usage_error

# The values `init` generates, and how; the others come from Clay, HubSpot and the destinations.
GENERATED: dict[str, Callable[[], str]] = {
    "INTAKE_API_KEYS": lambda: secrets.token_urlsafe(32),
    "CALLBACK_SECRETS": lambda: secrets.token_urlsafe(36),
    "CALLBACK_JWT_USERS": lambda: "clay:" + secrets.token_urlsafe(24),
}
CHECKS: dict[str, Callable[[list[str]], object]] = {
    "INTAKE_API_KEYS": lambda values: auth.check_secrets(values, "INTAKE_API_KEYS"),
    "CALLBACK_SECRETS": lambda values: auth.check_secrets(values, "CALLBACK_SECRETS"),
    "CLAY_WEBHOOK_SIGNING_SECRETS": lambda values: auth.check_secrets(values, "CLAY_WEBHOOK_SIGNING_SECRETS"),
    "CALLBACK_JWT_USERS": auth.jwt_users,
}


def secret_command(args: argparse.Namespace) -> int:
    if getattr(args, "name", None) and args.name not in SECRET_NAMES:
        return usage_error(f"{args.name} is not a secret setting: one of {', '.join(sorted(SECRET_NAMES))}")
    if args.region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    secret_id = _secret_id(args)
    if not secret_id:
        return usage_error("which secret? pass --secret-id or --stack, set CONFIG_SECRET_ID, or start the local stack")
    return ACTIONS[args.action](args, secret_id, _read(secret_id))


def _list(args: argparse.Namespace, secret_id: str, values: dict[str, str]) -> int:
    for name in sorted(SECRET_NAMES):
        hint = "  (secret init makes one)" if name in GENERATED and not values.get(name) else ""
        print(f"{name:30} {'set' if values.get(name) else 'not set'}{hint}")
    for name in sorted(set(values) - SECRET_NAMES):
        print(f"{name:30} set, but no function reads it")
    return Exit.OK


def _get(args: argparse.Namespace, secret_id: str, values: dict[str, str]) -> int:
    if not values.get(args.name):
        return fail(f"{args.name} is not set in {secret_id}")
    print(values[args.name])
    return Exit.OK


def _init(args: argparse.Namespace, secret_id: str, values: dict[str, str]) -> int:
    made = [name for name in GENERATED if not values.get(name)]
    if made:
        _write(secret_id, {**values, **{name: GENERATED[name]() for name in made}})
    print(f"generated {', '.join(made) or 'nothing (all were set)'} in {secret_id}")
    missing = sorted(name for name in SECRET_NAMES - set(GENERATED) if not values.get(name))
    if missing:
        print(f"still to set, those you use (clay-pipeline secret set NAME VALUE): {', '.join(missing)}")
    return Exit.OK


def _rotate(args: argparse.Namespace, secret_id: str, values: dict[str, str]) -> int:
    current = [value for value in (values.get(args.name) or "").split(",") if value.strip()]
    _write(secret_id, {**values, args.name: ",".join([GENERATED[args.name](), *current[:1]])})
    print(
        f"{args.name}: a new value first, the current one kept after it; both are accepted within 5 minutes. "
        f"Move the callers to the new one (clay-pipeline secret get {args.name} prints both), then drop the "
        f"old one with clay-pipeline secret set {args.name} NEW_VALUE"
    )
    return Exit.OK


def _set(args: argparse.Namespace, secret_id: str, values: dict[str, str]) -> int:
    value = sys.stdin.read().strip() if args.value == "-" else args.value.strip()
    if problem := _refused(args.name, value):
        return usage_error(f"{problem} (nothing was changed)")
    _write(secret_id, {**values, args.name: value})
    print(f"{args.name} set in {secret_id}; the functions read it within 5 minutes")
    return Exit.OK


ACTIONS: dict[str, Callable[[argparse.Namespace, str, dict[str, str]], int]] = {
    "list": _list,
    "get": _get,
    "init": _init,
    "rotate": _rotate,
    "set": _set,
}


def _refused(name: str, value: str) -> str:
    """Why a function would refuse this value, or ''."""
    check = CHECKS.get(name)
    if check is None:
        return ""
    try:
        check([item.strip() for item in value.split(",") if item.strip()])
    except ConfigError as error:
        return str(error)
    return ""


def _secret_id(args: argparse.Namespace) -> str:
    if args.secret_id:
        return str(args.secret_id)
    if args.stack:
        described = client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        outputs = {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])}
        return outputs.get("ConfigSecretName", "")
    if os.environ.get("CONFIG_SECRET_ID"):
        return os.environ["CONFIG_SECRET_ID"]
    from cli.operations.target import local_secret_id

    return local_secret_id()


def _read(secret_id: str) -> dict[str, str]:
    text = client("secretsmanager").get_secret_value(SecretId=secret_id).get("SecretString") or "{}"
    document = json.loads(text)
    return {str(name): str(value) for name, value in document.items()} if isinstance(document, dict) else {}


def _write(secret_id: str, values: dict[str, str]) -> None:
    client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(values))
