"""Routing rules: the defaults, ROUTING_RULES replacing them, each operator, and clear errors for bad rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.rules import (
    Decision,
    RuleSet,
    default_rules,
    parse_required_fields,
    parse_rules,
    parse_unknown_outcomes,
)

pytestmark = pytest.mark.unit

DEFAULTS = RuleSet(default_rules())


def rules(*items: dict[str, Any]) -> RuleSet:
    return RuleSet.from_setting(json.dumps(list(items)))


def when(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op} | ({} if value is None else {"value": value})


# ------------------------------------------------------------------------------------- defaults
@pytest.mark.parametrize(
    ("lead", "destinations"),
    [
        ({"icp_score": 95, "email": "a@x.com"}, ("slack", "outreach", "hubspot", "zapier")),
        ({"icp_score": 90}, ("slack",)),  # no email: neither outreach, HubSpot nor Zapier
        ({"icp_score": 89.9, "email": "a@x.com"}, ("outreach", "hubspot", "zapier")),
        ({"icp_score": 80, "email": "a@x.com"}, ("outreach", "hubspot", "zapier")),
        ({"icp_score": 79, "email": "a@x.com"}, ("hubspot", "nurture", "zapier")),
        ({"icp_score": 70, "email": "a@x.com"}, ("hubspot", "nurture", "zapier")),
        ({"icp_score": 69, "email": "a@x.com"}, ("nurture", "zapier")),
        ({"icp_score": 50}, ("nurture",)),
        ({"icp_score": 49, "email": "a@x.com"}, ("zapier",)),
    ],
)
def test_default_rules_follow_the_design_table(lead: dict[str, Any], destinations: tuple[str, ...]) -> None:
    decision = DEFAULTS.evaluate(lead)
    assert decision.destinations == destinations
    assert decision.skipped_reason is None


def test_empty_setting_keeps_the_defaults() -> None:
    assert RuleSet.from_setting("  ").rules == default_rules()


def test_a_lead_below_every_rule_is_skipped_with_each_rules_unmet_condition() -> None:
    # GIVEN a lead with a low score and no email WHEN evaluated THEN nothing is chosen and the reason says why
    decision = DEFAULTS.evaluate({"icp_score": 20})
    assert decision.destinations == ()
    assert decision.skipped_reason == (
        "no rule matched: slack needs icp_score >= 90; outreach needs icp_score >= 80; "
        "hubspot needs icp_score >= 70; nurture needs icp_score >= 50; zapier needs email present"
    )


# ------------------------------------------------------------------------------------- custom rules
def test_custom_rules_replace_the_defaults() -> None:
    # GIVEN ROUTING_RULES sending only tier-A software leads to Slack
    ruleset = rules({"destination": "slack", "when": [when("tier", "==", "A"), when("industry", "==", "software")]})
    # THEN a 95-score lead of another industry goes nowhere (the defaults are gone)
    assert ruleset.evaluate({"icp_score": 95, "tier": "A", "email": "a@x.com"}).destinations == ()
    assert ruleset.evaluate({"tier": "a", "industry": "Software"}).destinations == ("slack",)


def test_a_rule_without_conditions_always_matches_and_a_destination_is_chosen_once() -> None:
    ruleset = rules(
        {"destination": "leads_table"},
        {"destination": "nurture", "when": [when("icp_score", ">=", 10)]},
        {"destination": "nurture", "when": [when("icp_score", ">=", 20)]},
    )
    assert ruleset.evaluate({"icp_score": 30}).destinations == ("leads_table", "nurture")


@pytest.mark.parametrize(
    ("condition", "lead", "expected"),
    [
        (when("employee_count", ">=", 200), {"employee_count": 200}, True),
        (when("employee_count", ">=", 200), {"employee_count": "1,200"}, True),  # Clay's text numbers
        (when("employee_count", ">=", 200), {"employee_count": 199}, False),
        (when("employee_count", ">=", 200), {"employee_count": "many"}, False),
        (when("icp_score", "<", 50), {"icp_score": 49.5}, True),
        (when("icp_score", "<", 50), {"icp_score": 50}, False),
        (when("icp_score", "<", 50), {}, False),  # a missing field never matches
        (when("tier", "==", "A"), {"tier": " a "}, True),
        (when("icp_score", "==", 80), {"icp_score": "80.0"}, True),
        (when("email_verified", "==", True), {"email_verified": "TRUE"}, True),
        (when("email_verified", "==", True), {"email_verified": False}, False),
        (when("phone", "present"), {"phone": "+1 555"}, True),
        (when("phone", "present"), {"phone": "null"}, False),  # Clay's empty cell
        (when("tags", "present"), {"tags": []}, False),
        (when("job_title", "contains", "sales"), {"job_title": "VP Sales"}, True),
        (when("job_title", "contains", "sales"), {"job_title": "VP Marketing"}, False),
        (when("tech_stack", "contains", "hubspot"), {"tech_stack": ["Salesforce", "HubSpot"]}, True),
        (when("tech_stack", "contains", "hub"), {"tech_stack": ["HubSpot"]}, False),  # list: whole elements
    ],
)
def test_each_operator(condition: dict[str, Any], lead: dict[str, Any], expected: bool) -> None:
    ruleset = rules({"destination": "zapier", "when": [condition]})
    assert (ruleset.evaluate(lead).destinations == ("zapier",)) is expected


def test_conditions_are_joined_by_and() -> None:
    ruleset = rules({"destination": "outreach", "when": [when("icp_score", ">=", 50), when("email", "present")]})
    assert ruleset.evaluate({"icp_score": 60, "email": "a@x.com"}).destinations == ("outreach",)
    decision = ruleset.evaluate({"icp_score": 60})
    assert decision.skipped_reason == "no rule matched: outreach needs email present"


# ------------------------------------------------------------------------------------- invalid rules
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("{not json", "ROUTING_RULES is not valid JSON: Expecting property name"),
        ('{"destination": "slack"}', "ROUTING_RULES must be a non-empty JSON array"),
        ("[]", "ROUTING_RULES must be a non-empty JSON array"),
        ('["slack"]', "ROUTING_RULES[0]: a rule must be a JSON object, not str"),
        ('[{"when": []}]', "ROUTING_RULES[0] (no destination): destination: Field required"),
        (
            '[{"destination": "zapier"}, {"destination": "teams"}]',
            "ROUTING_RULES[1] (destination 'teams'): destination: Input should be 'slack', 'outreach'",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "icp_score", "op": ">", "value": 90}]}]',
            "ROUTING_RULES[0] (destination 'slack'): when[0].op: Input should be '>=', '<', '==', 'present' or",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "icp_score", "op": ">=", "value": "ninety"}]}]',
            "ROUTING_RULES[0] (destination 'slack'): when[0]: '>=' needs a number, not 'ninety'",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "icp_score", "op": ">="}]}]',
            "ROUTING_RULES[0] (destination 'slack'): when[0]: '>=' needs a value",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "email", "op": "present", "value": true}]}]',
            "when[0]: 'present' takes no value",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "tags", "op": "contains", "value": 3}]}]',
            "when[0]: 'contains' needs a text value",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "email", "op": "<", "value": 3}]}]',
            "when[0]: email is text: '<' compares numbers",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "tier", "op": "==", "value": ["A"]}]}]',
            "when[0].value: must be a number, text or true/false",
        ),
        (
            '[{"destination": "slack", "when": [{"field": "", "op": "present"}]}]',
            "when[0].field: String should have at least 1 character",
        ),
        ('[{"destination": "slack", "if": []}]', "if: Extra inputs are not permitted"),
        (
            '[{"destination": "hubspot", "when": [{"field": "icp_score", "op": ">=", "value": 70}]}]',
            "ROUTING_RULES[0] (destination 'hubspot'): hubspot upserts by email: add",
        ),
    ],
)
def test_invalid_rules_fail_naming_the_rule_and_the_problem(setting: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_rules(setting)
    assert message in str(raised.value)


# ------------------------------------------------------------------------------------- delivery policies
def test_default_policies_enrol_once_and_update_the_crm_on_change() -> None:
    assert DEFAULTS.policies == {
        "slack": "once_per_lead",
        "outreach": "once_per_lead",
        "nurture": "once_per_lead",
        "zapier": "once_per_lead",
        "hubspot": "on_change",
        "salesforce": "on_change",
        "leads_table": "on_change",
    }


def test_delivery_policies_setting_overrides_the_defaults() -> None:
    rule_set = RuleSet.from_setting("", " zapier = on_change , hubspot=once_per_lead")
    assert (rule_set.policy("zapier"), rule_set.policy("hubspot"), rule_set.policy("outreach")) == (
        "on_change",
        "once_per_lead",
        "once_per_lead",
    )


def test_a_rules_policy_field_overrides_the_setting_for_its_destination() -> None:
    text = json.dumps([{"destination": "zapier", "policy": "once_per_lead", "when": [when("email", "present")]}])
    assert RuleSet.from_setting(text, "zapier=on_change").policy("zapier") == "once_per_lead"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("zapier=sometimes", r"DELIVERY_POLICIES: zapier='sometimes' is not one of once_per_lead, on_change"),
        ("crm=on_change", r"DELIVERY_POLICIES: unknown destination 'crm' \(one of slack, outreach"),
        ("zapier=on_change,zapier=once_per_lead", "DELIVERY_POLICIES names zapier twice with different policies"),
        ("leads_table=once_per_lead", "the leads table always records the latest callback"),
    ],
)
def test_invalid_delivery_policies_fail_with_a_clear_message(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RuleSet.from_setting("", setting)


def test_two_rules_giving_one_destination_different_policies_fail() -> None:
    text = json.dumps(
        [
            {"destination": "zapier", "policy": "on_change", "when": [when("icp_score", ">=", 50)]},
            {"destination": "zapier", "policy": "once_per_lead", "when": [when("email", "present")]},
        ]
    )
    with pytest.raises(ConfigError, match=r"ROUTING_RULES\[1\] \(destination 'zapier'\): policy 'once_per_lead'"):
        RuleSet.from_setting(text)


def test_a_rule_with_an_unknown_policy_names_it() -> None:
    text = json.dumps([{"destination": "slack", "policy": "always", "when": []}])
    with pytest.raises(ConfigError, match=r"ROUTING_RULES\[0\] \(destination 'slack'\): policy"):
        RuleSet.from_setting(text)


# ------------------------------------------------------------------------------------- required fields
def test_required_fields_are_read_from_a_comma_separated_setting() -> None:
    assert parse_required_fields(" icp_score , Job Title,,icp_score ") == ("icp_score", "Job Title")
    assert parse_required_fields("") == ()
    assert RuleSet.from_setting("", "", "icp_score").required == ("icp_score",)


def test_a_row_without_a_required_column_chooses_nothing_and_says_why() -> None:
    rules = RuleSet(default_rules(), required=("icp_score", "job_title"))
    hot = {"email": "a@acme.com", "icp_score": 95, "job_title": "CEO"}
    # GIVEN the router computed the score (Clay sent the row without icp_score)
    decision = rules.evaluate(hot, sent={"email", "job_title"})
    assert decision == Decision(
        (), "incomplete row: Clay has not sent icp_score yet (ROUTING_REQUIRED_FIELDS)", incomplete=True
    )
    # AND the complete row, or a check without what Clay sent, is routed by the rules as always
    assert rules.evaluate(hot, sent=set(hot)).destinations == ("slack", "outreach", "hubspot", "zapier")
    assert rules.evaluate(hot).destinations == ("slack", "outreach", "hubspot", "zapier")
    assert DEFAULTS.evaluate(hot, sent={"email"}).destinations == ("slack", "outreach", "hubspot", "zapier")


# ------------------------------------------------------------------------------------- unknown outcomes
def test_unknown_outcome_defaults_hold_what_must_not_double_and_resend_the_rest() -> None:
    assert parse_unknown_outcomes("") == {
        "outreach": "hold",
        "nurture": "hold",
        "zapier": "hold",
        "slack": "resend",
        "hubspot": "resend",
        "salesforce": "resend",
    }
    assert parse_unknown_outcomes(" slack = hold , zapier=resend")["slack"] == "hold"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hubspot=hold", "always resend"),
        ("salesforce=hold", "external id is safe to repeat"),
        ("fax=hold", "'fax' is not one of"),
        ("slack=maybe", "slack='maybe' is not hold or resend"),
    ],
)
def test_invalid_unknown_outcome_policies_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_unknown_outcomes(text)


def test_salesforce_default_rule_only_when_its_login_url_is_set() -> None:
    # GIVEN the default rules with Salesforce on (SALESFORCE_LOGIN_URL set) and off
    lead = {"icp_score": 75, "email": "a@acme.com"}
    # THEN a lead HubSpot gets goes to Salesforce too, and without a login URL no lead names it
    assert RuleSet.from_setting("", salesforce=True).evaluate(lead).destinations == (
        "hubspot",
        "salesforce",
        "nurture",
        "zapier",
    )
    assert "salesforce" not in RuleSet.from_setting("").evaluate(lead).destinations
    assert RuleSet.from_setting("", salesforce=True).policy("salesforce") == "on_change"
