"""Every state-table key (core/state_keys.py): the keys are a contract a deployed table holds."""

from __future__ import annotations

import pytest

from clay_pipeline.core import state_keys

pytestmark = pytest.mark.unit


def test_each_key_keeps_its_prefix_and_shape() -> None:
    assert state_keys.dedupe("ld_1") == "dedupe#ld_1"
    assert state_keys.pool("0123abcd") == "pool#0123abcd"
    assert state_keys.webhook_dead("0123abcd") == "webhook-dead#0123abcd"
    assert state_keys.budget("2026-05-01") == "budget#2026-05-01"
    assert state_keys.rate(2000, 900_000_000) == "rate#2000#900000000"
    assert state_keys.sent("b1") == "sent#b1"
    assert state_keys.pause() == "pause#destinations"
    assert state_keys.sweep_checkpoint() == "sweep#stale"
    assert state_keys.run("r1") == "run#r1"
    assert state_keys.run_done("r1") == "run-done#r1"
    assert state_keys.run_leads("b1") == "run-leads#b1"
    assert state_keys.run_webhook("r1") == "run-webhook#r1"
    assert state_keys.token_failures("203.0.113.7", "5f4dcc3b5aa765d6") == "token-failures#203.0.113.7#5f4dcc3b5aa765d6"


def test_a_batch_id_is_read_back_from_its_key() -> None:
    assert state_keys.batch_id_of_sent(state_keys.sent("0f" * 16)) == "0f" * 16
