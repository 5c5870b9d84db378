"""`clay-pipeline secret list|init|set|get|rotate|prune`: the pipeline's secrets, one value at a time.

A deployed stack keeps its secret settings in one Secrets Manager secret per concern, each a JSON
object, so each function's role reads only its own (config.SECRET_RESOURCES says which holds each
name; outputs `<resource>Name`, e.g. ConfigSecretName for the callback's, IntakeSecretName). These
commands find the secret holding a name, change that one value and keep the others, so filling in
HUBSPOT_ACCESS_TOKEN never regenerates the intake keys:
- `init` fills only what is missing: strong random values for the ones the pipeline itself checks
  (INTAKE_API_KEYS, CALLBACK_SECRETS, CALLBACK_JWT_USERS), and names the ones only you can give;
- `set NAME VALUE` (VALUE `-` reads it from stdin, out of the shell's history) refuses a value the
  functions would refuse (a key shorter than 32 characters, a JWT user without a strong password);
- `rotate NAME` puts a new random value first and keeps the current one after it (both accepted),
  for INTAKE_API_KEYS and CALLBACK_SECRETS; `set NAME NEW` later drops the old one;
- `list` shows, per secret, which of its names are set, never a value, and a name set in a secret that
  does not hold it (left in the shared ConfigSecret by a stack deployed before the split); `get NAME`
  prints one value, for a script;
- `prune` removes from the shared ConfigSecret the values the upgrade's SecretSeed copied into their own
  secrets, once every one of them holds its value (else it changes nothing and names what is missing).
Which secrets: --stack NAME (its outputs; a stack deployed before the split has only ConfigSecretName, which
holds every name), else --secret-id or CONFIG_SECRET_ID (one secret taken to hold every name), else the
local stack's: there each name is written to its own secret and to the shared one, which the local stack's
single process reads for every function. Functions read a changed value within 5 minutes (their cache).
Values are printed only by `get`; everything else names settings.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clay_pipeline.adapters.secret_store import is_set, read_values, write_values
from clay_pipeline.config import SECRET_NAMES, SECRET_RESOURCE_OF, SECRET_RESOURCES, SHARED_SECRET_RESOURCE
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


class Secrets:
    """The secrets of the target, each read once, and where each name lives."""

    def __init__(
        self,
        secret_ids: dict[str, str],
        mirror_to_shared: bool = False,
        values: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.secret_ids = secret_ids  # by template resource; a resource the stack does not deploy is absent
        # the local stack: its one process reads the shared secret for every function, so a change goes there too
        self.mirror_to_shared = mirror_to_shared
        self._values: dict[str, dict[str, Any]] = dict(values or {})  # by secret id, each read once

    @property
    def shared_id(self) -> str:
        return self.secret_ids.get(SHARED_SECRET_RESOURCE, "")

    def secret_id(self, name: str) -> str:
        """The secret holding this name, '' when the target has none (not deployed on its path)."""
        return self.secret_ids.get(SECRET_RESOURCE_OF[name], "")

    def values(self, secret_id: str) -> dict[str, Any]:
        if secret_id not in self._values:
            self._values[secret_id] = read_values(secret_id)
        return self._values[secret_id]

    def value(self, name: str) -> str:
        """The value functions read: from its own secret (locally, the shared one the process reads)."""
        secret_id = self.shared_id if self.mirror_to_shared else self.secret_id(name)
        value = self.values(secret_id).get(name) if secret_id else None
        return str(value).strip() if is_set(value) else ""

    def replace(self, secret_id: str, values: dict[str, Any]) -> None:
        """The whole of one secret's values."""
        self._values[secret_id] = values
        write_values(secret_id, values)

    def write(self, changes: dict[str, str]) -> None:
        """Each changed name into its own secret (and the shared one, locally), the others' values kept."""
        holders: dict[str, dict[str, str]] = {}
        mirrors = [self.shared_id] if self.mirror_to_shared else []
        for name, value in changes.items():
            for secret_id in dict.fromkeys([self.secret_id(name), *mirrors]):
                holders.setdefault(secret_id, {})[name] = value
        for secret_id, mine in holders.items():
            self.replace(secret_id, {**self.values(secret_id), **mine})


def secret_command(args: argparse.Namespace) -> int:
    if getattr(args, "name", None) and args.name not in SECRET_NAMES:
        return usage_error(f"{args.name} is not a secret setting: one of {', '.join(sorted(SECRET_NAMES))}")
    if args.region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    from cli.operations.target import TargetError

    try:
        target = _target(args)
    except TargetError as error:
        return usage_error(str(error))
    if not target.secret_ids:
        return usage_error("which secret? pass --stack or --secret-id, set CONFIG_SECRET_ID, or start the local stack")
    if getattr(args, "name", None) and (problem := not_deployed(args.name, target)):
        return usage_error(problem)
    return ACTIONS[args.action](args, target)


def not_deployed(name: str, target: Secrets) -> str:
    """Why the target has no secret for this name ('' when it has one)."""
    if target.secret_id(name):
        return ""
    return f"{name} is not used by this stack (its secret is deployed only on the other path)"


def _list(args: argparse.Namespace, target: Secrets) -> int:
    print("\n".join(listing(target)))
    return Exit.OK


def listing(target: Secrets) -> list[str]:
    """Per secret, which of its names are set (never a value), and names set where no function reads them."""
    lines = []
    # locally: the shared secret, which the one process reads for every function, holds every name
    listed = [target.shared_id] if target.mirror_to_shared else dict.fromkeys(target.secret_ids.values())
    for secret_id in listed:
        held = sorted(name for name in SECRET_NAMES if target.mirror_to_shared or target.secret_id(name) == secret_id)
        values = target.values(secret_id)
        lines.append(secret_id)
        for name in held:
            hint = "  (secret init makes one)" if name in GENERATED and not is_set(values.get(name)) else ""
            lines.append(f"  {name:30} {'set' if is_set(values.get(name)) else 'not set'}{hint}")
        for name in sorted(name for name in set(values) - set(held) if is_set(values[name])):
            own = target.secret_id(name) if name in SECRET_NAMES else ""
            where = f"; it belongs in {own} (secret prune removes it here once it is there)" if own else ""
            lines.append(f"  {name:30} set, but no function reads it here{where}")
    return lines


def _get(args: argparse.Namespace, target: Secrets) -> int:
    value = target.value(args.name)
    if not value:
        return fail(f"{args.name} is not set in {target.secret_id(args.name)}")
    print(value)
    return Exit.OK


def _init(args: argparse.Namespace, target: Secrets) -> int:
    made = to_generate(target)
    if made:
        target.write({name: GENERATED[name]() for name in made})
    print("\n".join(init_report(target, made)))
    return Exit.OK


def to_generate(target: Secrets) -> list[str]:
    """What `init` generates: the generated names the target holds and has no value for."""
    return [name for name in GENERATED if target.secret_id(name) and not target.value(name)]


def init_report(target: Secrets, made: list[str]) -> list[str]:
    """What `init` says: the names it generated, where, and the ones only the operator can give."""
    where = ", ".join(dict.fromkeys(target.secret_id(name) for name in made))
    lines = [f"generated {', '.join(made) + ' in ' + where if made else 'nothing (all were set)'}"]
    missing = sorted(
        name for name in SECRET_NAMES - set(GENERATED) if target.secret_id(name) and not target.value(name)
    )
    if missing:
        lines.append(f"still to set, those you use (clay-pipeline secret set NAME VALUE): {', '.join(missing)}")
    return lines


def rotated(current: str, new: str) -> str:
    """The new value first, then the current one (its first entry): both accepted until the old is dropped."""
    return ",".join([new, *[value for value in current.split(",") if value.strip()][:1]])


def _rotate(args: argparse.Namespace, target: Secrets) -> int:
    target.write({args.name: rotated(target.value(args.name), GENERATED[args.name]())})
    print(
        f"{args.name}: a new value first, the current one kept after it; both are accepted within 5 minutes. "
        f"Move the callers to the new one (clay-pipeline secret get {args.name} prints both), then drop the "
        f"old one with clay-pipeline secret set {args.name} NEW_VALUE"
    )
    return Exit.OK


def _set(args: argparse.Namespace, target: Secrets) -> int:
    value = sys.stdin.read().strip() if args.value == "-" else args.value.strip()
    if problem := _refused(args.name, value):
        return usage_error(f"{problem} (nothing was changed)")
    target.write({args.name: value})
    where = target.secret_id(args.name)
    if target.mirror_to_shared and target.shared_id != where:
        where += f" and {target.shared_id}"
    print(f"{args.name} set in {where}; the functions read it within 5 minutes")
    return Exit.OK


@dataclass(frozen=True)
class Prune:
    """What `prune` may do with the names a stack deployed before the split left in the shared secret."""

    removable: list[str]  # its own secret holds it now (or it was never set): removed from the shared secret
    missing: list[str]  # set only in the shared secret: while any is, nothing is removed
    unknown: list[str]  # its secret is not deployed on this stack's path: kept for a switch of path


def prune_plan(target: Secrets) -> Prune | None:
    """None when the shared secret is the one secret every function reads (nothing to prune)."""
    if target.mirror_to_shared or len(set(target.secret_ids.values())) == 1:
        return None
    shared_id = target.shared_id
    shared = target.values(shared_id)
    strays = sorted(name for name in shared if name in SECRET_NAMES and target.secret_id(name) != shared_id)
    unknown = sorted(name for name in strays if not target.secret_id(name) and is_set(shared[name]))
    removable = [name for name in strays if name not in unknown and (not is_set(shared[name]) or target.value(name))]
    return Prune(removable, sorted(set(strays) - set(unknown) - set(removable)), unknown)


def prune_refusal(target: Secrets, plan: Prune) -> str:
    missing = ", ".join(f"{name} (not in {target.secret_id(name)})" for name in plan.missing)
    return (
        f"not pruned: {missing} only in {target.shared_id}: set each in its own secret (clay-pipeline secret set "
        "NAME VALUE; on a stack not yet upgraded, deploying this version copies them); nothing was changed"
    )


def _prune(args: argparse.Namespace, target: Secrets) -> int:
    """Remove from the shared secret each value its own secret now holds; nothing while any is still missing."""
    shared_id = target.shared_id
    plan = prune_plan(target)
    if plan is None:
        print(f"nothing to prune: {shared_id or 'this secret'} is the one secret every function reads here")
        return Exit.OK
    if plan.missing:
        return fail(prune_refusal(target, plan))
    shared = target.values(shared_id)
    if plan.removable:
        target.replace(shared_id, {name: value for name, value in shared.items() if name not in plan.removable})
    removed = ", ".join(plan.removable)
    print(f"pruned from {shared_id}: {removed}" if plan.removable else f"nothing to prune in {shared_id}")
    if plan.unknown:
        print(f"kept in {shared_id}, their secret is not deployed on this stack's path: {', '.join(plan.unknown)}")
    return Exit.OK


ACTIONS: dict[str, Callable[[argparse.Namespace, Secrets], int]] = {
    "list": _list,
    "get": _get,
    "init": _init,
    "rotate": _rotate,
    "set": _set,
    "prune": _prune,
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


def _target(args: argparse.Namespace) -> Secrets:
    """The target's secrets by template resource (config.SECRET_RESOURCES)."""
    if args.stack:
        from cli.operations.target import stack_secrets

        return Secrets(stack_holders(stack_secrets(args.stack)))
    one = args.secret_id or os.environ.get("CONFIG_SECRET_ID", "")
    if one:
        return Secrets(dict.fromkeys(SECRET_RESOURCES, one))
    from cli.operations.target import local_resources

    resources = local_resources()
    if resources is None or not resources.secret_id:
        return Secrets({})
    local_ids = {resource: resources.resolver.refs[resource] for resource in SECRET_RESOURCES}
    return Secrets(local_ids, mirror_to_shared=True)


def stack_holders(found: dict[str, str]) -> dict[str, str]:
    """A stack's secrets by template resource, from its outputs: one deployed before the split has only
    ConfigSecretName, and that one secret holds every name."""
    if set(found) == {SHARED_SECRET_RESOURCE}:
        return dict.fromkeys(SECRET_RESOURCES, found[SHARED_SECRET_RESOURCE])
    return found
