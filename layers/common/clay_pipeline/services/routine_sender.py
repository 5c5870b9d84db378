"""Sending LeadQueue batches to a Clay routine (CLAY_ENRICHMENT_PATH=routine) instead of a table webhook.

A batch (up to 100 messages on this path: the template's BatchSize) is checked as the table path
checks each record (lead_sending.py, which both paths hold: parse, size, dedupe, daily budget),
and the leads that may go are grouped into runs of up to CLAY_ROUTINE_RUN_SIZE items, item id =
lead_id. Each run start takes one slot of the Pacer shared by every sender instance, at CLAY_SEND_RATE_PER_SECOND /
CLAY_ROUTINE_RUN_SIZE runs a second: full runs send at most CLAY_SEND_RATE_PER_SECOND leads a
second, as the table path does. After Clay's 202 the run is recorded (routines.RunStore), its
first poll message is queued (the collector takes it from there) and the dedupe marks become 'sent'.

On this path a lead is in Clay when a recorded run has it: Clay's 202 names the run, and a run
this sender did not record is collected by nothing. So a mark that cannot be set to 'sent' is
confirmed by the invocation's batch list instead (RunStore.list_unconfirmed; a later copy is
skipped), and a 'sending' mark whose claimant ended without recording a run is taken over after
its lease and the lead sent again at once, never held as a lost answer (dedupe.Deduper,
hold_unrecorded; core.sending.read_mark). If the batch list cannot be written either, the later
copy goes in a second run: one more item of Clay's credits, whose result the callback's acceptance takes as a duplicate
when it is the same.

A message ends as on the table path: sent, skipped (already sent), dead-lettered at once with the
reason, or waiting (visibility, or a fresh copy near maxReceiveCount). Clay's answers to a run start
(core.sending.run_refusal):
- 429: Retry-After is waited in-process when it fits the remaining time, else the run's leads
  come back after it;
- 401 (a wrong key, or the workspace is not provisioned for the API), 403, 404 (no such
  routine): an operator has to act, so the circuit opens (the ClayCircuitOpen alarm) and the
  leads wait CLAY_CIRCUIT_WAIT_SECONDS in the queue;
- 400 and any other 4xx not named here: the run's leads go to LEAD_DLQ_URL with Clay's message;
- 5xx, connection errors, timeouts: back to the queue with backoff.
Dedupe marks and budget units of leads not sent are given back, as on the table path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.adapters.batch_records import SentBatches
from clay_pipeline.adapters.clay_api import MAX_ITEM_ID_LENGTH, ClayApiClient, ClayApiError, run_item
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import SenderSettings
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.routines import PollMessage
from clay_pipeline.core.sending import DAY_SECONDS, RATE_WAIT_SECONDS, Step, group_runs, run_refusal
from clay_pipeline.observability import count, logger
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.lead_sending import LeadSending, parse_lead, skipped
from clay_pipeline.services.routines import RUN_RECORD_DAYS, RunStore
from clay_pipeline.services.sending_limits import Clock, utc_now

MAX_RUN_INPUT_BYTES = 256_000  # a run's inputs: the POST body, and the run record (compressed) under DynamoDB's 400 KB


@dataclass
class PendingLead:
    record: QueueRecord
    lead_id: str
    inputs: dict[str, Any]
    size: int
    budget_key: str | None = None
    copies: list[QueueRecord] = field(default_factory=list)  # more messages of this lead in the batch: they end alike


class RoutineSender:
    def __init__(
        self,
        settings: SenderSettings,
        api: ClayApiClient | None = None,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        store: StateStore | None = None,
        sent_batches: SentBatches | None = None,
        queue: Callable[[str], Queue] = Queue,
    ) -> None:
        """`store` (the state table), `sent_batches` and `queue` (a queue by its URL) default to the AWS adapters."""
        if not settings.clay_routine_id or not settings.run_poll_queue_url:
            raise ConfigError("CLAY_ENRICHMENT_PATH=routine needs CLAY_ROUTINE_ID and RUN_POLL_QUEUE_URL")
        self.settings = settings
        store = store or StateStore(settings.state_table)
        self.api = api or ClayApiClient(
            settings.clay_api_base_url,
            settings.clay_request_timeout_seconds,
            settings.clay_retry_attempts,
            settings.clay_retry_backoff_seconds,
        )
        self.runs = RunStore(store)
        self.sent_batches = sent_batches or SentBatches(settings.state_table)
        # A mark is confirmed by a recorded run (the invocation's batch list; or by the table path's batch
        # record, before a switch of path), and one left unrecorded is taken over rather than held: see the
        # module docstring. One pacing slot per run: a full run stands for run_size leads of the shared rate.
        self.sending = LeadSending(
            settings,
            self._confirms,
            self.api.longest_seconds,
            pacing_rate=settings.clay_send_rate_per_second / settings.clay_routine_run_size,
            hold_unrecorded=False,
            clock=clock,
            sleep=sleep,
            store=store,
            queue=queue,
        )
        self.routine = RoutineRuns(self.sending, self.api, self.runs, queue(settings.run_poll_queue_url))
        self._failures: list[str] = []

    def _confirms(self, batch_id: str, lead_id: str) -> bool:
        return self.runs.lists(batch_id, lead_id) or self.sent_batches.lists(batch_id, lead_id)

    def handle(self, records: list[QueueRecord], remaining_ms: int) -> dict[str, Any]:
        """One LeadQueue batch; the partial batch response (messages to keep in the queue)."""
        self.sending.begin(remaining_ms, len(records))  # no table webhook URLs on this path
        self._failures = []
        self.routine.unconfirmed = {}
        try:
            admitted: dict[str, PendingLead] = {}
            for record in records:
                self._admit(record, admitted)
            self.sending.invocation.pending = max(1, len(admitted))
            leads = list(admitted.values())
            for positions in group_runs(
                [lead.size for lead in leads], self.settings.clay_routine_run_size, MAX_RUN_INPUT_BYTES
            ):
                self._send_run([leads[position] for position in positions])
        finally:
            self.sending.budget.return_unused()  # budget units reserved for leads not sent go back
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self._failures]}

    # -- one lead ----------------------------------------------------------------------------
    def _admit(self, record: QueueRecord, admitted: dict[str, PendingLead]) -> None:
        """Claim the lead and add it to `admitted`, unless it ends here (skipped, dead-lettered, waiting)."""
        try:
            lead = parse_lead(record.body)
            inputs = lead.to_message()
            size = len(dump_json(inputs).encode())
            if size > self.settings.clay_max_payload_bytes:
                limit = self.settings.clay_max_payload_bytes
                raise DeadLetter("oversize", f"lead is {size} bytes; Clay accepts at most {limit}")
            lead_id = str(lead.lead_id)
            if len(lead_id) > MAX_ITEM_ID_LENGTH:
                detail = f"a routine item id has at most {MAX_ITEM_ID_LENGTH} characters, not {len(lead_id)}"
                raise DeadLetter("lead_id_too_long", detail)
            if lead_id in admitted:  # the same lead twice in one batch: one item, both messages end with it
                admitted[lead_id].copies.append(record)
                return
            self.sending.check_waits()
            # A lead held as an unknown outcome comes from the table path (before a switch of path).
            if self.sending.claim(lead, lead_id):
                admitted[lead_id] = PendingLead(record, lead_id, inputs, size)
        except (DeadLetter, Wait) as ending:
            self._end(record, ending)
        except Exception:  # a dependency failed: this message comes back, the others go on
            logger.exception("could not check a lead; it goes back to the queue")
            self._end(record, Wait("dependency_failed", 0, failure=True))

    def _end_lead(self, lead: PendingLead, ending: DeadLetter | Wait) -> None:
        for record in (lead.record, *lead.copies):
            self._end(record, ending)

    def _end(self, record: QueueRecord, ending: DeadLetter | Wait) -> None:
        if isinstance(ending, DeadLetter):
            self.sending.dead_letter(record, ending)
            return
        try:
            self.sending.hand_back(record, ending)  # returns when a fresh copy was queued instead
        except Wait:
            self._failures.append(record.message_id)

    # -- one run -----------------------------------------------------------------------------
    def _send_run(self, run: list[PendingLead]) -> None:
        try:
            self.sending.check_waits()
            run = self._reserve_budget(run)
            if not run:
                return
            run_id = self.routine.start([run_item(lead.lead_id, lead.inputs) for lead in run])
        except (DeadLetter, Wait) as ending:
            self._give_back(run, keep_budget=isinstance(ending, Wait) and ending.ambiguous)
            for lead in run:
                self._end_lead(lead, ending)
            return
        except Exception:
            logger.exception("could not start a routine run; its leads go back to the queue")
            self._give_back(run, keep_budget=False)
            for lead in run:
                self._end_lead(lead, Wait("dependency_failed", 0, failure=True))
            return
        if not self.routine.record(run_id, run):
            # Nothing collects this run: its leads go back and are sent again in a new run (Clay's credits
            # for this one are spent, so their budget units stay counted).
            self._give_back(run, keep_budget=True)
            for lead in run:
                self._end_lead(lead, Wait("run_not_recorded", 0, failure=True))

    def _reserve_budget(self, run: list[PendingLead]) -> list[PendingLead]:
        """The leads that got a unit of today's budget; the others wait for the next UTC day."""
        for index, lead in enumerate(run):
            try:
                lead.budget_key = self.sending.reserve_budget()
            except Wait as wait:
                waiting = run[index:]
                self._give_back(waiting, keep_budget=False)
                for lead_waiting in waiting:
                    self._end_lead(lead_waiting, wait)
                return run[:index]
            self.sending.invocation.pending = max(1, self.sending.invocation.pending - 1)
        return run

    def _give_back(self, run: list[PendingLead], keep_budget: bool) -> None:
        """The leads were not sent (or will be sent again): their dedupe marks and budget units go back."""
        for lead in run:
            if lead.budget_key and not keep_budget:
                self.sending.budget.release(lead.budget_key)
            lead.budget_key = None
            self.sending.dedupe.release(lead.lead_id)


class RoutineRuns:
    """Starting a run of the routine (CLAY_ROUTINE_ID) at its pacing slot, and recording the run Clay started."""

    def __init__(self, sending: LeadSending, api: ClayApiClient, runs: RunStore, poll_queue: Queue) -> None:
        self.sending = sending
        self.api = api
        self.runs = runs
        self.poll_queue = poll_queue
        self.unconfirmed: dict[str, str] = {}  # lead id -> the recorded run whose lead's mark stayed 'sending'

    def start(self, items: list[dict[str, Any]]) -> str:
        """POST the run when the shared pacer gives a slot, waiting out 429s that fit; its routine_run_id."""
        sending = self.sending
        while True:
            if not sending.pacer.acquire(sending.invocation.deadline - sending.send_seconds):
                raise Wait("rate_wait", RATE_WAIT_SECONDS)
            try:
                settings = sending.settings
                return self.api.start_run(
                    settings.clay_routine_id, items, settings.clay_run_webhook_id, sending.invocation.deadline
                )
            except ClayApiError as error:
                self._handle_api_refusal(error)

    def _handle_api_refusal(self, error: ClayApiError) -> None:
        """Returns when the run should be tried again now; raises the leads' ending otherwise."""
        extra = {"status": error.status, "reason": error.outcome.value, "clay_message": error.message}
        refusal = run_refusal(error.outcome, error.status, error.message, error.ambiguous)
        if refusal is Step.WAIT_OUT_THROTTLE:
            self.sending.wait_out_throttle(error.retry_after, extra)
            return
        if refusal is Step.OPEN_CIRCUIT:
            raise self.sending.open_circuit(
                "Clay refused the routine run: leads wait in the queue until this is fixed", extra
            )
        if isinstance(refusal, Wait):
            count("ClayRetried")
            logger.warning("Clay run start failed; its leads go back to the queue", extra=extra)
        raise refusal

    def record(self, run_id: str, run: list[PendingLead]) -> bool:
        """Clay runs it: record it and queue its first poll, then the leads count as sent. False when it could
        not be recorded: nothing would collect it (a recorded run is then marked ended, so a late webhook does
        not collect it next to the run its leads go in again)."""
        settings = self.sending.settings
        try:
            self.runs.record(run_id, settings.clay_routine_id, {lead.lead_id: lead.inputs for lead in run})
            first_poll = settings.clay_run_first_poll_seconds
            self.poll_queue.send(PollMessage(run_id).to_message(), delay_seconds=first_poll)
        except Exception:
            logger.exception("a started routine run could not be recorded", extra={"routine_run_id": run_id})
            with contextlib.suppress(Exception):
                self.runs.end(run_id, "abandoned", RUN_RECORD_DAYS)
            return False
        for lead in run:
            try:
                self.sending.dedupe.confirm(lead.lead_id, {"routine_run_id": run_id})
            except Exception:  # the batch list confirms it instead
                logger.exception("could not confirm a lead's dedupe mark", extra={"lead_id": lead.lead_id})
                self.unconfirmed[lead.lead_id] = run_id
            for _ in lead.copies:
                skipped(lead.lead_id)
        if self.unconfirmed:
            self._list_unconfirmed()
        count("RoutineRunStarted")
        count("ClaySent", len(run))
        logger.info("routine run started", extra={"routine_run_id": run_id, "items": len(run)})
        return True

    def _list_unconfirmed(self) -> None:
        try:
            ttl = self.sending.settings.clay_dedupe_days * DAY_SECONDS
            self.runs.list_unconfirmed(self.sending.invocation.batch.batch_id, self.unconfirmed, ttl)
        except Exception:  # a later copy takes the mark over after its lease: one more item in a second run
            logger.exception("could not list the leads whose dedupe marks stayed unconfirmed")
