"""Where the router's destinations are registered: the webhooks and the batched CRMs, built at cold start.

A new webhook destination is a WebhookDestination subclass (adapters/webhooks.py) added to `webhooks`; a
new batched CRM implements adapters/crm.BatchedCrm and is added to `crms`. Either also needs its name in
core/rules.py (DESTINATIONS, DEFAULT_POLICIES, DEFAULT_UNKNOWN_OUTCOMES), its secret setting in config.py,
and a template parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clay_pipeline.adapters.crm import BatchedCrm
from clay_pipeline.adapters.hubspot import HubSpotContacts
from clay_pipeline.adapters.webhooks import (
    HttpClient,
    NurtureWebhook,
    OutreachWebhook,
    RetryPolicy,
    SlackAlert,
    WebhookDestination,
    ZapierWebhook,
)
from clay_pipeline.config import RouterSettings
from clay_pipeline.core.hubspot_contacts import ContactMapping
from clay_pipeline.core.policies import payload_hash
from clay_pipeline.core.routing_message import RoutingMessage
from clay_pipeline.core.salesforce_records import RecordMapping


@dataclass(frozen=True)
class Destinations:
    webhooks: dict[str, WebhookDestination]  # one request per lead
    crms: dict[str, BatchedCrm]  # a batch's leads in few requests, one result per lead
    retry: RetryPolicy  # the in-invocation retries of every destination

    @classmethod
    def from_settings(
        cls, settings: RouterSettings, http: HttpClient, sleep: Callable[[float], None] = time.sleep
    ) -> Destinations:
        """ConfigError at cold start for an invalid HubSpot or Salesforce mapping."""
        retry = RetryPolicy(
            settings.destination_timeout_seconds,
            settings.destination_retry_attempts,
            settings.destination_retry_backoff_seconds,
            sleep,
        )
        webhooks: list[WebhookDestination] = [
            SlackAlert(http, settings.slack_min_interval_seconds, sleep),
            OutreachWebhook(http),
            NurtureWebhook(http),
            ZapierWebhook(http),
        ]
        mapping = ContactMapping.from_settings(
            settings.hubspot_property_map, settings.hubspot_owned_properties, settings.hubspot_new_contact_values
        )
        crms: list[BatchedCrm] = [
            HubSpotContacts(http, settings.hubspot_base_url, mapping, retry, settings.hubspot_batch_size),
        ]
        if settings.salesforce_login_url:  # without it Salesforce is not a destination of this deployment at all
            # imported here: its answers and SOQL modules cost a router without Salesforce ~2.5 ms of cold start
            from clay_pipeline.adapters.salesforce import SalesforceRecords

            records = RecordMapping.from_settings(
                settings.salesforce_object, settings.salesforce_external_id_field, settings.salesforce_field_map
            )
            login, version = settings.salesforce_login_url, settings.salesforce_api_version
            crms.append(SalesforceRecords(http, login, version, records, retry))
        return cls({d.name: d for d in webhooks}, {d.name: d for d in crms}, retry)

    @property
    def names(self) -> frozenset[str]:
        return frozenset((*self.webhooks, *self.crms))

    def configured(self) -> frozenset[str]:
        """The destinations whose URL or token is set now (read per invocation: a secret may change)."""
        webhooks = {d.name for d in self.webhooks.values() if d.configured()}
        return frozenset(webhooks | {d.name for d in self.crms.values() if d.configured()})

    def payload_hash(self, message: RoutingMessage, name: str) -> str:
        """Hash of what `name` receives for the message (what on_change compares)."""
        destination: Any = self.crms.get(name) or self.webhooks[name]
        return payload_hash(destination.payload(message.lead, message.received_at))
