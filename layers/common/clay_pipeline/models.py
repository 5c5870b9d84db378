"""Lead models: what producers send us and what Clay sends back.

Clay's HTTP API column renders every value through a text template, so numbers arrive as
"85" or "1,200", booleans as "TRUE", lists as JSON strings, empty cells as "" or "null",
and empty columns may be missing. The validators here accept all of that and keep
unknown columns (extra="allow") so nothing a user added to the table is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal, DecimalException
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from boto3.dynamodb.types import DYNAMODB_CONTEXT
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

NULL_STRINGS = frozenset({"", "null", "none", "nil", "undefined", "n/a", "na", "nan", "-"})
TRUE_STRINGS = frozenset({"true", "yes", "y", "1", "t"})
FALSE_STRINGS = frozenset({"false", "no", "n", "0", "f"})
# The domain starts with a non-dot and its last label holds no dot, so a failed match backtracks
# over each character once (the earlier [^@\s]+\.[^@\s]+ took about a second on 10,000 dots).
_EMAIL = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s.]+")
_NUMBER = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?")
# What DynamoDB can store (the leads table holds every column): numbers of at most 38 significant
# digits with a magnitude from 1e-130 to below 1e126, values nested at most 32 levels (the table
# item and its enrichment map take two; 16 leaves room), map keys that are not empty, valid Unicode.
MAX_VALUE_DEPTH = 16
MAX_NUMBER_TEXT_DIGITS = 40  # longer digit strings are not numbers to us (and int() refuses > 4,300)
UNSTORABLE_NUMBER = "number cannot be stored: at most 38 significant digits, magnitude 1e-130 to 1e126"
NOT_UNICODE = "is not valid Unicode (a lone surrogate such as \\ud800)"
IDENTIFIERS = ("lead_id", "email", "domain", "linkedin_url")
Source = Literal["web-form", "crm-event", "csv-import", "api"]


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in NULL_STRINGS)


def _parse_number(value: Any) -> Any:
    """'1,200' -> 1200, '85' -> 85, '85.5' -> 85.5; anything else is left for pydantic to reject."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if text.endswith("+"):  # Clay's employee ranges such as "10,000+"
            text = text[:-1]
        digits = text.replace(",", "")
        if len(digits) <= MAX_NUMBER_TEXT_DIGITS and _NUMBER.fullmatch(text):
            if "." not in digits:
                return int(digits)  # every digit kept (float() would round past 15)
            number = float(digits)
            return int(number) if number.is_integer() else number
    return value


def _number_problem(value: int | float) -> str | None:
    """Why DynamoDB cannot store this number (boto3's own context decides, as when the item is written)."""
    try:
        number = DYNAMODB_CONTEXT.create_decimal(value if isinstance(value, int) else Decimal(repr(value)))
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


def is_unicode(text: str) -> bool:
    """False for text holding a lone surrogate, which JSON allows (\\ud800) but UTF-8 cannot encode."""
    return text.isascii() or not any("\ud800" <= char <= "\udfff" for char in text)


def _storable(value: Any) -> Any:
    if problem := _storage_problem(value):
        raise ValueError(problem)
    return value


def _parse_bool(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_STRINGS:
            return True
        if text in FALSE_STRINGS:
            return False
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
Number = Annotated[int | None, BeforeValidator(_parse_number), AfterValidator(_storable)]
Storable = Annotated[Any, AfterValidator(_storable)]
Flag = Annotated[bool | None, BeforeValidator(_parse_bool)]


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

    lead_id: Text = Field(default=None, max_length=128)
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
    """A row Clay's HTTP API column POSTs back to us."""

    job_title: Text = None
    industry: Text = None
    employee_count: Number = Field(default=None, ge=0)
    phone: Text = None
    icp_score: float | None = None
    tier: Text = None
    email_verified: Flag = None

    @field_validator("icp_score", mode="before")
    @classmethod
    def _score(cls, value: Any) -> Any:
        value = _parse_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("must be a number from 0 to 100")
        # Clay formulas occasionally overshoot (bonus points); clamp instead of dropping a lead.
        # Rounded so that a tiny value (1e-200) stays a number the leads table can store.
        return round(min(100.0, max(0.0, float(value))), 6)

    @model_validator(mode="after")
    def _require_identifier(self) -> EnrichedLead:
        if not self.has_identifier():
            raise ValueError(f"needs at least one of {', '.join(IDENTIFIERS)}")
        return self


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as [{"field": ..., "error": ...}] for a 400 body (no input values echoed)."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append({"field": field, "error": message})
    return problems


def body_hash(body: Any) -> str:
    """Hash of the canonical JSON of a body: identical retries match, re-enrichments do not."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a lone surrogate under a dropped (null) column still hashes instead of raising
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
