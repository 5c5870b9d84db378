"""The reference architecture's ICP formula, pinned on its boundaries."""

from __future__ import annotations

import pytest

from clay_pipeline.core.scoring import data_points, icp_score, industry_points, size_points, tier_for, title_points

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("employees", "points"),
    [
        (None, 0),
        (0, 0),
        (10, 0),
        (11, 5),
        (50, 5),
        (51, 15),
        (200, 15),
        (201, 25),
        (1000, 25),
        (1001, 30),
        (50_000, 30),
    ],
)
def test_size_points_step_above_each_threshold(employees: int | None, points: int) -> None:
    # GIVEN an employee count WHEN it is scored THEN "more than n" earns the step (n itself does not)
    assert size_points(employees) == points


@pytest.mark.parametrize(
    ("industry", "points"),
    [
        ("Software", 30),
        ("Technology", 30),
        ("SaaS", 30),
        ("Information Technology", 30),
        ("  saas ", 30),  # Clay cells vary in case and spacing
        ("Financial Services", 20),
        ("Healthcare", 20),
        ("Retail", 10),
        ("Software Development", 10),  # the formula matches whole names, not words
        (None, 10),  # an empty cell takes the formula's "other" branch
        ("", 10),
    ],
)
def test_industry_points_by_group(industry: str | None, points: int) -> None:
    assert industry_points(industry) == points


@pytest.mark.parametrize(
    ("title", "points"),
    [
        ("CEO", 25),
        ("Co-founder & CTO", 25),
        ("VP Sales", 25),
        ("Vice President, Marketing", 25),
        ("Chief Revenue Officer", 25),
        ("C-Suite", 25),
        ("Director of Engineering", 20),  # contains "cto" inside a word: not an executive
        ("Head of Growth", 20),
        ("Engineering Manager", 10),
        ("Software Engineer", 5),
        ("Business Development Rep", 5),  # "Development" is not "VP"
        (None, 5),
    ],
)
def test_title_points_by_seniority(title: str | None, points: int) -> None:
    assert title_points(title) == points


@pytest.mark.parametrize(
    ("email", "phone", "points"),
    [("a@acme.com", "+1 555", 15), ("a@acme.com", None, 10), (None, "+1 555", 5), (None, None, 0)],
)
def test_data_points_for_email_and_phone(email: str | None, phone: str | None, points: int) -> None:
    assert data_points(email, phone) == points


@pytest.mark.parametrize(
    ("score", "tier"), [(100, "A"), (80, "A"), (79, "B"), (60, "B"), (59, "C"), (40, "C"), (39, "D"), (0, "D")]
)
def test_tier_boundaries(score: int, tier: str) -> None:
    assert tier_for(score) == tier


def test_full_score_adds_the_four_parts_and_derives_the_tier() -> None:
    # GIVEN a VP at a 1,200-person software company with email and phone
    result = icp_score(1200, "Software", "VP Sales", "a@acme.com", "+1 555")
    # THEN 30 + 30 + 25 + 15 = 100, tier A
    assert (result.size, result.industry, result.title, result.data) == (30, 30, 25, 15)
    assert (result.score, result.tier) == (100, "A")


def test_a_lead_with_nothing_known_scores_what_clays_formula_gives_empty_cells() -> None:
    # GIVEN no firmographics at all WHEN scored THEN size 0, other industry 10, other title 5, no data
    result = icp_score(None, None, None, None, None)
    assert (result.score, result.tier) == (15, "D")
