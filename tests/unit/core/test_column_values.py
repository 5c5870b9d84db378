"""What users' Clay tables really hold, read as numbers, counts, scores, flags and dates."""

from __future__ import annotations

import time

import pytest

from clay_pipeline.core.column_values import (
    number_or_none,
    read_count,
    read_flag,
    read_instant,
    read_number,
    read_quantity,
    read_score,
)
from clay_pipeline.core.scoring import size_points

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value", "ranged", "percent", "currency"),
    [
        ("1,200", 1200, False, False, False),
        ("1200.5", 1200.5, False, False, False),
        (" 51-200 ", 51, True, False, False),
        ("51 - 200", 51, True, False, False),
        ("51 to 200", 51, True, False, False),
        ("51-200 employees", 51, True, False, False),  # LinkedIn's company size as Clay shows it
        ("501-1,000", 501, True, False, False),
        ("10,000+", 10000, True, False, False),
        ("10001+", 10001, True, False, False),
        ("1.2K", 1200, False, False, False),
        ("$1.2M", 1_200_000, False, False, True),
        ("$5MM", 5_000_000, False, False, True),
        ("€2.5 million", 2_500_000, False, False, True),
        ("3.5 billion", 3_500_000_000, False, False, False),
        ("1.2bn USD", 1_200_000_000, False, False, False),
        ("10M-25M", 10_000_000, True, False, False),  # annual revenue bucket
        ("$25M - $50M", 25_000_000, True, False, True),  # funding range
        ("$10-25M", 10_000_000, True, False, True),  # the upper bound's scale applies to the lower
        ("85%", 85, False, True, False),
        ("12.5 %", 12.5, False, True, False),
        ("~500", 500, False, False, False),
        ("about 500", 500, False, False, False),
        ("1e3", 1000, False, False, False),
        ("-4", -4, False, False, False),
    ],
)
def test_quantities_as_clay_tables_write_them(
    text: str, value: float, ranged: bool, percent: bool, currency: bool
) -> None:
    quantity = read_quantity(text)
    assert (quantity.value, quantity.ranged, quantity.percent, quantity.currency) == (value, ranged, percent, currency)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lots", "is not a number"),
        ("Funding unknown", "is not a number"),
        ("1,20", "is not a number"),
        ("1 200", "is not a number"),
        (">500", "is not a number"),
        ("-5-10", "is not a number"),
        ("200-50", "is a range whose lower bound is above its upper bound"),
        ("1" * 41, "has more than 40 digits"),
    ],
)
def test_text_that_is_not_a_quantity_says_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        read_quantity(text)


def test_long_runs_of_spaces_or_digits_are_refused_in_linear_time() -> None:
    # GIVEN the pattern's worst cases (optional spaces side by side once backtracked for minutes on 10,000)
    worst = [
        "1" + " " * 5000 + "-" + " " * 5000 + "x",
        "1" + " " * 5000 + "k" + " " * 5000 + "%x",
        "$" + "1" * 40 + " " * 9000 + "x",
        "1" * 9990 + "x",
        "1," + "111," * 2500 + "x",
    ]
    started = time.perf_counter()
    for text in worst:
        with pytest.raises(ValueError):
            read_quantity(text)
        with pytest.raises(ValueError):
            read_instant(text)
    # THEN all of them take a small fraction of a second (a few milliseconds each)
    assert time.perf_counter() - started < 1.0


def test_numbers_keep_every_digit_and_their_type() -> None:
    assert read_number("12345678901234567890123456789012345678") == 12345678901234567890123456789012345678
    assert isinstance(read_number("1.2K"), int)
    assert isinstance(read_number("85.5"), float)
    assert read_number(7) == 7


def test_number_or_none_for_the_routing_rules() -> None:
    assert (number_or_none("$10M-$25M"), number_or_none("n/a"), number_or_none(True)) == (10_000_000, None, None)


@pytest.mark.parametrize(
    ("bucket", "points"),
    [("1-10", 0), ("11-50", 5), ("51-200", 15), ("201-500", 25), ("501-1,000", 25), ("1,001-5,000", 30)],
)
def test_each_linkedin_bucket_read_as_its_lower_bound_scores_what_its_companies_score(bucket: str, points: int) -> None:
    # The formula's steps (more than 10, 50, 200, 1,000) fall on the buckets' edges: lower bound and
    # midpoint agree for every standard bucket
    low, high = (int(part.replace(",", "")) for part in bucket.split("-"))
    assert size_points(read_count(bucket)) == size_points(low) == size_points(high) == points
    assert size_points((low + high) // 2) == points


def test_a_range_straddling_a_step_is_not_promoted_on_its_upper_bound() -> None:
    assert size_points(read_count("50-300")) == size_points(50) == 5


@pytest.mark.parametrize(
    ("value", "problem"),
    [("12%", "a percentage"), ("$1.2M", "an amount of money"), ("12.5", "not a whole number"), ("-3", "negative")],
)
def test_counts_refuse_what_is_not_a_count(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        read_count(value)


@pytest.mark.parametrize(("value", "score"), [("85", 85.0), ("85%", 85.0), (0, 0.0), ("100", 100.0), (1e-200, 0.0)])
def test_scores(value: object, score: float) -> None:
    assert read_score(value) == score


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (101, "outside 0-100"),
        ("1,000", "outside 0-100"),
        (-0.5, "outside 0-100"),
        ("70-80", "a range"),
        ("90+", "a range"),
        ("$90", "money"),
        (True, "not a number"),
    ],
)
def test_scores_outside_0_to_100_are_errors_not_clamped(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        read_score(value)


@pytest.mark.parametrize(
    ("value", "flag"), [("TRUE", True), (" no ", False), (1, True), (0, False), ("Valid", True), ("invalid", False)]
)
def test_flags(value: object, flag: bool) -> None:
    assert read_flag(value) is flag


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-15T10:30:00Z",
        "2025-01-15T10:30:00+00:00",
        "2025-01-15T12:30:00+02:00",
        "2025-01-15 10:30:00",
        "Wed Jan 15 2025 10:30:00 GMT+0000 (Coordinated Universal Time)",
        "Wed, 15 Jan 2025 10:30:00 GMT",
        "1736937000000",
        1736937000,
        1736937000000,
    ],
)
def test_instants_in_every_form_are_the_same_moment(value: object) -> None:
    assert read_instant(value).isoformat() == "2025-01-15T10:30:00+00:00"


@pytest.mark.parametrize("value", ["January 15, 2025", "Jan 15, 2025", "15 Jan 2025", "1/15/2025", "15/01/2025"])
def test_clay_date_displays_are_the_day_at_midnight_utc(value: str) -> None:
    assert read_instant(value).isoformat() == "2025-01-15T00:00:00+00:00"


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1899-12-31", "2200-01-01", "soon", "", 1e20]
)
def test_dates_outside_1900_to_2199_or_not_dates_are_errors(value: object) -> None:
    with pytest.raises(ValueError, match="is not a date"):
        read_instant(value)
