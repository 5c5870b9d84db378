"""HubSpot simulated in memory: contacts, properties and limits, answering the sinks' HubSpot paths.

HubSpotSim keeps contacts by email and property definitions, and answers like HubSpot does
(clay_pipeline/adapters/hubspot.py cites the docs): batch upsert with `new` flags, batch read by
email (found contacts, OBJECT_NOT_FOUND for the rest), a whole batch refused with 400 when one
input is invalid, or 207 with per-input errors when `multi_status` is on and the inputs carry an
objectWriteTraceId, PROPERTY_DOESNT_EXIST for a property the portal lacks, 429 bodies with
`policyName` (TEN_SECONDLY_ROLLING, DAILY), the property and property group APIs, and the account's
UTC offset. It is stricter than HubSpot in one way: a property value that is not a JSON string is
refused (the API types them as strings; HubSpot itself converts numbers). The sinks' server
(local.sinks) routes HUBSPOT_PATHS here, as it routes Salesforce's to local.salesforce_sim.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.adapters.hubspot import ACCOUNT_PATH, GROUPS_PATH, PROPERTIES_PATH, READ_PATH, UPSERT_PATH
from local.http_stub import RecordedRequest, Reply

HUBSPOT_PATHS = frozenset({UPSERT_PATH, READ_PATH, PROPERTIES_PATH, GROUPS_PATH, ACCOUNT_PATH})
# A contact HubSpot wrote: (its lower-case email, the upsert input as sent)
Recorder = Callable[[str, dict[str, Any]], None]
# RFC 5322's atoms: stricter than the pipeline's own check (core/leads.py), as HubSpot is
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A portal's own contact properties (a subset): name -> (type, options of an enumeration)
STANDARD_PROPERTIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "email": ("string", ()),
    "firstname": ("string", ()),
    "lastname": ("string", ()),
    "company": ("string", ()),
    "jobtitle": ("string", ()),
    "phone": ("string", ()),
    "website": ("string", ()),
    "industry": ("string", ()),
    "city": ("string", ()),
    "country": ("string", ()),
    "hs_lead_status": (
        "enumeration",
        ("NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"),
    ),
    "lifecyclestage": (
        "enumeration",
        ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "other"),
    ),
    "hubspot_owner_id": ("enumeration", ()),  # owner ids: any number
}
STANDARD_GROUPS = ("contactinformation", "sales_properties", "conversioninformation")
RATE_LIMIT_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "DAILY": "You have reached your daily limit.",
}


@dataclass
class Property:
    name: str
    type: str
    options: tuple[str, ...] = ()
    group: str = "contactinformation"
    label: str = ""

    def definition(self) -> dict[str, Any]:
        field_type = {"number": "number", "date": "date", "enumeration": "select"}.get(self.type, "text")
        options = [{"label": option, "value": option} for option in self.options]
        return {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "fieldType": field_type,
            "groupName": self.group,
            "options": options,
        }

    def problem(self, value: Any) -> str | None:
        """Why HubSpot would refuse this value, None when it takes it."""
        if not isinstance(value, str):
            return f"Property values must be strings; {self.name} is {type(value).__name__}"
        if value == "":
            return None  # clears the value
        if self.name == "email" and not EMAIL.match(value):
            return f"Email address {value} is invalid"
        if self.type == "number" and not _is_number(value):
            return f"{value} was not a valid number."
        if self.type == "date" and not (DAY.match(value) or value.isdigit()):
            return f"{value} is not a valid date (YYYY-MM-DD or epoch milliseconds at midnight UTC)."
        if self.type == "enumeration" and self.options and value not in self.options:
            return f"{value} was not one of the allowed options: {', '.join(self.options)}"
        return None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _error(status: int, category: str, message: str, **extra: Any) -> Reply:
    return Reply(
        status,
        {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category, **extra},
    )


@dataclass
class HubSpotSim:
    """HubSpot's contacts, properties and limits, in memory (the sink's HubSpot paths)."""

    token: str = ""  # when set, any other bearer token gets 401 (a revoked or mistyped private app token)
    missing_scopes: tuple[str, ...] = ()  # scopes the private app lacks: the contacts calls get 403 MISSING_SCOPES
    multi_status: bool = False  # 207 with per-input errors when the inputs carry objectWriteTraceId
    utc_offset_ms: int | None = -18_000_000  # the account's (US/Eastern in winter); None: the details call fails
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by lower-case email
    properties: dict[str, Property] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    limited: dict[str, int | None] = field(default_factory=dict)  # policyName -> 429s left (None: until lifted)
    _ids: Any = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name, (kind, options) in STANDARD_PROPERTIES.items():
            self.properties[name] = Property(name, kind, options)
        for name in STANDARD_GROUPS:
            self.groups[name] = {"name": name, "label": name, "displayOrder": 0, "archived": False}

    def add_custom_properties(self, definitions: list[tuple[str, str]]) -> None:
        """Create properties as `clay-pipeline hubspot setup` would have: (name, type) pairs, group clay."""
        self.groups.setdefault("clay", {"name": "clay", "label": "Clay", "displayOrder": -1, "archived": False})
        for name, kind in definitions:
            self.properties[name] = Property(name, kind, group="clay")

    def limit(self, policy: str | None, times: int | None = None) -> None:
        """Answer 429 with this policyName: `times` requests, or every one (None) until limit(None) lifts it."""
        self.limited = {} if policy is None else {policy: times}

    def answer(self, request: RecordedRequest, record: Recorder | None = None) -> Reply:
        """HubSpot's answer to a request on one of its paths; `record(email, input)` is told each contact written."""
        with self._lock:
            return self._answer(request, record or (lambda email, item: None))

    def _answer(self, request: RecordedRequest, record: Recorder) -> Reply:
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
        if request.path == ACCOUNT_PATH:
            return _account_details(self.utc_offset_ms)
        if self.missing_scopes and request.path in (READ_PATH, UPSERT_PATH):
            return _missing_scopes(self.missing_scopes)
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        if request.method == "GET":
            if request.path == PROPERTIES_PATH:
                return Reply(200, {"results": [p.definition() for p in self.properties.values()]})
            if request.path == GROUPS_PATH:
                return Reply(200, {"results": list(self.groups.values())})
            return _error(404, "OBJECT_NOT_FOUND", "no such resource")
        try:
            payload = request.json()
        except ValueError:
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1")
        if request.path == PROPERTIES_PATH:
            return self._create_property(payload)
        if request.path == GROUPS_PATH:
            return _create_group(self.groups, payload)
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list) or not inputs or len(inputs) > 100:
            return _error(400, "VALIDATION_ERROR", "inputs: between 1 and 100 required")
        if request.path == READ_PATH:
            return _read(self.contacts, inputs, payload.get("properties") or [])
        return self._upsert(inputs, record)

    def _throttled(self) -> Reply | None:
        for policy, left in list(self.limited.items()):
            if left is not None:
                if left <= 0:
                    del self.limited[policy]
                    continue
                self.limited[policy] = left - 1
            return _rate_limited(policy)
        return None

    def _upsert(self, inputs: list[Any], record: Recorder) -> Reply:
        unknown = sorted(
            {name for item in inputs for name in (item.get("properties") or {}) if name not in self.properties}
        )
        if unknown:  # HubSpot refuses the whole batch: a setup problem, not one contact's
            return _unknown_properties(unknown)
        problems = {index: self._problems(item) for index, item in enumerate(inputs)}
        problems = {index: found for index, found in problems.items() if found}
        traced = all(isinstance(item.get("objectWriteTraceId"), str) for item in inputs)
        if problems and not (self.multi_status and traced):
            first = next(iter(problems.values()))
            return _error(400, "VALIDATION_ERROR", f"Property values were not valid: {first}")
        results = [self._write(item, record) for index, item in enumerate(inputs) if index not in problems]
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if not problems:
            return Reply(200, body)
        errors = [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": f"Property values were not valid: {p}",
                "context": {"objectWriteTraceId": [inputs[index]["objectWriteTraceId"]]},
            }
            for index, p in problems.items()
        ]
        return Reply(207, {**body, "numErrors": len(errors), "errors": errors})

    def _problems(self, item: Any) -> str:
        if not isinstance(item, dict) or item.get("idProperty") != "email":
            return "idProperty must be email"
        found = [self.properties[name].problem(value) for name, value in (item.get("properties") or {}).items()]
        if "email" not in (item.get("properties") or {}):
            found.append(self.properties["email"].problem(str(item.get("id", ""))))
        return "; ".join(problem for problem in found if problem)

    def _write(self, item: dict[str, Any], record: Recorder) -> dict[str, Any]:
        email = str(item["id"]).lower()
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        contact = self.contacts.get(email)
        new = contact is None
        if contact is None:
            contact = {"id": str(next(self._ids)), "createdAt": now, "properties": {"email": email}}
            self.contacts[email] = contact
        contact["properties"].update(item.get("properties") or {})
        contact["updatedAt"] = now
        record(email, item)
        return {
            "id": contact["id"],
            "properties": dict(contact["properties"]),
            "new": new,
            "archived": False,
            "createdAt": contact["createdAt"],
            "updatedAt": now,
        }

    def _create_property(self, payload: Any) -> Reply:
        name = str(payload.get("name", "")) if isinstance(payload, dict) else ""
        if not name or not payload.get("type") or not payload.get("fieldType") or not payload.get("label"):
            return _error(400, "VALIDATION_ERROR", "name, label, type, fieldType and groupName are required")
        if name in self.properties:
            return _error(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
        if payload.get("groupName") not in self.groups:
            return _error(400, "VALIDATION_ERROR", f"property group {payload.get('groupName')} does not exist")
        created = Property(name, str(payload["type"]), group=str(payload["groupName"]), label=str(payload["label"]))
        self.properties[name] = created
        return Reply(201, created.definition())


def _read(contacts: dict[str, dict[str, Any]], inputs: list[Any], wanted: list[str]) -> Reply:
    """The batch read by email: found contacts, and a 207 naming the rest OBJECT_NOT_FOUND."""
    results, missing = [], []
    for item in inputs:
        email = str(item.get("id", "")) if isinstance(item, dict) else ""
        contact = contacts.get(email.lower())
        if contact is None:
            missing.append(email)
            continue
        values = contact["properties"]
        results.append(
            {"id": contact["id"], "properties": {k: values.get(k) for k in {"email", *wanted}}, "archived": False}
        )
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if not missing:
        return Reply(200, body)
    error = {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "context": {"ids": missing},
        "message": "Could not get some CONTACT objects, they may be deleted or not exist.",
    }
    return Reply(207, {**body, "numErrors": 1, "errors": [error]})


def _account_details(utc_offset_ms: int | None) -> Reply:
    if utc_offset_ms is None:
        return _error(403, "MISSING_SCOPES", "This app hasn't been granted all required scopes.")
    return Reply(
        200,
        {"portalId": 424242, "timeZone": "US/Eastern", "utcOffset": "-05:00", "utcOffsetMilliseconds": utc_offset_ms},
    )


def _missing_scopes(scopes: tuple[str, ...]) -> Reply:
    return _error(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call.",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": list(scopes)},
            }
        ],
    )


def _rate_limited(policy: str) -> Reply:
    return Reply(
        429,
        {
            "status": "error",
            "message": RATE_LIMIT_MESSAGES.get(policy, "limit"),
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy,
        },
    )


def _unknown_properties(unknown: list[str]) -> Reply:
    errors = [
        {
            "message": f'Property "{name}" does not exist',
            "code": "PROPERTY_DOESNT_EXIST",
            "context": {"propertyName": [name]},
        }
        for name in unknown
    ]
    return _error(400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(errors)}", errors=errors)


def _create_group(groups: dict[str, dict[str, Any]], payload: Any) -> Reply:
    name = str(payload.get("name", "")) if isinstance(payload, dict) else ""
    if not name or not payload.get("label"):
        return _error(400, "VALIDATION_ERROR", "name and label are required")
    if name in groups:
        return _error(409, "OBJECT_ALREADY_EXISTS", f"A property group named '{name}' already exists.")
    groups[name] = {
        "name": name,
        "label": payload["label"],
        "displayOrder": payload.get("displayOrder", -1),
        "archived": False,
    }
    return Reply(201, groups[name])
