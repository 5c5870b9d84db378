"""A Salesforce org on loopback: the client credentials token endpoint, the sObject Collections upsert by external
id, the SOQL query by external id, and their failure modes (core/salesforce_records.py and
core/salesforce_answers.py cite the documentation).

- `POST /services/oauth2/token` (form-encoded): `grant_type=client_credentials` with the app's client id and
  secret -> `{access_token, instance_url, token_type, issued_at, signature}`; a wrong client id answers 400
  `invalid_client_id`, a wrong secret 400 `invalid_client`, another grant type 400 `unsupported_grant_type`, an app
  without a run-as user 400 `invalid_grant` ("no client credentials user enabled").
- `PATCH /services/data/vNN.0/composite/sobjects/{SObject}/{ExternalIdField}`: the external id field must exist
  on the object, at most 200 records, each of the object's type; a field the object lacks refuses the whole
  request (400 INVALID_FIELD), as does a value its type cannot take (400 JSON_PARSER_ERROR); per record: a new
  Lead needs LastName and Company (REQUIRED_FIELD_MISSING), text longer than its field is STRING_TOO_LONG, a
  malformed email INVALID_EMAIL_ADDRESS, a field the run-as user may not edit (`read_only_fields`: field-level
  security) INVALID_FIELD_FOR_INSERT_UPDATE "Unable to create/update fields: ..." (as commonly reported; the
  documentation lists the code, not this message). The answer is one UpsertResult per record, in order: `{id, success,
  created, errors}`. What the documentation says about the whole-request refusals, and where it is silent:
  - a missing external id field: 404 `[{"errorCode": "NOT_FOUND", "message": "The requested resource does not
    exist"}]`, the "Incorrect external ID field" answer the REST API Developer Guide shows for an upsert by
    external id ("Insert or Update (Upsert) a Record Using an External ID"); the collections page shows none of
    its own, and the documented message does not name the field.
  - more than 200 records: the collections page says "The list can contain up to 200 objects" and that a request
    that is not well formed gets a 400; it names no error code or message. EXCEEDED_ID_LIMIT "record limit
    reached. cannot submit more than 200 records into this call" is the SOAP API's answer to the same limit
    (as commonly reported, not on a documentation page): the adapter never sends more, and reads any 400 alike.
  - a field the object does not have: the documentation is silent on whether it refuses the whole collection
    or only the records carrying it, and on the message. The simulator refuses the whole request with 400
    INVALID_FIELD "No such column '<field>' on sobject of type <SObject>" (the wording Salesforce's INVALID_FIELD
    errors use in SOQL, "No such column ... on entity ..."). The adapter pauses Salesforce for either form
    (a per-record INVALID_FIELD is one of core/salesforce_answers.SETUP_CODES).
- `GET /services/data/vNN.0/query?q=SELECT Id, F FROM O WHERE F IN ('a', ...)`: the records found.
- A session ends (`expire_sessions`): every call with an older token gets 401 INVALID_SESSION_ID. Injected:
  403 REQUEST_LIMIT_EXCEEDED (`limit_requests`: the 24-hour allocation, or concurrent calls) and per-record
  UNABLE_TO_LOCK_ROW (`lock_rows`); an upsert whose records are written but whose answer comes late
  (`answer_after`: the client's deadline passes first, the answer is lost).

Every request is recorded (`server.requests`); `calls(kind)` counts them ("token", "query", "upsert"), and
`records` holds what the org has, by object and external id.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from clay_pipeline.core.salesforce_records import FIELD_TYPES, MAX_RECORDS, REQUIRED_FIELDS, FieldType, Kind
from local.http_stub import RecordedRequest, Reply, Served, StubServer

TOKEN_PATH = "/services/oauth2/token"  # noqa: S105  # nosec B105 - a path
_UPSERT = re.compile(r"^/services/data/v(\d+)\.0/composite/sobjects/(\w+)/(\w+)$")
_QUERY = re.compile(r"^/services/data/v(\d+)\.0/query/?$")
_SOQL = re.compile(r"^SELECT\s+Id\s*,\s*(\w+)\s+FROM\s+(\w+)\s+WHERE\s+(\w+)\s+IN\s*\((.*)\)\s*$", re.DOTALL)
_KINDS = {"token": re.compile(re.escape(TOKEN_PATH) + "$"), "query": _QUERY, "upsert": _UPSERT}
_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'")
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
CUSTOM_FIELDS: dict[str, Any] = {
    "Clay_Lead_Id__c": 255,
    "Clay_ICP_Score__c": FieldType(Kind.NUMBER),
    "Clay_Tier__c": 10,
}  # the README's setup
NOT_FOUND_MESSAGE = "The requested resource does not exist"  # REST API's 404 NOT_FOUND, as documented
LOCKED_MESSAGE = "unable to obtain exclusive access to this record or 1 records: {}"
LIMIT_MESSAGES = {
    True: "TotalRequests Limit exceeded.",
    False: "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
}


def _errors(status: int, code: str, message: str, fields: list[str] | None = None) -> Reply:
    return Reply(status, [{"message": message, "errorCode": code, "fields": fields or []}])


@dataclass
class Written:
    """One record the org wrote: its lead_id (external id), whether the upsert created it, the fields sent."""

    sobject: str
    lead_id: str
    created: bool
    fields: dict[str, Any]


@dataclass
class SalesforceSim(Served):
    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret"  # noqa: S105  # nosec B105 - the simulator's own
    run_as_user: bool = True  # False: the app has no run-as user (invalid_grant)
    sessions_refused: bool = False  # True: tokens are issued but every data call gets 401 (a user deactivated)
    answer_after: float = 0.0  # seconds between writing an upsert's records and answering (a lost answer)
    external_id_fields: dict[str, set[str]] = field(
        default_factory=lambda: {"Lead": {"Clay_Lead_Id__c"}, "Contact": {"Clay_Lead_Id__c"}}
    )
    custom_fields: dict[str, Any] = field(default_factory=lambda: dict(CUSTOM_FIELDS))  # name -> length or FieldType
    read_only_fields: set[str] = field(default_factory=set)  # the run-as user's permission set lacks Edit on them
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (object, external id) -> fields
    written: list[Written] = field(default_factory=list)
    instance_url: str = ""  # what the token answer names: this simulator's own server, or the sinks' it is mounted in
    requests: list[RecordedRequest] = field(default_factory=list)  # every request it answered, in order
    server: StubServer | None = field(default=None, init=False)  # its own server (start), when not mounted
    _tokens: set[str] = field(default_factory=set)
    _limit: list[Any] = field(default_factory=lambda: [0, True])  # REQUEST_LIMIT_EXCEEDED: [requests left, total]
    _locked: dict[str, int] = field(default_factory=dict)  # lead_id -> UNABLE_TO_LOCK_ROW answers left
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle (standalone: its own server; in the local stack it answers on the sinks' server) --------
    def start(self) -> str:
        self.server = StubServer(self.answer)
        self.instance_url = self.server.start()
        return self.instance_url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        return self.instance_url

    def secrets(self) -> dict[str, str]:
        """The router's Salesforce secrets for this org (SALESFORCE_LOGIN_URL is an environment variable)."""
        return {"SALESFORCE_CLIENT_ID": self.client_id, "SALESFORCE_CLIENT_SECRET": self.client_secret}

    # -- faults -------------------------------------------------------------------------------------
    def expire_sessions(self) -> None:
        """Every token issued so far stops working (the org's session timeout passed): 401 INVALID_SESSION_ID."""
        with self._lock:
            self._tokens.clear()

    def limit_requests(self, times: int, total: bool = True) -> None:
        """The next `times` data calls answer 403 REQUEST_LIMIT_EXCEEDED (total: the 24-hour allocation; else
        the concurrent long-running requests)."""
        with self._lock:
            self._limit[:] = [times, total]

    def lock_rows(self, lead_ids: list[str], times: int = 1) -> None:
        """The next `times` upserts of these records fail alone with UNABLE_TO_LOCK_ROW."""
        with self._lock:
            self._locked.update(dict.fromkeys(lead_ids, times))

    # -- what happened ------------------------------------------------------------------------------
    def calls(self, kind: str) -> list[RecordedRequest]:
        """The requests of one kind: token, query or upsert."""
        matcher = _KINDS[kind]
        with self._lock:
            return [request for request in self.requests if matcher.match(request.path)]

    def upserted(self) -> list[list[dict[str, Any]]]:
        """The records of each upsert request, in order."""
        return [request.json().get("records", []) for request in self.calls("upsert")]

    def record(self, lead_id: str, sobject: str = "Lead") -> dict[str, Any] | None:
        with self._lock:
            found = self.records.get((sobject, lead_id))
            return dict(found) if found is not None else None

    def writes(self, lead_id: str | None = None) -> list[Written]:
        with self._lock:
            return [w for w in self.written if lead_id is None or w.lead_id == lead_id]

    # -- answering -----------------------------------------------------------------------------------
    def answer(self, request: RecordedRequest, record: Callable[[Written], None] | None = None) -> Reply:
        """Salesforce's answer to a request on one of its paths; `record` is told each record written."""
        with self._lock:
            self.requests.append(request)
            written = len(self.written)
            reply = self._answer(request)
            new = self.written[written:]
        for item in new:
            (record or (lambda _: None))(item)
        return reply

    @staticmethod
    def handles(path: str) -> bool:
        return path == TOKEN_PATH or path.startswith("/services/data/")

    def _answer(self, request: RecordedRequest) -> Reply:
        if request.path == TOKEN_PATH:
            return self._grant(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._tokens or self.sessions_refused:
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self._limit[0] > 0:
            self._limit[0] -= 1
            return _errors(403, "REQUEST_LIMIT_EXCEEDED", LIMIT_MESSAGES[bool(self._limit[1])])
        if (found := _UPSERT.match(request.path)) and request.method == "PATCH":
            reply = self._upsert(int(found.group(1)), found.group(2), found.group(3), request)
            reply.delay = self.answer_after  # the records are written now; the answer may come too late
            return reply
        if (found := _QUERY.match(request.path)) and request.method == "GET":
            return _query(
                parse_qs(request.query).get("q", [""])[0], self.records, self.external_id_fields, self.custom_fields
            )
        return _errors(404, "NOT_FOUND", NOT_FOUND_MESSAGE)

    def _grant(self, request: RecordedRequest) -> Reply:
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        if refused := _grant_refused(form, self.client_id, self.client_secret, self.run_as_user):
            return refused
        token = "00DSIM!" + secrets.token_urlsafe(24)
        self._tokens.add(token)
        return _token_answer(token, self.instance_url)

    def _fields(self, sobject: str) -> dict[str, Any]:
        """The object's fields: name -> FieldType, or a length for the custom ones."""
        return {**FIELD_TYPES.get(sobject, {}), **self.custom_fields}

    def _upsert(self, version: int, sobject: str, external_id: str, request: RecordedRequest) -> Reply:
        # an unknown object or external id field: documented; names no field (module docstring)
        if version < 46 or sobject not in FIELD_TYPES or external_id not in self.external_id_fields.get(sobject, set()):
            return _errors(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        try:
            payload = request.json()
        except ValueError:
            return _errors(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if malformed := _malformed_upsert(sobject, payload, self._fields(sobject)):
            return malformed
        records = payload["records"]
        all_or_none = payload.get("allOrNone") is True
        results = [self._write(sobject, external_id, record, dry_run=all_or_none) for record in records]
        if all_or_none and not all(result["success"] for result in results):
            return Reply(200, [_failed("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back", []) for _ in records])
        if all_or_none:
            results = [self._write(sobject, external_id, record) for record in records]
        return Reply(200, results)

    def _write(self, sobject: str, external_id: str, record: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        lead_id = record.get(external_id)
        if not isinstance(lead_id, str) or not lead_id:
            return _failed("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{external_id}]", [external_id])
        if self._locked.get(lead_id, 0) > 0:
            if not dry_run:
                self._locked[lead_id] -= 1
            return _failed("UNABLE_TO_LOCK_ROW", LOCKED_MESSAGE.format(lead_id), [])
        values = {name: value for name, value in record.items() if name not in ("attributes", external_id)}
        existing = self.records.get((sobject, lead_id))
        created = existing is None
        if failed := _record_failure(sobject, values, self._fields(sobject), self.read_only_fields, created):
            return failed
        if dry_run:
            return {"id": "", "success": True, "created": created, "errors": []}
        if existing is None:
            existing = {"Id": f"00QSIM{next(self._ids):012d}"}
            self.records[(sobject, lead_id)] = existing
        existing.update(values)
        self.written.append(Written(sobject, lead_id, created, dict(values)))
        return {"id": existing["Id"], "success": True, "created": created, "errors": []}


def _failed(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {"id": None, "success": False, "errors": [{"statusCode": code, "message": message, "fields": fields}]}


def _is_number(value: Any, kind: Kind) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind is not Kind.INT or float(value).is_integer()


# -- the fixed answers ------------------------------------------------------------------------------------
def _grant_refused(form: dict[str, str], client_id: str, client_secret: str, run_as_user: bool) -> Reply | None:
    """The token endpoint's 400 for a grant it refuses (None: the grant is good)."""
    if form.get("grant_type") != "client_credentials":
        return Reply(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
    if form.get("client_id") != client_id:
        return Reply(400, {"error": "invalid_client_id", "error_description": "client identifier invalid"})
    if form.get("client_secret") != client_secret:
        return Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
    if not run_as_user:
        return Reply(400, {"error": "invalid_grant", "error_description": "no client credentials user enabled"})
    return None


def _token_answer(token: str, instance_url: str) -> Reply:
    return Reply(
        200,
        {
            "access_token": token,
            "signature": secrets.token_urlsafe(16),
            "scope": "api",
            "instance_url": instance_url,
            "id": f"{instance_url}/id/00DSIM/005SIM",
            "token_type": "Bearer",  # nosec B105 - the OAuth token type, not a secret
            "issued_at": str(int(time.time() * 1000)),
        },
    )


def _malformed_upsert(sobject: str, payload: Any, known: dict[str, Any]) -> Reply | None:
    """The 400 refusing a whole upsert request (None: each record gets its own result)."""
    records = payload.get("records") if isinstance(payload, dict) else None
    if not isinstance(records, list) or not records:
        return _errors(400, "INVALID_FIELD", "records: a list of sObjects is required")
    if len(records) > MAX_RECORDS:
        # 400 is documented; the code and message are not (the SOAP API's, as the module docstring says)
        message = f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
        return _errors(400, "EXCEEDED_ID_LIMIT", message)
    for record in records:
        if not isinstance(record, dict) or (record.get("attributes") or {}).get("type") != sobject:
            return _errors(400, "INVALID_TYPE", f"Each record must have attributes.type {sobject}")
        for name, value in record.items():
            if name == "attributes":
                continue
            if name not in known:  # whole request or this record alone: undocumented (module docstring)
                return _errors(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}")
            kind = known[name]
            if getattr(kind, "kind", None) in (Kind.INT, Kind.NUMBER) and not _is_number(value, kind.kind):
                return _errors(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {kind.kind} from {value!r}")
    return None


def _record_failure(
    sobject: str, values: dict[str, Any], known: dict[str, Any], read_only_fields: set[str], new: bool
) -> dict[str, Any] | None:
    """One record's failed UpsertResult: a field it may not edit, a value its field refuses, a required field
    missing on create (None: it is written)."""
    if read_only := sorted(read_only_fields & set(values)):  # field-level security, on each record
        message = (
            f"Unable to create/update fields: {', '.join(read_only)}. Please check the security settings of this"
            " field and verify that it is read/write for your profile or permission set."
        )
        return _failed("INVALID_FIELD_FOR_INSERT_UPDATE", message, read_only)
    problems = [problem for name, value in values.items() if (problem := _value_problem(known, name, value))]
    if problems:
        code, message, name = problems[0]
        return _failed(code, message, [name])
    if new:
        missing = [name for name in REQUIRED_FIELDS[sobject] if not values.get(name)]
        if missing:
            return _failed("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
    return None


def _value_problem(known: dict[str, Any], name: str, value: Any) -> tuple[str, str, str] | None:
    kind = known[name]
    length = kind if isinstance(kind, int) else getattr(kind, "length", None)
    if getattr(kind, "kind", None) is Kind.EMAIL and isinstance(value, str) and not EMAIL.match(value):
        return "INVALID_EMAIL_ADDRESS", f"{name}: invalid email address: {value}", name
    if length is not None and isinstance(value, str) and len(value) > length:
        return "STRING_TOO_LONG", f"{name}: data value too large: {value[:40]}... (max length={length})", name
    return None


def _query(
    soql: str,
    records: dict[tuple[str, str], dict[str, Any]],
    external_id_fields: dict[str, set[str]],
    custom_fields: dict[str, Any],
) -> Reply:
    """The query answer: the records whose external id is in the IN list (only the adapter's one query shape)."""
    found = _SOQL.match(soql.strip())
    if not found:
        return _errors(400, "MALFORMED_QUERY", "unexpected token")
    selected, sobject, where, values = found.groups()
    if sobject not in FIELD_TYPES:
        return _errors(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
    if selected != where or where not in external_id_fields.get(sobject, set()) | set(custom_fields):
        return _errors(400, "INVALID_FIELD", f"No such column '{where}' on entity '{sobject}'.")
    wanted = [re.sub(r"\\(.)", r"\1", literal) for literal in _LITERAL.findall(values)]
    rows = [
        {"attributes": {"type": sobject}, "Id": records[(sobject, value)]["Id"], where: value}
        for value in wanted
        if (sobject, value) in records
    ]
    return Reply(200, {"totalSize": len(rows), "done": True, "records": rows})
