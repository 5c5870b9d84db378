"""The whole pipeline on one machine: emulator, functions, gateway, pollers, Clay simulator and sinks.

LocalStack starts moto's server, creates what template.yaml declares, writes the local
secrets into the shared config secret (seeded into the per-concern ones) and serves the functions:
HTTP routes through the gateway, queues through pollers. Clay is the simulator and the
destinations are the sinks, all on 127.0.0.1. `wait_idle` knows when the pipeline has
settled, and `summary` counts what happened at every step and checks that nothing was lost
and nothing happened twice, from the facts each part recorded (not from the pipeline's metrics).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from clay_pipeline.adapters.aws import client, reset_clients
from clay_pipeline.adapters.dynamodb import from_item
from clay_pipeline.adapters.hubspot import HubSpotContacts
from clay_pipeline.adapters.webhooks import HttpClient, idempotency_key
from clay_pipeline.config import clear_secret_cache
from clay_pipeline.core.hubspot_contacts import ContactMapping
from clay_pipeline.core.leads import Lead
from clay_pipeline.core.policies import Delivered, payload_hash
from clay_pipeline.core.rules import ONCE_PER_LEAD, RuleSet
from clay_pipeline.core.salesforce_records import RecordMapping
from cli.operations.dead_letters import QUEUES, DeadLetterQueue, lead_id_of
from local.aws import FAKE_CREDENTIALS, LOCAL_PREFIX, Emulator, Provisioned, function_environment, provision
from local.clay_column import CallbackAuth
from local.clay_sim import ClaySimulator
from local.gateway import Gateway, http_routes
from local.lambda_runtime import LambdaFunction
from local.pollers import QueuePoller, event_sources
from local.salesforce_sim import SalesforceSim
from local.sinks import Delivery, Sinks
from local.template import functions, placeholder_environment

if TYPE_CHECKING:
    from local.routine_stack import RoutineClay

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


SUMMARY_SECTIONS = (
    ("intake (POST /leads)", ("leads posted", "accepted by intake", "rejected by intake")),
    ("sender -> Clay", ("duplicates skipped before Clay", "sent to Clay", "Clay 429s to the sender")),
    (
        "Clay -> callback",
        (
            "callbacks sent by Clay",
            "callbacks accepted",
            "duplicates dropped",
            "callbacks retried by Clay",
            "rows called back again: re-run column",
            "rows called back again: same body",
            "rows called back again: re-scored",
            "partial callbacks (one per column)",
            "rows with messy columns",
            "callbacks answered with warnings",
            "their leads routed or skipped",
        ),
    ),
    ("router", ("routed", "skipped (no destination)", "once-per-lead deliveries doubled")),
    ("dead letters", ("dead-lettered (LeadDLQ)", "dead-lettered (RoutingDLQ)")),
)
RESEND_LABELS = {
    "rerun": "rows called back again: re-run column",
    "resend": "rows called back again: same body",
    "rescore": "rows called back again: re-scored",
    "partial": "partial callbacks (one per column)",
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
    enrichment_path: str = "table"  # routine: Clay's Public API simulator instead of the table (routine_stack.py)
    routine: dict[str, Any] = field(default_factory=dict)  # ClayApiSimulator settings (runs, webhooks...)
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    hubspot_setup: bool = True  # run `clay-pipeline hubspot setup` against the sink, as a user does after deploying
    crm: str = "hubspot"  # the CRM destinations on: hubspot, salesforce (HubSpot's token left out) or both


def queue_words(counts: dict[str, int]) -> str:
    """{'Visible': 0, 'NotVisible': 27, 'Delayed': 0} -> '27 being processed'."""
    words = {"Visible": "waiting", "NotVisible": "being processed", "Delayed": "delayed"}
    return ", ".join(f"{counts[name]} {label}" for name, label in words.items() if counts.get(name))


@dataclass
class Summary:
    counts: dict[str, int]
    routed: dict[str, int]  # destination -> deliveries it received (leads_table: leads recorded)
    elapsed: float
    problems: list[str]
    policies: dict[str, str] = field(default_factory=dict)  # destination -> its delivery policy
    distinct_payloads: dict[str, int] = field(default_factory=dict)  # on-change destination -> distinct payloads
    sections: tuple[tuple[str, tuple[str, ...]], ...] = SUMMARY_SECTIONS

    @property
    def reconciles(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The counts by stage, then the verdict and any problem found."""
        sections: list[tuple[str, list[tuple[str, Any]]]] = [
            (title, [(label, self.counts[label]) for label in labels if label in self.counts])
            for title, labels in self.sections
        ]
        router = next(rows for title, rows in sections if title == "router")
        for name, count in self.routed.items():
            policy = self.policies.get(name, "")
            if name in self.distinct_payloads:
                label, value = (
                    f"routed to {name} ({policy}): calls / distinct",
                    f"{count} / {self.distinct_payloads[name]}",
                )
            else:
                label, value = f"routed to {name}" + (f" ({policy})" if policy else ""), str(count)
            router.append((label, value))
        sections.append(("", [("elapsed", f"{self.elapsed:.1f} s")]))
        width = max(len(label) for _, rows in sections for label, _ in rows) + 2
        lines = []
        for title, rows in sections:
            indent = "  " if title else ""
            lines += [title] if title else []
            lines += [f"{indent}{label.ljust(width + 2 - len(indent))}{str(value).rjust(8)}" for label, value in rows]
        verdict = "reconciled: nothing lost, nothing twice" if self.reconciles else "NOT reconciled:"
        return "\n".join([*lines, "", verdict, *(f"  - {problem}" for problem in self.problems)])


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
            from local.routine_stack import RoutineClay

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

    def summary(self) -> Summary:
        if self.routine is not None:
            from local.routine_stack import RoutineReconciliation

            return RoutineReconciliation(self).summary()
        return Reconciliation(self).summary()


class Reconciliation:
    """Counts at every step and the checks that make them add up."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.problems: list[str] = []

    def summary(self) -> Summary:
        stack = self.stack
        clay = stack.clay
        clay_ids = clay.lead_ids()
        lead_dlq = stack.dead_letters("LeadDLQ")
        routing_dlq = stack.dead_letters("RoutingDLQ")
        lead_dlq_ids = {lead_id_of(m["body"]) for m in lead_dlq}
        routing_dlq_ids = {lead_id_of(m["body"], "lead_key") for m in routing_dlq}
        accepted_callbacks = clay.accepted_callbacks()
        table = stack.leads_table()
        statuses = Counter(str(item.get("routing_status")) for item in table.values())

        self._check_intake()
        self._check_clay(clay_ids, lead_dlq_ids)
        self._check_callbacks(clay_ids, clay.accepted_versions(), clay.versions_sent())
        self._check_routing(accepted_callbacks, table, routing_dlq_ids)
        warned = set(clay.warned())
        self._check_warned(warned, table, routing_dlq_ids)
        policies, distinct, doubled = self._check_destinations(table)
        for queue_id in SOURCE_QUEUES:
            if any((counts := stack.queue_counts(queue_id)).values()):
                self.problems.append(f"{queue_id} is not empty: {counts}")

        counts = {
            "leads posted": len(stack.posted),
            "accepted by intake": len(stack.accepted_ids),
            "rejected by intake": stack.rejected_rows,
            "duplicates skipped before Clay": max(0, len(stack.accepted_ids) - len(clay_ids) - len(lead_dlq)),
            "sent to Clay": len(clay_ids),
            "Clay 429s to the sender": clay.inbound[429],
            "callbacks sent by Clay": len(clay.callbacks),
            "callbacks accepted": len(accepted_callbacks),
            "duplicates dropped": len(clay.answered(duplicate=True)),
            "callbacks retried by Clay": sum(1 for c in clay.callbacks if c.attempt > 1),
            **{label: clay.resent[kind] for kind, label in RESEND_LABELS.items() if clay.resent[kind]},
            **(
                {
                    "rows with messy columns": len(clay.messy),
                    "callbacks answered with warnings": len(clay.warned()),
                    "their leads routed or skipped": sum(
                        1 for lead in warned if str(table.get(lead, {}).get("routing_status")) in FINISHED
                    ),
                }
                if clay.messy
                else {}
            ),
            "routed": statuses["routed"],
            "skipped (no destination)": statuses["skipped"],
            "once-per-lead deliveries doubled": doubled,
            "dead-lettered (LeadDLQ)": len(lead_dlq),
            "dead-lettered (RoutingDLQ)": len(routing_dlq),
        }
        routed_to = {**stack.sinks.counts(), "leads_table": len(table)}
        elapsed = time.monotonic() - stack.started_at
        return Summary(counts, routed_to, elapsed, self.problems, policies, distinct)

    def _check_intake(self) -> None:
        stack = self.stack
        if len(stack.accepted_ids) + stack.rejected_rows != len(stack.posted):
            self.problems.append(
                f"intake: {len(stack.posted)} posted but {len(stack.accepted_ids)} accepted"
                f" + {stack.rejected_rows} rejected"
            )

    def _check_clay(self, clay_ids: list[str], lead_dlq_ids: set[str]) -> None:
        twice = sorted(lead for lead, n in Counter(clay_ids).items() if n > 1)
        if twice:
            self.problems.append(f"sent to Clay more than once: {twice}")
        lost = set(self.stack.accepted_ids) - set(clay_ids) - lead_dlq_ids
        if lost:
            self.problems.append(f"accepted by intake but neither in Clay nor in LeadDLQ: {sorted(lost)}")

    def _check_callbacks(
        self, clay_ids: list[str], accepted: list[tuple[str, str]], sent: set[tuple[str, str]]
    ) -> None:
        """Every version of a row Clay called back with was accepted once (identical re-sends are duplicates)."""
        twice = sorted({lead for (lead, _), n in Counter(accepted).items() if n > 1})
        if twice:
            self.problems.append(f"the same callback body accepted more than once: {twice}")
        missing = set(clay_ids) - {lead for lead, _ in accepted}
        if missing:
            self.problems.append(f"Clay rows whose callback was never accepted: {sorted(missing)}")
        abandoned = set(self.stack.clay.abandoned)  # Clay gave up on these calls: the column shows the error
        never = {(lead, version) for lead, version in sent - set(accepted) if lead not in abandoned}
        if never:
            self.problems.append(f"callback versions never accepted: {sorted({lead for lead, _ in never})}")

    def _check_routing(self, accepted: list[str], table: dict[str, dict[str, Any]], routing_dlq_ids: set[str]) -> None:
        unfinished = sorted(
            lead
            for lead in set(accepted)
            if lead not in routing_dlq_ids and str(table.get(lead, {}).get("routing_status")) not in FINISHED
        )
        if unfinished:
            self.problems.append(f"callbacks neither routed, skipped nor dead-lettered: {unfinished}")

    def _check_warned(self, warned: set[str], table: dict[str, dict[str, Any]], routing_dlq_ids: set[str]) -> None:
        """A callback answered with warnings was still accepted: its lead is stored and routed (or skipped), never
        dead-lettered for the columns it could not read."""
        lost = sorted(lead for lead in warned if lead not in table or lead in routing_dlq_ids)
        lost += sorted(
            lead for lead in warned if lead in table and str(table[lead].get("routing_status")) not in FINISHED
        )
        if lost:
            self.problems.append(f"callbacks answered with warnings but not routed: {lost}")

    def _check_destinations(self, table: dict[str, dict[str, Any]]) -> tuple[dict[str, str], dict[str, int], int]:
        """Each destination got what the lead's ledger says, under its policy.

        Returns each destination's policy, the distinct payloads of each on-change one, and how many
        leads a once-per-lead destination got more than once (0 when it reconciles).

        once_per_lead: each lead's Idempotency-Key at most once, and exactly the leads the ledger holds.
        on_change: no payload twice for a lead (one call per distinct mapped payload), and the last one
        each lead got is the one its ledger entry names.
        """
        env = self.stack.function_env("RouterFunction")
        policies = RuleSet.from_setting(env.get("ROUTING_RULES", ""), env.get("DELIVERY_POLICIES", "")).policies
        distinct: dict[str, int] = {}
        doubled = 0
        for destination in self.stack.sinks.destinations:
            ledger = {
                lead: Delivered.from_value(entry)
                for lead, item in table.items()
                if (entry := (item.get("deliveries") or {}).get(destination))
            }
            received = self.stack.sinks.delivered(destination)
            policy = policies[destination]
            if policy == ONCE_PER_LEAD:
                doubled += self._check_once_per_lead(destination, received, ledger)
            else:
                distinct[destination] = self._check_on_change(destination, received, ledger, table)
        return {name: str(policy) for name, policy in policies.items()}, distinct, doubled

    def _check_once_per_lead(self, destination: str, received: list[Delivery], ledger: dict[str, Delivered]) -> int:
        expected = {idempotency_key(lead, destination) for lead in ledger}
        keys = Counter(delivery.key for delivery in received)
        twice = [key for key, n in keys.items() if n > 1]
        if twice:
            self.problems.append(f"{destination}: {len(twice)} leads delivered more than once")
        if missing := expected - set(keys):
            self.problems.append(f"{destination}: {len(missing)} recorded deliveries never arrived")
        if unexpected := set(keys) - expected:
            self.problems.append(f"{destination}: {len(unexpected)} deliveries the router did not record")
        return len(twice)

    def _check_on_change(
        self,
        destination: str,
        received: list[Delivery],
        ledger: dict[str, Delivered],
        table: dict[str, dict[str, Any]],
    ) -> int:
        by_email = {str((item.get("enrichment") or {}).get("email", "")).lower(): lead for lead, item in table.items()}
        versions: list[tuple[str, str]] = []  # (lead, payload hash) per call, in arrival order
        mapping = self.stack.hubspot().mapping
        records = self.stack.salesforce_mapping() if destination == "salesforce" else None
        created: set[str] = set()
        reset: set[str] = set()  # contacts an update sent a rep-owned field to (it would undo a rep's work)
        for delivery in received:
            payload = delivery.payload
            if destination == "hubspot":  # what the router hashes: the update, without what only a create sends
                if delivery.key in created and mapping.create_only & set(payload.get("properties") or {}):
                    reset.add(delivery.key)
                created.add(delivery.key)
                payload = mapping.without_owned(payload)
                lead = by_email.get(delivery.key, delivery.key)
            elif records is not None:  # Salesforce: the key is the lead_id (the external id); the same check
                if delivery.key in created and records.create_only & set(payload):
                    reset.add(delivery.key)
                created.add(delivery.key)
                payload, lead = records.as_update(delivery.key, payload), delivery.key
            else:
                lead = str(payload.get("lead_id", delivery.key)) if isinstance(payload, dict) else delivery.key
            versions.append((lead, payload_hash(payload)))
        if reset:
            self.problems.append(f"{destination}: {len(reset)} records updated with a rep-owned field")
        if repeated := [version for version, n in Counter(versions).items() if n > 1]:
            self.problems.append(f"{destination}: {len(repeated)} payloads delivered more than once to the same lead")
        last = {lead: digest for lead, digest in versions}
        stale = [lead for lead, entry in ledger.items() if lead in last and last[lead] != entry.payload_hash]
        if stale:
            self.problems.append(f"{destination}: {len(stale)} leads whose last delivery is not the one recorded")
        if missing := set(ledger) - set(last):
            self.problems.append(f"{destination}: {len(missing)} recorded deliveries never arrived")
        if unexpected := set(last) - set(ledger):
            self.problems.append(f"{destination}: {len(unexpected)} leads got deliveries the router did not record")
        return len(set(versions))
