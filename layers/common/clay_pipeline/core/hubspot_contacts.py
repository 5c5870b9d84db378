"""HubSpot contacts without the HTTP: the mapping of a lead to a contact, and the reading of HubSpot's answers.

adapters/hubspot.py makes the calls; everything here is plain data in, plain data out. What HubSpot
documents about each answer, and why it is read this way, is in that module's docstring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clay_pipeline.core.column_values import read_instant
from clay_pipeline.core.deliveries import DELIVERED, DeliveryResult, Status, short_text
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.hubspot_defaults import HUBSPOT_NEW_CONTACT_VALUES, HUBSPOT_OWNED_PROPERTIES
from clay_pipeline.core.json_text import dump_json

SETUP_COMMAND = "clay-pipeline hubspot setup"
PROPERTY_GROUP = {"name": "clay", "label": "Clay", "displayOrder": -1}
RETRYABLE_CATEGORIES = frozenset({"RATE_LIMITS", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})
DAILY_POLICY = "DAILY"
DAILY_LIMIT = "hubspot_daily_limit"
PROPERTY_MISSING = "hubspot_property_missing"
PROPERTY_MISSING_CODE = "PROPERTY_DOESNT_EXIST"
TOKEN_REFUSED = "hubspot_token_refused"  # noqa: S105  # nosec B105 - a reason, not a secret (401)
SCOPES_MISSING = "hubspot_scopes_missing"  # 403
# The private app's scopes: contacts read and write (batch read, upsert), contact schemas (the setup command).
REQUIRED_SCOPES = (
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
)
RECHECK_SECONDS = 900  # a pause whose end is not known is re-checked this often
RESET_MARGIN_SECONDS = 120  # past midnight before trying again: clocks differ

# HubSpot property <- lead field. `enrichment_date` is computed: the day Clay enriched the lead
# (`_clay_enriched_at`, else when the callback was received), as YYYY-MM-DD.
ENRICHMENT_DATE = "enrichment_date"
DEFAULT_PROPERTY_MAP = {
    "email": "email",
    "firstname": "first_name",
    "lastname": "last_name",
    "company": "company_name",
    "jobtitle": "job_title",
    "clay_icp_score": "icp_score",
    "clay_enrichment_date": ENRICHMENT_DATE,
}
# Types of the custom properties the setup command creates; any other one is single-line text.
PROPERTY_TYPES = {
    "clay_icp_score": ("number", "number", "Clay ICP score", "ICP score (0-100) from Clay's enrichment"),
    "clay_enrichment_date": ("date", "date", "Clay enrichment date", "The day Clay enriched this contact"),
    "clay_tier": ("string", "text", "Clay tier", "ICP tier (A-D) from Clay's enrichment"),
}
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")  # HubSpot's internal names: lower case
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


# -- the mapping -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contact:
    """One lead as HubSpot gets it: what every upsert sends, and what only the one that creates it adds."""

    email: str
    update: dict[str, str]
    create: dict[str, str] = field(default_factory=dict)

    def input(self, new: bool) -> dict[str, Any]:
        properties = {**self.update, **self.create} if new else self.update
        return {"idProperty": "email", "id": self.email, "objectWriteTraceId": self.email, "properties": properties}


@dataclass(frozen=True)
class ContactMapping:
    """Which lead field fills which contact property, which properties a rep owns, what a new contact starts with."""

    properties: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPERTY_MAP))
    owned: frozenset[str] = frozenset(HUBSPOT_OWNED_PROPERTIES.split(","))
    new_contact_values: dict[str, str] = field(default_factory=lambda: dict(_pairs("", HUBSPOT_NEW_CONTACT_VALUES)))

    @classmethod
    def from_settings(
        cls,
        property_map: str = "",
        owned: str = HUBSPOT_OWNED_PROPERTIES,
        new_contact_values: str = HUBSPOT_NEW_CONTACT_VALUES,
    ) -> ContactMapping:
        """HUBSPOT_PROPERTY_MAP (`property=field` pairs over the defaults; `property=` drops one),
        HUBSPOT_OWNED_PROPERTIES, HUBSPOT_NEW_CONTACT_VALUES; ConfigError naming the setting and the problem."""
        properties = dict(DEFAULT_PROPERTY_MAP)
        for name, source in _pairs("HUBSPOT_PROPERTY_MAP", property_map):
            _check_property("HUBSPOT_PROPERTY_MAP", name)
            if source and not _FIELD_NAME.match(source):
                raise ConfigError(f"invalid configuration: HUBSPOT_PROPERTY_MAP: {source!r} is not a lead field name")
            if name == "email" and source != "email":
                raise ConfigError(
                    "invalid configuration: HUBSPOT_PROPERTY_MAP: email is the contact's id: keep email=email"
                )
            if source:
                properties[name] = source
            else:
                properties.pop(name, None)
        owned_names = frozenset(part.strip() for part in owned.split(",") if part.strip())
        for name in owned_names:
            _check_property("HUBSPOT_OWNED_PROPERTIES", name)
        if "email" in owned_names:
            raise ConfigError("invalid configuration: HUBSPOT_OWNED_PROPERTIES: email is the contact's id, sent always")
        values = dict(_pairs("HUBSPOT_NEW_CONTACT_VALUES", new_contact_values))
        for name, value in values.items():
            _check_property("HUBSPOT_NEW_CONTACT_VALUES", name)
            if not value:
                raise ConfigError(f"invalid configuration: HUBSPOT_NEW_CONTACT_VALUES: {name} has no value")
            if name in properties:
                raise ConfigError(
                    f"invalid configuration: HUBSPOT_NEW_CONTACT_VALUES: {name} is also mapped from a lead field"
                    " in HUBSPOT_PROPERTY_MAP: give it one source"
                )
        return cls(properties, owned_names, values)

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> ContactMapping:
        """The mapping a router with this environment uses (unset variables: their defaults)."""
        return cls.from_settings(
            environ.get("HUBSPOT_PROPERTY_MAP", ""),
            environ.get("HUBSPOT_OWNED_PROPERTIES", HUBSPOT_OWNED_PROPERTIES),
            environ.get("HUBSPOT_NEW_CONTACT_VALUES", HUBSPOT_NEW_CONTACT_VALUES),
        )

    def contact(self, lead: dict[str, Any], received_at: str) -> Contact:
        """Values left out when unknown (never blanked: an empty string would clear what HubSpot has)."""
        update: dict[str, str] = {}
        create: dict[str, str] = {}
        for name, source in self.properties.items():
            if source == ENRICHMENT_DATE:
                value = property_value(enrichment_date(lead.get("_clay_enriched_at") or received_at))
            else:
                value = property_value(lead.get(source))
            if value is not None:
                (create if name in self.owned else update)[name] = value
        create.update(self.new_contact_values)
        return Contact(str(lead["email"]), update, create)

    def update_input(self, lead: dict[str, Any], received_at: str) -> dict[str, Any]:
        """What an update of the contact sends: what on_change compares (the rep-owned fields are not in it)."""
        return {"idProperty": "email", "id": str(lead["email"]), "properties": self.contact(lead, received_at).update}

    def without_owned(self, sent: dict[str, Any]) -> dict[str, Any]:
        """An input as sent, in update_input's shape: the create-only properties and the trace id left out."""
        properties = {k: v for k, v in (sent.get("properties") or {}).items() if k not in self.create_only}
        return {"idProperty": sent.get("idProperty"), "id": sent.get("id"), "properties": properties}

    @property
    def create_only(self) -> frozenset[str]:
        """The properties only the upsert that creates a contact sends."""
        return self.owned | frozenset(self.new_contact_values)

    def needed_properties(self) -> list[str]:
        """Every contact property this mapping writes."""
        return sorted({*self.properties, *self.new_contact_values})


def _pairs(setting: str, value: str) -> Iterable[tuple[str, str]]:
    for part in value.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConfigError(f"invalid configuration: {setting}: {part.strip()!r} is not property=value")
        name, _, source = part.partition("=")
        yield name.strip(), source.strip()


def _check_property(setting: str, name: str) -> None:
    if not _PROPERTY_NAME.match(name):
        raise ConfigError(
            f"invalid configuration: {setting}: {name!r} is not a HubSpot property name (its internal name:"
            " lower case letters, digits and _)"
        )


def property_value(value: Any) -> str | None:
    """A lead value as HubSpot's API types it: a string (None for a value that is not there)."""
    if value is None or value in ("", [], {}):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):  # multiple checkboxes take ;-separated values
        return ";".join(str(item) for item in value)
    if isinstance(value, dict):
        return dump_json(value)
    return str(value)


def enrichment_date(value: Any) -> str | None:
    """HubSpot date properties take YYYY-MM-DD (midnight UTC); None for what is not a date (column_values)."""
    try:
        return read_instant(value).date().isoformat()
    except ValueError:
        return None


def contacts_by_email(leads: Iterable[tuple[dict[str, Any], str]], mapping: ContactMapping) -> dict[str, Contact]:
    """One contact per email from (lead, received_at) pairs: HubSpot refuses a batch naming a contact twice,
    so the newest enrichment of an email wins (by received_at)."""
    contacts: dict[str, Contact] = {}
    for lead, received_at in sorted(leads, key=lambda item: item[1]):
        contacts[str(lead["email"])] = mapping.contact(lead, received_at)
    return contacts


def next_local_midnight(now: datetime, utc_offset_ms: int) -> datetime:
    """The next midnight at this UTC offset, in UTC. The offset is today's: across a DST change it is an hour off."""
    offset = timedelta(milliseconds=utc_offset_ms)
    local = now.astimezone(UTC) + offset
    midnight = datetime(local.year, local.month, local.day, tzinfo=UTC) + timedelta(days=1)
    return midnight - offset


def until_daily_reset(now: datetime, utc_offset_ms: int | None) -> tuple[float, str]:
    """Seconds until HubSpot's daily limit resets (midnight in the account's time zone, plus a margin) and what
    that is based on; a re-check in RECHECK_SECONDS when the account's offset is not known."""
    if utc_offset_ms is None:
        return RECHECK_SECONDS, "a re-check in 15 minutes (the account's time zone could not be read)"
    reset = next_local_midnight(now, utc_offset_ms) + timedelta(seconds=RESET_MARGIN_SECONDS)
    return (reset - now).total_seconds(), f"{reset:%Y-%m-%d %H:%M}Z (midnight in the account's time zone)"


def daily_limit_pause(seconds: float, basis: str) -> DeliveryResult:
    """A DAILY 429 as a pause of HubSpot until its limit resets."""
    detail = f"HubSpot's daily API limit is reached; HubSpot is paused until {basis}"
    return DeliveryResult(Status.PAUSED, DAILY_LIMIT, seconds, detail)


# -- reading HubSpot's answers ------------------------------------------------------------------
def refusal(result: DeliveryResult, body: Any) -> DeliveryResult:
    """A failed call's result in HubSpot's words: its category and message, a missing property, a DAILY 429.

    Anything neither delivered nor refused (a timeout, a connection error, an unknown outcome) is
    retryable: an upsert by email is idempotent.
    """
    if result.status is not Status.PERMANENT and result.status is not Status.RETRYABLE:
        return DeliveryResult(Status.RETRYABLE, result.reason, result.retry_after, result.detail)
    if not isinstance(body, dict):
        return result
    if result.reason in ("rejected_401", "rejected_403"):
        return access_refused(result.reason == "rejected_401", body)
    if body.get("policyName") == DAILY_POLICY:  # only HubSpot's 429s carry a policyName
        return DeliveryResult(Status.PAUSED, DAILY_LIMIT, None, short_text(body.get("message")))
    missing = missing_properties(body)
    if missing:
        return property_missing(missing)
    category = str(body.get("category") or "").lower()
    reason = f"hubspot_{category}" if category and result.status is Status.PERMANENT else result.reason
    return DeliveryResult(result.status, reason, result.retry_after, short_text(body.get("message")) or result.detail)


def access_refused(unauthorized: bool, body: Any) -> DeliveryResult:
    """HubSpot refused the token (401) or its scopes (403): pause, naming the setting and the scopes to fix."""
    scopes = ", ".join(REQUIRED_SCOPES)
    message = short_text(body.get("message")) if isinstance(body, dict) else ""
    said = f". HubSpot said: {message}" if message else ""
    if unauthorized:
        detail = (
            "HubSpot refused HUBSPOT_ACCESS_TOKEN (401: revoked, rotated or mistyped): put the private app's current"
            f" access token in the setting (it needs the scopes {scopes})"
        )
        return DeliveryResult(Status.PAUSED, TOKEN_REFUSED, RECHECK_SECONDS, detail + said)
    detail = (
        f"HubSpot refused a call for lack of a scope (403): grant the private app behind HUBSPOT_ACCESS_TOKEN the"
        f" scopes {scopes}"
    )
    return DeliveryResult(Status.PAUSED, SCOPES_MISSING, RECHECK_SECONDS, detail + said)


def property_missing(names: list[str]) -> DeliveryResult:
    detail = (
        f"HubSpot has no contact propert{'y' if len(names) == 1 else 'ies'} {', '.join(names)}:"
        f" create {'it' if len(names) == 1 else 'them'} with `{SETUP_COMMAND}`"
    )
    return DeliveryResult(Status.PAUSED, PROPERTY_MISSING, RECHECK_SECONDS, detail)


def missing_properties(error: dict[str, Any]) -> list[str]:
    """The properties a HubSpot error says do not exist: `errors[]` with code PROPERTY_DOESNT_EXIST and their
    `context.propertyName`, else the names in a message that carries the code."""
    names: set[str] = set()
    details = [item for item in error.get("errors") or [] if isinstance(item, dict)]
    for detail in details:
        context = detail.get("context")
        if detail.get("code") == PROPERTY_MISSING_CODE and isinstance(context, dict):
            found = context.get("propertyName")
            names.update(str(name) for name in (found if isinstance(found, list) else [found]) if name)
    message = str(error.get("message") or "")
    if not names and PROPERTY_MISSING_CODE in message:
        names.update(re.findall(r'Property \\*"([a-z0-9_]+)\\*" does not exist', message))
    return sorted(names)


def per_item_results(emails: list[str], body: Any) -> dict[str, DeliveryResult]:
    """Map HubSpot's answer (200, or 207 multi-status with "errors") back to each input.

    An error names its inputs in `context` (e.g. {"ids": ["a@x.com"]}, or the objectWriteTraceId each
    input carries). An input that no error names is delivered, unless some error names no input at
    all: then which inputs failed is unknown and they are retried, which is safe because an upsert
    by email is idempotent.
    """
    wanted = {email.lower(): email for email in emails}
    results: dict[str, DeliveryResult] = {}
    unattributed: DeliveryResult | None = None
    errors = body.get("errors", []) if isinstance(body, dict) else []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        category = str(error.get("category") or "ERROR").upper()
        status = Status.RETRYABLE if category in RETRYABLE_CATEGORIES else Status.PERMANENT
        missing = missing_properties(error)
        outcome = (
            property_missing(missing)
            if missing
            else DeliveryResult(status, f"hubspot_{category.lower()}", detail=short_text(error.get("message")))
        )
        named = [wanted[value.lower()] for value in _context_values(error.get("context")) if value.lower() in wanted]
        for email in named:
            results[email] = outcome
        if not named:
            unattributed = DeliveryResult(Status.RETRYABLE, "hubspot_unattributed_error", detail=outcome.detail)
    for email in emails:
        results.setdefault(email, unattributed or DELIVERED)
    return results


def _context_values(context: Any) -> list[str]:
    if not isinstance(context, dict):
        return []
    values: list[str] = []
    for value in context.values():
        values.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return values


# -- the custom properties (clay-pipeline hubspot setup) ----------------------------------------
@dataclass(frozen=True)
class PropertiesPlan:
    """What the mapping needs that the portal lacks: the property group and each missing property's definition."""

    group: dict[str, Any] | None
    create: list[dict[str, Any]]
    present: list[str]
    mismatched: list[str]  # exist with another type than the mapping expects: reported, never changed

    @property
    def changes(self) -> bool:
        return bool(self.group or self.create)


def properties_plan(mapping: ContactMapping, groups: list[str], existing: dict[str, str]) -> PropertiesPlan:
    """`groups`: the portal's contact property group names; `existing`: its contact properties' types by name."""
    create, present, mismatched = [], [], []
    for name in mapping.needed_properties():
        expected = PROPERTY_TYPES.get(name)
        if name in existing:
            present.append(name)
            if expected and existing[name] != expected[0]:
                mismatched.append(f"{name} is {existing[name]}, {expected[0]} expected")
            continue
        kind, field_type, label, description = expected or ("string", "text", name.replace("_", " ").capitalize(), "")
        definition = {"name": name, "label": label, "type": kind, "fieldType": field_type}
        create.append({**definition, "groupName": PROPERTY_GROUP["name"], "description": description or "From Clay"})
    group = dict(PROPERTY_GROUP) if create and PROPERTY_GROUP["name"] not in groups else None
    return PropertiesPlan(group, create, present, mismatched)
