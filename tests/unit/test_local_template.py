"""local/template.py: a function's cold start in the local stack's one process, with its own environment."""

from __future__ import annotations

import os
import threading

import pytest

from local.template import cold_start_environment

pytestmark = pytest.mark.unit


def read_on_another_thread(name: str) -> str | None:
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(os.environ.get(name)))
    thread.start()
    thread.join(timeout=5)
    return seen[0]


def test_a_cold_starts_environment_is_seen_by_the_loading_thread_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the process's environment, as the other functions' invocations read it at request time
    monkeypatch.setenv("CONFIG_SECRET_ID", "clay-local/ConfigSecret")
    monkeypatch.delenv("ROUTING_QUEUE_URL", raising=False)
    # WHEN a router instance cold-starts with its own secret and settings
    with cold_start_environment({"CONFIG_SECRET_ID": "clay-local/DestinationSecret", "ROUTING_QUEUE_URL": "q"}):
        # THEN its module loads with them, and an invocation running meanwhile on another thread keeps its own
        assert os.environ["CONFIG_SECRET_ID"] == "clay-local/DestinationSecret"
        assert os.getenv("ROUTING_QUEUE_URL") == "q" and "ROUTING_QUEUE_URL" in dict(os.environ)
        assert read_on_another_thread("CONFIG_SECRET_ID") == "clay-local/ConfigSecret"
        assert read_on_another_thread("ROUTING_QUEUE_URL") is None
    # AND once loaded, the process's environment is as it was, and writes still reach the process
    assert os.environ["CONFIG_SECRET_ID"] == "clay-local/ConfigSecret" and "ROUTING_QUEUE_URL" not in os.environ
    monkeypatch.setenv("CLAY_LOCAL_PROBE", "1")
    assert read_on_another_thread("CLAY_LOCAL_PROBE") == "1"
