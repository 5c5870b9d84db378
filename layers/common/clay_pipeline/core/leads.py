"""Lead models: what producers send us and what Clay sends back.

Clay's HTTP API column renders every value through a text template, so numbers arrive as
"85" or "1,200", booleans as "TRUE", lists as JSON strings, empty cells as "" or "null",
and empty columns may be missing. The validators here accept all of that and keep
unknown columns (extra="allow") so nothing a user added to the table is dropped. The readers of
numbers, counts, scores, flags and dates are in column_values.py; a column they cannot read is
set aside by EnrichedLead.read (kept as sent, missing for scoring and routing, named in warnings).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Clamped, Context, Decimal, DecimalException, Inexact, Overflow, Rounded, Underflow
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from clay_pipeline.core.column_values import (
    identifier_problem,
    instant_text,
    is_unicode,
    read_count,
    read_flag,
    read_quantity,
    read_score,
)

# Spreadsheet and enrichment placeholders for "no value": the column is treated as not sent, silently.
NULL_STRINGS = frozenset({"", "null", "none", "nil", "undefined", "n/a", "na", "nan", "-", "\u2013", "\u2014", "#n/a"})
# The domain starts with a non-dot and its last label holds no dot, so a failed match backtracks
# over each character once (the earlier [^@\s]+\.[^@\s]+ took about a second on 10,000 dots).
_EMAIL = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s.]+")
# What DynamoDB can store (the leads table holds every column): numbers of at most 38 significant
# digits with a magnitude from 1e-130 to below 1e126, values nested at most 32 levels (the table
# item and its enrichment map take two; 16 leaves room), map keys that are not empty, valid Unicode.
MAX_VALUE_DEPTH = 16
UNSTORABLE_NUMBER = "number cannot be stored: at most 38 significant digits, magnitude 1e-130 to 1e126"
NOT_UNICODE = "is not valid Unicode (a lone surrogate such as \\ud800)"
IDENTIFIERS = ("lead_id", "email", "domain", "linkedin_url")
MAX_LEAD_ID_LENGTH = 128
UNPARSED = "_unparsed"  # where a callback keeps, as Clay sent them, the columns it could not read
SENT_AS = "_sent_as"  # the text of a count Clay sent as a range, read as its lower bound
RANGED_COLUMNS = frozenset({"employee_count"})
Source = Literal["web-form", "crm-event", "csv-import", "api"]


# DynamoDB's numbers: 38 significant digits, magnitudes 1E-130 to 1E+126 (Amazon DynamoDB Developer Guide,
# "Supported data types": Number). The same context boto3 writes with (boto3.dynamodb.types.DYNAMODB_CONTEXT;
# tests/unit/core/test_leads.py checks they are equal), kept here so the core imports no AWS library.
DYNAMODB_NUMBERS = Context(
    prec=38, rounding=ROUND_HALF_EVEN, Emin=-128, Emax=126, traps=[Clamped, Inexact, Overflow, Rounded, Underflow]
)


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in NULL_STRINGS)


def _number_problem(value: int | float) -> str | None:
    """Why DynamoDB cannot store this number (boto3's own context decides, as when the item is written)."""
    try:
        number = DYNAMODB_NUMBERS.create_decimal(value if isinstance(value, int) else Decimal(repr(value)))
    except (DecimalException, ValueError):
        return UNSTORABLE_NUMBER
    if not number.is_finite() or (number and not -130 <= number.adjusted() <= 125):
        return UNSTORABLE_NUMBER
    return None


def _storage_problem(value: Any) -> str | None:
    """The first part of a JSON value the leads table cannot hold, with where it is ('[0].a: ...').

    Walks with a stack, not recursion: the value may be nested hundreds of levels deep.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        where = f"{path.lstrip('.')}: " if path else ""
        if isinstance(item, (dict, list)) and depth > MAX_VALUE_DEPTH:
            return f"{where}nested deeper than {MAX_VALUE_DEPTH} levels; at most {MAX_VALUE_DEPTH} are allowed"
        if isinstance(item, dict):
            for key, child in item.items():
                if not key:
                    return f"{where}has an empty key; every key needs a name"
                if not is_unicode(key):
                    return f"{where}a key {NOT_UNICODE}"
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        elif isinstance(item, str):
            if not is_unicode(item):
                return f"{where}text {NOT_UNICODE}"
        elif isinstance(item, (int, float)) and not isinstance(item, bool) and (problem := _number_problem(item)):
            return f"{where}{problem}"
    return None


def _storable(value: Any) -> Any:
    if problem := _storage_problem(value):
        raise ValueError(problem)
    return value


def _parse_json_container(value: Any) -> Any:
    """Clay sends list and object columns as JSON text."""
    if isinstance(value, str):
        text = value.strip()
        if (text.startswith("[") and text.endswith("]")) or (text.startswith("{") and text.endswith("}")):
            try:
                return json.loads(text)
            except (ValueError, RecursionError):  # not JSON, or nested too deep to decode: it stays text
                return value
    return value


def _strip(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and not is_unicode(value):
        raise ValueError(f"text {NOT_UNICODE}")
    return value.strip() if isinstance(value, str) else value


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if email.startswith("mailto:"):
        email = email[len("mailto:") :]
    if not _EMAIL.fullmatch(email):
        raise ValueError("not a valid email address")
    return email


def normalise_domain(value: str) -> str:
    text = value.strip().lower()
    if "@" in text and "/" not in text:
        text = text.rsplit("@", 1)[1]
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = host.removeprefix("www.").rstrip(".")
    if "." not in host or not re.fullmatch(r"[a-z0-9.-]+", host):
        raise ValueError("not a valid domain")
    return host


def normalise_linkedin_url(value: str) -> str:
    text = value.strip()
    parts = urlsplit(text if "//" in text else f"https://{text}")
    host = (parts.hostname or "").lower().removeprefix("www.")
    if not host.endswith("linkedin.com") or not parts.path.strip("/"):
        raise ValueError("not a LinkedIn profile URL")
    return f"https://www.linkedin.com/{parts.path.strip('/').lower()}"


Text = Annotated[str | None, BeforeValidator(_strip)]
Count = Annotated[int | None, BeforeValidator(read_count), AfterValidator(_storable)]
Score = Annotated[float | None, BeforeValidator(read_score)]
Flag = Annotated[bool | None, BeforeValidator(read_flag)]
Instant = Annotated[str | None, BeforeValidator(instant_text)]  # ISO 8601 in UTC
Storable = Annotated[Any, AfterValidator(_storable)]


def derive_lead_id(
    email: str | None, domain: str | None, first_name: str | None, last_name: str | None, linkedin_url: str | None
) -> str | None:
    """Stable id: from the normalised email, else domain plus names, else the LinkedIn URL."""
    if email:
        basis = f"email:{email}"
    elif domain:
        names = " ".join(part.strip().lower() for part in (first_name or "", last_name or "") if part)
        basis = f"domain:{domain}:{names}"
    elif linkedin_url:
        basis = f"linkedin:{linkedin_url}"
    else:
        return None
    return "ld_" + hashlib.sha256(basis.encode()).hexdigest()[:24]


class LeadFields(BaseModel):
    """Fields shared by the outbound lead and the enriched callback."""

    # defer_build: a function builds only the schemas it validates with (the callback never needs Lead's).
    model_config = ConfigDict(extra="allow", str_max_length=10_000, defer_build=True)
    # Columns beyond the declared fields are kept, each checked against what the leads table can hold.
    __pydantic_extra__: dict[str, Storable] = Field(init=False)

    lead_id: Text = Field(default=None, max_length=MAX_LEAD_ID_LENGTH)
    email: Text = None
    domain: Text = None
    first_name: Text = None
    last_name: Text = None
    linkedin_url: Text = None
    company_name: Text = None

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls_and_decode(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("must be a JSON object")
        cleaned: dict[str, Any] = {}
        sent_as: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(key, str) or is_null(value):
                continue
            if not is_unicode(key):
                raise ValueError(f"a column name {NOT_UNICODE}")
            name = key.strip()
            if not name:
                raise ValueError("a column has an empty name; name it or leave it out")
            if name in sent_as:
                # Trimmed, ' lead_id' would silently replace 'lead_id' (or the other way round).
                raise ValueError(f"columns {sent_as[name]!r} and {key!r} have the same name once trimmed; keep one")
            sent_as[name] = key
            cleaned[name] = _parse_json_container(value)
        return cleaned

    @field_validator("lead_id")
    @classmethod
    def _lead_id(cls, value: str | None) -> str | None:
        # The leads table's key and part of every mark: text DynamoDB stores, without control characters.
        if value and (problem := identifier_problem(value, MAX_LEAD_ID_LENGTH)):
            raise ValueError(problem)
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalise_email(value) if value else None

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return normalise_domain(value) if value else None

    @field_validator("linkedin_url")
    @classmethod
    def _linkedin(cls, value: str | None) -> str | None:
        return normalise_linkedin_url(value) if value else None

    @model_validator(mode="after")
    def _fill_domain_and_id(self) -> LeadFields:
        if not self.domain and self.email:
            with contextlib.suppress(ValueError):
                self.domain = normalise_domain(self.email)
        if not self.lead_id:
            self.lead_id = derive_lead_id(self.email, self.domain, self.first_name, self.last_name, self.linkedin_url)
        return self

    def has_identifier(self) -> bool:
        return any(getattr(self, name) for name in IDENTIFIERS)

    def to_message(self) -> dict[str, Any]:
        """JSON-safe dict with unset values left out (what goes on a queue or to Clay)."""
        return self.model_dump(mode="json", exclude_none=True)


class Lead(LeadFields):
    """A lead on its way to Clay (LeadQueue message)."""

    source: Source = "api"
    submitted_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        return value.strip().lower().replace("_", "-") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _require_identifier(self) -> Lead:
        if not (self.email or self.domain or self.linkedin_url):
            raise ValueError("needs an email, a domain or a linkedin_url")
        return self


class EnrichedLead(LeadFields):
    """A row Clay's HTTP API column POSTs back to us.

    Read it with `read`: a column whose value cannot be read is kept, not refused.
    """

    job_title: Text = None
    industry: Text = None
    employee_count: Count = None
    phone: Text = None
    icp_score: Score = None
    tier: Text = None
    email_verified: Flag = None
    # When Clay enriched the row (Clay's own column); HubSpot's clay_enrichment_date is its day.
    clay_enriched_at: Instant = Field(default=None, alias="_clay_enriched_at")
    _warnings: list[dict[str, str]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _require_identifier(self) -> EnrichedLead:
        if not self.has_identifier():
            raise ValueError(f"needs at least one of {', '.join(IDENTIFIERS)}")
        return self

    @classmethod
    def read(cls, document: dict[str, Any]) -> EnrichedLead:
        """Validate a callback's body, setting aside each column whose value cannot be read.

        Such a column is kept as Clay sent it under `_unparsed`, left out of the lead's fields (so
        scoring and routing treat it as missing) and named in `warnings`. Only what is left is an
        error: no identifier, a lead_id that is not one, or a value the leads table cannot store.
        A count sent as a range ("51-200") is read as its lower bound, and its text is kept under `_sent_as`.
        """
        if ranges := _ranges_sent(document):
            document = {**document, SENT_AS: ranges}
        try:
            return cls.model_validate(document)
        except ValidationError as error:
            problems = _readable_columns(error)
            if not problems:
                raise
            sent_as = {key.strip(): key for key in document if isinstance(key, str)}
            kept = {
                key: value for key, value in document.items() if not (isinstance(key, str) and key.strip() in problems)
            }
            try:
                lead = cls.model_validate({**kept, UNPARSED: {name: document[sent_as[name]] for name in problems}})
            except ValidationError:
                raise error from None  # what the columns said, not what setting them aside led to
        lead._warnings = [
            {"field": name, "warning": f"{problem}: kept as sent under {UNPARSED}, treated as missing"}
            for name, problem in problems.items()
        ]
        return lead

    @property
    def warnings(self) -> list[dict[str, str]]:
        """The columns `read` set aside, each with why (no value echoed)."""
        return list(self._warnings)

    def to_message(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


# Every declared column but lead_id (the key the callback is stored under) can be set aside.
SET_ASIDE_COLUMNS = frozenset(
    field.alias or name for name, field in EnrichedLead.model_fields.items() if name != "lead_id"
)


def _ranges_sent(document: dict[str, Any]) -> dict[str, str]:
    """The counts sent as a range or an open bucket ({"employee_count": "51-200"}): reading them keeps only
    the lower bound, so the text is kept beside it."""
    ranges: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(key, str) and key.strip() in RANGED_COLUMNS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                if read_quantity(value).ranged:
                    ranges[key.strip()] = value.strip()
    return ranges


def _readable_columns(error: ValidationError) -> dict[str, str]:
    """The declared columns among the errors, with each one's first problem ({column: problem})."""
    problems: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        column = item["loc"][0] if item["loc"] else None
        if isinstance(column, str) and column in SET_ASIDE_COLUMNS:
            problems.setdefault(column, str(item["msg"]).removeprefix("Value error, "))
    return problems


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as [{"field": ..., "error": ...}] for a 400 body (no input values echoed)."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append({"field": field, "error": message})
    return problems


def describe_problems(error: ValidationError) -> str:
    """'email: not a valid email address; needs an email, a domain or a linkedin_url' (no input echoed)."""
    problems = field_errors(error)
    return "; ".join(p["error"] if p["field"] == "body" else f"{p['field']}: {p['error']}" for p in problems)


def body_hash(body: Any) -> str:
    """Hash of the canonical JSON of a body: identical retries match, re-enrichments do not."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a lone surrogate under a dropped (null) column still hashes instead of raising
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
