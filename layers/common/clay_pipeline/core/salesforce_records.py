"""Salesforce records from leads: the object, the field mapping, each field's type and length (pure: no I/O).

What Salesforce documents, and what this module does with it:
- Upsert with sObject Collections (REST API Developer Guide, "Upsert Records Using sObject Collections",
  developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html):
  `PATCH /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}` with `{"allOrNone": false,
  "records": [...]}`, API version 46.0 and later; at most 200 records, each with an `attributes` map naming its
  `type` and the external id field instead of an Id. How its answers read is in core/salesforce_answers.py.
- Field types and lengths: the Salesforce Field Reference, Lead and Contact
  (developer.salesforce.com/docs/platform/field-reference/references/field-reference/salesforce-field-reference-lead.html,
  ...-contact.html). Text is cut to its field's length (Salesforce refuses a longer value with STRING_TOO_LONG);
  an email is never cut (a cut address is a wrong one: Salesforce refuses it and the lead is dead-lettered).
  Lead requires LastName and Company, Contact requires LastName: a record that creates one without them is filled
  with `[not provided]`; an update never sends the placeholder (it would overwrite what a rep typed).
- Fields a rep owns (Status, OwnerId, and any the mapping marks `create_only`) go only into the upsert that creates
  the record. An upsert cannot say beforehand whether it will create, so the adapter first reads which external
  ids exist with one SOQL query per batch (core/salesforce_soql.py; see adapters/salesforce.py for the choice and
  its cost in calls).
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.core.column_values import number_or_none, read_instant
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.leads import is_null

MAX_RECORDS = 200  # sObject Collections: "The list can contain up to 200 objects."
MIN_API_VERSION = 46.0  # the collections upsert exists from API version 46.0
NOT_PROVIDED = "[not provided]"
OBJECTS = ("Lead", "Contact")
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {"Lead": ("LastName", "Company"), "Contact": ("LastName",)}
OWNED_FIELDS = frozenset({"Status", "OwnerId"})  # a rep's: set only when the record is created
ENRICHMENT_DATE = "enrichment_date"  # a computed source: the day Clay enriched the lead, YYYY-MM-DD
SCORE_FIELD, TIER_FIELD = "Clay_ICP_Score__c", "Clay_Tier__c"  # the custom fields the README has the admin create
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")  # a field's API name (custom ones end in __c)
_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}__c$")
_LEAD_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_VERSION = re.compile(r"^v(\d{2,3})\.0$")


class Kind(enum.StrEnum):
    TEXT = "text"  # string, picklist, phone, url, reference: text cut to the field's length
    EMAIL = "email"  # never cut
    INT = "int"
    NUMBER = "number"
    DATE = "date"  # YYYY-MM-DD


@dataclass(frozen=True)
class FieldType:
    kind: Kind
    length: int | None = None


def _text(length: int) -> FieldType:
    return FieldType(Kind.TEXT, length)


# The standard fields a mapping is likely to write, typed and sized as the Field Reference lists them, and the
# two custom fields of the README's setup (Clay_ICP_Score__c: Number(3, 0); Clay_Tier__c: Text(10)).
_SHARED = {
    "FirstName": _text(40),
    "LastName": _text(80),
    "Email": FieldType(Kind.EMAIL, 80),
    "Title": _text(128),
    "Phone": _text(40),
    "MobilePhone": _text(40),
    "LeadSource": _text(40),
    "OwnerId": _text(18),
    "Description": _text(32000),
    SCORE_FIELD: FieldType(Kind.NUMBER),
    TIER_FIELD: _text(10),
}
FIELD_TYPES: dict[str, dict[str, FieldType]] = {
    "Lead": {
        **_SHARED,
        "Company": _text(255),
        "Website": _text(255),
        "Industry": _text(40),
        "NumberOfEmployees": FieldType(Kind.INT),
        "AnnualRevenue": FieldType(Kind.NUMBER),
        "Status": _text(40),
        "Rating": _text(40),
        "City": _text(40),
        "State": _text(80),
        "Country": _text(80),
    },
    "Contact": {
        **_SHARED,
        "Department": _text(80),
        "MailingCity": _text(40),
        "MailingState": _text(80),
        "MailingCountry": _text(80),
    },
}


@dataclass(frozen=True)
class Source:
    """Where a field's value comes from: a lead field, or a constant; `create_only`: only when the record is new."""

    lead_field: str | None = None
    value: Any = None
    create_only: bool = False


_LEAD_SOURCE = Source(value="Other", create_only=True)  # a standard LeadSource value; set the org's own in the map
DEFAULT_MAPS: dict[str, dict[str, Source]] = {
    "Lead": {
        "Email": Source("email"),
        "FirstName": Source("first_name"),
        "LastName": Source("last_name"),
        "Company": Source("company_name"),
        "Title": Source("job_title"),
        "Phone": Source("phone"),
        "Website": Source("domain"),
        "Industry": Source("industry"),
        "NumberOfEmployees": Source("employee_count"),
        "LeadSource": _LEAD_SOURCE,
        SCORE_FIELD: Source("icp_score"),
        TIER_FIELD: Source("tier"),
    },
    "Contact": {
        "Email": Source("email"),
        "FirstName": Source("first_name"),
        "LastName": Source("last_name"),
        "Title": Source("job_title"),
        "Phone": Source("phone"),
        "LeadSource": _LEAD_SOURCE,
        SCORE_FIELD: Source("icp_score"),
        TIER_FIELD: Source("tier"),
    },
}


# -- the record ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SalesforceRecord:
    """One lead as Salesforce gets it: what every upsert sends, and what only the upsert that creates it adds."""

    lead_id: str
    update: dict[str, Any]
    create: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordMapping:
    """The object, its external id field, and which lead field (or constant) fills which Salesforce field."""

    sobject: str = "Lead"
    external_id_field: str = "Clay_Lead_Id__c"
    fields: dict[str, Source] = field(default_factory=lambda: dict(DEFAULT_MAPS["Lead"]))

    @classmethod
    def from_settings(
        cls, sobject: str = "Lead", external_id_field: str = "Clay_Lead_Id__c", field_map: str = ""
    ) -> RecordMapping:
        """SALESFORCE_OBJECT, SALESFORCE_EXTERNAL_ID_FIELD and SALESFORCE_FIELD_MAP (a JSON object over the object's
        default map: `"Field": "lead_field"`, `"Field": null` drops a default, `"Field": {"field": ..., "create_only":
        true}` or `{"value": ...}` for a constant); ConfigError naming the setting and the problem."""
        if sobject not in OBJECTS:
            raise ConfigError(
                f"invalid configuration: SALESFORCE_OBJECT: {sobject!r} is not supported: {' or '.join(OBJECTS)}"
            )
        if not _CUSTOM_NAME.match(external_id_field):
            raise ConfigError(
                f"invalid configuration: SALESFORCE_EXTERNAL_ID_FIELD: {external_id_field!r} is not a custom field's"
                " API name (an External ID field is a custom field: letters, digits and _, ending in __c)"
            )
        fields = dict(DEFAULT_MAPS[sobject])
        for name, source in _read_field_map(field_map).items():
            if name == external_id_field:
                raise ConfigError(
                    f"invalid configuration: SALESFORCE_FIELD_MAP: {name} is the external id field: every record"
                    " carries the lead_id in it"
                )
            if source is None:
                fields.pop(name, None)
                continue
            if source.value is not None and _typed(FIELD_TYPES[sobject].get(name), source.value) is None:
                raise ConfigError(
                    f"invalid configuration: SALESFORCE_FIELD_MAP: {name}: {source.value!r} is not a value it takes"
                )
            fields[name] = source
        return cls(sobject, external_id_field, fields)

    @property
    def create_only(self) -> frozenset[str]:
        return frozenset(name for name, source in self.fields.items() if source.create_only or name in OWNED_FIELDS)

    def record(self, lead: dict[str, Any], received_at: str) -> SalesforceRecord:
        """Values left out when unknown (never null: that would clear what Salesforce has)."""
        update: dict[str, Any] = {}
        create: dict[str, Any] = {}
        owned = self.create_only
        types = FIELD_TYPES[self.sobject]
        for name, source in self.fields.items():
            if source.value is not None:
                raw = source.value
            elif source.lead_field == ENRICHMENT_DATE:
                raw = _day(lead.get("_clay_enriched_at") or received_at)
            else:
                raw = lead.get(str(source.lead_field))
            value = _typed(types.get(name), raw)
            if value is not None:
                (create if name in owned else update)[name] = value
        for name in REQUIRED_FIELDS[self.sobject]:
            if name not in update and name not in create:
                create[name] = NOT_PROVIDED  # only a record that is created needs it; an update keeps what is there
        return SalesforceRecord(str(lead["lead_id"]), update, create)

    def body(self, record: SalesforceRecord, new: bool) -> dict[str, Any]:
        """The record as the collections upsert takes it: type, external id, fields (the create part when new)."""
        values = {**record.update, **record.create} if new else record.update
        return {"attributes": {"type": self.sobject}, self.external_id_field: record.lead_id, **values}

    def as_update(self, lead_id: str, written: dict[str, Any]) -> dict[str, Any]:
        """The fields a record was written with, in update_payload's shape: the create-only fields and the
        required-field placeholders left out (what the local stack's reconciliation compares)."""
        kept = {
            name: value
            for name, value in written.items()
            if name not in self.create_only and not (name in REQUIRED_FIELDS[self.sobject] and value == NOT_PROVIDED)
        }
        return self.body(SalesforceRecord(lead_id, kept), new=False)

    def update_payload(self, lead: dict[str, Any], received_at: str) -> dict[str, Any]:
        """What an update of the record sends: what on_change compares (the create-only fields are not in it)."""
        return self.body(self.record(lead, received_at), new=False)


def check_api_version(version: str) -> str:
    """SALESFORCE_API_VERSION: `vNN.0`, at least v46.0 (the collections upsert's first version)."""
    found = _VERSION.match(version)
    if not found or float(found.group(1)) < MIN_API_VERSION:
        raise ValueError(f"{version!r} is not an API version the collections upsert has: v46.0 or later, as v62.0")
    return version


def _read_field_map(text: str) -> dict[str, Source | None]:
    if not text.strip():
        return {}
    setting = "invalid configuration: SALESFORCE_FIELD_MAP"
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{setting}: not JSON ({getattr(error, 'msg', error)})") from None
    if not isinstance(document, dict):
        raise ConfigError(f'{setting}: must be a JSON object of "SalesforceField": "lead_field" pairs')
    read: dict[str, Source | None] = {}
    for name, spec in document.items():
        if not _API_NAME.match(name):
            raise ConfigError(f"{setting}: {name!r} is not a Salesforce field's API name")
        read[name] = _read_source(setting, name, spec)
    return read


def _read_source(setting: str, name: str, spec: Any) -> Source | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"field": spec}
    if (
        not isinstance(spec, dict)
        or set(spec) - {"field", "value", "create_only"}
        or ("field" in spec) == ("value" in spec)
    ):
        raise ConfigError(
            f'{setting}: {name}: give a lead field name, null (drop it), or {{"field": ...}} / {{"value": ...}}'
            ' with an optional "create_only": true'
        )
    create_only = spec.get("create_only", False)
    if not isinstance(create_only, bool):
        raise ConfigError(f"{setting}: {name}: create_only is true or false")
    if "field" in spec:
        if not isinstance(spec["field"], str) or not _LEAD_FIELD.match(spec["field"]):
            raise ConfigError(f"{setting}: {name}: {spec['field']!r} is not a lead field name")
        return Source(lead_field=spec["field"], create_only=create_only)
    if not isinstance(spec["value"], (str, int, float, bool)) or spec["value"] == "":
        raise ConfigError(f"{setting}: {name}: a constant value is text, a number or true/false")
    return Source(value=spec["value"], create_only=create_only)


def _typed(kind: FieldType | None, value: Any) -> Any:
    """A lead value as Salesforce's field takes it (None for a value that is not there or not of that type)."""
    if value is None or value in ([], {}) or (isinstance(value, str) and is_null(value)):
        return None
    if kind is None:  # a field this module does not know: sent as JSON types it
        if isinstance(value, (bool, int, float)):
            return value if not isinstance(value, float) or math.isfinite(value) else None
        return _as_text(value)
    if kind.kind in (Kind.INT, Kind.NUMBER):
        number = number_or_none(value)
        if number is None or isinstance(number, bool) or not math.isfinite(number):
            return None
        if kind.kind is Kind.INT or float(number).is_integer():
            return int(number)
        return number
    if kind.kind is Kind.DATE:
        return _day(value)
    text = _as_text(value)
    if kind.kind is Kind.EMAIL or kind.length is None:
        return text
    return text[: kind.length]


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):  # a multi-select picklist takes ;-separated values
        return ";".join(str(item) for item in value)
    if isinstance(value, dict):
        return dump_json(value)
    return str(value).strip()


def _day(value: Any) -> str | None:
    try:
        return read_instant(value).date().isoformat()
    except ValueError:
        return None
