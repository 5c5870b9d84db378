"""`clay-pipeline clay-setup`: everything to set in Clay for this pipeline, in one place.

For a deployed stack (--stack NAME: its outputs CallbackUrl, TokenUrl, ConfigSecretName and its
parameters CallbackAuthMode, CallbackSecretHeader, ApiThrottleRate) or the local one (the URLs a running
`make run ARGS=--serve` wrote to .local-stack/serve.env, the template's defaults), it prints the webhook
source's side and the HTTP API column's settings as Clay's screens name them. The secrets (the callback's,
and the table webhooks' ClayWebhookSecretName) are read only with --show-secrets: without it each secret is
masked and named with where it lives.

The settings follow Clay University: "HTTP API" (body chips, headers, custom rate limit, remove empty
values, retry on failure, response timeout), "HTTP API with JWT authentication", "Conditional runs" and
"Webhooks in Clay".
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.config import SECRET_RESOURCE_OF
from clay_pipeline.core.leads import EnrichedLead, Lead
from cli.commands.common import usage_error
from cli.operations.target import TargetError, local_resources, served_values, stack_description, use_region
from local.clay_retry import RECOMMENDED_RETRY
from local.template import parameter_defaults

# Clay calls a row back only once its enrichment has scored it: `/Column is not empty` is Clay's own
# condition syntax (Conditional runs, "Always use / to reference a column"); rows it skips cost nothing.
# A row whose score stays empty is never called back: `clay-pipeline stale` lists it after
# STALE_AFTER_HOURS, and its `--export condition` runs the column for exactly those rows.
RUN_CONDITION = "/ICP Score is not empty"
# Retry on failure: Clay's defaults are 1 retry of 408, 413 and 429 and of ECONNREFUSED, ECONNRESET,
# ETIMEDOUT, fired at once (HTTP API, Step 9). The callback never relies on a retry (docs/ARCHITECTURE.md),
# but each one is a cheap second chance: 408 and 429 are what API Gateway answers when slow or throttled,
# 5xx a dependency failure (409, which callbacks of earlier versions answered to a copy still in flight, is
# harmless to keep for stacks not yet upgraded); so RECOMMENDED_RETRY (the
# policy the local Clay simulator and the outage bench run with) retries those five times, the most Clay
# allows. A status list replaces Clay's, so 413 (a body that stays too large) is left out; the network
# errors keep Clay's defaults. Its response timeout is API Gateway's 30-second limit: the callback may
# wait out a DynamoDB or SQS outage inside the call, and a shorter timeout would show Clay an error (and
# a retry) for a callback that is still being committed (Clay allows 1,000-100,000 ms).
MASK = "********"
# The enrichment columns' usual names in a Clay table; the row's own columns keep the lead's field names.
ENRICHMENT_COLUMNS = {
    "job_title": "Job Title",
    "industry": "Industry",
    "employee_count": "Employee Count",
    "phone": "Phone Number",
    "icp_score": "ICP Score",
    "tier": "Tier",
    "email_verified": "Email Verified",
    "clay_enriched_at": "Enriched At",  # sent as _clay_enriched_at: HubSpot's clay_enrichment_date
}


def row_columns() -> list[str]:
    """The columns the webhook source creates from a lead: its top-level keys as the sender posts them."""
    return list(Lead.model_fields)


def body_columns() -> dict[str, str]:
    """Callback field (as the callback reads it: its alias, if any) -> the Clay column its value comes from."""
    row = set(row_columns())
    return {
        field.alias or name: name if name in row else ENRICHMENT_COLUMNS.get(name, name.replace("_", " ").title())
        for name, field in EnrichedLead.model_fields.items()
    }


def body_template() -> str:
    """The JSON body with a quoted chip per field: every value is sent as text, which the callback parses."""
    fields = ",\n".join(f"  {json.dumps(name)}: {json.dumps('/' + column)}" for name, column in body_columns().items())
    return "{\n" + fields + "\n}"


@dataclass(frozen=True)
class Pipeline:
    """What Clay must know of one deployed or local pipeline."""

    where: str
    callback_url: str
    token_url: str
    auth_mode: str
    secret_header: str
    api_rate: str
    secret_name: str  # the callback's (ConfigSecret); locally it holds every value
    secrets: dict[str, Any] | None = None  # the values Clay needs, only when --show-secrets asked for them
    # a deployed stack's other secrets by template resource (config.SECRET_RESOURCES): the table webhooks'
    other_secrets: dict[str, str] = field(default_factory=dict)

    def secret_of(self, name: str) -> str:
        """The secret holding this setting."""
        return self.other_secrets.get(SECRET_RESOURCE_OF[name], self.secret_name)

    def secret(self, name: str, first: bool = False) -> str:
        """The value, or where it lives; `first`: only the current one of a comma-separated list."""
        if self.secrets is None:
            which = f"the first value of {name}" if first else name
            return f"{MASK}  ({which} in secret {self.secret_of(name)}; --show-secrets prints it)"
        value = str(self.secrets.get(name) or "").strip()
        if first:  # the current value, as config.secret_list reads the list
            value = next((part.strip() for part in value.split(",") if part.strip()), "")
        return value or f"(not set: {name} in secret {self.secret_of(name)} is empty)"

    def jwt_login(self) -> tuple[str, str]:
        """Username and password of the first CALLBACK_JWT_USERS entry (`user:password`), or where it lives."""
        if self.secrets is None:
            where = f"in the first value of CALLBACK_JWT_USERS in secret {self.secret_name}; --show-secrets prints it"
            return f"{MASK}  (user {where})", f"{MASK}  (password {where})"
        user, _, password = self.secret("CALLBACK_JWT_USERS", first=True).partition(":")
        return user, password


def clay_setup_command(args: argparse.Namespace) -> int:
    use_region(args.region)
    try:
        pipeline = deployed(args.stack, args.show_secrets) if args.stack else local(args.show_secrets)
    except TargetError as error:
        return usage_error(str(error))
    print(render(pipeline))
    return 0


def deployed(stack: str, show_secrets: bool) -> Pipeline:
    outputs, parameters = stack_description(stack)
    missing = [key for key in ("CallbackUrl", "TokenUrl", "ConfigSecretName") if not outputs.get(key)]
    if missing:
        raise TargetError(f"stack {stack} has no output {', '.join(missing)}: is it this project's stack?")
    defaults = parameter_defaults()
    secret_name = outputs["ConfigSecretName"]
    # the table webhooks' own secret (ClayWebhookSecretName; absent on a stack deployed before the split)
    others = {"ClayWebhookSecret": outputs["ClayWebhookSecretName"]} if outputs.get("ClayWebhookSecretName") else {}
    return Pipeline(
        where=f"stack {stack}",
        callback_url=outputs["CallbackUrl"],
        token_url=outputs["TokenUrl"],
        auth_mode=parameters.get("CallbackAuthMode") or defaults["CallbackAuthMode"],
        secret_header=parameters.get("CallbackSecretHeader") or defaults["CallbackSecretHeader"],
        api_rate=parameters.get("ApiThrottleRate") or defaults["ApiThrottleRate"],
        secret_name=secret_name,
        secrets=_read_secrets([secret_name, *others.values()]) if show_secrets else None,
        other_secrets=others,
    )


def local(show_secrets: bool) -> Pipeline:
    gateway = served_values().get("GATEWAY_URL", "")
    resources = local_resources() if gateway else None
    if resources is None or not resources.secret_id:
        raise TargetError("no local stack is up: start one with `make run ARGS=--serve`, or pass --stack NAME")
    defaults = parameter_defaults()  # what `make run` deploys locally
    return Pipeline(
        where=f"the local stack at {gateway}",
        callback_url=f"{gateway}/clay/callback",
        token_url=f"{gateway}/clay/token",
        auth_mode=defaults["CallbackAuthMode"],
        secret_header=defaults["CallbackSecretHeader"],
        api_rate=defaults["ApiThrottleRate"],
        secret_name=resources.secret_id,
        secrets=_read_secret(resources.secret_id) if show_secrets else None,
    )


def _read_secrets(secret_ids: list[str]) -> dict[str, Any]:
    """Their values, a later secret's set value over an earlier one's: the table webhooks' own secret over what
    the shared one may still hold after an upgrade (until `clay-pipeline secret prune`)."""
    values: dict[str, Any] = {}
    for secret_id in secret_ids:
        values.update({name: value for name, value in _read_secret(secret_id).items() if str(value or "").strip()})
    return values


def _read_secret(secret_id: str) -> dict[str, Any]:
    try:
        document = json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
    except (ClientError, BotoCoreError) as error:
        raise TargetError(f"cannot read secret {secret_id}: {error}") from None
    except (KeyError, ValueError):  # named without its value
        raise TargetError(f"secret {secret_id} is not a JSON object") from None
    if not isinstance(document, dict):
        raise TargetError(f"secret {secret_id} is not a JSON object")
    return document


def render(pipeline: Pipeline) -> str:
    """The settings, source side first, as Clay's screens name them."""
    columns = ", ".join(row_columns())
    lines = [
        f"Clay settings for {pipeline.where} (callback auth: {pipeline.auth_mode})",
        "",
        "Webhook source: sends each lead into the table (+ Add, Webhooks, Monitor webhook)",
        f"  URL                    {pipeline.secret('CLAY_WEBHOOK_URLS')}",
        "                         a new source's URL goes there too, comma-separated, before 50,000 submissions",
        f"  Auth token             {pipeline.secret('CLAY_WEBHOOK_AUTH_TOKEN')}",
        "                         the sender sends it in the header x-clay-webhook-auth",
        f"  Columns per lead       {columns}, and any other field the lead has",
        "",
        *_column(pipeline),
    ]
    return "\n".join(lines)


def _column(pipeline: Pipeline) -> list[str]:
    if pipeline.auth_mode == "hmac":
        return [
            "HTTP API column: Clay does not sign bodies, so in hmac mode a relay of yours signs each one",
            f"  Endpoint URL           {pipeline.callback_url}",
            f"  Signature header       {pipeline.secret_header}: sha256=<hex HMAC-SHA256 of the body>",
            f"  Key                    {pipeline.secret('CALLBACK_SECRETS', first=True)}",
            "  token or jwt mode (CallbackAuthMode) lets Clay's own column call the callback",
        ]
    jwt = pipeline.auth_mode == "jwt"
    body = [f"    {line}" for line in body_template().splitlines()]
    if jwt:
        user, password = pipeline.jwt_login()
        auth = [
            "  JWT account            Settings, Connections, HTTP API JWT Auth, + Add account",
            f"    Username             {user}",
            f"    Password             {password}",
            f"    JWT Token Endpoint   {pipeline.token_url}",
            '    Send as Form Data    off (the endpoint reads {"username": ..., "password": ...} as JSON)',
            "  Location of JWT token in auth response   access_token",
            "  Token type             Bearer",
            "  Auth header name       Authorization",
            "  Headers                Content-Type: application/json",
        ]
    else:
        auth = [
            "  Headers                Content-Type: application/json",
            f"                         {pipeline.secret_header}: {pipeline.secret('CALLBACK_SECRETS', first=True)}",
        ]
    return [
        "HTTP API column: calls each enriched row back"
        + (" (action: HTTP API with JWT Authentication)" if jwt else " (action: HTTP API)"),
        "  Method                 POST",
        f"  Endpoint URL           {pipeline.callback_url}",
        *auth,
        "  Body                   type / and pick each column inside the quotes; map your own column names",
        *body,
        "  Required toggles       on for lead_id only (a row without it is not called)",
        "  Remove empty values    on",
        f"  Only run if            {RUN_CONDITION}",
        "  Retry on failure       on",
        f"    Max retries          {RECOMMENDED_RETRY.max_retries}",
        f"    Status codes         {RECOMMENDED_RETRY.status_codes}",
        f"    Error codes          leave empty (Clay's: {', '.join(RECOMMENDED_RETRY.error_codes)})",
        f"  Response timeout       {RECOMMENDED_RETRY.response_timeout_ms} ms",
        f"  Custom rate limit      Request Limit {pipeline.api_rate}, Duration 1000 ms (the API's ApiThrottleRate)",
    ]
