"""Reading lead files for the command-line `send`: CSV with a header row, or JSON lines.

Column names from CRMs and spreadsheet exports (Email, Work Email, Company Domain, Website,
First Name, LinkedIn URL, Company...) are mapped to the Lead fields; other columns are
passed through to Clay under a snake_case name; a single Name column is split into first and last
name. Rows are reported by line number. The column separator is read from the header row:
spreadsheets outside the US often save ';'.

A file is hostile input as much as a callback is: a field of any size up to MAX_FIELD_CHARS is read
(Clay's 100 KB limit then rejects the row, by line), JSON nested deeper than Python's parser goes is
that line's error, and malformed quoting is caught (strict CSV: a stray quote, or an unterminated
one at the end of the file) or flagged (a quoted value running over several lines that holds what
looks like rows of its own: an unterminated quote swallowing the rows after it). The same lead twice
in one file is sent once; the later rows are reported as duplicates.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clay_pipeline.services.intake import Rows, validate_rows

CSV_IMPORT_SOURCE = "csv-import"
JSON_LINES_SUFFIXES = frozenset({".jsonl", ".ndjson"})
DELIMITERS = ",;\t|"
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without the byte-order mark Excel writes
# csv's default field limit (131,072 characters) raises for the whole file; Clay refuses a row over 100 KB
# anyway, so any field it could hold is read and the row rejected by size, and only a field past this stops.
MAX_FIELD_CHARS = 16 * 1024 * 1024
FULL_NAME_COLUMNS = ("name", "full_name", "contact_name", "person_name", "lead_name")

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
    if "first_name" not in mapped and "last_name" not in mapped:
        full_name = next((columns[name] for name in FULL_NAME_COLUMNS if isinstance(columns.get(name), str)), "")
        mapped.update(split_name(full_name))
    return mapped


def split_name(full_name: str) -> dict[str, str]:
    """'Jane Doe' -> Jane / Doe; 'Doe, Jane' -> Jane / Doe; 'Ludwig van Beethoven' -> Ludwig / van Beethoven
    (the first word is the first name: particles belong to the last); one word is a first name."""
    text = " ".join(full_name.split())
    if not text:
        return {}
    if text.count(",") == 1:
        last, first = (part.strip() for part in text.split(","))
        return {key: value for key, value in (("first_name", first), ("last_name", last)) if value}
    first, _, last = text.partition(" ")
    return {"first_name": first, "last_name": last} if last else {"first_name": first}


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
            except RecursionError:
                yield number, "JSON nested too deeply to read"
                continue
            yield number, row if isinstance(row, dict) else f"must be a JSON object, not {type(row).__name__}"


def _csv_rows(path: Path, encoding: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    with path.open(encoding=encoding, newline="") as handle:
        delimiter = delimiter_of(handle.readline())
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except (StopIteration, csv.Error):
            return
        last_line = reader.line_num
        while True:
            first_line = last_line + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                # strict mode names a stray quote; the reader goes on from the line after the error
                last_line = reader.line_num
                lines = f"line {first_line}" if last_line <= first_line else f"lines {first_line}-{last_line}"
                yield first_line, f"malformed CSV on {lines}, not sent: {error} (a quote not closed, or text after one)"
                continue
            last_line = reader.line_num
            if not fields:
                continue
            if problem := _swallowed_rows(fields, delimiter, len(header)):
                yield first_line, f"malformed CSV: {problem} (lines {first_line}-{last_line})"
                continue
            yield first_line, _as_row(header, fields)


def _as_row(header: list[str], fields: list[str]) -> dict[str, Any]:
    """A row as csv.DictReader makes it, short rows padded with None (fields past the header are dropped)."""
    row: dict[str, Any] = dict(zip(header, fields, strict=False))
    for column in header[len(fields) :]:
        row.setdefault(column, None)
    return row


def _swallowed_rows(fields: list[str], delimiter: str, columns: int) -> str:
    """A quoted value running over lines that contains lines with as many separators as a row has: the
    signature of a quote left open, which turns the rows after it into part of one value."""
    if columns < 3:
        return ""
    for value in fields:
        if "\n" in value and any(line.count(delimiter) >= columns - 1 for line in value.splitlines()[1:]):
            return "a quoted value spans several lines that look like rows of their own: an unterminated quote?"
    return ""


def prepare(path: Path, source: str = CSV_IMPORT_SOURCE, encoding: str = DEFAULT_ENCODING) -> Rows:
    """Every row of the file mapped and validated; rows and rejections are indexed by line number, and a
    row that is the same lead as an earlier one (same lead_id) is a duplicate, not sent twice."""
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
    first_line_of: dict[str, int] = {}
    for position, lead in checked.valid:
        line = lines[position]
        if (earlier := first_line_of.setdefault(str(lead.lead_id), line)) != line:
            result.duplicates.append({"index": line, "error": f"duplicate of line {earlier} (same lead): sent once"})
            continue
        result.valid.append((line, lead))
    result.rejected.extend({**item, "index": lines[item["index"]]} for item in checked.rejected)
    result.rejected.sort(key=lambda item: int(item["index"]))
    return result
