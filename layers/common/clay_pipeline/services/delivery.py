"""One batch's deliveries: the webhooks sent concurrently, the batched CRMs' upserts beside them.

Every destination at once, each on its own runner; within a webhook destination the batch's first lead
alone (a probe: a destination that is down costs one lead's retries, and the others wait in the queue),
then the rest at once (up to WEBHOOK_FAN_OUT). A batched CRM (adapters/crm.py) gets every lead that owes it
in one call, which it splits into its requests; each lead's result maps back to its record, and a result
that says PAUSED pauses the destination (services/pause.py). A batch takes about two round trips of its
slowest destination instead of one per lead, and Lambda bills the wall time.

A webhook delivery whose answer is lost is UNKNOWN for a "hold" destination (never sent again
automatically: core/routing_plan.py) and retried for a "resend" one, with the same Idempotency-Key for
every repeat of one delivery.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.adapters.crm import BatchedCrm
from clay_pipeline.adapters.webhooks import WebhookDestination, idempotency_key
from clay_pipeline.core.deliveries import DeliveryResult, Status
from clay_pipeline.core.routing_plan import Attempt, RoutingConfig
from clay_pipeline.observability import count, logger
from clay_pipeline.services.destinations import Destinations
from clay_pipeline.services.pause import DestinationSwitch

WEBHOOK_FAN_OUT = 16  # concurrent sends per destination once its probe answered: a whole batch at once


@dataclass(frozen=True)
class DeliveryPools:
    """Threads kept across invocations (they start on first use): one runner per destination, and the sends
    they fan out. Slack paces its own messages (SlackAlert holds a lock while it waits)."""

    runners: ThreadPoolExecutor
    senders: ThreadPoolExecutor

    @classmethod
    def for_destinations(cls, destinations: Destinations) -> DeliveryPools:
        count_ = len(destinations.names)
        return cls(
            ThreadPoolExecutor(max_workers=count_, thread_name_prefix="destination"),
            ThreadPoolExecutor(max_workers=len(destinations.webhooks) * WEBHOOK_FAN_OUT, thread_name_prefix="delivery"),
        )

    def run(self, pool: ThreadPoolExecutor, task: Callable[..., None], *args: Any) -> Future[None]:
        """In a copy of the invocation's context: its per-thread log keys (observability) go with the sends."""
        return pool.submit(contextvars.copy_context().run, task, *args)


class BatchDeliveries:
    """This invocation's sends and their results, by record (SQS message id)."""

    def __init__(
        self,
        destinations: Destinations,
        config: RoutingConfig,
        pools: DeliveryPools,
        switch: DestinationSwitch,
        deadline: float,
        on_pause: Callable[[str], None],
    ) -> None:
        self.destinations = destinations
        self.config = config
        self.pools = pools
        self.switch = switch
        self.deadline = deadline
        self.on_pause = on_pause  # a destination said to stop: the batch's later claims see it paused
        self._sent: dict[str, dict[str, DeliveryResult]] = {}  # webhook results, by record
        self._crm_results: dict[str, dict[str, DeliveryResult]] = {name: {} for name in destinations.crms}
        self._errors: dict[str, BaseException] = {}  # a send that raised, by record
        self._unavailable: dict[str, DeliveryResult] = {}  # webhook destinations that failed after their retries
        self._lock = threading.Lock()

    def send(self, attempts: dict[str, Attempt], crms: frozenset[str]) -> None:
        """Send every webhook the attempts owe and upsert them to the batched CRMs named in `crms`, all at once."""
        owing: dict[str, list[str]] = {}  # destination -> record ids, in batch order
        for record_id, attempt in attempts.items():
            self._sent.setdefault(record_id, {})
            for name in attempt.pending:
                if name in self.destinations.webhooks:
                    owing.setdefault(name, []).append(record_id)
        runs = [self.pools.run(self.pools.runners, self._send_to, name, ids, attempts) for name, ids in owing.items()]
        runs += [self.pools.run(self.pools.runners, self._upsert_guarded, name, attempts) for name in sorted(crms)]
        for run in runs:
            run.result()

    def collect(self, record_id: str, attempt: Attempt, sent: dict[str, DeliveryResult]) -> None:
        """The record's results into `sent` (sending now what the batch's sends did not cover: a record `send`
        did not see); raises what a send of it raised, once its other results are in `sent`."""
        for name in self.destinations.crms:
            if name in attempt.pending:
                if record_id not in self._crm_results[name]:
                    self._upsert_to(name, {record_id: attempt})
                sent[name] = self._crm_results[name][record_id]
        if record_id not in self._sent:
            self.send({record_id: attempt}, frozenset())
        sent |= self._sent.pop(record_id, {})
        if record_id in self._errors:
            raise self._errors.pop(record_id)

    # -- webhooks --------------------------------------------------------------------------
    def _send_to(self, name: str, record_ids: list[str], attempts: dict[str, Attempt]) -> None:
        """One destination's sends of the batch: the first alone (a probe), then the rest fanned out."""
        first, rest = record_ids[0], record_ids[1:]
        self._send_one(name, first, attempts[first])
        futures = [self.pools.run(self.pools.senders, self._send_one, name, rid, attempts[rid]) for rid in rest]
        for future in futures:
            future.result()

    def _send_one(self, name: str, record_id: str, attempt: Attempt) -> None:
        unavailable = self._unavailable.get(name)
        if unavailable is not None:
            # It just failed after its retries: the batch's other leads wait in the queue instead of
            # spending the invocation's time on the same timeouts and backoffs.
            result = unavailable
        else:
            try:
                result = self._send(attempt, self.destinations.webhooks[name])
            except Exception as error:  # raised by the record's processing, once its other results are recorded
                with self._lock:
                    self._errors.setdefault(record_id, error)
                return
            settle(name, result)
            if result.status in (Status.RETRYABLE, Status.UNKNOWN):  # the batch's other leads were not sent
                self._unavailable.setdefault(name, DeliveryResult(Status.RETRYABLE, result.reason, result.retry_after))
        with self._lock:
            self._sent[record_id][name] = result

    def _send(self, attempt: Attempt, destination: WebhookDestination) -> DeliveryResult:
        """One destination with its retries (on a delivery thread)."""
        key = idempotency_key(self.config.idempotency_basis(attempt, destination.name), destination.name)
        lead = attempt.message.lead
        resend = not self.config.holds(destination.name)

        def deliver(timeout: float) -> DeliveryResult:
            result = destination.deliver(lead, key, timeout)
            if result.status is Status.UNKNOWN and resend:  # a repeat is acceptable here (same Idempotency-Key)
                return DeliveryResult(Status.RETRYABLE, result.reason)
            return result

        return self.destinations.retry.run(deliver, self.deadline)

    # -- batched CRMs ----------------------------------------------------------------------
    def _upsert_guarded(self, name: str, attempts: dict[str, Attempt]) -> None:
        """The batch's upsert to one CRM; if it raises, its leads retry it and their other deliveries stand."""
        try:
            self._upsert_to(name, attempts)
        except Exception as error:
            label = self.destinations.crms[name].label
            logger.exception(f"the batch's {label} upsert raised; its leads retry it, their other deliveries stand")
            failed = DeliveryResult(Status.RETRYABLE, f"{name}_error", detail=f"{type(error).__name__}: {error}")
            for record_id, attempt in attempts.items():
                if name in attempt.pending:
                    self._crm_results[name].setdefault(record_id, failed)

    def _upsert_to(self, name: str, attempts: dict[str, Attempt]) -> None:
        """Upsert the lead of every attempt that owes the CRM one; each result by its record.

        Each lead has its own outcome: one the CRM refuses fails alone. When the CRM says to stop (HubSpot's
        daily limit, a property it does not have) it is paused and every lead waits for it.
        """
        owing = {record_id: a.message for record_id, a in attempts.items() if name in a.pending}
        if not owing:
            return
        crm = self.destinations.crms[name]
        results = crm.upsert_leads(owing, self.deadline)
        for record_id in owing:
            settle(name, results[record_id])
            self._crm_results[name][record_id] = results[record_id]
        stops = {result.reason: result for result in results.values() if result.status is Status.PAUSED}
        for result in stops.values():
            self._pause(crm, result)

    def _pause(self, crm: BatchedCrm, result: DeliveryResult) -> None:
        """The CRM said to stop: pause it for as long as it said (the leads wait in RoutingQueue, never the DLQ)."""
        until = int(time.time() + (result.retry_after or 0))
        logger.error(
            f"{crm.label} is paused: " + result.detail,
            extra={
                "destination": crm.name,
                "reason": result.reason,
                "until": datetime.fromtimestamp(until, UTC).isoformat(),
            },
        )
        count("DestinationAutoPaused", destination=crm.name, reason=result.reason)
        self.on_pause(crm.name)
        try:
            self.switch.pause(crm.name, by="router", reason=result.detail, until=until)
        except (ClientError, BotoCoreError) as error:  # the leads still wait: their results say paused
            logger.warning("could not write the pause switch", extra={"error": str(error)})


def settle(name: str, result: DeliveryResult) -> None:
    """Count (and log) one delivery's result."""
    if result.delivered:
        count("DeliverySucceeded", destination=name)
    else:
        count("DeliveryFailed", destination=name)
        logger.info(
            "delivery failed",
            extra={"destination": name, "status": str(result.status), "reason": result.reason},
        )
