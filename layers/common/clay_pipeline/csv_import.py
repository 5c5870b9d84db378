"""Reading lead files for the command-line `send`: CSV with a header row, or JSON lines.

Column names from CRMs and spreadsheet exports (Email, Work Email, Company Domain, Website,
First Name, LinkedIn URL, Company...) are mapped to the Lead fields; other columns are
passed through to Clay under a snake_case name. Rows are reported by line number. The column
separator is read from the header row: spreadsheets outside the US often save ';'.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clay_pipeline.intake import Rows, validate_rows

CSV_IMPORT_SOURCE = "csv-import"
JSON_LINES_SUFFIXES = frozenset({".jsonl", ".ndjson"})
DELIMITERS = ",;\t|"
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without the byte-order mark Excel writes

# Lead field -> accepted column names (snake_cased), the first non-empty one wins.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "work_email", "email_address", "business_email", "contact_email", "e_mail", "mail"),
    "domain": ("domain", "company_domain", "website", "company_website", "website_url", "company_url"),
    "first_name": ("first_name", "firstname", "first", "given_name"),
    "last_name": ("last_name", "lastname", "last", "surname", "family_name"),
    "linkedin_url": (
        "linkedin_url",
        "linkedin",
        "linkedin_profile",
        "linkedin_profile_url",
        "person_linkedin_url",
        "linkedin_link",
    ),
    "company_name": ("company_name", "company", "organization", "organisation", "account_name", "account"),
}
_ALIAS_TO_FIELD = {alias: name for name, aliases in COLUMN_ALIASES.items() for alias in aliases}


def snake_case(column: str) -> str:
    """'Work Email' -> 'work_email', 'LinkedIn URL' -> 'linkedin_url', 'E-mail' -> 'e_mail'."""
    return re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")


def map_columns(row: dict[str, Any]) -> dict[str, Any]:
    """Known columns to Lead fields (the first non-empty alias wins); the rest kept as snake_case."""
    columns: dict[str, Any] = {}
    for column, value in row.items():
        if column is None or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if name := snake_case(str(column)):
            columns.setdefault(name, value)
    mapped: dict[str, Any] = {}
    for field_name, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in columns:
                mapped[field_name] = columns[alias]
                break
    for name, value in columns.items():
        if name not in _ALIAS_TO_FIELD:
            mapped.setdefault(name, value)
    return mapped


def load_rows(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) pairs; a row that cannot be read is an error message instead of a dict."""
    if path.suffix.lower() in JSON_LINES_SUFFIXES or _starts_with_brace(path, encoding):
        yield from _json_lines(path, encoding)
    else:
        yield from _csv_rows(path, encoding)


def _starts_with_brace(path: Path, encoding: str) -> bool:
    with path.open(encoding=encoding) as handle:
        return handle.read(64).lstrip().startswith("{")


def delimiter_of(header: str) -> str:
    """The separator the header row uses most (',' when it has none of them): csv.Sniffer guesses wrong
    on short files, while a header of column names is unambiguous."""
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def _json_lines(path: Path, encoding: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding=encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                yield number, f"not valid JSON: {getattr(error, 'msg', 'parse error')}"
                continue
            yield number, row if isinstance(row, dict) else f"must be a JSON object, not {type(row).__name__}"


def _csv_rows(path: Path, encoding: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding=encoding, newline="") as handle:
        delimiter = delimiter_of(handle.readline())
        handle.seek(0)
        reader = csv.DictReader(handle, delimiter=delimiter)
        for row in reader:
            # line_num is the reader's line after the row, which is the row's own line for one-line rows.
            yield reader.line_num, dict(row)


def prepare(path: Path, source: str = CSV_IMPORT_SOURCE, encoding: str = DEFAULT_ENCODING) -> Rows:
    """Every row of the file mapped and validated; rows and rejections are indexed by line number."""
    result = Rows()
    readable: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, row in load_rows(path, encoding):
        if isinstance(row, str):
            result.rejected.append({"index": line, "error": row})
            continue
        readable.append(map_columns(row))
        lines.append(line)
    checked = validate_rows(readable, source=source)
    result.valid = [(lines[position], lead) for position, lead in checked.valid]
    result.rejected.extend({**item, "index": lines[item["index"]]} for item in checked.rejected)
    result.rejected.sort(key=lambda item: int(item["index"]))
    return result
