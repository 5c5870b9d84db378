"""What Clay's enrichment puts in a row, deterministically: the same lead always gets the same columns.

Each row gets a company, industry, title, size, phone and ICP score picked by its lead id (scores
cover every routing band and some rows get none), every value as text ("85", "1,200") and empty
columns left out, as an HTTP API column sends them. Also the later versions of a row Clay sends
(a re-run column, a re-scored row, one partial body per enrichment column) and the messy values
real enrichment columns hold (MESSY_COLUMNS). Used by the table simulator (local.clay_sim) and the
Public API's routine runs (local.clay_api_sim).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

INDUSTRIES = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Information Technology",
    "Marketing",
    "Education",
)
TITLES = (
    "VP Sales",
    "Chief Revenue Officer",
    "Head of Growth",
    "Director of Marketing",
    "Software Engineer",
    "Office Manager",
    "CEO",
    "Account Executive",
)
EMPLOYEE_COUNTS = (8, 45, 240, 1200, 5400, 18000)
# ICP score bands matching the routing rules (>=90, 80-89, 70-79, 50-69, <50) and no score at all.
SCORE_BANDS: tuple[tuple[int, int] | None, ...] = ((90, 99), (80, 89), (70, 79), (50, 69), (10, 49), None)
IDENTITY_COLUMNS = ("lead_id", "email", "first_name", "last_name", "linkedin_url", "domain")
# One HTTP API column per enrichment: the columns each one sends beside the identity (the last sends everything).
ENRICHMENT_COLUMNS = (("company_name", "industry", "employee_count"), ("job_title", "phone", "email_verified"))
RERUN_TITLES = {title: f"Senior {title}" for title in TITLES}
# Columns as users' Clay tables really fill them (one set per messy row, picked by its lead id): the first
# three are read (a bucket as its lower bound, a suffix scaled, "N/A" and "-" as empty); the last three carry
# a value the callback keeps as sent and names in `warnings` (a score outside 0-100, a date it cannot read).
MESSY_COLUMNS: tuple[dict[str, str], ...] = (
    {"employee_count": " 51-200 ", "annual_revenue": "$1.2M"},
    {"employee_count": "1.2K", "annual_revenue": "3.5 billion"},
    {"employee_count": "N/A", "phone": "-"},
    {"icp_score": "101"},
    {"_clay_enriched_at": "last Tuesday"},
    {"employee_count": "10,000+", "icp_score": "1,000"},
)


def lead_digest(lead_key: str) -> bytes:
    return hashlib.sha256(lead_key.encode()).digest()


def score_band(lead_key: str) -> tuple[int, int] | None:
    return SCORE_BANDS[lead_digest(lead_key)[0] % len(SCORE_BANDS)]


def enrich(row: dict[str, Any], enriched_at: str) -> dict[str, str]:
    """What the table's HTTP API column sends for this row: text values, empty columns left out."""
    key = str(row.get("lead_id") or row.get("email") or row.get("domain") or json.dumps(row, sort_keys=True))
    digest = lead_digest(key)
    band = score_band(key)
    domain = str(row.get("domain") or "")
    company = row.get("company_name") or domain.partition(".")[0].replace("-", " ").title()
    columns: dict[str, Any] = {
        "lead_id": row.get("lead_id"),
        "email": row.get("email"),
        "first_name": row.get("first_name"),
        "last_name": row.get("last_name"),
        "linkedin_url": row.get("linkedin_url"),
        "domain": domain,
        "company_name": company,
        "industry": INDUSTRIES[digest[1] % len(INDUSTRIES)],
        "job_title": TITLES[digest[2] % len(TITLES)],
        "employee_count": f"{EMPLOYEE_COUNTS[digest[3] % len(EMPLOYEE_COUNTS)]:,}",
        "phone": f"+1 415 555 {int.from_bytes(digest[4:6]) % 10000:04d}" if digest[6] % 3 else "",
        "icp_score": str(band[0] + digest[7] % (band[1] - band[0] + 1)) if band else "",
        "email_verified": "TRUE" if row.get("email") else "",
        "_clay_enriched_at": enriched_at,
    }
    return {name: str(value) for name, value in columns.items() if value not in (None, "")}


def rerun(columns: dict[str, str], enriched_at: str) -> dict[str, str]:
    """The row after a re-run column: a new job title and enrichment timestamp."""
    title = columns.get("job_title", "")
    return {**columns, "job_title": RERUN_TITLES.get(title, f"{title} II".strip()), "_clay_enriched_at": enriched_at}


def rescore(columns: dict[str, str], up: bool) -> dict[str, str]:
    """The row re-scored one band higher or lower (a row without a score gets a low one)."""
    text = columns.get("icp_score", "")
    score = min(99, int(text)) if text.isdigit() else 30  # a messy score ("1,000") is re-scored from a low one
    return {**columns, "icp_score": str(min(99, score + 15) if up else max(5, score - 25))}


def partial_bodies(columns: dict[str, str]) -> list[dict[str, str]]:
    """What each per-enrichment column sends before the last, complete one: identity plus its own columns."""
    identity = {name: value for name, value in columns.items() if name in IDENTITY_COLUMNS}
    return [{**identity, **{name: columns[name] for name in names if name in columns}} for names in ENRICHMENT_COLUMNS]
