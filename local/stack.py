"""The whole pipeline on one machine: emulator, functions, gateway, pollers, Clay simulator and sinks.

LocalStack starts moto's server, creates what template.yaml declares, writes the local
secrets into the shared config secret (seeded into the per-concern ones) and serves the functions:
HTTP routes through the gateway, queues through pollers. Clay is the simulator and the
destinations are the sinks, all on 127.0.0.1. `wait_idle` knows when the pipeline has
settled; local/reconciliation.py counts what happened and checks it.

On the routine path (`StackOptions(enrichment_path="routine")`) RoutineClay starts a ClayApiSimulator
(local/clay_api_sim.py) next to the table simulator, registers the run webhook on the gateway's
/clay/routine-webhook (as `clay webhooks create` would, with the local signing secret of LOCAL_SECRETS) and
deploys the template with ClayEnrichmentPath=routine and the simulator's URL, routine and webhook id.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from clay_pipeline.adapters.aws import client, reset_clients
from clay_pipeline.adapters.dead_letter_queues import QUEUES, DeadLetterQueue
from clay_pipeline.adapters.dynamodb import from_item
from clay_pipeline.adapters.hubspot import HubSpotContacts
from clay_pipeline.adapters.webhooks import HttpClient
from clay_pipeline.config import clear_secret_cache
from clay_pipeline.core.hubspot_contacts import ContactMapping
from clay_pipeline.core.leads import Lead
from clay_pipeline.core.salesforce_records import RecordMapping
from local.aws import FAKE_CREDENTIALS, LOCAL_PREFIX, Emulator, Provisioned, function_environment, provision
from local.clay_api_sim import ClayApiSimulator
from local.clay_column import CallbackAuth
from local.clay_sim import ClaySimulator
from local.gateway import Gateway, http_routes
from local.lambda_runtime import LambdaFunction
from local.pollers import QueuePoller, event_sources
from local.salesforce_sim import SalesforceSim
from local.sinks import Sinks
from local.template import functions, placeholder_environment

# Dummy secrets of the local stack, written into its config secret. They are recognisable on
# purpose and are what the events/*.json files carry:
# - INTAKE_API_KEYS: the X-Api-Key of POST /leads (events/intake-*.json)
# - CALLBACK_SECRETS: the token of token mode (X-Clay-Signature), the HMAC key of hmac mode and
#   the JWT signing key of jwt mode (events/callback-*.json)
# - CALLBACK_JWT_USERS: the username:password the Clay simulator's JWT flow posts to /clay/token
# - CLAY_WEBHOOK_AUTH_TOKEN: x-clay-webhook-auth, checked by the Clay simulator
# - HUBSPOT_ACCESS_TOKEN: the bearer token the HubSpot sink expects
# - SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET: the client credentials the Salesforce simulator checks
#   (Salesforce is on only with StackOptions.crm salesforce or both: SALESFORCE_LOGIN_URL is set then)
# - CLAY_API_KEY, CLAY_WEBHOOK_SIGNING_SECRETS: the routine path's Public API key and run webhook secret
#   (the Clay API simulator checks the key and signs with the secret; events/run-webhook-*.json carry it)
# CLAY_WEBHOOK_URLS and the destination URLs are added at start, once the servers have ports.
LOCAL_SECRETS = {
    "INTAKE_API_KEYS": "local-intake-key-not-for-production",
    "CALLBACK_SECRETS": "local-callback-secret-not-for-production",
    "CALLBACK_JWT_USERS": "clay:local-clay-password",
    "CLAY_WEBHOOK_AUTH_TOKEN": "local-clay-webhook-token",  # nosec B105 - a dummy local secret
    "HUBSPOT_ACCESS_TOKEN": "local-hubspot-token",  # nosec B105 - a dummy local secret
    "SALESFORCE_CLIENT_ID": SalesforceSim.client_id,
    "SALESFORCE_CLIENT_SECRET": SalesforceSim.client_secret,
    "CLAY_API_KEY": "local-clay-api-key",  # nosec B105 - a dummy local secret
    "CLAY_WEBHOOK_SIGNING_SECRETS": "whsec_local-run-webhook-secret-not-for-production",  # nosec B105
}
LOCAL_JWT_USER = ("clay", "local-clay-password")
SOURCE_QUEUES = ("LeadQueue", "RoutingQueue", "RunPollQueue")
DEAD_LETTER_QUEUES = ("LeadDLQ", "RoutingDLQ", "RunPollDLQ")
DEAD_LETTER_PAIRS = {pair.dlq: pair for pair in QUEUES.values()}
FINISHED = frozenset({"routed", "skipped"})
CRMS = ("hubspot", "salesforce", "both")  # StackOptions.crm
LOCAL_ENV_TAG = "local-env:"  # tags on the config secret: environment `invoke` gives functions of a running stack


RUN_WEBHOOK_PATH = "/clay/routine-webhook"  # where the routine path's run webhook reaches the gateway


@dataclass
class RoutineClay:
    api: ClayApiSimulator
    webhook_id: str

    @classmethod
    def start(cls, gateway_url: str, settings: dict[str, Any]) -> RoutineClay:
        api = ClayApiSimulator(api_key=LOCAL_SECRETS["CLAY_API_KEY"], **settings)
        api.start()
        secret = LOCAL_SECRETS["CLAY_WEBHOOK_SIGNING_SECRETS"]
        webhook_id, _ = api.create_webhook(gateway_url + RUN_WEBHOOK_PATH, signing_secret=secret)
        return cls(api, webhook_id)

    def parameters(self) -> dict[str, str]:
        return {
            "ClayEnrichmentPath": "routine",
            "ClayApiBaseUrl": self.api.base_url,
            "ClayRoutineId": self.api.routine_id,
            "ClayRunWebhookId": self.webhook_id,
        }


@dataclass
class StackOptions:
    callback_auth_mode: str = "token"  # token or jwt: how the Clay simulator calls back
    visibility_timeout: int | None = None  # seconds on the source queues; None keeps the template's
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)  # per function, over the template's
    clay: dict[str, Any] = field(default_factory=dict)  # ClaySimulator settings (rates, duplicates...)
    webhooks: int = 1  # Clay table webhooks in CLAY_WEBHOOK_URLS
    default_concurrency: int = 2  # concurrent batches of a queue without ScalingConfig
    pollers: bool = True  # False: nothing consumes the queues (invoke)
    prefix: str = LOCAL_PREFIX
    enrichment_path: str = "table"  # routine: Clay's Public API simulator (RoutineClay) instead of the table
    routine: dict[str, Any] = field(default_factory=dict)  # ClayApiSimulator settings (runs, webhooks...)
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    hubspot_setup: bool = True  # run `clay-pipeline hubspot setup` against the sink, as a user does after deploying
    crm: str = "hubspot"  # the CRM destinations on: hubspot, salesforce (HubSpot's token left out) or both


def queue_words(counts: dict[str, int]) -> str:
    """{'Visible': 0, 'NotVisible': 27, 'Delayed': 0} -> '27 being processed'."""
    words = {"Visible": "waiting", "NotVisible": "being processed", "Delayed": "delayed"}
    return ", ".join(f"{counts[name]} {label}" for name, label in words.items() if counts.get(name))


class LocalStack:
    def __init__(self, options: StackOptions | None = None, emulator: Emulator | None = None) -> None:
        self.options = options or StackOptions()
        self._given_emulator = emulator
        self.emulator: Emulator | None = None
        crm = self.options.crm
        if crm not in CRMS:
            raise ValueError(f"crm must be one of {', '.join(CRMS)}, not {crm!r}")
        self.sinks = Sinks(hubspot_token=LOCAL_SECRETS["HUBSPOT_ACCESS_TOKEN"], salesforce=crm != "hubspot")
        self.gateway = Gateway()
        self.clay: ClaySimulator
        self.routine: RoutineClay | None = None  # the routine path's Clay API simulator
        self.resources: Provisioned
        self.functions: dict[str, LambdaFunction] = {}
        self.pollers: list[QueuePoller] = []
        self.webhook_urls: list[str] = []
        self.posted: list[dict[str, Any]] = []
        self.accepted_ids: list[str] = []
        self.rejected_rows = 0
        self.started_at = 0.0
        self._saved_env: dict[str, str | None] = {}
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalStack:
        if self._given_emulator is not None:
            self.emulator = self._given_emulator
            self.emulator.reset()
        else:
            # The emulator points this process's AWS clients at itself; stop() points them back.
            self._saved_env.update({name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", *FAKE_CREDENTIALS)})
            self.emulator = Emulator()
            self.emulator.start()
        self.sinks.start()
        self.clay = ClaySimulator(
            callback_url=f"{self.gateway.url}/clay/callback",
            auth=self._callback_auth(),
            webhook_token=LOCAL_SECRETS["CLAY_WEBHOOK_AUTH_TOKEN"],
            **self.options.clay,
        )
        self.clay.start()
        self.webhook_urls = [self.clay.create_webhook() for _ in range(self.options.webhooks)]
        secrets = {**LOCAL_SECRETS, "CLAY_WEBHOOK_URLS": ",".join(self.webhook_urls), **self.sinks.secrets()}
        if self.options.crm == "salesforce":  # HubSpot off: its token is not in the secret
            secrets.pop("HUBSPOT_ACCESS_TOKEN")
        parameters = dict(self.options.parameters)
        if self.options.enrichment_path == "routine":
            self.routine = RoutineClay.start(self.gateway.url, self.options.routine)
            parameters = {**self.routine.parameters(), **parameters}
        self.resources = provision(self.options.prefix, secrets=secrets, parameters=parameters)
        clear_secret_cache()  # a previous stack's secret may be cached under the same id
        if self.resources.secret_id:
            client("secretsmanager").tag_resource(
                SecretId=self.resources.secret_id,
                Tags=[
                    {"Key": f"{LOCAL_ENV_TAG}HUBSPOT_BASE_URL", "Value": self.sinks.url},
                    *(
                        [{"Key": f"{LOCAL_ENV_TAG}SALESFORCE_LOGIN_URL", "Value": self.sinks.url}]
                        if self.options.crm != "hubspot"
                        else []
                    ),
                ],
            )
        self._set_process_env({"CONFIG_SECRET_ID": self.resources.secret_id or ""})
        if self.options.visibility_timeout is not None:
            for queue_id in SOURCE_QUEUES:
                client("sqs").set_queue_attributes(
                    QueueUrl=self.resources.queue_urls[queue_id],
                    Attributes={"VisibilityTimeout": str(self.options.visibility_timeout)},
                )
        if self.options.hubspot_setup and self.options.crm != "salesforce":
            self.hubspot().setup_properties(timeout=10)
        # The functions this deploy would have (RunWebhookFunction only on the routine path), and their routes.
        deployed = {
            logical_id: spec
            for logical_id, spec in functions().items()
            if not spec.condition or self.resources.resolver.condition(spec.condition)
        }
        for logical_id in deployed:
            function = LambdaFunction(logical_id, self.function_env(logical_id))
            function.warm_up()
            self.functions[logical_id] = function
        routes = {route: logical_id for route, logical_id in http_routes().items() if logical_id in deployed}
        self.gateway.serve(self.functions, routes)
        if self.options.pollers:
            for source in event_sources(deployed, self.resources, self.options.default_concurrency):
                poller = QueuePoller(source, self.functions[source.function_id])
                poller.start()
                self.pollers.append(poller)
        self.started_at = time.monotonic()
        return self

    def hubspot(self) -> HubSpotContacts:
        """The HubSpot adapter with the router's mapping, pointed at the sink (the token from the stack's secret)."""
        mapping = ContactMapping.from_environment(self.function_env("RouterFunction"))
        return HubSpotContacts(HttpClient(), self.sinks.url, mapping)

    def salesforce_mapping(self) -> RecordMapping:
        """The router's Salesforce mapping (its object, external id field and SALESFORCE_FIELD_MAP)."""
        env = self.function_env("RouterFunction")
        return RecordMapping.from_settings(
            env.get("SALESFORCE_OBJECT") or "Lead",
            env.get("SALESFORCE_EXTERNAL_ID_FIELD") or "Clay_Lead_Id__c",
            env.get("SALESFORCE_FIELD_MAP", ""),
        )

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The template's environment with local values: the callback's auth mode, HubSpot's base URL, the
        Salesforce simulator as the org's login URL (when Salesforce is on), overrides."""
        env = function_environment(logical_id, self.resources)
        if "CALLBACK_AUTH_MODE" in env:
            env["CALLBACK_AUTH_MODE"] = self.options.callback_auth_mode
        if "HUBSPOT_BASE_URL" in env:
            env["HUBSPOT_BASE_URL"] = self.sinks.url
        if "SALESFORCE_LOGIN_URL" in env and self.options.crm != "hubspot":
            env["SALESFORCE_LOGIN_URL"] = self.sinks.url
        return {**env, **self.options.function_env.get(logical_id, {})}

    def stop(self) -> None:
        for poller in self.pollers:  # all at once, so their last batches finish in parallel
            poller.request_stop()
        for poller in self.pollers:
            poller.stop()
        self.gateway.stop()
        if hasattr(self, "clay"):  # stop() also cleans up after a start that failed half-way
            self.clay.stop()
        if self.routine is not None:
            self.routine.api.stop()
        self.sinks.stop()
        if self.emulator is not None and self._given_emulator is None:
            self.emulator.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_clients()
        clear_secret_cache()

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()  # servers started before the failure (e.g. a function's bad configuration)
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _callback_auth(self) -> CallbackAuth:
        secret = LOCAL_SECRETS["CALLBACK_SECRETS"]
        if self.options.callback_auth_mode == "jwt":
            username, password = LOCAL_JWT_USER
            return CallbackAuth("jwt", token_url=f"{self.gateway.url}/clay/token", username=username, password=password)
        return CallbackAuth("token", header=self._callback_header(), secret=secret)

    @staticmethod
    def _callback_header() -> str:
        return placeholder_environment("CallbackFunction").get("CALLBACK_SECRET_HEADER", "X-Clay-Signature")

    def _set_process_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    # -- driving ---------------------------------------------------------------------------
    def post_leads(self, rows: list[dict[str, Any]], chunk: int = 500) -> list[dict[str, Any]]:
        """POST /leads through the gateway (as a producer would); the intake's answers, one per chunk."""
        answers = []
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            response = requests.post(
                f"{self.gateway.url}/leads",
                json={"leads": part},
                headers={"x-api-key": LOCAL_SECRETS["INTAKE_API_KEYS"]},
                timeout=30,
            )
            answer = response.json()
            rejected = {int(item["index"]) for item in answer.get("rejected", [])}
            with self._lock:
                self.posted.extend(part)
                if response.status_code in (202, 400):
                    self.rejected_rows += len(rejected)
                    self.accepted_ids += [
                        str(Lead.model_validate(row).lead_id) for i, row in enumerate(part) if i not in rejected
                    ]
            answers.append({"status": response.status_code, **answer})
        return answers

    def busy(self) -> list[str]:
        """What is still moving: messages in a source queue, batches, requests, Clay rows not yet called back."""
        reasons = []
        for queue_id in SOURCE_QUEUES:
            counts = self.queue_counts(queue_id)
            if any(counts.values()):
                reasons.append(f"{queue_id} holds {queue_words(counts)}")
        reasons += [f"{p.source.function_id} is working on a batch" for p in self.pollers if p.in_flight]
        if self.gateway.in_flight:
            reasons.append(f"{self.gateway.in_flight} HTTP requests in flight")
        if self.clay.busy():
            reasons.append(f"Clay has {self.clay.pending} rows to call back")
        if self.routine is not None and self.routine.api.busy():
            reasons.append("Clay has routine runs working or run webhooks to deliver")
        return reasons

    def wait_idle(self, timeout: float = 60.0, settle: float = 0.3) -> bool:
        """True once nothing has moved for `settle` seconds; False if that does not happen within `timeout`."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.busy():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return True
            time.sleep(0.1)
        return False

    # -- facts -----------------------------------------------------------------------------
    def queue_counts(self, queue_id: str) -> dict[str, int]:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=self.resources.queue_urls[queue_id], AttributeNames=names
        )["Attributes"]
        return {name.removeprefix("ApproximateNumberOfMessages") or "Visible": int(attributes[name]) for name in names}

    def dead_letters(self, queue_id: str) -> list[dict[str, Any]]:
        """Every message in a DLQ (body and string attributes), left in the queue."""
        pair = DEAD_LETTER_PAIRS[queue_id]
        urls = self.resources.queue_urls
        messages = DeadLetterQueue(pair, urls[pair.dlq], urls.get(pair.source, "")).peek(wait_seconds=0)
        return [{"body": message.body, **message.attributes} for message in messages]

    def leads_table(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        paginator = client("dynamodb").get_paginator("scan")
        for page in paginator.paginate(TableName=self.resources.table_names["LeadsTable"], ConsistentRead=True):
            for item in page.get("Items", []):
                values = from_item(item)
                items[str(values["lead_key"])] = values
        return items
