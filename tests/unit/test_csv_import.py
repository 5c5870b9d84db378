"""Reading lead files for `clay-pipeline send`: column mapping, CSV and JSON lines, line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.operations.csv_import import delimiter_of, load_rows, map_columns, prepare, snake_case

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("Work Email", "work_email"),
        ("LinkedIn URL", "linkedin_url"),
        ("E-mail", "e_mail"),
        (" First  Name ", "first_name"),
    ],
)
def test_snake_case(column: str, expected: str) -> None:
    assert snake_case(column) == expected


def test_common_export_columns_map_to_lead_fields() -> None:
    row = {
        "Work Email": "jane@acme.com",
        "Website": "https://acme.com",
        "First Name": "Jane",
        "Surname": "Doe",
        "LinkedIn Profile URL": "linkedin.com/in/jane",
        "Company": "Acme",
        "Job Title": "VP Sales",
    }
    assert map_columns(row) == {
        "email": "jane@acme.com",
        "domain": "https://acme.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "linkedin_url": "linkedin.com/in/jane",
        "company_name": "Acme",
        "job_title": "VP Sales",
    }


def test_preferred_column_wins_and_blanks_are_dropped() -> None:
    row = {"Work Email": "work@acme.com", "Email": "main@acme.com", "Company Domain": " ", "Domain": "acme.com"}
    assert map_columns(row) == {"email": "main@acme.com", "domain": "acme.com"}


def test_blank_preferred_column_falls_back_to_the_next_alias() -> None:
    assert map_columns({"Email": "", "Work Email": "work@acme.com"}) == {"email": "work@acme.com"}


def test_csv_with_excel_bom_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffEmail,Company\na@acme.com,Acme\nb@acme.com,Acme\n".encode())
    assert list(load_rows(path)) == [
        (2, {"Email": "a@acme.com", "Company": "Acme"}),
        (3, {"Email": "b@acme.com", "Company": "Acme"}),
    ]


def test_json_lines_recognised_by_content(tmp_path: Path) -> None:
    path = tmp_path / "leads.txt"
    path.write_text(json.dumps({"email": "a@acme.com"}) + "\nnot json\n")
    rows = list(load_rows(path))
    assert rows[0] == (1, {"email": "a@acme.com"})
    assert rows[1][0] == 2
    assert isinstance(rows[1][1], str)
    assert rows[1][1].startswith("not valid JSON")


def test_prepare_tags_the_source_and_reports_by_line(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("Email,First Name,Source\na@acme.com,Ann,web-form\n,Nobody,\nb@acme.com,Ben,\n")
    rows = prepare(path)
    assert [(line, lead.email, lead.source) for line, lead in rows.valid] == [
        (2, "a@acme.com", "csv-import"),
        (4, "b@acme.com", "csv-import"),
    ]
    assert rows.rejected == [{"index": 3, "error": "needs an email, a domain or a linkedin_url"}]


@pytest.mark.parametrize(
    ("header", "separator"),
    [
        ("Email,First Name", ","),
        ("Email;First Name;Company", ";"),
        ("Email\tFirst Name", "\t"),
        ("Email|First Name", "|"),
        ("Email;First Name;Company, Inc.", ";"),  # a comma inside a column name does not win
        ("Email", ","),
    ],
)
def test_separator_is_read_from_the_header(header: str, separator: str) -> None:
    assert delimiter_of(header) == separator
