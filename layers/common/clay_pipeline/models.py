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
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

NULL_STRINGS = frozenset({"", "null", "none", "nil", "undefined", "n/a", "na", "nan", "-"})
TRUE_STRINGS = frozenset({"true", "yes", "y", "1", "t"})
FALSE_STRINGS = frozenset({"false", "no", "n", "0", "f"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
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
        if _NUMBER.match(text):
            number = float(text.replace(",", ""))
            return int(number) if number.is_integer() else number
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
            except ValueError:
                return value
    return value


def _strip(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else value


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if email.startswith("mailto:"):
        email = email[len("mailto:") :]
    if not _EMAIL.match(email):
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
Number = Annotated[int | None, BeforeValidator(_parse_number)]
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
        for key, value in data.items():
            if not isinstance(key, str) or is_null(value):
                continue
            cleaned[key.strip()] = _parse_json_container(value)
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
        return min(100.0, max(0.0, float(value)))

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
    return hashlib.sha256(canonical.encode()).hexdigest()
