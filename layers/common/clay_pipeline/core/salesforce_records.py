"""Salesforce records from leads, and Salesforce's answers read back per lead (pure: no I/O, no settings).

What Salesforce documents, and what this module does with it:
- Upsert with sObject Collections (REST API Developer Guide, "Upsert Records Using sObject Collections",
  developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html):
  `PATCH /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}` with `{"allOrNone": false,
  "records": [...]}`, API version 46.0 and later; at most 200 records, each with an `attributes` map naming its
  `type` and the external id field instead of an Id. A request that is not well formed gets a 400; a well formed
  one a 200 whose list holds one UpsertResult per record, in the request's order: `{id, success, created,
  errors: [{statusCode, message, fields}]}` (SOAP API Developer Guide, "UpsertResult"; the error shape is the
  Error object's). `read_results` maps each back to its lead.
- Whole-request errors come as a list of `{errorCode, message, fields}` with the HTTP status (REST API Developer
  Guide, "Status Codes and Error Responses"): 401 `INVALID_SESSION_ID` (the session expired: get a new token,
  "Error Handling for Session Expiration"), 403 `REQUEST_LIMIT_EXCEEDED` (the org's rolling 24-hour API
  allocation, `TotalRequests`, or its concurrent long-running request limit, `ConcurrentRequests`: "API Request
  Limits and Allocations" in the Salesforce Developer Limits and Allocations Quick Reference). `read_refusal`
  says what each means for the leads.
- `UNABLE_TO_LOCK_ROW`: another transaction holds the record (or a parent it locks); Salesforce's guidance on
  record locking is to retry. That code and `REQUEST_LIMIT_EXCEEDED` on a record wait and retry; a field the run-as
  user cannot write (SETUP_CODES) is the admin's fix, as for the whole request: Salesforce pauses; any other code
  on a record is that record's own problem (a value Salesforce refuses, a validation rule, a duplicate rule): its
  lead alone is dead-lettered with Salesforce's message.
- Field types and lengths: the Salesforce Field Reference, Lead and Contact
  (developer.salesforce.com/docs/platform/field-reference/references/field-reference/salesforce-field-reference-lead.html,
  ...-contact.html). Text is cut to its field's length (Salesforce refuses a longer value with STRING_TOO_LONG);
  an email is never cut (a cut address is a wrong one: Salesforce refuses it and the lead is dead-lettered).
  Lead requires LastName and Company, Contact requires LastName: a record that creates one without them is filled
  with `[not provided]`; an update never sends the placeholder (it would overwrite what a rep typed).
- Fields a rep owns (Status, OwnerId, and any the mapping marks `create_only`) go only into the upsert that creates
  the record. An upsert cannot say beforehand whether it will create, so the adapter first reads which external
  ids exist with one SOQL query per batch (see adapters/salesforce.py for the choice and its cost in calls).
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
WAIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW"})
# A field the run-as user cannot write, said on a record: field-level security ("Unable to create/update fields: X.
# Please check the security settings of this field", as commonly reported), or a field the object lacks if
# Salesforce says so per record (undocumented: local/salesforce_sim.py). Every lead carrying it would fail alike.
SETUP_CODES = frozenset({"INVALID_FIELD", "INVALID_FIELD_FOR_INSERT_UPDATE"})
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


# -- reading Salesforce's answers -----------------------------------------------------------------
class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    WAIT = "wait"  # try again later: the lead is fine, Salesforce was busy (a lock, a limit) or did not answer it
    DEAD_LETTER = "dead_letter"  # this lead alone can never succeed as it is: Salesforce refused its values
    PAUSE = "pause"  # a setup problem every lead shares (the token, a permission, a field): wait for the admin


@dataclass(frozen=True)
class RecordOutcome:
    """One lead's result: delivered (its Salesforce id, whether the upsert created it) or why not."""

    verdict: Verdict
    salesforce_id: str = ""
    created: bool = False
    code: str = ""  # Salesforce's statusCode / errorCode, or ours (no_result)
    message: str = ""  # Salesforce's own words (may quote lead data: for the DLQ, not the logs)
    fields: tuple[str, ...] = ()


def read_results(lead_ids: list[str], body: Any) -> dict[str, RecordOutcome]:
    """Each lead's outcome from a 200's UpsertResult list (in request order). A lead without a result waits: an
    upsert by external id is idempotent, so sending it again cannot make a second record."""
    results = body if isinstance(body, list) else []
    outcomes: dict[str, RecordOutcome] = {}
    for index, lead_id in enumerate(lead_ids):
        result = results[index] if index < len(results) and isinstance(results[index], dict) else None
        if result is None:
            outcomes[lead_id] = RecordOutcome(
                Verdict.WAIT, code="no_result", message="Salesforce's answer had no result for it"
            )
        elif result.get("success") is True:
            outcomes[lead_id] = RecordOutcome(
                Verdict.DELIVERED, str(result.get("id") or ""), result.get("created") is True
            )
        else:
            outcomes[lead_id] = _record_error(result.get("errors"))
    return outcomes


def _record_error(errors: Any) -> RecordOutcome:
    found = [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []
    codes = [str(error.get("statusCode") or error.get("errorCode") or "UNKNOWN") for error in found] or ["UNKNOWN"]
    message = "; ".join(_one_line(error.get("message")) for error in found if error.get("message"))
    fields = tuple(str(name) for error in found for name in (error.get("fields") or []) if name)
    if all(code in WAIT_CODES for code in codes):
        verdict = Verdict.WAIT
    else:
        verdict = Verdict.PAUSE if SETUP_CODES & set(codes) else Verdict.DEAD_LETTER
    code = next((code for code in codes if code not in WAIT_CODES), codes[0])
    return RecordOutcome(verdict, code=code, message=message or code, fields=fields)


@dataclass(frozen=True)
class Refusal:
    """What a whole request's error means for every lead in it."""

    verdict: Verdict
    code: str
    message: str
    session_expired: bool = False  # 401 INVALID_SESSION_ID: a new token, then the same request once more


def request_errors(body: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    """(errorCode, message, fields) of a whole-request error body (a list of error objects, or one object)."""
    items = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    return [
        (
            str(item.get("errorCode") or item.get("statusCode") or ""),
            _one_line(item.get("message")),
            tuple(str(name) for name in item.get("fields") or [] if name),
        )
        for item in items
        if isinstance(item, dict)
    ]


def read_refusal(status: int, body: Any, external_id_field: str) -> Refusal:
    """A non-2xx answer to an upsert or a query, for every lead of the request (see the module docstring)."""
    errors = request_errors(body)
    code, message, _ = errors[0] if errors else ("", "", ())
    if status == 401:
        return Refusal(Verdict.PAUSE, code or "INVALID_SESSION_ID", message, session_expired=True)
    if code == "REQUEST_LIMIT_EXCEEDED":
        # TotalRequests: the org's rolling 24-hour allocation is spent, calls are blocked until usage drops (pause
        # and re-check); ConcurrentRequests: too many long-running calls at once (wait a little).
        verdict = Verdict.PAUSE if "TotalRequests" in message else Verdict.WAIT
        return Refusal(verdict, code, message)
    if code == "UNABLE_TO_LOCK_ROW" or status >= 500 or status == 429:
        return Refusal(Verdict.WAIT, code or f"http_{status}", message)
    if status == 404 or (code == "NOT_FOUND" and external_id_field in message):
        return Refusal(Verdict.PAUSE, code or "NOT_FOUND", message)  # the object or the external id field is missing
    if status == 403 or code in ("INVALID_FIELD", "INVALID_TYPE", "INSUFFICIENT_ACCESS", "API_DISABLED_FOR_ORG"):
        return Refusal(Verdict.PAUSE, code or f"http_{status}", message)  # a permission or a field: the admin's fix
    return Refusal(Verdict.DEAD_LETTER, code or f"http_{status}", message or f"Salesforce answered {status}")


# -- which records exist (the SOQL query before an upsert with create-only fields) ------------------
MAX_QUERY_IDS_CHARS = 8000  # the IN list of one query: well inside the 16,384-byte URI Salesforce accepts


def existing_query(sobject: str, external_id_field: str, lead_ids: list[str]) -> str:
    """SOQL selecting the records whose external id is one of `lead_ids` (quoted as SOQL string literals)."""
    quoted = ",".join(_soql_literal(lead_id) for lead_id in lead_ids)
    # S608: the names are validated API names (RecordMapping), the values SOQL literals escaped as documented
    return f"SELECT Id, {external_id_field} FROM {sobject} WHERE {external_id_field} IN ({quoted})"  # noqa: S608  # nosec B608


def query_batches(lead_ids: list[str]) -> list[list[str]]:
    """The ids split so each query's IN list stays under MAX_QUERY_IDS_CHARS (a lead_id is at most 128 characters)."""
    batches: list[list[str]] = [[]]
    size = 0
    for lead_id in lead_ids:
        cost = len(_soql_literal(lead_id)) + 1
        if batches[-1] and size + cost > MAX_QUERY_IDS_CHARS:
            batches.append([])
            size = 0
        batches[-1].append(lead_id)
        size += cost
    return [batch for batch in batches if batch]


def found_external_ids(body: Any, external_id_field: str) -> set[str]:
    """The external ids a query's answer (`{"records": [...]}`) found."""
    records = body.get("records") if isinstance(body, dict) else None
    return {
        str(record[external_id_field])
        for record in records or []
        if isinstance(record, dict) and record.get(external_id_field) is not None
    }


def _soql_literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f"'{escaped}'"


# -- the token --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    instance_url: str


def read_token(body: Any) -> Token | None:
    """The client credentials grant's answer: `{access_token, instance_url, token_type, ...}` (None when it is not)."""
    if not isinstance(body, dict):
        return None
    token, instance = body.get("access_token"), body.get("instance_url")
    if not isinstance(token, str) or not token or not isinstance(instance, str) or not instance:
        return None
    return Token(token, instance.rstrip("/"))


def grant_refused(body: Any) -> str:
    """A refused grant in words an admin acts on, naming the settings (never their values)."""
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    said = _one_line(body.get("error_description")) if isinstance(body, dict) else ""
    hint = {
        "invalid_client_id": "SALESFORCE_CLIENT_ID is not the consumer key of an app in this org",
        "invalid_client": "SALESFORCE_CLIENT_SECRET does not match SALESFORCE_CLIENT_ID's consumer secret",
        "invalid_grant": "the app's client credentials flow has no run-as user, or that user cannot log in",
        "unsupported_grant_type": "the app does not have the client credentials flow enabled",
    }.get(
        error, "check SALESFORCE_LOGIN_URL (the org's My Domain URL), SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET"
    )
    code = f"{error or 'no error code'}: {said or 'no description'}"
    return f"Salesforce refused the client credentials grant ({code}): {hint}"


def _one_line(value: Any, limit: int = 300) -> str:
    return re.sub(r"\s+", " ", str(value))[:limit].strip() if value else ""
