"""ICP score and tier: the reference architecture's Clay formula, for leads Clay sent without one.

    size (0-30) + industry (0-30) + title seniority (0-25) + data completeness (0-15)
    tier: A >= 80, B >= 60, C >= 40, else D

Missing values score exactly what Clay's formula column gives an empty cell, so a lead gets
the same score whether Clay or the router computed it:
- no employee_count: 0 (every `Employee Count > n` test is false);
- no industry: 10, the formula's "any other industry" branch;
- no job_title: 5, the formula's "any other title" branch;
- no email / phone: 0 for that part.
Industry names compare case-insensitively; title keywords match whole words only, so
"Director" is not taken for "CTO" (d-i-re-CTO-r) and "Development" not for "VP".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIZE_STEPS = ((1000, 30), (200, 25), (50, 15), (10, 5))  # more than n employees scores the points
INDUSTRY_POINTS = {
    "software": 30,
    "technology": 30,
    "saas": 30,
    "information technology": 30,
    "financial services": 20,
    "healthcare": 20,
}
OTHER_INDUSTRY_POINTS = 10
# C-suite covers the chief officers the formula's "C-Suite" keyword stands for.
_EXECUTIVE = re.compile(r"\b(ceo|cto|cfo|coo|cmo|cio|cro|chief|c-suite|vp|svp|evp|vice president)\b", re.IGNORECASE)
_DIRECTOR = re.compile(r"\b(director|head of)\b", re.IGNORECASE)
_MANAGER = re.compile(r"\bmanager\b", re.IGNORECASE)
TIERS = ((80, "A"), (60, "B"), (40, "C"))


@dataclass(frozen=True)
class IcpScore:
    score: int
    tier: str
    size: int
    industry: int
    title: int
    data: int


def size_points(employee_count: int | None) -> int:
    if employee_count is None:
        return 0
    return next((points for above, points in SIZE_STEPS if employee_count > above), 0)


def industry_points(industry: str | None) -> int:
    return INDUSTRY_POINTS.get((industry or "").strip().lower(), OTHER_INDUSTRY_POINTS)


def title_points(job_title: str | None) -> int:
    title = job_title or ""
    if _EXECUTIVE.search(title):
        return 25
    if _DIRECTOR.search(title):
        return 20
    if _MANAGER.search(title):
        return 10
    return 5


def data_points(email: str | None, phone: str | None) -> int:
    return (10 if email else 0) + (5 if phone else 0)


def tier_for(score: float) -> str:
    return next((tier for floor, tier in TIERS if score >= floor), "D")


def icp_score(
    employee_count: int | None, industry: str | None, job_title: str | None, email: str | None, phone: str | None
) -> IcpScore:
    parts = (
        size_points(employee_count),
        industry_points(industry),
        title_points(job_title),
        data_points(email, phone),
    )
    total = sum(parts)
    return IcpScore(total, tier_for(total), *parts)
