"""`clay-pipeline invoke <Function> <event.json>`: what `sam local invoke` does, without Docker.

The handler, its layer (clay_pipeline, importable from the project) and its environment come
from template.yaml, and it runs against a local emulator:
- AWS_ENDPOINT_URL set, or a `clay-pipeline run --serve` up (its .local-stack/serve.env names a
  live emulator): the resources named `clay-local-*` there are used, created first if missing, so
  what the function does shows in that stack (`trace`, the sinks). Only loopback endpoints are used;
- neither: a local stack is started for this one invocation (emulator with the template's
  resources, the local secrets, the Clay simulator and destination sinks; nothing polls the
  queues) and stopped afterwards.
It says on stderr which one it used.
HTTP events carry the dummy credentials of local.stack.LOCAL_SECRETS. The callback's auth
mode is read from the event (a Bearer token: jwt; a hex signature: hmac; else token) unless
CALLBACK_AUTH_MODE is set in the shell. The function's logs go to stderr and its response
is printed as JSON on stdout, as sam does; the exit code is 1 when the handler raised.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clay_pipeline.adapters.aws import client, reset_clients
from clay_pipeline.config import clear_secret_cache
from cli.operations.target import serving_endpoint
from local.aws import FAKE_CREDENTIALS, LOCAL_PREFIX, Provisioned, attach, function_environment, provision
from local.lambda_runtime import LambdaFunction, function_output_to
from local.stack import LOCAL_ENV_TAG, LOCAL_SECRETS, LocalStack, StackOptions
from local.template import environment, functions, placeholder_environment

_HEX_SIGNATURE = re.compile(r"(sha256=)?[0-9a-f]{64}")


def invoke_command(args: argparse.Namespace) -> int:
    specs = functions()
    if args.function not in specs:
        print(f"error: {args.function} is not a function in template.yaml ({', '.join(specs)})", file=sys.stderr)
        return 2
    try:
        event = json.loads(Path(args.event).read_text())
    except (OSError, ValueError) as error:
        print(f"error: cannot read the event {args.event}: {error}", file=sys.stderr)
        return 2
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "") or serving_endpoint()
    if endpoint and urlsplit(endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: AWS_ENDPOINT_URL {endpoint} is not a local emulator", file=sys.stderr)
        return 2
    where = (
        f"the running local stack (AWS emulator {endpoint})"
        if endpoint
        else "a local stack started for this invocation (`make run ARGS=--serve` keeps one up to use instead)"
    )
    print(f"invoking {args.function} on {where}", file=sys.stderr, flush=True)
    out = sys.stdout
    with function_output_to(sys.stderr), _local_resources(args.function, endpoint) as env:
        try:
            response = invoke(args.function, event, {**env, **_auth_mode_for(args.function, event)})
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            print(json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}, indent=2), file=out)
            return 1
    print(json.dumps(response, indent=2, default=str), file=out)
    return 0


def invoke(logical_id: str, event: dict[str, Any], env: dict[str, str]) -> Any:
    """Cold-start the handler with `env` and run the event once."""
    with environment({"CONFIG_SECRET_ID": env.get("CONFIG_SECRET_ID", "")}):
        return LambdaFunction(logical_id, env).invoke(event)


@contextlib.contextmanager
def _local_resources(logical_id: str, endpoint: str) -> Iterator[dict[str, str]]:
    """The function's environment against the local emulator (a stack of our own when none is given)."""
    if not endpoint:
        with LocalStack(StackOptions(pollers=False)) as stack:
            yield stack.function_env(logical_id)
        return
    implied = {name: os.environ.get(name, value) for name, value in FAKE_CREDENTIALS.items()}
    with environment({**implied, "AWS_ENDPOINT_URL": endpoint}):
        reset_clients()
        clear_secret_cache()
        resources = attach(LOCAL_PREFIX) or _provision_local()
        yield {**function_environment(logical_id, resources), **_stack_env(resources)}


def _provision_local() -> Provisioned:
    return provision(LOCAL_PREFIX, secrets=LOCAL_SECRETS)


def _stack_env(resources: Provisioned) -> dict[str, str]:
    """Environment a running local stack recorded on its config secret (e.g. HUBSPOT_BASE_URL of its sink)."""
    if not resources.secret_id:
        return {}
    tags = client("secretsmanager").describe_secret(SecretId=resources.secret_id).get("Tags", [])
    return {
        tag["Key"].removeprefix(LOCAL_ENV_TAG): tag["Value"] for tag in tags if tag["Key"].startswith(LOCAL_ENV_TAG)
    }


def _auth_mode_for(logical_id: str, event: dict[str, Any]) -> dict[str, str]:
    """CALLBACK_AUTH_MODE matching the event's credentials (the shell's value wins)."""
    spec = functions()[logical_id]
    if "CALLBACK_AUTH_MODE" not in spec.environment:
        return {}
    if os.environ.get("CALLBACK_AUTH_MODE"):
        return {"CALLBACK_AUTH_MODE": os.environ["CALLBACK_AUTH_MODE"]}
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    header = placeholder_environment(logical_id).get("CALLBACK_SECRET_HEADER", "X-Clay-Signature").lower()
    if event.get("routeKey") == "POST /clay/token" or headers.get("authorization", "").lower().startswith("bearer "):
        return {"CALLBACK_AUTH_MODE": "jwt"}
    if _HEX_SIGNATURE.fullmatch(headers.get(header, "").strip().lower()):
        return {"CALLBACK_AUTH_MODE": "hmac"}
    return {"CALLBACK_AUTH_MODE": "token"}
