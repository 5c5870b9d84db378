"""Settings: non-secret values validated at cold start, secrets read at run time.

Secrets live in Secrets Manager, one secret (a JSON object) per concern (SECRET_RESOURCES); each
function's CONFIG_SECRET_ID names the one holding what it reads. They are read through Powertools
parameters with its cache, so a rotated value is picked up within SECRET_CACHE_SECONDS without a deploy.
An environment variable of the same name wins: that is how local runs and tests configure them.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.hubspot_defaults import HUBSPOT_NEW_CONTACT_VALUES, HUBSPOT_OWNED_PROPERTIES

SECRET_CACHE_SECONDS = 300

# Which deployed secret holds each secret setting, by template.yaml resource (its output is <resource>Name):
# one secret per concern, and each function's CONFIG_SECRET_ID and IAM name only the one it reads, so e.g. the
# intake function cannot read the HubSpot token (tests/integration/test_template_contract.py checks both).
SECRET_RESOURCES: dict[str, frozenset[str]] = {
    "ConfigSecret": frozenset({"CALLBACK_SECRETS", "CALLBACK_JWT_USERS"}),  # CallbackFunction
    "IntakeSecret": frozenset({"INTAKE_API_KEYS"}),  # IntakeFunction
    "ClayWebhookSecret": frozenset({"CLAY_WEBHOOK_URLS", "CLAY_WEBHOOK_AUTH_TOKEN"}),  # SenderFunction (table path)
    # routine path: the Public API key (clay api-keys create); SenderFunction and RunCollectorFunction
    "ClayApiSecret": frozenset({"CLAY_API_KEY"}),
    "DestinationSecret": frozenset(  # RouterFunction
        {
            "OUTREACH_WEBHOOK_URL",
            "NURTURE_WEBHOOK_URL",
            "SLACK_WEBHOOK_URL",
            "ZAPIER_WEBHOOK_URL",
            "HUBSPOT_ACCESS_TOKEN",
            "SALESFORCE_CLIENT_ID",  # the External Client App's consumer key (client credentials flow)
            "SALESFORCE_CLIENT_SECRET",
        }
    ),
    # routine path: whsec_ secrets of the run webhook, current first; RunWebhookFunction
    "RunWebhookSecret": frozenset({"CLAY_WEBHOOK_SIGNING_SECRETS"}),
}
# The secret every value lived in before the split (stacks deployed before it): the template's SecretSeed
# copies each value it still holds into the secret that holds it now, and `clay-pipeline secret prune`
# then removes the copies from it. It stays the callback's.
SHARED_SECRET_RESOURCE = "ConfigSecret"  # noqa: S105  # nosec B105 - a template resource name, not a secret
# Names that are secrets: never logged, never put in a template parameter.
SECRET_NAMES: frozenset[str] = frozenset().union(*SECRET_RESOURCES.values())
# The secret resource holding each name.
SECRET_RESOURCE_OF = {name: resource for resource, names in SECRET_RESOURCES.items() for name in names}
CLAY_API_BASE_URL = "https://api.clay.com/public/v0"
# Settings whose empty value means "none" rather than their (non-empty) default.
EMPTY_MEANS_NONE = frozenset({"hubspot_owned_properties", "hubspot_new_contact_values"})


def secret(name: str) -> str:
    """Return a secret's value ('' when unset): the environment first, then the JSON secret."""
    if name not in SECRET_NAMES:
        raise KeyError(f"{name} is not a secret setting")
    value = os.environ.get(name)
    if value is not None:
        return value.strip()
    secret_id = os.environ.get("CONFIG_SECRET_ID", "").strip()
    if not secret_id:
        return ""
    return str(_secret_document(secret_id).get(name, "") or "").strip()


def clear_secret_cache() -> None:
    """Forget cached secret values and the provider (tests; a new endpoint or credentials)."""
    _secrets_provider.cache_clear()


def secret_list(name: str, environment_only: bool = False) -> list[str]:
    """A comma-separated secret as a list without blanks (order kept: current value first).

    environment_only: just the environment variable, never a network call (what a cold start may check).
    """
    value = os.environ.get(name, "") if environment_only else secret(name)
    return [part.strip() for part in value.split(",") if part.strip()]


@functools.cache
def _secrets_provider() -> Any:
    # Imported here so functions that never touch Secrets Manager do not pay for it at cold start.
    # One provider per process: its cache is what keeps GetSecretValue calls to one per 5 minutes.
    from aws_lambda_powertools.utilities import parameters

    from clay_pipeline.adapters.aws import client

    return parameters.SecretsProvider(boto3_client=client("secretsmanager"))


def _secret_document(secret_id: str) -> dict[str, Any]:
    document = _secrets_provider().get(secret_id, transform="json", max_age=SECRET_CACHE_SECONDS)
    if not isinstance(document, dict):
        raise ConfigError(f"secret {secret_id} must hold a JSON object")
    return document


Required = Annotated[str, Field(min_length=1)]


def _secure(url: str) -> str:
    from clay_pipeline.adapters.http import url_problem

    if problem := url_problem(url):
        raise ValueError(f"{url!r} {problem}")
    return url


SecureUrl = Annotated[str, AfterValidator(_secure)]  # https, or http to a loopback address (local runs)
OptionalSecureUrl = Annotated[str, AfterValidator(lambda url: _secure(url) if url else url)]  # "" is off
CLAY_MAX_PAYLOAD_BYTES = 100_000  # Clay answers 413 above 100 KB
ClayPayloadBytes = Annotated[int, Field(ge=1024, le=262_144)]  # intake refuses, the sender dead-letters above it


class Settings(BaseModel):
    """Base for per-function settings: fields are filled from environment variables of the same name (upper case)."""

    # defer_build: each function validates only its own settings class, so the others' schemas
    # are not built during its cold start.
    model_config = {"frozen": True, "extra": "ignore", "defer_build": True}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Any:
        source = os.environ if environ is None else environ
        values = {name: source[name.upper()] for name in cls.model_fields if name.upper() in source}
        values = {name: value for name, value in values.items() if value.strip() != "" or name in EMPTY_MEANS_NONE}
        try:
            return cls(**values)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors())
            raise ConfigError(f"invalid configuration: {problems}") from None


class CallbackSettings(Settings):
    leads_table: Required  # each accepted callback is claimed, stored and recorded on its lead's item
    routing_queue_url: Required
    callback_auth_mode: Literal["token", "hmac", "jwt"] = "token"
    callback_secret_header: str = "X-Clay-Signature"  # noqa: S105 - a header name, not a secret
    callback_tolerance_seconds: int = Field(default=300, ge=1, le=86400)
    # 200 KiB: the body becomes the lead's item in LEADS_TABLE (DynamoDB holds at most 400 KB per item,
    # and the router adds its outcome and delivery ledger, a few KB) and the RoutingQueue message
    # (SQS's classic 256 KiB). The callback also measures both before accepting (413 when over).
    callback_max_body_bytes: int = Field(default=204_800, ge=1024, le=204_800)
    state_table: str = ""  # /clay/token's failure counters (token_guard); unset: no lockout
    # A lead's item (enrichment, routing outcome, delivery ledger) expires this many days after its latest
    # callback (DynamoDB TTL on expires_at); 0 keeps it for good. The storage it bills: bench/cost_model.py.
    lead_retention_days: int = Field(default=0, ge=0, le=3650)


class IntakeSettings(Settings):
    lead_queue_url: Required
    intake_max_leads: int = Field(default=500, ge=1, le=500)
    intake_max_body_bytes: int = Field(default=5_242_880, ge=1024, le=10_485_760)
    clay_max_payload_bytes: ClayPayloadBytes = CLAY_MAX_PAYLOAD_BYTES  # a row Clay would refuse is refused here


class SenderSettings(Settings):
    state_table: Required
    lead_queue_url: Required  # hand-backs change visibility here; a message near maxReceiveCount is re-queued
    lead_dlq_url: Required  # permanent failures (400, 413, malformed) go here at once, with the reason
    lead_queue_max_receive_count: int = Field(default=10, ge=2, le=1000)  # LeadQueue's redrive (a template test)
    clay_webhook_submission_limit: int = Field(default=50_000, ge=1)
    clay_send_rate_per_second: float = Field(default=10, gt=0, le=1000)
    clay_send_concurrency: int = Field(default=4, ge=1, le=16)  # a batch's POSTs in flight at once, each at its slot
    clay_daily_send_budget: int = Field(default=0, ge=0)
    clay_dedupe_days: int = Field(default=30, ge=0, le=365)
    # After a read timeout (Clay may have the row) the lead is held this long, then sent once more: Deduper.hold
    clay_unknown_hold_seconds: int = Field(default=21_600, ge=60, le=7 * 86_400)
    clay_request_timeout_seconds: float = Field(default=10, gt=0, le=60)
    clay_max_payload_bytes: ClayPayloadBytes = CLAY_MAX_PAYLOAD_BYTES
    clay_retry_attempts: int = Field(default=2, ge=0, le=5)  # in-process retries of 5xx and connect errors
    clay_retry_backoff_seconds: float = Field(default=0.5, ge=0, le=10)
    clay_max_throttle_wait_seconds: float = Field(default=20, ge=0, le=600)  # longest in-process Retry-After sleep
    clay_circuit_wait_seconds: int = Field(default=900, ge=1, le=43_200)  # when every webhook is spent or gone
    stale_requeue: bool = False  # keep each sent lead's body in its batch record, for the stale sweeper to re-queue
    # The routine path (routines.py): leads go to a Clay routine through the Public API instead of a table.
    clay_enrichment_path: Literal["table", "routine"] = "table"
    clay_api_base_url: SecureUrl = CLAY_API_BASE_URL
    clay_routine_id: str = ""  # required on the routine path
    clay_run_webhook_id: str = ""  # the webhook `clay webhooks create` registered; unset: polling only
    clay_routine_run_size: int = Field(default=100, ge=1, le=100)  # items per run (Clay takes 1-100)
    clay_run_first_poll_seconds: int = Field(default=30, ge=1, le=900)
    run_poll_queue_url: str = ""  # required on the routine path


class RouterSettings(Settings):
    state_table: Required  # the destination pause switch (read only)
    leads_table: Required  # each lead's record, with its delivery ledger
    routing_queue_url: Required  # a lead another invocation is routing waits here (visibility hand-back)
    routing_dlq_url: Required  # permanent failures and exhausted retries go here with the reasons
    routing_queue_max_receive_count: int = Field(default=5, ge=2, le=1000)  # RoutingQueue's redrive (a template test)
    routing_rules: str = ""
    delivery_policies: str = ""  # destination=once_per_lead|on_change,... over the defaults (core/rules.py)
    unknown_outcome_policies: str = ""  # destination=hold|resend,...: a lost answer's next step (core/rules.py)
    routing_required_fields: str = ""  # columns a callback must carry to be routed (per-column tables; core/rules.py)
    hubspot_base_url: SecureUrl = "https://api.hubapi.com"
    hubspot_batch_size: int = Field(default=100, ge=1, le=100)  # HubSpot's batch upsert takes at most 100 inputs
    # The contact mapping (hubspot.ContactMapping, checked at cold start): property=field pairs over the defaults,
    # the properties a rep owns (sent only when the contact is created), and the values a new contact starts with.
    hubspot_property_map: str = ""
    hubspot_owned_properties: str = HUBSPOT_OWNED_PROPERTIES  # set empty: a rep owns none of them
    hubspot_new_contact_values: str = HUBSPOT_NEW_CONTACT_VALUES  # set empty: none
    # Salesforce (adapters/salesforce.py): off unless the login URL and SALESFORCE_CLIENT_ID (a secret) are set.
    salesforce_login_url: OptionalSecureUrl = ""  # the org's My Domain URL: https://<domain>.my.salesforce.com
    salesforce_object: Literal["Lead", "Contact"] = "Lead"
    salesforce_external_id_field: str = "Clay_Lead_Id__c"
    salesforce_api_version: str = Field(default="v62.0", pattern=r"^v\d{2,3}\.0$")  # v46.0 or later
    salesforce_field_map: str = ""  # JSON over the object's default mapping (core/salesforce_records.py)

    @model_validator(mode="after")
    def _salesforce_mapping(self) -> RouterSettings:
        # ConfigError at cold start for an old API version, a bad external id field or SALESFORCE_FIELD_MAP
        # (imported here: the other functions' cold starts do not load the Salesforce mapping)
        from clay_pipeline.core.salesforce_records import RecordMapping, check_api_version

        try:
            check_api_version(self.salesforce_api_version)
        except ValueError as error:
            raise ConfigError(f"invalid configuration: SALESFORCE_API_VERSION: {error}") from None
        RecordMapping.from_settings(
            self.salesforce_object, self.salesforce_external_id_field, self.salesforce_field_map
        )
        return self

    destination_timeout_seconds: float = Field(default=10, gt=0, le=60)
    destination_retry_attempts: int = Field(default=3, ge=0, le=10)  # in-invocation retries of 429/5xx/timeouts
    destination_retry_backoff_seconds: float = Field(default=0.5, ge=0, le=30)
    slack_min_interval_seconds: float = Field(default=1.0, ge=0, le=60)  # Slack webhooks allow about 1 message/s
    delivery_lease_seconds: int = Field(default=120, ge=10, le=900)  # > the function timeout, < the visibility timeout
    delivery_mark_days: int = Field(default=30, ge=1, le=365)  # how long a delivery is remembered per lead
    destination_pause_cache_seconds: float = Field(default=30, ge=0, le=300)  # how stale the pause switch may be
    destination_pause_wait_seconds: int = Field(default=60, ge=1, le=900)  # per receive, while a destination is paused


class SweeperSettings(Settings):
    state_table: Required  # the sender's batch records (SentByHour index), the sweep checkpoint, dedupe marks
    leads_table: Required  # where a callback would have landed; stale leads are marked here
    lead_queue_url: Required  # where a stale lead is re-queued (STALE_REQUEUE)
    stale_after_hours: int = Field(default=24, ge=1, le=168)  # batch records are kept 8 days
    stale_requeue: bool = False  # send a stale lead to Clay once more (costs Clay actions and a new row)
    routing_queue_url: Required  # where a called-back lead whose callback died before queueing is queued
    # A callback's claim still in place this long after it was written was never queued (the callback's timeout
    # and RoutingQueue's usual latency are seconds): the sweeper queues its routing message.
    callback_unqueued_after_seconds: int = Field(default=900, ge=300, le=86_400)


class RunPollSettings(Settings):
    """Shared by the routine path's functions: where runs are recorded and polled, and Clay's Public API."""

    state_table: Required
    run_poll_queue_url: Required
    clay_api_base_url: SecureUrl = CLAY_API_BASE_URL
    clay_request_timeout_seconds: float = Field(default=10, gt=0, le=60)
    clay_retry_attempts: int = Field(default=2, ge=0, le=5)
    clay_retry_backoff_seconds: float = Field(default=0.5, ge=0, le=10)
    clay_run_first_poll_seconds: int = Field(default=30, ge=1, le=900)
    clay_run_max_poll_seconds: int = Field(default=300, ge=1, le=900)  # SQS delays a message at most 900 s
    clay_run_give_up_seconds: int = Field(default=3600, ge=1, le=7 * 86400)  # then the run's leads are dead-lettered
    run_webhook_max_body_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    run_mark_days: int = Field(default=30, ge=1, le=365)  # how long a run's webhook delivery and outcome are remembered


class RunCollectorSettings(RunPollSettings):
    """RunCollectorFunction: results of routine runs become routing messages, as callbacks do."""

    leads_table: Required
    routing_queue_url: Required
    lead_dlq_url: Required  # failed items and the leads of runs given up, with Clay's message
    clay_results_page_size: int = Field(default=100, ge=1, le=100)
    clay_dedupe_days: int = Field(default=30, ge=0, le=365)  # a failed item's dedupe mark is released
    lead_retention_days: int = Field(default=0, ge=0, le=3650)  # as CallbackSettings

    def callback_settings(self) -> CallbackSettings:
        """The callback's acceptance rules, applied to run results (the same lead items and queue)."""
        return CallbackSettings(
            leads_table=self.leads_table,
            routing_queue_url=self.routing_queue_url,
            lead_retention_days=self.lead_retention_days,
        )


class SecretSeedSettings(Settings):
    """SecretSeedFunction: nothing from its environment; which secrets to fill comes in the SecretSeed custom
    resource's properties (template.yaml), so one template change updates both."""
