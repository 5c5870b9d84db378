"""Which records exist: the SOQL query before an upsert with create-only fields (pure: no I/O).

The query: REST API Developer Guide, "Execute a SOQL Query" (`GET /services/data/vXX.X/query?q=...`); string
literals quoted and escaped as the SOQL and SOSL Reference's "Quoted String Escape Sequences" lists them. Why a
query at all (create-only fields) is in core/salesforce_records.py and adapters/salesforce.py.
"""

from __future__ import annotations

from typing import Any

MAX_QUERY_IDS_CHARS = 8000  # the IN list of one query: well inside the 16,384-byte URI Salesforce accepts


def existing_query(sobject: str, external_id_field: str, lead_ids: list[str]) -> str:
    """SOQL selecting the records whose external id is one of `lead_ids` (quoted as SOQL string literals)."""
    quoted = ",".join(_soql_literal(lead_id) for lead_id in lead_ids)
    # S608: the names are validated API names (RecordMapping), the values SOQL literals escaped as documented
    return f"SELECT Id, {external_id_field} FROM {sobject} WHERE {external_id_field} IN ({quoted})"  # noqa: S608  # nosec B608


def query_batches(lead_ids: list[str]) -> list[list[str]]:
    """The ids split so each query's IN list stays under MAX_QUERY_IDS_CHARS (a lead_id is at most 128 characters)."""
    batches: list[list[str]] = [[]]
    size = 0
    for lead_id in lead_ids:
        cost = len(_soql_literal(lead_id)) + 1
        if batches[-1] and size + cost > MAX_QUERY_IDS_CHARS:
            batches.append([])
            size = 0
        batches[-1].append(lead_id)
        size += cost
    return [batch for batch in batches if batch]


def found_external_ids(body: Any, external_id_field: str) -> set[str]:
    """The external ids a query's answer (`{"records": [...]}`) found."""
    records = body.get("records") if isinstance(body, dict) else None
    return {
        str(record[external_id_field])
        for record in records or []
        if isinstance(record, dict) and record.get(external_id_field) is not None
    }


def _soql_literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f"'{escaped}'"
