"""The router's delivery ledger, kept on the lead's LeadsTable item."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.leads_table import (
    VERSIONS,
    ItemUpdate,
    LeadsTable,
    accept_versions,
    lead_item_key,
    trim_versions,
    update_lead_if,
    update_lead_or_old,
    with_versions_list,
    write_accepting,
)
from clay_pipeline.core.policies import Busy, Delivered, LeadHistory, Lease

# -- router's delivery ledger, kept on the lead's LeadsTable item --------------------------------
DELIVERIES, LEASE_UNTIL, LEASE_OWNER = "deliveries", "lease_until", "lease_owner"  # ledger attributes
ROUTED_RECEIVED_AT = "routed_received_at"
HELD_PREFIX = "held_"  # held_<destination>: a paused destination still owes the lead a delivery (pause.py)
# sending_<destination>: the intent, written before a delivery whose repeat must not happen unseen; the
# complete write removes it. Found by a later claim, it means the invocation ended before recording.
SENDING_PREFIX = "sending_"
UNKNOWN_PREFIX = "unknown_"  # unknown_<destination>: sent, outcome unknown; waits for `clay-pipeline settle`


def held_markers(item: dict[str, Any]) -> dict[str, str]:
    """{destination: received_at of the callback that was held for it} from a lead's item."""
    return {name: str(value) for name, value in markers(item, HELD_PREFIX).items()}


def markers(item: dict[str, Any], prefix: str) -> dict[str, Any]:
    """{destination: value} of the lead item's `<prefix><destination>` attributes."""
    return {name.removeprefix(prefix): value for name, value in item.items() if name.startswith(prefix)}


@dataclass(frozen=True)
class LeadLedger:
    """The lead's delivery ledger, merged into its LeadsTable item so routing a lead costs two writes.

    {lead_key, ..., deliveries: {destination: {at, hash, score}}, routed_received_at,
    lease_until, lease_owner}: the claim takes the lease and returns the item (no read), the complete
    write adds the deliveries, records the routing outcome and frees the lease.
    """

    table_name: str
    lease_seconds: int

    def claim(
        self, lead_key: str, intents: dict[str, Delivered] | None = None, accepting: Iterable[str] = ()
    ) -> Lease | Busy:
        """Take the lead's lease and read its ledger, unless another invocation holds an unexpired lease.

        `intents`: deliveries this lease may make whose repeat must not happen unseen (sending_<destination>),
        written in the same write. `accepting`: callback ids whose claims the same write completes
        (leads_table.accept_versions). The ledger returned is the item as it was before (ALL_OLD), so intents an
        earlier invocation left uncompleted are seen even where this claim writes its own over them.
        """
        now = int(time.time())
        owner = uuid.uuid4().hex
        update = ItemUpdate()
        update.set((LEASE_UNTIL,), now + self.lease_seconds)
        update.set((LEASE_OWNER,), owner)
        update.set_if_absent(DELIVERIES, {})  # the complete write adds deliveries.<destination> to it
        update.set_or_remove({f"{SENDING_PREFIX}{name}": entry.to_value() for name, entry in (intents or {}).items()})
        versions = accept_versions(update, accepting)
        lease = update.name(LEASE_UNTIL)
        # A lapsed lease (its invocation crashed or timed out) is taken over; a held one says until when.
        condition = f"attribute_not_exists({lease}) OR {lease} < {update.value(now)}"
        claimed, item = with_versions_list(
            self.table_name,
            lead_key,
            lambda: update_lead_or_old(
                self.table_name, lead_key, condition, ReturnValues="ALL_OLD", **update.request()
            ),
        )
        if not claimed:
            return Busy(max(1, int(item.get(LEASE_UNTIL, now + self.lease_seconds)) - now + 1))
        if versions:
            kept = item.get(VERSIONS)
            trim_versions(self.table_name, lead_key, [*(kept if isinstance(kept, list) else []), *versions])
        return lease_of(lead_key, owner, item)

    def record_intent(self, lease: Lease, intents: dict[str, Delivered]) -> None:
        """Before sending: which deliveries this lease is about to make (one write, only while the lease is ours).

        Raises ClientError (a condition failure when the lease was lost): nothing may be sent then."""
        update = ItemUpdate()
        update.set_or_remove({f"{SENDING_PREFIX}{name}": entry.to_value() for name, entry in intents.items()})
        condition = f"{update.name(LEASE_OWNER)} = {update.value(lease.owner)}"
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key=lead_item_key(lease.lead_key),
            ConditionExpression=condition,
            **update.request(),
        )

    def complete(
        self,
        lease: Lease,
        delivered: dict[str, Delivered],
        routed_received_at: str | None = None,
        outcome: dict[str, Any] | None = None,
        callback_id: str = "",
        held: dict[str, str | None] | None = None,
        unknown: dict[str, dict[str, Any] | None] | None = None,
        intents_done: Iterable[str] = (),
    ) -> bool:
        """Add the deliveries, the routing outcome (unless a newer callback was stored since) and free the lease.

        One write, which also sets (a value) or clears (None) the `held` and `unknown` markers given, and
        removes the intents of `intents_done` (their outcome is known, or recorded as unknown). False when
        the lease was no longer ours (it lapsed and another invocation took it): the deliveries are then
        recorded without touching the new owner's lease or outcome.
        """
        marks: dict[str, Any] = {f"{HELD_PREFIX}{name}": value for name, value in (held or {}).items()}
        marks |= {f"{UNKNOWN_PREFIX}{name}": value for name, value in (unknown or {}).items()}
        marks |= {f"{SENDING_PREFIX}{name}": None for name in intents_done}
        written, old = self._write(lease, delivered, routed_received_at, outcome, callback_id, marks)
        if not written and old.get(LEASE_OWNER) == lease.owner:  # still ours: a newer callback was stored meanwhile
            written, old = self._write(lease, delivered, routed_received_at, None, "", marks)
        if written:
            return True
        if delivered or marks:  # the lease is another invocation's now: record ours without touching it
            self._write(lease, delivered, None, None, "", marks, owned=False)
        return False

    def mark_held(
        self, lead_key: str, destinations: Iterable[str], received_at: str, accepting: Iterable[str] = ()
    ) -> None:
        """Remember, without the lease, that paused destinations owe the lead a delivery (one write, which also
        completes the claims of `accepting`: leads_table.accept_versions)."""
        update = ItemUpdate()
        update.set_or_remove({f"{HELD_PREFIX}{name}": received_at for name in destinations})
        if accept_versions(update, accepting):
            write_accepting(self.table_name, lead_key, update)
        else:
            client("dynamodb").update_item(TableName=self.table_name, Key=lead_item_key(lead_key), **update.request())

    def _write(
        self,
        lease: Lease,
        delivered: dict[str, Delivered],
        routed_received_at: str | None,
        outcome: dict[str, Any] | None,
        callback_id: str,
        marks: dict[str, str | None],
        owned: bool = True,
    ) -> tuple[bool, dict[str, Any]]:
        """One write; (False, the item as it was) when `owned` and the lease is not ours or a newer callback's
        outcome is there."""
        update = ItemUpdate()
        for destination, entry in delivered.items():
            update.set((DELIVERIES, destination), entry.to_value())
        if routed_received_at:
            update.set((ROUTED_RECEIVED_AT,), routed_received_at)
        update.set_or_remove({**(outcome or {}), **marks})
        if not owned:
            if not update.empty:
                client("dynamodb").update_item(
                    TableName=self.table_name, Key=lead_item_key(lease.lead_key), **update.request()
                )
            return True, {}
        update.remove(LEASE_UNTIL)
        update.remove(LEASE_OWNER)
        conditions = [f"{update.name(LEASE_OWNER)} = {update.value(lease.owner)}"]
        if outcome is not None:
            name = update.name("callback_id")
            conditions.append(f"(attribute_not_exists({name}) OR {name} = {update.value(callback_id)})")
        return update_lead_or_old(self.table_name, lease.lead_key, " AND ".join(conditions), **update.request())


def lease_of(lead_key: str, owner: str, item: dict[str, Any]) -> Lease:
    """The lease just taken, with the lead's ledger as the item held it before the claim."""
    deliveries = item.get(DELIVERIES) or {}
    history = LeadHistory(
        {name: Delivered.from_value(value) for name, value in deliveries.items()},
        str(item.get(ROUTED_RECEIVED_AT) or ""),
    )
    return Lease(
        lead_key,
        owner,
        history,
        str(item.get("callback_id") or ""),
        held_markers(item),
        markers(item, SENDING_PREFIX),
        markers(item, UNKNOWN_PREFIX),
    )


@dataclass(frozen=True)
class Settlements:
    """The operator's side of the ledger: settling a delivery whose outcome is unknown (`clay-pipeline settle`)."""

    table_name: str

    def settle(self, lead_key: str, destination: str, delivered: bool, received_at: str = "") -> dict[str, Any]:
        """An operator's word on a delivery whose outcome is unknown (or whose intent lapsed); the entry settled.

        delivered: it reached the destination, so it becomes a delivery and is never sent again. Otherwise it is
        owed again: held_<destination> makes the lead's next routing send it (whatever the rules choose then).
        Raises LookupError when the lead has no such entry, or while an invocation holds the lead's lease.
        """
        item = LeadsTable(self.table_name).get(lead_key)
        if item is None:
            raise LookupError(f"no lead {lead_key!r} in the leads table")
        unknown, sending = f"{UNKNOWN_PREFIX}{destination}", f"{SENDING_PREFIX}{destination}"
        entry = item.get(unknown) or item.get(sending)
        if not isinstance(entry, dict):
            raise LookupError(f"{destination} of lead {lead_key} has no unknown outcome to settle")
        update = ItemUpdate()
        if delivered:
            fields = {key: entry[key] for key in ("at", "hash", "score") if key in entry}
            update.set((DELIVERIES, destination), {**fields, "settled": "delivered"})
            status = "delivered"
        else:
            update.set((f"{HELD_PREFIX}{destination}",), received_at or str(item.get("received_at") or ""))
            status = "resend"
        if isinstance(item.get("destinations"), dict) and destination in item["destinations"]:
            update.set(("destinations", destination), status)
        update.remove(unknown)
        update.remove(sending)
        now = update.value(int(time.time()))
        lease = update.name(LEASE_UNTIL)
        condition = (
            f"(attribute_exists({update.name(unknown)}) OR attribute_exists({update.name(sending)})) "
            f"AND (attribute_not_exists({lease}) OR {lease} < {now})"
        )
        if not update_lead_if(self.table_name, lead_key, condition, **update.request()):
            raise LookupError(f"lead {lead_key} is being routed now or {destination} was settled meanwhile: look again")
        return dict(entry)
