"""The routine path's records: runs in the state table (the runs and their polls as data: core/routines.py).

Each run started is recorded once, `run#<routine_run_id>`: routine, lead ids, started at, and the
items' inputs (zlib-compressed, so 100 leads cost a few write units; the record is never rewritten).
Its ending is a small mark of its own, `run-done#<routine_run_id>`, so the big record costs one write.
The same mark keeps a run's collection and its give-up apart: a collector that has Clay's complete
results first marks the run `collecting`, a give-up first marks it `giving_up`, each only over no mark
or its own (a retry after a crash retakes it), and each then moves it to its ending (`collected`,
`gave_up`). So a run whose webhook-triggered collection meets its poll chain's give-up has its leads
either routed or dead-lettered, never both; that costs one write per collection of a run (100 leads).
Leads of recorded runs whose dedupe marks the sender could not set to 'sent' are listed under
`run-leads#<batch id>` (RunStore.list_unconfirmed): a later copy of such a lead is then skipped,
not sent in a second run.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.adapters.dynamodb import STATE_TTL
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core import state_keys
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.routines import DAY_SECONDS, UNDERWAY, Ending, Run, Underway

RUN_RECORD_DAYS = 30


@dataclass(frozen=True)
class RunStore:
    """Runs in STATE_TABLE: the record written when Clay accepted the run, and its ending mark."""

    store: StateStore

    def record(self, run_id: str, routine_id: str, inputs: dict[str, dict[str, Any]]) -> Run:
        run = Run(run_id, routine_id, time.time(), inputs)
        attributes = {
            "routine_id": routine_id,
            "lead_ids": run.lead_ids,
            "items": len(inputs),
            "started_at": datetime.fromtimestamp(run.started_at, UTC).isoformat(),
            "started_epoch": run.started_at,
            "inputs_z": base64.b64encode(zlib.compress(dump_json(inputs).encode(), 6)).decode(),
        }
        if not self.store.put_mark(self._key(run_id), RUN_RECORD_DAYS * DAY_SECONDS, attributes):
            raise RuntimeError(f"run {run_id} is already recorded")  # Clay gave the same id twice
        return run

    def get(self, run_id: str) -> Run | None:
        item = self.store.get(self._key(run_id))
        if item is None:
            return None
        inputs = json.loads(zlib.decompress(base64.b64decode(str(item["inputs_z"]))))
        return Run(run_id, str(item.get("routine_id", "")), float(item["started_epoch"]), inputs)

    def ending(self, run_id: str) -> str | None:
        """The run's mark: an Ending, an Underway hold, or None while nothing has decided it."""
        mark = self.mark(run_id)
        return str(mark["status"]) if mark else None

    def mark(self, run_id: str) -> dict[str, Any] | None:
        return self.store.get(self._done_key(run_id))

    def hold(self, run_id: str, way: Underway, days: int, **why: str) -> bool:
        """Hold the run for a collection or a give-up; False when the other holds it or the run ended."""
        key, attributes = self._done_key(run_id), {"status": way, **why}
        return self.store.put_mark(key, days * DAY_SECONDS, attributes, replacing=("status", way))

    def end(self, run_id: str, ending: Ending, days: int) -> bool:
        """Record how the run ended (over its own hold); False when another collector recorded it first."""
        way = UNDERWAY.get(ending)
        replacing = ("status", way) if way else None
        return self.store.put_mark(self._done_key(run_id), days * DAY_SECONDS, {"status": ending}, replacing)

    def list_unconfirmed(self, batch_id: str, runs: dict[str, str], ttl_seconds: int) -> None:
        """`run-leads#<batch id>`: leads of one sender invocation's recorded runs whose dedupe marks could
        not be set to 'sent' (lead id -> run id). It confirms those marks instead (dedupe.Deduper), so it
        lives as long as they do; rewritten whole as the invocation's list grows."""
        self.store.update(self._batch_key(batch_id), {"leads": runs, STATE_TTL: int(time.time()) + ttl_seconds})

    def lists(self, batch_id: str, lead_id: str) -> bool:
        """Whether a recorded run of that sender invocation has the lead (its batch list names it)."""
        return self.listed_run(batch_id, lead_id) is not None

    def listed_run(self, batch_id: str, lead_id: str) -> str | None:
        """The recorded run that the sender invocation's batch list names for the lead, None when it names none."""
        item = self.store.get(self._batch_key(batch_id))
        run_id = ((item or {}).get("leads") or {}).get(lead_id)
        return str(run_id) if run_id else None

    def summary(self, run_id: str) -> dict[str, Any]:
        """What `clay-pipeline trace` shows of a run: when Clay accepted it (ISO, '' when not recorded or
        expired), its items and its mark ('' while nothing has decided it)."""
        item = self.store.get(self._key(run_id)) or {}
        return {
            "started_at": str(item.get("started_at", "")),
            "items": int(item["items"]) if item.get("items") is not None else None,
            "ending": self.ending(run_id) or "",
        }

    @staticmethod
    def _key(run_id: str) -> str:
        return state_keys.run(run_id)

    @staticmethod
    def _batch_key(batch_id: str) -> str:
        return state_keys.run_leads(batch_id)

    @staticmethod
    def _done_key(run_id: str) -> str:
        return state_keys.run_done(run_id)
