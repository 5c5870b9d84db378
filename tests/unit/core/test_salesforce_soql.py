"""The SOQL query that reads which records exist, on plain data (core/salesforce_soql.py)."""

from __future__ import annotations

import pytest

from clay_pipeline.core.salesforce_soql import existing_query, found_external_ids, query_batches

pytestmark = pytest.mark.unit


def test_existing_query_escapes_soql_literals_and_batches_long_id_lists() -> None:
    soql = existing_query("Lead", "Clay_Lead_Id__c", ["ld_1", "o'brien\\x"])
    assert soql == "SELECT Id, Clay_Lead_Id__c FROM Lead WHERE Clay_Lead_Id__c IN ('ld_1','o\\'brien\\\\x')"
    ids = ["x" * 128 + str(n) for n in range(200)]
    batches = query_batches(ids)
    assert len(batches) > 1 and [lead_id for batch in batches for lead_id in batch] == ids
    assert all(len(existing_query("Lead", "F__c", batch)) < 8100 for batch in batches)
    assert query_batches(["ld_1", "ld_2"]) == [["ld_1", "ld_2"]]


def test_found_external_ids_reads_the_query_answer() -> None:
    body = {"totalSize": 1, "done": True, "records": [{"Id": "00Q1", "Clay_Lead_Id__c": "ld_1"}, {"Id": "00Q2"}]}
    assert found_external_ids(body, "Clay_Lead_Id__c") == {"ld_1"}
    assert found_external_ids(None, "Clay_Lead_Id__c") == set()
