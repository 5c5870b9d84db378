"""Clay's odd payloads: string numbers, TRUE, "", "null", JSON-string lists, omitted columns."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from clay_pipeline.core import leads as models
from clay_pipeline.core.leads import EnrichedLead, Lead, body_hash, derive_lead_id, field_errors

pytestmark = pytest.mark.unit


def errors_of(document: dict) -> dict[str, str]:
    """The 400's field errors for a callback body (read as the callback reads it)."""
    with pytest.raises(ValidationError) as caught:
        EnrichedLead.read(document)
    return {item["field"]: item["error"] for item in field_errors(caught.value)}


def warnings_of(document: dict) -> dict[str, str]:
    """The 200's warnings for a callback body: {column: why it was set aside}."""
    return {item["field"]: item["warning"] for item in EnrichedLead.read(document).warnings}


class TestEnrichedLeadLeniency:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("85", 85.0), (" 85 ", 85.0), ("85.5", 85.5), (85, 85.0), ("85%", 85.0), (100, 100.0), (0, 0.0)],
    )
    def test_icp_score_from_strings(self, raw: object, expected: float) -> None:
        lead = EnrichedLead.read({"lead_id": "ld_1", "icp_score": raw})
        assert (lead.icp_score, lead.warnings) == (expected, [])

    @pytest.mark.parametrize("raw", ["", "null", "NULL", "None", "n/a", "N/A", "-", "\u2014", "#N/A", None])
    def test_null_like_score_means_missing_without_a_warning(self, raw: object) -> None:
        lead = EnrichedLead.read({"lead_id": "ld_1", "icp_score": raw})
        assert (lead.icp_score, lead.warnings, "_unparsed" in lead.to_message()) == (None, [], False)

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            ("101", "is outside 0-100"),
            (101, "is outside 0-100"),
            ("1,000", "is outside 0-100"),
            ("-4", "is outside 0-100"),
            ("high", "is not a number"),
            ("70-80", "is a range"),
            ("$85", "is an amount of money"),
            (True, "is not a number"),
            ([85], "is not a number"),
            ({"v": 1}, "is not a number"),
        ],
    )
    def test_a_score_that_cannot_be_read_is_a_warning_and_missing_never_clamped(
        self, raw: object, problem: str
    ) -> None:
        # WHEN Clay sends a score outside 0-100 or not a number THEN the lead is accepted without a score
        lead = EnrichedLead.read({"lead_id": "ld_1", "icp_score": raw})
        assert lead.icp_score is None
        assert "icp_score" not in lead.to_message()
        # AND the value is kept as Clay sent it, and the answer says why
        assert lead.to_message()["_unparsed"] == {"icp_score": raw}
        [warning] = lead.warnings
        assert warning["field"] == "icp_score" and warning["warning"].startswith(problem)

    def test_an_infinite_score_cannot_be_stored_even_as_sent(self) -> None:
        # (JSON has no Infinity, and the callback refuses Python's extension: only a direct caller can send one)
        assert errors_of({"lead_id": "ld_1", "icp_score": float("inf")}) == {"icp_score": "is not a finite number"}

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("1,200", 1200),
            ("10,000+", 10000),
            ("50", 50),
            (75, 75),
            ("51-200", 51),
            (" 51-200 ", 51),
            ("51 - 200", 51),
            ("51\u2013200", 51),
            ("51 to 200", 51),
            ("51-200 employees", 51),
            ("1,001-5,000", 1001),
            ("10,001+", 10001),
            ("1.2K", 1200),
            ("1.2k", 1200),
            ("3.5 billion", 3_500_000_000),
            ("~500", 500),
            ("1e3", 1000),
            (1200.0, 1200),
        ],
    )
    def test_employee_count(self, raw: object, expected: int) -> None:
        lead = EnrichedLead.read({"lead_id": "x", "employee_count": raw})
        assert (lead.employee_count, lead.warnings) == (expected, [])

    @pytest.mark.parametrize("raw", [" 51-200 ", "10,000+", "1,001-5,000 employees"])
    def test_a_range_is_scored_on_its_lower_bound_and_its_text_kept(self, raw: str) -> None:
        message = EnrichedLead.read({"lead_id": "x", "employee_count": raw}).to_message()
        assert message["_sent_as"] == {"employee_count": raw.strip()}
        assert EnrichedLead.read(message).to_message() == message  # the router reads the queued lead the same

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            ("lots", "is not a number"),
            ("$1.2M", "is an amount of money"),
            ("12%", "is a percentage"),
            ("12.5", "is not a whole number"),
            ("1.200", "is not a whole number"),  # a European thousands dot: not guessed
            ("1,20", "is not a number"),
            ("200-50", "is a range whose lower bound is above its upper bound"),
            ("-3", "is negative"),
            ("<50", "is not a number"),
            ("9" * 5000, "has more than 40 digits"),
            ("1234567890123456789012345678901234567890", "number cannot be stored"),
        ],
    )
    def test_an_employee_count_that_cannot_be_read_is_a_warning(self, raw: str, problem: str) -> None:
        lead = EnrichedLead.read({"lead_id": "x", "employee_count": raw, "company_name": "Acme"})
        assert lead.employee_count is None
        assert lead.to_message() == {"lead_id": "x", "company_name": "Acme", "_unparsed": {"employee_count": raw}}
        assert warnings_of({"lead_id": "x", "employee_count": raw})["employee_count"].startswith(problem)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("TRUE", True), ("false", False), ("Yes", True), (True, True), ("valid", True), ("Invalid", False)],
    )
    def test_booleans(self, raw: object, expected: bool) -> None:
        assert EnrichedLead.read({"lead_id": "x", "email_verified": raw}).email_verified is expected

    @pytest.mark.parametrize("raw", ["maybe", "catch-all", 2, [True]])
    def test_a_flag_that_cannot_be_read_is_a_warning(self, raw: object) -> None:
        assert warnings_of({"lead_id": "x", "email_verified": raw})["email_verified"].startswith("is not true or false")

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("2025-01-15T10:30:00Z", "2025-01-15T10:30:00+00:00"),
            ("2025-01-15T10:30:00.123456+02:00", "2025-01-15T08:30:00.123456+00:00"),
            ("2025-01-15 10:30:00", "2025-01-15T10:30:00+00:00"),
            ("2025-01-15", "2025-01-15T00:00:00+00:00"),
            ("January 15, 2025", "2025-01-15T00:00:00+00:00"),
            ("Jan 15, 2025", "2025-01-15T00:00:00+00:00"),
            ("1/15/2025", "2025-01-15T00:00:00+00:00"),
            ("Wed Jan 15 2025 10:30:00 GMT+0000 (Coordinated Universal Time)", "2025-01-15T10:30:00+00:00"),
            ("Wed, 15 Jan 2025 10:30:00 GMT", "2025-01-15T10:30:00+00:00"),
            ("1736937000000", "2025-01-15T10:30:00+00:00"),
            (1736937000, "2025-01-15T10:30:00+00:00"),
        ],
    )
    def test_clay_enriched_at_in_iso_and_clay_date_text(self, raw: object, expected: str) -> None:
        lead = EnrichedLead.read({"lead_id": "x", "_clay_enriched_at": raw})
        assert (lead.to_message()["_clay_enriched_at"], lead.warnings) == (expected, [])

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            ("9999-12-31T23:59:59-23:59", "is not a date from 1900 to 2199"),  # overflowed the router before
            ("0001-01-01T00:00:00+23:59", "is not a date from 1900 to 2199"),
            ("2025-13-45", "is not a date"),
            ("soon", "is not a date"),
            (1e20, "is not a date"),
        ],
    )
    def test_a_date_that_cannot_be_read_is_a_warning(self, raw: object, problem: str) -> None:
        lead = EnrichedLead.read({"lead_id": "x", "_clay_enriched_at": raw})
        assert lead.to_message() == {"lead_id": "x", "_unparsed": {"_clay_enriched_at": raw}}
        assert lead.warnings[0]["warning"].startswith(problem)

    def test_several_messy_columns_at_once_each_get_a_warning(self) -> None:
        # GIVEN the row that got a 400 for the whole lead before
        lead = EnrichedLead.read(
            {"lead_id": "x", "employee_count": "about a hundred", "icp_score": "101", "email": "jane at acme"}
        )
        # THEN the lead is kept with every readable column, and each unreadable one is named
        assert [w["field"] for w in lead.warnings] == ["email", "employee_count", "icp_score"]
        assert lead.to_message()["_unparsed"] == {
            "email": "jane at acme",
            "employee_count": "about a hundred",
            "icp_score": "101",
        }
        assert "kept as sent under _unparsed, treated as missing" in lead.warnings[0]["warning"]

    def test_column_names_sent_with_spaces_are_set_aside_under_their_trimmed_name(self) -> None:
        lead = EnrichedLead.read({"lead_id": "x", " employee_count ": "lots"})
        assert lead.to_message()["_unparsed"] == {"employee_count": "lots"}

    def test_json_string_lists_and_unknown_columns_are_kept(self) -> None:
        lead = EnrichedLead.model_validate(
            {"lead_id": "x", "tech_stack": '["Snowflake", "dbt"]', "Personalized Opener": "Hi Jane", "meta": '{"a":1}'}
        )
        message = lead.to_message()
        assert message["tech_stack"] == ["Snowflake", "dbt"]
        assert message["Personalized Opener"] == "Hi Jane"
        assert message["meta"] == {"a": 1}

    def test_broken_json_string_stays_text(self) -> None:
        assert EnrichedLead.model_validate({"lead_id": "x", "notes": "[not json"}).to_message()["notes"] == "[not json"

    def test_empty_and_null_columns_are_dropped(self) -> None:
        message = EnrichedLead.model_validate(
            {"lead_id": "x", "company_name": "", "job_title": "null", "phone": None, "extra": "undefined"}
        ).to_message()
        assert set(message) == {"lead_id"}

    def test_email_normalised_and_domain_derived(self) -> None:
        lead = EnrichedLead.model_validate({"email": "  Jane.Doe@ACME.com "})
        assert lead.email == "jane.doe@acme.com"
        assert lead.domain == "acme.com"
        assert lead.lead_id == derive_lead_id("jane.doe@acme.com", None, None, None, None)

    def test_an_invalid_email_beside_another_identifier_is_a_warning(self) -> None:
        lead = EnrichedLead.read({"lead_id": "x", "email": "jane at acme"})
        assert (lead.email, lead.domain) == (None, None)
        assert lead.warnings[0]["warning"].startswith("not a valid email address")

    def test_an_invalid_email_that_is_the_only_identifier_is_a_field_error(self) -> None:
        assert errors_of({"email": "jane at acme", "icp_score": "90"}) == {"email": "not a valid email address"}

    def test_an_invalid_lead_id_is_never_set_aside(self) -> None:
        assert "lead_id" in errors_of({"lead_id": "x" * 129, "email": "jane@acme.com"})

    @pytest.mark.parametrize(
        ("lead_id", "problem"),
        [("ld\u0000x", "control characters"), ("ld\nx", "control characters"), ("ld\ud800", "not valid Unicode")],
    )
    def test_a_lead_id_dynamodb_cannot_key_is_a_field_error(self, lead_id: str, problem: str) -> None:
        assert problem in errors_of({"lead_id": lead_id, "email": "jane@acme.com"})["lead_id"]
        with pytest.raises(ValidationError, match=problem):
            Lead.model_validate({"lead_id": lead_id, "email": "jane@acme.com"})

    def test_needs_an_identifier(self) -> None:
        problems = errors_of({"company_name": "Acme", "icp_score": "90"})
        assert "lead_id" in next(iter(problems.values()))

    def test_numbers_in_text_fields_become_text(self) -> None:
        assert EnrichedLead.model_validate({"lead_id": 12345, "first_name": 7}).lead_id == "12345"

    def test_wrong_types_are_warnings(self) -> None:
        problems = warnings_of({"lead_id": "x", "first_name": {"nested": True}, "employee_count": "lots"})
        assert set(problems) == {"first_name", "employee_count"}

    def test_strict_validation_still_refuses_what_read_sets_aside(self) -> None:
        with pytest.raises(ValidationError):
            EnrichedLead.model_validate({"lead_id": "x", "employee_count": "lots"})


class TestLead:
    def test_domain_from_url_and_default_source(self) -> None:
        lead = Lead.model_validate({"domain": "https://www.Acme.com/about", "first_name": "Jo"})
        assert lead.domain == "acme.com"
        assert lead.source == "api"
        assert lead.lead_id and lead.lead_id.startswith("ld_")

    def test_source_aliases(self) -> None:
        assert Lead.model_validate({"email": "a@b.co", "source": "CSV_IMPORT"}).source == "csv-import"

    def test_unknown_source_rejected(self) -> None:
        with pytest.raises(ValidationError):
            Lead.model_validate({"email": "a@b.co", "source": "carrier-pigeon"})

    def test_linkedin_only(self) -> None:
        lead = Lead.model_validate({"linkedin_url": "linkedin.com/in/Jane-Doe/?utm=x"})
        assert lead.linkedin_url == "https://www.linkedin.com/in/jane-doe"

    def test_requires_email_domain_or_linkedin(self) -> None:
        with pytest.raises(ValidationError, match="needs an email, a domain or a linkedin_url"):
            Lead.model_validate({"first_name": "Jo", "lead_id": "custom"})

    def test_lead_id_is_stable_across_spelling(self) -> None:
        first = Lead.model_validate({"email": "JO@Acme.com"}).lead_id
        second = Lead.model_validate({"email": " jo@acme.com", "first_name": "Jo"}).lead_id
        assert first == second

    def test_explicit_lead_id_is_kept(self) -> None:
        assert Lead.model_validate({"email": "a@b.co", "lead_id": "crm-42"}).lead_id == "crm-42"


def test_body_hash_is_canonical() -> None:
    assert body_hash({"a": 1, "b": [1, 2]}) == body_hash({"b": [1, 2], "a": 1})
    assert body_hash({"a": 1}) != body_hash({"a": 2})


# -- values the stores cannot hold (issue 15): a field error naming the field, never a store failure later
DEEP_LIST_TEXT = "[" * 5000 + "]" * 5000  # a JSON-text column within the 10,000-character limit


def nested(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = [value]
    return value


class TestStorableValues:
    @pytest.mark.parametrize(
        "value",
        [1e200, -1e200, 1e-200, 10**39, -(10**39), 12345678901234567890123456789012345678901, 5e-324],
        ids=["huge", "huge-negative", "tiny", "40-digit", "40-digit-negative", "41-digit", "subnormal"],
    )
    def test_numbers_dynamodb_cannot_hold_are_named(self, value: object) -> None:
        problems = errors_of({"lead_id": "x", "revenue": value})
        assert set(problems) == {"revenue"}
        assert "38 significant digits" in problems["revenue"]

    def test_storable_extremes_pass(self) -> None:
        lead = EnrichedLead.model_validate({"lead_id": "x", "a": 10**37, "b": 1e125, "c": 1e-129, "d": 0.1})
        assert lead.to_message()["a"] == 10**37

    def test_employee_count_text_keeps_every_digit(self) -> None:
        digits = "12345678901234567890123456789012345678"  # 38 digits: float() would round it
        assert EnrichedLead.read({"lead_id": "x", "employee_count": digits}).employee_count == int(digits)

    def test_tiny_score_is_stored_as_a_rounded_score(self) -> None:
        assert EnrichedLead.read({"lead_id": "x", "icp_score": 1e-200}).icp_score == 0.0

    @pytest.mark.parametrize("levels", [17, 500])
    def test_deep_nesting_in_a_column_is_named(self, levels: int) -> None:
        problems = errors_of({"lead_id": "x", "history": nested(levels)})
        assert set(problems) == {"history"}
        assert "at most 16" in problems["history"]

    def test_nesting_up_to_the_limit_passes(self) -> None:
        assert EnrichedLead.model_validate({"lead_id": "x", "history": nested(16)}).to_message()["history"]

    def test_json_text_column_nested_too_deep_is_named(self) -> None:
        assert "at most 16" in errors_of({"lead_id": "x", "notes": DEEP_LIST_TEXT})["notes"]

    def test_json_text_too_deep_to_decode_stays_text(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # GIVEN a decoder that runs out of stack (as json.loads does on text nested deeply enough)
        def too_deep(text: str) -> object:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(models.json, "loads", too_deep)
        # THEN the column is kept as the text it was sent as
        assert EnrichedLead.model_validate({"lead_id": "x", "notes": "[[1]]"}).to_message()["notes"] == "[[1]]"

    @pytest.mark.parametrize(
        "document",
        [
            {"lead_id": "x", "notes": "bad \ud800 text"},
            {"lead_id": "x", "first_name": "Jo\udfff"},
            {"lead_id": "x", "tags": ["ok", {"k": "\udc00"}]},
            {"lead_id": "x", "tags": {"\ud800": 1}},
        ],
        ids=["extra", "text-field", "nested", "nested-key"],
    )
    def test_lone_surrogates_are_refused(self, document: dict) -> None:
        problems = errors_of(document)
        assert any("not valid Unicode" in message for message in problems.values()), problems

    def test_lone_surrogate_in_a_column_name_is_refused(self) -> None:
        problems = errors_of({"lead_id": "x", "\ud800": "v"})
        assert "not valid Unicode" in next(iter(problems.values()))

    def test_column_names_that_collide_once_trimmed_are_refused(self) -> None:
        problems = errors_of({"lead_id": "ld_real", " lead_id": "ld_spoofed"})
        message = next(iter(problems.values()))
        assert "lead_id" in message and "same name" in message

    @pytest.mark.parametrize("key", ["", "   "])
    def test_empty_column_name_is_refused(self, key: str) -> None:
        assert "empty name" in next(iter(errors_of({"lead_id": "x", key: "value"}).values()))

    def test_empty_key_nested_in_a_column_is_refused(self) -> None:
        assert "empty key" in errors_of({"lead_id": "x", "meta": {"": 1}})["meta"]

    def test_column_names_are_still_trimmed(self) -> None:
        assert EnrichedLead.model_validate({" lead_id ": "ld_1", "Opener ": "Hi"}).to_message() == {
            "lead_id": "ld_1",
            "Opener": "Hi",
        }


class TestPathologicalText:
    EMAIL_BOMB = "a@" + "." * 9990 + "@"

    def test_email_check_does_not_backtrack(self) -> None:
        # GIVEN the intake's worst case before the fix: 12 rows of ~1.2 s each (14.3 s of a 15 s timeout)
        started = time.perf_counter()
        for _ in range(12):
            with pytest.raises(ValidationError):
                Lead.model_validate({"email": self.EMAIL_BOMB})
        # THEN all twelve take a small fraction of one such row (linear: about a millisecond each)
        assert time.perf_counter() - started < 1.0

    @pytest.mark.parametrize(
        "email",
        ["a@b.co", "first.last+tag@sub.example.co.uk", "x@y.z"],
    )
    def test_valid_emails_still_pass(self, email: str) -> None:
        assert Lead.model_validate({"email": email}).email == email

    @pytest.mark.parametrize(
        "email", ["a@.b.co", "a@b.co.", "a@b", "a@@b.co", "a b@c.co", "@b.co", "a@b..", "a@b.co\n@x"]
    )
    def test_invalid_emails_still_fail(self, email: str) -> None:
        with pytest.raises(ValidationError):
            Lead.model_validate({"email": email})


def test_the_cores_number_context_is_the_one_boto3_writes_with() -> None:
    from boto3.dynamodb.types import DYNAMODB_CONTEXT

    from clay_pipeline.core.leads import DYNAMODB_NUMBERS

    def settings(context: Any) -> tuple[Any, ...]:  # flags left out: each use of a context sets them
        traps = sorted(trap.__name__ for trap, on in context.traps.items() if on)
        return (context.prec, context.rounding, context.Emin, context.Emax, context.clamp, traps)

    assert settings(DYNAMODB_NUMBERS) == settings(DYNAMODB_CONTEXT)
