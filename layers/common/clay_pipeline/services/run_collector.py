"""Collecting routine runs: each RunPollQueue message reads one run's results and accepts them.

A message names a run (core/routines.py PollMessage). The collector reads the run's record, stops if the
run already ended, and asks Clay for its results (every page):
- in progress: a poll message queues the next poll after a growing delay, until the give-up
  time (CLAY_RUN_GIVE_UP_SECONDS after the start); a webhook message just stops, since the
  run's poll chain goes on (core/routines.py after_no_results);
- complete: each `complete` item becomes a routing message exactly as a callback does: the
  item's result over the lead's inputs, with lead_id = the item id, goes through the callback's
  own parse_callback and CallbackAcceptor, so the same idempotency records make it exactly once
  whether the webhook, the poller or both read the run. Each `failed` item (or one missing
  from the results) goes to LEAD_DLQ_URL with Clay's message, once (a mark per run and lead),
  and its dedupe mark is released so a redrive sends it again. Then the run's ending is marked;
- Clay answers 404/400 for the run, or the give-up time passes: every lead of the run goes to
  the DLQ with the reason, the run ends as gave_up and RoutineRunGaveUp raises the alarm;
- a collection and a give-up of the same run exclude each other (services/routines.py RunStore.hold): whichever
  holds the run first decides every lead, and a retry after a crash finishes what it started;
- 429: the same message comes back after Retry-After; 401/403/5xx: polled again later (the
  401 of a workspace not provisioned for the API is logged as such).
A dependency failure (DynamoDB, SQS) fails the message: SQS retries it, and after
maxReceiveCount it lands in RunPollDLQ (alarmed), from where a redrive resumes the polling.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from clay_pipeline.adapters.clay_api import ClayApiClient, ClayApiError, ItemResult, RunResults
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import RunCollectorSettings
from clay_pipeline.core.errors import Rejected
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.routines import DAY_SECONDS, GiveUp, PollMessage, Run, after_no_results
from clay_pipeline.core.sending import ApiOutcome
from clay_pipeline.observability import count, logger
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.callback import CallbackAcceptor, parse_callback
from clay_pipeline.services.dedupe import Deduper
from clay_pipeline.services.routines import RunStore

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

MAX_DELAY_SECONDS = 900  # SQS's longest message delay
SAFETY_MARGIN_SECONDS = 2.0  # left at the end of an invocation to report the batch
AUTH_OUTCOMES = frozenset({ApiOutcome.UNAUTHORIZED, ApiOutcome.FORBIDDEN})


class RunCollector:
    def __init__(
        self,
        settings: RunCollectorSettings,
        api: ClayApiClient | None = None,
        acceptor: CallbackAcceptor | None = None,
        store: StateStore | None = None,
        poll_queue: Queue | None = None,
        dead_letters: Queue | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or StateStore(settings.state_table)
        self.runs = RunStore(self.store)
        self.api = api or ClayApiClient(
            settings.clay_api_base_url,
            settings.clay_request_timeout_seconds,
            settings.clay_retry_attempts,
            settings.clay_retry_backoff_seconds,
        )
        self.callback_settings = settings.callback_settings()
        # A poll message is handed back rather than waiting long on a dependency.
        self.acceptor = acceptor or CallbackAcceptor(self.callback_settings, max_wait_seconds=2.0)
        self.poll_queue = poll_queue or Queue(settings.run_poll_queue_url)
        self.dead_letters = dead_letters or Queue(settings.lead_dlq_url)
        self.dedupe = Deduper(self.store, settings.clay_dedupe_days)
        self.deadline = math.inf  # time.monotonic() by which a call to Clay must end: the invocation's

    def register_context(self, context: LambdaContext | None) -> None:
        self.acceptor.register_context(context)
        if context is not None:
            self.deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS

    # -- one poll message --------------------------------------------------------------------
    def process(self, record: QueueRecord) -> str:
        try:
            message = PollMessage.parse(record.body)
        except ValueError as error:
            count("RunPollInvalid")
            logger.error("not a run poll message; dropped", extra={"error": str(error)[:200]})
            return "invalid"
        run = self.runs.get(message.run_id)
        if run is None:
            # A run this deployment did not record (another app's run on the same webhook, or one whose
            # record failed: its leads went back to the queue): nothing to correlate its items with.
            count("RunUnknown")
            logger.warning("no record of this run; nothing to collect", extra={"routine_run_id": message.run_id})
            return "unknown_run"
        mark = self.runs.mark(run.run_id)
        if mark is not None and mark["status"] == "giving_up":  # a give-up stopped part way: finish it
            return self._give_up(run, str(mark.get("reason", "")), str(mark.get("detail", "")))
        if mark is not None and mark["status"] != "collecting":
            return "already_ended"
        try:
            results = self.api.results(run.run_id, self.settings.clay_results_page_size, self.deadline)
        except ClayApiError as error:
            return self._after_error(message, run, error)
        count("RoutineRunPolled")
        if not results.complete:
            return self._not_yet(message, run, f"{results.finished} of {results.total} items finished")
        if not self.runs.hold(run.run_id, "collecting", self.settings.run_mark_days):
            return "already_ended"  # given up meanwhile: its leads are in the DLQ
        self._collect(run, results)
        if self.runs.end(run.run_id, "collected", self.settings.run_mark_days):
            count("RoutineRunCollected")
            logger.info("routine run collected", extra={"routine_run_id": run.run_id, "trigger": message.trigger})
        return "collected"

    def _not_yet(self, message: PollMessage, run: Run, progress: str) -> str:
        """The run has no results yet: poll again later, or give up once its time is over."""
        settings = self.settings
        step = after_no_results(
            message,
            run.started_at,
            time.time(),
            settings.clay_run_give_up_seconds,
            settings.clay_run_first_poll_seconds,
            settings.clay_run_max_poll_seconds,
            progress,
        )
        if isinstance(step, GiveUp):
            return self._give_up(run, step.reason, step.detail)
        if step is not None:
            self.poll_queue.send(step.message.to_message(), delay_seconds=step.delay_seconds)
        return "in_progress"

    def _after_error(self, message: PollMessage, run: Run, error: ClayApiError) -> str:
        extra = {"routine_run_id": run.run_id, "status": error.status, "clay_message": error.message}
        if error.outcome in (ApiOutcome.NOT_FOUND, ApiOutcome.INVALID):
            logger.error("Clay refused to give this run's results; its leads are dead-lettered", extra=extra)
            return self._give_up(
                run, f"routine_run_{error.outcome.value}", f"Clay answered {error.status}: {error.message}"
            )
        if error.outcome is ApiOutcome.THROTTLED:
            count("ClayThrottled")
            past_give_up = time.time() >= run.started_at + self.settings.clay_run_give_up_seconds
            if not past_give_up or message.trigger == "webhook":
                wait = error.retry_after if error.retry_after is not None else self.settings.clay_run_first_poll_seconds
                self.poll_queue.send(message.to_message(), delay_seconds=min(MAX_DELAY_SECONDS, math.ceil(wait)))
                return "throttled"
        elif error.outcome in AUTH_OUTCOMES:
            count("ClayApiUnauthorized")
            logger.error("Clay refused the API key; the run is polled again later", extra=extra)
        else:
            count("ClayRetried")
            logger.warning("reading the run's results failed; polled again later", extra=extra)
        return self._not_yet(message, run, str(error))

    # -- results -----------------------------------------------------------------------------
    def _collect(self, run: Run, results: RunResults) -> None:
        items = {item.id: item for item in results.items}
        for lead_id, inputs in run.inputs.items():
            item = items.get(lead_id)
            if item is None:
                self._dead_letter(run, lead_id, inputs, "routine_item_missing", "no result for this item")
            elif item.complete:
                self._accept(run, lead_id, inputs, item)
            else:
                self._dead_letter(run, lead_id, inputs, "routine_item_failed", item.error)
        if unknown := set(items) - set(run.inputs):
            count("RoutineItemUnknown", len(unknown))
            logger.warning("results for items the run did not have", extra={"routine_run_id": run.run_id})

    def _accept(self, run: Run, lead_id: str, inputs: dict[str, Any], item: ItemResult) -> None:
        """The enriched lead through the callback's own validation and exactly-once acceptance."""
        document = {**inputs, **item.result, "lead_id": lead_id}
        try:
            request = parse_callback(self.callback_settings, {}, dump_json(document).encode())
        except Rejected as error:  # 400 (or 413): this result can never be accepted as it is
            self._dead_letter(run, lead_id, inputs, "invalid_result", dump_json(error.body))
            return
        result = self.acceptor.accept(request)
        count("RoutineItemDuplicate" if result["duplicate"] else "RoutineItemAccepted")

    def _dead_letter(self, run: Run, lead_id: str, inputs: dict[str, Any], reason: str, detail: str) -> None:
        """The lead goes to the DLQ once per run (either path may get here), and may be sent again."""
        mark = f"run-dlq#{run.run_id}#{lead_id}"
        if not self.store.put_mark(mark, self.settings.run_mark_days * DAY_SECONDS, {"reason": reason}):
            return
        try:
            self.dead_letters.send_raw(
                dump_json(inputs),
                attributes={"reason": reason, "detail": detail[:500], "routine_run_id": run.run_id, "lead_id": lead_id},
            )
        except Exception:
            self.store.delete(mark)
            raise
        self.dedupe.release(lead_id)  # a redrive sends it in a new run
        count("RoutineItemDeadLettered", reason=reason)
        logger.warning("lead sent to the dead-letter queue", extra={"reason": reason, "routine_run_id": run.run_id})

    def _give_up(self, run: Run, reason: str, detail: str) -> str:
        days = self.settings.run_mark_days
        if not self.runs.hold(run.run_id, "giving_up", days, reason=reason, detail=detail[:500]):
            logger.info("the run's results are being collected: not giving up", extra={"routine_run_id": run.run_id})
            return "collected_elsewhere"
        for lead_id, inputs in run.inputs.items():
            self._dead_letter(run, lead_id, inputs, reason, detail)
        if self.runs.end(run.run_id, "gave_up", self.settings.run_mark_days):
            count("RoutineRunGaveUp")  # what the alarm watches
            logger.error(
                "gave up on a routine run; its leads are in the lead DLQ",
                extra={"routine_run_id": run.run_id, "reason": reason, "leads": len(run.inputs)},
            )
        return "gave_up"
