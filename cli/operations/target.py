"""Which pipeline an operator command works on.

In order of precedence, for each table and queue:
1. its flag (--state-table, --leads-table, --lead-queue-url, --lead-dlq-url, --routing-queue-url,
   --routing-dlq-url, --run-poll-queue-url, --run-poll-dlq-url);
2. --stack NAME: the deployed stack's outputs (StateTableName, LeadsTableName, LeadQueueUrl,
   LeadDLQUrl, RoutingQueueUrl, RoutingDLQUrl, RunPollQueueUrl, RunPollDLQUrl), read with the usual
   AWS credentials and region;
3. the environment variable of the same name as the functions use (STATE_TABLE, LEADS_TABLE, ...);
4. the local stack: its clay-local-* tables and queues, in the loopback emulator AWS_ENDPOINT_URL
   points at, else the one a running `make run ARGS=--serve` wrote to .local-stack/serve.env.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.adapters.aws import client, reset_clients
from local.aws import FAKE_CREDENTIALS, LOCAL_PREFIX, Provisioned, attach
from local.template import SERVE_ENV

STACK_OUTPUTS = {
    "state_table": "StateTableName",
    "leads_table": "LeadsTableName",
    "lead_queue_url": "LeadQueueUrl",
    "lead_dlq_url": "LeadDLQUrl",
    "routing_queue_url": "RoutingQueueUrl",
    "routing_dlq_url": "RoutingDLQUrl",
    "run_poll_queue_url": "RunPollQueueUrl",
    "run_poll_dlq_url": "RunPollDLQUrl",
}
LOCAL_RESOURCES = {
    "state_table": "StateTable",
    "leads_table": "LeadsTable",
    "lead_queue_url": "LeadQueue",
    "lead_dlq_url": "LeadDLQ",
    "routing_queue_url": "RoutingQueue",
    "routing_dlq_url": "RoutingDLQ",
    "run_poll_queue_url": "RunPollQueue",
    "run_poll_dlq_url": "RunPollDLQ",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class TargetError(Exception):
    """The stack, or one of its tables or queues, could not be found: a usage error."""


@dataclass(frozen=True)
class Target:
    state_table: str = ""
    leads_table: str = ""
    lead_queue_url: str = ""
    lead_dlq_url: str = ""
    routing_queue_url: str = ""
    routing_dlq_url: str = ""
    run_poll_queue_url: str = ""
    run_poll_dlq_url: str = ""
    where: str = ""  # what it is, for the output: "stack clay-prod", "the local stack at http://..."


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("which pipeline (default: environment variables, else the local stack)")
    group.add_argument("--stack", help="deployed stack name: tables and queues from its outputs")
    group.add_argument("--region", help="AWS region of the stack (default: the AWS CLI's)")
    for name in STACK_OUTPUTS:
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"default ${name.upper()}")


def resolve(args: argparse.Namespace, needs: tuple[str, ...]) -> Target:
    """The target from the arguments; TargetError when one of `needs` cannot be found."""
    use_region(getattr(args, "region", None))
    given = {name: getattr(args, name, None) or "" for name in STACK_OUTPUTS}
    stack = getattr(args, "stack", None)
    if stack:
        found, where = _stack_outputs(stack), f"stack {stack}"
    else:
        found = {name: os.environ.get(name.upper(), "") for name in STACK_OUTPUTS}
        where = "tables and queues from the environment"
        if not all(found[name] or given[name] for name in needs):
            found = _local_stack()
            where = f"the local stack at {os.environ.get('AWS_ENDPOINT_URL', '')}"
    values = {name: given[name] or found.get(name, "") for name in STACK_OUTPUTS}
    missing = [name for name in needs if not values[name]]
    if missing:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in missing)
        raise TargetError(
            f"cannot tell which pipeline: pass --stack NAME or {flags}, or start the local stack"
            " (make run ARGS=--serve)"
        )
    return Target(**values, where=where if not any(given.values()) else f"{where} (and the flags given)")


def stack_description(stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """A deployed stack's outputs and parameters, each by key; TargetError when it cannot be read."""
    try:
        described = client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except (ClientError, BotoCoreError) as error:
        raise TargetError(f"cannot read stack {stack}: {error}") from None
    outputs = {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])}
    parameters = {item["ParameterKey"]: item.get("ParameterValue", "") for item in described.get("Parameters", [])}
    return outputs, parameters


def stack_outputs(stack: str) -> dict[str, str]:
    """Every output of a deployed stack by its key; TargetError when the stack cannot be read."""
    return stack_description(stack)[0]


def stack_secrets(stack: str) -> dict[str, str]:
    """A deployed stack's secrets by template resource (config.SECRET_RESOURCES), from its `<resource>Name`
    outputs; a secret the stack's path does not deploy is absent. TargetError when it has none."""
    from clay_pipeline.config import SECRET_RESOURCES

    outputs = stack_outputs(stack)
    found = {resource: outputs[f"{resource}Name"] for resource in SECRET_RESOURCES if outputs.get(f"{resource}Name")}
    if not found:
        raise TargetError(f"stack {stack} has no ConfigSecretName output: is it this project's stack?")
    return found


def use_region(region: str | None) -> None:
    """--region: this process's AWS clients go to that region."""
    if region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = region
        reset_clients()


def _stack_outputs(stack: str) -> dict[str, str]:
    outputs = stack_outputs(stack)
    return {name: outputs.get(key, "") for name, key in STACK_OUTPUTS.items()}


def local_resources() -> Provisioned | None:
    """The local stack's resources, this process's clients pointed at its emulator; None when none is up."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or served_values().get("AWS_EMULATOR_URL", "")
    if not endpoint or urlsplit(endpoint).hostname not in LOOPBACK:
        return None
    os.environ["AWS_ENDPOINT_URL"] = endpoint  # this process's clients go to the emulator
    for name, value in FAKE_CREDENTIALS.items():  # the emulator takes any credentials: never a real one
        os.environ.setdefault(name, value)
    reset_clients()
    resources = attach(LOCAL_PREFIX)
    if resources is None:
        raise TargetError(f"no local stack at {endpoint}: start one with `make run ARGS=--serve`")
    return resources


def _local_stack() -> dict[str, str]:
    resources = local_resources()
    if resources is None:
        return {}
    names = {**resources.table_names, **resources.queue_urls}
    return {name: names[logical_id] for name, logical_id in LOCAL_RESOURCES.items()}


def local_secret_id() -> str:
    """The running local stack's config secret, '' when there is none."""
    try:
        resources = local_resources()
    except TargetError:
        return ""
    return (resources.secret_id or "") if resources else ""


def serving_endpoint() -> str:
    """The AWS emulator of a `clay-pipeline run --serve` that is up (named in its serve.env, and answering),
    or '' (none, or a serve.env a killed stack left behind)."""
    endpoint = served_values().get("AWS_EMULATOR_URL", "")
    parts = urlsplit(endpoint)
    if not endpoint or parts.hostname not in LOOPBACK or not parts.port:
        return ""
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return endpoint
    except OSError:
        return ""


def served_values() -> dict[str, str]:
    """What a running `clay-pipeline run --serve` wrote to its serve.env (URLs, local keys); {} when none is up."""
    if not SERVE_ENV.is_file():
        return {}
    values = {}
    for line in SERVE_ENV.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            values[name] = value
    return values
