"""Routing rules: which destinations an enriched lead goes to.

ROUTING_RULES is a JSON array that replaces the default rules (DEFAULT_RULES; README "Routing defaults").
Each rule names one destination and the conditions, all of which must hold (and):

    [{"destination": "slack", "when": [{"field": "icp_score", "op": ">=", "value": 90}]},
     {"destination": "zapier", "when": [{"field": "email", "op": "present"}]}]

Operators: ">=" and "<" (numbers), "==" (number, boolean, or text compared case-insensitively),
"present" (no value), "contains" (text: case-insensitive substring; list: an equal element).
A condition on a field the lead lacks is false. A rule without conditions always matches.
Several rules may name one destination: it is chosen once. Rules are checked at cold start
(ConfigError naming the rule's index and destination, and the problem).

Clay sends a row again whenever a column re-runs, so each destination also has a delivery
policy (DEFAULT_POLICIES; the router's ledger applies it, see core/policies.py):
- "once_per_lead": at most one delivery per lead for DELIVERY_MARK_DAYS, whatever later
  callbacks say (a sequence must never enrol a prospect twice);
- "on_change": delivered again only when the payload that destination receives changed.
DELIVERY_POLICIES (`zapier=on_change,hubspot=once_per_lead`) overrides the defaults, and a
rule's own "policy" field overrides both for its destination.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic import model_validator as _model_validator

from clay_pipeline.core.column_values import number_or_none, read_flag
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.leads import EnrichedLead, is_null

Destination = Literal["slack", "outreach", "hubspot", "salesforce", "nurture", "zapier", "leads_table"]
DESTINATIONS: tuple[str, ...] = ("slack", "outreach", "hubspot", "salesforce", "nurture", "zapier", "leads_table")
Operator = Literal[">=", "<", "==", "present", "contains"]
Policy = Literal["once_per_lead", "on_change"]
ONCE_PER_LEAD: Policy = "once_per_lead"
ON_CHANGE: Policy = "on_change"
POLICIES: tuple[Policy, ...] = (ONCE_PER_LEAD, ON_CHANGE)
# A sequence or a hot-lead alert enrolled twice is the worst outcome: once per lead. HubSpot upserts
# by email, so a changed row should update the contact. Zapier: a catch hook usually starts a Zap that
# creates something (a row, a task, an email), and Zaps do not dedupe, so once per lead (README).
DEFAULT_POLICIES: dict[str, Policy] = {
    "slack": ONCE_PER_LEAD,
    "outreach": ONCE_PER_LEAD,
    "nurture": ONCE_PER_LEAD,
    "zapier": ONCE_PER_LEAD,
    "hubspot": ON_CHANGE,
    "salesforce": ON_CHANGE,  # an upsert by external id: a changed row updates the record
    "leads_table": ON_CHANGE,
}
# What a webhook delivery whose answer was lost (it went out, no answer came) does next (core/routing_plan.py):
# - "hold": never re-sent automatically; the ledger marks it unknown, DeliveryUnknown alarms, and an operator
#   settles it (`clay-pipeline settle LEAD DESTINATION --delivered|--resend`);
# - "resend": sent again, with the same Idempotency-Key (a receiver that dedupes sees it once).
UnknownOutcome = Literal["hold", "resend"]
HOLD: UnknownOutcome = "hold"
RESEND: UnknownOutcome = "resend"
# Outreach and nurture enrol the prospect in a sequence: twice is the outcome to avoid, a delay is not. A
# Zapier catch hook starts a Zap that creates something, and neither Zapier nor Slack honours
# Idempotency-Key; but a hot-lead alert shown twice costs a glance, while one never shown costs the lead's
# first hour, so Slack resends. HubSpot upserts by email and Salesforce by external id (the lead_id): a
# repeat updates what the first made, so both are always resent, not configurable.
DEFAULT_UNKNOWN_OUTCOMES: dict[str, UnknownOutcome] = {
    "outreach": HOLD,
    "nurture": HOLD,
    "zapier": HOLD,
    "slack": RESEND,
    "hubspot": RESEND,
    "salesforce": RESEND,
}
NUMERIC_FIELDS = frozenset({"icp_score", "employee_count"})
# Known lead fields that hold text: comparing them as numbers is a mistake in the rules.
TEXT_FIELDS = frozenset(EnrichedLead.model_fields) - NUMERIC_FIELDS - {"email_verified"}


_TYPE_TAGS = {"bool", "int", "float", "str"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_number(value: Any) -> float | None:
    """What the column says as a number ("$1.2M", "51-200": its lower bound), or None (column_values)."""
    value = number_or_none(value)
    return float(value) if _is_number(value) else None


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        try:
            return read_flag(actual) is expected
        except ValueError:
            return False
    if _is_number(expected):
        return _as_number(actual) == float(expected)
    return str(actual).strip().lower() == str(expected).strip().lower()


class Condition(BaseModel):
    # defer_build: only the router validates rules; the other functions import this module (through
    # stores) without paying for the schemas at their cold start
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    field: str = Field(min_length=1)
    op: Operator
    value: StrictBool | StrictInt | StrictFloat | StrictStr | None = None

    @_model_validator(mode="after")
    def _value_fits_operator(self) -> Condition:
        if self.op == "present":
            if self.value is not None:
                raise ValueError("'present' takes no value")
        elif self.value is None:
            raise ValueError(f"'{self.op}' needs a value")
        elif self.op in (">=", "<"):
            if not _is_number(self.value):
                raise ValueError(f"'{self.op}' needs a number, not {self.value!r}")
            if self.field in TEXT_FIELDS:
                raise ValueError(f"{self.field} is text: '{self.op}' compares numbers")
        elif self.op == "contains" and not isinstance(self.value, str):
            raise ValueError("'contains' needs a text value")
        return self

    def matches(self, lead: dict[str, Any]) -> bool:
        actual = lead.get(self.field)
        if is_null(actual) or actual in ([], {}):
            return False
        if self.op == "present":
            return True
        if self.op in (">=", "<"):
            number = _as_number(actual)
            if number is None:
                return False
            return number >= float(self.value) if self.op == ">=" else number < float(self.value)  # type: ignore[arg-type]
        if self.op == "contains":
            needle = str(self.value).strip().lower()
            if isinstance(actual, list):
                return any(str(item).strip().lower() == needle for item in actual)
            return needle in str(actual).lower()
        return _equal(actual, self.value)

    def describe(self) -> str:
        return f"{self.field} present" if self.op == "present" else f"{self.field} {self.op} {self.value!r}"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    destination: Destination
    when: tuple[Condition, ...] = ()
    policy: Policy | None = None  # None: DELIVERY_POLICIES, else DEFAULT_POLICIES

    @_model_validator(mode="after")
    def _leads_table_keeps_the_latest(self) -> Rule:
        if self.destination == "leads_table" and self.policy not in (None, ON_CHANGE):
            raise ValueError("the leads table always records the latest callback: its policy is on_change")
        return self

    @_model_validator(mode="after")
    def _hubspot_needs_email(self) -> Rule:
        # HubSpot upserts contacts by email; a condition on email guarantees the lead has one.
        if self.destination == "hubspot" and not any(c.field == "email" for c in self.when):
            raise ValueError('hubspot upserts by email: add {"field": "email", "op": "present"}')
        return self

    def first_unmet(self, lead: dict[str, Any]) -> Condition | None:
        return next((condition for condition in self.when if not condition.matches(lead)), None)


@dataclass(frozen=True)
class Decision:
    destinations: tuple[str, ...]  # in rule order, each once
    skipped_reason: str | None = None
    incomplete: bool = False  # the row lacks a ROUTING_REQUIRED_FIELDS column: nothing is delivered for it


def _condition(field: str, op: str, value: Any = None) -> Condition:
    return Condition(field=field, op=op, value=value)  # type: ignore[arg-type]


@functools.cache
def default_rules(salesforce: bool = False) -> tuple[Rule, ...]:
    """The rules when ROUTING_RULES is empty (built on first use: validating them builds the schemas).

    `salesforce`: Salesforce's rule too (SALESFORCE_LOGIN_URL is set). Without a login URL Salesforce is off and
    its rule is left out, so a deployment without it records no `salesforce: off` on every lead."""
    rules = (
        Rule(destination="slack", when=(_condition("icp_score", ">=", 90),)),
        Rule(destination="outreach", when=(_condition("icp_score", ">=", 80), _condition("email", "present"))),
        Rule(destination="hubspot", when=(_condition("icp_score", ">=", 70), _condition("email", "present"))),
        Rule(destination="nurture", when=(_condition("icp_score", ">=", 50), _condition("icp_score", "<", 80))),
        Rule(destination="zapier", when=(_condition("email", "present"),)),
    )
    if not salesforce:
        return rules
    crm = Rule(destination="salesforce", when=(_condition("icp_score", ">=", 70), _condition("email", "present")))
    return (*rules[:3], crm, *rules[3:])


class RuleSet:
    def __init__(
        self, rules: tuple[Rule, ...], policies: dict[str, Policy] | None = None, required: tuple[str, ...] = ()
    ) -> None:
        self.rules = rules
        self.policies = resolve_policies(rules, policies or {})
        self.required = required

    @classmethod
    def from_setting(cls, text: str, policies: str = "", required: str = "", salesforce: bool = False) -> RuleSet:
        """ROUTING_RULES, DELIVERY_POLICIES and ROUTING_REQUIRED_FIELDS as configured: empty keeps the defaults
        (`salesforce`: with Salesforce's default rule, see default_rules)."""
        rules = parse_rules(text) if text.strip() else default_rules(salesforce)
        return cls(rules, parse_policies(policies), parse_required_fields(required))

    def policy(self, destination: str) -> Policy:
        return self.policies[destination]

    def evaluate(self, lead: dict[str, Any], sent: Collection[str] | None = None) -> Decision:
        """The destinations the rules choose for the lead. `sent`: the columns Clay sent with a value, checked
        against ROUTING_REQUIRED_FIELDS (a lead whose score the router computed was sent without icp_score)."""
        if sent is not None and (missing := [name for name in self.required if name not in sent]):
            reason = f"incomplete row: Clay has not sent {', '.join(missing)} yet (ROUTING_REQUIRED_FIELDS)"
            return Decision((), reason, incomplete=True)
        chosen: list[str] = []
        unmet: list[str] = []
        for rule in self.rules:
            condition = rule.first_unmet(lead)
            if condition is None:
                if rule.destination not in chosen:
                    chosen.append(rule.destination)
            else:
                unmet.append(f"{rule.destination} needs {condition.describe()}")
        if chosen:
            return Decision(tuple(chosen))
        return Decision((), "no rule matched: " + "; ".join(unmet))


def parse_required_fields(text: str) -> tuple[str, ...]:
    """ROUTING_REQUIRED_FIELDS: comma-separated columns a callback must carry to be routed (empty: none).

    For tables with one HTTP API column per enrichment: each column calls back with part of the row,
    and routing a part would enrol the lead on a score computed from half its data (nurture now,
    outreach when the last column arrives). Name a column only the complete row carries (icp_score).
    """
    return tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def parse_policies(text: str) -> dict[str, Policy]:
    """DELIVERY_POLICIES: comma-separated destination=policy pairs (empty keeps the defaults)."""
    policies: dict[str, Policy] = {}
    for pair in (part.strip() for part in text.split(",")):
        if not pair:
            continue
        destination, _, policy = (piece.strip() for piece in pair.partition("="))
        if destination not in DESTINATIONS:
            known = ", ".join(DESTINATIONS)
            raise ConfigError(f"DELIVERY_POLICIES: unknown destination {destination!r} (one of {known})")
        if policy not in POLICIES:
            raise ConfigError(f"DELIVERY_POLICIES: {destination}={policy!r} is not one of {', '.join(POLICIES)}")
        if destination == "leads_table" and policy != ON_CHANGE:
            raise ConfigError("DELIVERY_POLICIES: the leads table always records the latest callback (on_change)")
        if policies.get(destination, policy) != policy:
            raise ConfigError(f"DELIVERY_POLICIES names {destination} twice with different policies")
        policies[destination] = policy
    return policies


def parse_unknown_outcomes(text: str) -> dict[str, UnknownOutcome]:
    """UNKNOWN_OUTCOME_POLICIES: comma-separated destination=hold|resend pairs over DEFAULT_UNKNOWN_OUTCOMES."""
    outcomes = dict(DEFAULT_UNKNOWN_OUTCOMES)
    webhooks = ("outreach", "nurture", "zapier", "slack")
    for pair in (part.strip() for part in text.split(",")):
        if not pair:
            continue
        destination, _, choice = (piece.strip() for piece in pair.partition("="))
        if destination not in webhooks:
            why = {
                "hubspot": " (HubSpot's upsert by email is safe to repeat: always resend)",
                "salesforce": " (Salesforce's upsert by external id is safe to repeat: always resend)",
            }.get(destination, "")
            raise ConfigError(f"UNKNOWN_OUTCOME_POLICIES: {destination!r} is not one of {', '.join(webhooks)}{why}")
        if choice not in (HOLD, RESEND):
            raise ConfigError(f"UNKNOWN_OUTCOME_POLICIES: {destination}={choice!r} is not hold or resend")
        outcomes[destination] = HOLD if choice == HOLD else RESEND
    return outcomes


def resolve_policies(rules: tuple[Rule, ...], configured: dict[str, Policy]) -> dict[str, Policy]:
    """Defaults, then DELIVERY_POLICIES, then the rules' own policy fields (which must agree per destination)."""
    policies = {**DEFAULT_POLICIES, **configured}
    from_rules: dict[str, Policy] = {}
    for index, rule in enumerate(rules):
        if rule.policy is None:
            continue
        if from_rules.get(rule.destination, rule.policy) != rule.policy:
            raise ConfigError(
                f"ROUTING_RULES[{index}] (destination {rule.destination!r}): policy {rule.policy!r} contradicts "
                f"an earlier rule's {from_rules[rule.destination]!r} for the same destination"
            )
        from_rules[rule.destination] = rule.policy
    return {**policies, **from_rules}


def parse_rules(text: str) -> tuple[Rule, ...]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"ROUTING_RULES is not valid JSON: {error}") from None
    if not isinstance(document, list) or not document:
        raise ConfigError("ROUTING_RULES must be a non-empty JSON array of rules (leave it empty for the defaults)")
    rules = []
    for index, raw in enumerate(document):
        name = f"ROUTING_RULES[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{name}: a rule must be a JSON object, not {type(raw).__name__}")
        destination = raw.get("destination")
        name += f" (destination {destination!r})" if isinstance(destination, str) else " (no destination)"
        try:
            rules.append(Rule.model_validate(raw))
        except ValidationError as error:
            raise ConfigError(f"{name}: {_problems(error)}") from None
    return tuple(rules)


def _problems(error: ValidationError) -> str:
    by_location: dict[str, list[str]] = {}
    for item in error.errors(include_input=False, include_url=False):
        # A union reports each member (value.bool, value.int, ...): keep the field path and say it once.
        parts = [part for part in item["loc"] if str(part) not in _TYPE_TAGS]
        location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".")
        by_location.setdefault(location, []).append(str(item["msg"]).removeprefix("Value error, "))
    problems = []
    for location, messages in by_location.items():
        message = messages[0] if len(messages) == 1 else "must be a number, text or true/false"
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)
