"""The batched-CRM seam: a destination that takes many leads per request and answers for each one.

HubSpot (adapters/hubspot.py) is one: its batch upsert takes up to 100 contacts and says per input which
were refused. A CRM like that implements `BatchedCrm` and is registered in services/destinations.py; the
router then upserts a whole SQS batch's leads to it at once, beside the webhooks, and treats each lead's
result like a webhook's (policies, ledger, outcome, DLQ). `upsert_in_batches` is the loop such a destination
uses: requests of at most `batch_size` records, in-invocation retries of only the records that failed
retryably (the slowest Retry-After decides the wait), and no further request once the CRM said to stop.

The pause hook: a record whose result is `Status.PAUSED` pauses the destination (services/pause.py) for
`retry_after` seconds, with `detail` as the reason the operator sees (`clay-pipeline destination status`);
every lead owing it then waits in RoutingQueue, never the DLQ. Use it for what no lead can fix: a daily
limit, a refused token, a missing field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from clay_pipeline.adapters.webhooks import RetryPolicy
from clay_pipeline.core.deliveries import DELIVERED, OUT_OF_TIME, DeliveryResult, Status
from clay_pipeline.core.routing_message import RoutingMessage


class BatchedCrm(Protocol):
    """A CRM destination upserting leads in batches, one result per lead (see the module docstring)."""

    @property
    def name(self) -> str:
        """The destination's name in ROUTING_RULES, DELIVERY_POLICIES, the ledger and the pause switch."""
        ...

    @property
    def label(self) -> str:
        """How people call it in logs ("HubSpot")."""
        ...

    def configured(self) -> bool:
        """Whether its credentials are set (read per invocation: unset means the destination is off)."""
        ...

    def payload(self, lead: dict[str, Any], received_at: str) -> Any:
        """What the CRM receives for the lead, as on_change compares it (its hash is in the ledger)."""
        ...

    def upsert_leads(self, messages: Mapping[str, RoutingMessage], deadline: float) -> dict[str, DeliveryResult]:
        """Upsert every message's lead, within the deadline (time.monotonic()); each result by the message's key.

        A request's lost answer must be safe to repeat (an upsert by an id): the router resends it."""
        ...


def upsert_in_batches[Key, Item](
    items: Mapping[Key, Item],
    batch_size: int,
    send: Callable[[list[Item], float, float], Mapping[Key, DeliveryResult]],
    retry: RetryPolicy,
    deadline: float,
) -> dict[Key, DeliveryResult]:
    """Send `items` in requests of at most `batch_size` (send(chunk, timeout, deadline) -> result by key), with
    `retry`'s in-invocation retries of the retryable ones only. Once a result says PAUSED (the CRM said to
    stop) the remaining chunks are not sent to be refused: they get that result."""
    results: dict[Key, DeliveryResult] = dict.fromkeys(items, OUT_OF_TIME)
    pending = dict(items)

    def attempt(timeout: float) -> DeliveryResult:
        keys = list(pending)
        for start in range(0, len(keys), batch_size):
            chunk = keys[start : start + batch_size]
            stop = next((r for r in results.values() if r.status is Status.PAUSED), None)
            if stop is not None:
                results.update(dict.fromkeys(chunk, stop))
                continue
            results.update(send([pending[key] for key in chunk], timeout, deadline))
        for key in keys:
            if results[key].status is not Status.RETRYABLE:
                del pending[key]
        # The slowest Retry-After among what is left decides the wait before the next attempt.
        return max((results[key] for key in pending), key=lambda r: r.retry_after or 0.0, default=DELIVERED)

    retry.run(attempt, deadline)
    return results
