"""`clay-pipeline dlq list|show|replay|purge`: what is in LeadDLQ, RoutingDLQ (and the routine path's
RunPollDLQ), and what to do with it.

Exit codes: 0 done, 1 some messages could not be replayed, 2 a usage error (which includes purge
without --yes and an unknown message id); the CLI's others (README "Exit codes") for AWS failures
and interruptions. A read leaves the messages visible again as soon as it is done, interrupted or
failed (clay_pipeline/adapters/dead_letter_queues.py says how, and where SQS limits that).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.adapters.dead_letter_queues import (
    QUEUES,
    REDRIVEN,
    DeadLetterMessage,
    DeadLetterQueue,
    QueuePair,
    interrupts_deferred,
    queue_pair,
)
from cli.commands.common import age, print_json, printable, usage_error, with_target
from cli.operations.dead_letters import Selection, group_by_reason
from cli.operations.target import Target

REPLAY_CHUNK = 10  # SendMessageBatch and DeleteMessageBatch take ten
LONG_VALUE = 120  # characters of a body's string shown by `show` before it is cut
ORIGIN_ATTRIBUTES = ("source_message_id", "original_message_id")  # shown as "original id"


def dlq_command(args: argparse.Namespace) -> int:
    named = getattr(args, "queue", None)
    try:  # unnamed: the lead DLQs; RunPollDLQ (run polls, not leads) when asked for
        pairs = [queue_pair(named)] if named else [pair for pair in QUEUES.values() if pair.about_leads]
    except ValueError as error:
        return usage_error(str(error))
    needs = tuple(name for pair in pairs for name in (f"{pair.name}_dlq_url", f"{pair.name}_queue_url"))
    return with_target(args, needs, lambda target: ACTIONS[args.action](args, target, pairs))


def selection(args: argparse.Namespace) -> Selection:
    return Selection(
        reasons=frozenset(args.reason or ()),
        older_than=args.older_than,
        newer_than=args.newer_than,
        message_ids=frozenset(args.id or ()),
        text=args.grep or "",
        limit=args.limit,
    )


def open_queue(target: Target, pair: QueuePair) -> DeadLetterQueue:
    return DeadLetterQueue(pair, getattr(target, f"{pair.name}_dlq_url"), getattr(target, f"{pair.name}_queue_url"))


# -- list ----------------------------------------------------------------------------------
def _list(args: argparse.Namespace, target: Target, pairs: list[QueuePair]) -> int:
    now = time.time()
    chosen = selection(args)
    report = {}
    for pair in pairs:
        queue = open_queue(target, pair)
        messages = queue.peek()
        picked = chosen.pick(messages, now)
        report[pair.dlq] = {
            "messages": len(messages),
            "held_by_another_reader": queue.in_flight,
            "selected": len(picked),
            "reasons": [group.summary(now) for group in group_by_reason(picked)],
        }
        if args.json:
            continue
        filtered = "" if chosen.everything else f" ({len(picked)} match the filters)"
        held = f" (and {queue.in_flight} held by another reader right now)" if queue.in_flight else ""
        print(f"{pair.dlq}: {len(messages)} message(s){held}{filtered}; replays go to {pair.source}")
        for group in group_by_reason(picked):
            summary = group.summary(now)
            print(
                f"  {printable(summary['reason'], False):24} {summary['count']:5}   "
                f"oldest {age(summary['oldest_seconds']):>7}   newest {age(summary['newest_seconds']):>7}   "
                f"{printable(summary['example_detail'][:70], False)}"
            )
            if args.messages:
                for message in group.messages:
                    lead = printable(message.lead_id, False) or "(no lead id)"
                    print(f"      {message.message_id}  {lead:28}  {age(message.age_seconds(now))} ago")
    if args.json:
        print_json(report)
    return 0


# -- show ----------------------------------------------------------------------------------
def _show(args: argparse.Namespace, target: Target, pairs: list[QueuePair]) -> int:
    for pair in pairs:
        found = Selection(message_ids=frozenset({args.message_id})).pick(open_queue(target, pair).peek())
        if found:
            _print_message(found[0], as_json=args.json)
            return 0
    names = " or ".join(pair.dlq for pair in pairs)
    return usage_error(f"no message {args.message_id} in {names}")


def _print_message(message: DeadLetterMessage, as_json: bool) -> None:
    decoded = message.decoded()
    if as_json:
        print_json(decoded)
        return
    print(f"message {message.message_id} in {message.queue.dlq} (replays to {message.queue.source})")
    rows = [
        ("lead" if message.queue.about_leads else "run", decoded["lead_id"] or "(unreadable body)"),
        ("reason", decoded["reason"]),
        ("detail", decoded["detail"]),
        ("destinations", json.dumps(decoded["destinations"]) if decoded["destinations"] else ""),
        ("dead-lettered", f"{decoded['dead_lettered_at']} ({age(message.age_seconds(time.time()))} ago)"),
        ("attempts", _attempts(message)),
        ("original id", message.original_message_id),
        *((name, value) for name, value in decoded["attributes"].items() if name not in ORIGIN_ATTRIBUTES),
    ]
    for label, value in rows:
        if value:
            print(f"  {label:14} {printable(value, keep_newlines=False)}")
    body = decoded["body"]
    text = body if isinstance(body, str) else json.dumps(_shortened(body), indent=2, ensure_ascii=False)
    print("  body:")
    print("\n".join(f"    {line}" for line in text.splitlines()))


def _attempts(message: DeadLetterMessage) -> str:
    """Deliveries from the source queue before it was dead-lettered (not reads of the DLQ)."""
    attempts = message.delivery_attempts
    if attempts is None:
        return ""
    by_sqs = f" (SQS moved it after {message.queue.source}'s maxReceiveCount)" if message.reason == REDRIVEN else ""
    return f"{attempts} {'delivery' if attempts == 1 else 'deliveries'} from {message.queue.source}{by_sqs}"


def _shortened(value: Any) -> Any:
    """Long strings cut for the terminal (--json shows them whole)."""
    if isinstance(value, dict):
        return {key: _shortened(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shortened(item) for item in value]
    if isinstance(value, str) and len(value) > LONG_VALUE:
        return f"{value[:40]}... ({len(value):,} characters)"
    return value


# -- replay and purge: the selected messages, the others released at the end -------------------
@dataclass
class Held:
    pair: QueuePair
    queue: DeadLetterQueue
    messages: list[DeadLetterMessage]  # all of the DLQ's, invisible until released
    picked: list[DeadLetterMessage]  # the selection
    done: set[str] = field(default_factory=set)  # ids replayed or deleted: not released


@contextlib.contextmanager
def held(args: argparse.Namespace, target: Target, pairs: list[QueuePair]) -> Iterator[Held]:
    [pair] = pairs
    queue = open_queue(target, pair)
    messages = queue.read_all()
    state = Held(pair, queue, messages, selection(args).pick(messages))
    try:
        yield state
    finally:
        with interrupts_deferred():
            queue.release([message for message in messages if message.message_id not in state.done])


def _replay(args: argparse.Namespace, target: Target, pairs: list[QueuePair]) -> int:
    from tqdm import tqdm

    with held(args, target, pairs) as state:
        pair, picked, total = state.pair, state.picked, len(state.messages)
        if args.dry_run or not picked:
            verb = "would replay" if args.dry_run else "nothing to replay:"
            print(f"{verb} {len(picked)} of {total} message(s) from {pair.dlq} to {pair.source}")
            for message in picked:
                lead = printable(message.lead_id, False) or "(no lead id)"
                print(f"  {message.message_id}  {lead:28}  {message.reason}")
            return 0
        replayed_at = datetime.now(UTC).isoformat()
        with tqdm(total=len(picked), unit="msg", desc="replaying", disable=args.no_progress, file=sys.stderr) as bar:
            for start in range(0, len(picked), REPLAY_CHUNK):
                sent = state.queue.replay(picked[start : start + REPLAY_CHUNK], replayed_at)
                state.done.update(message.message_id for message in sent)
                bar.update(min(REPLAY_CHUNK, len(picked) - start))
    failed = len(picked) - len(state.done)
    print(
        f"replayed {len(state.done)} of {total} message(s) from {pair.dlq} to {pair.source}; "
        "each carries its original message id in the original_message_id attribute"
        + (f"; {failed} could not be sent and stay in {pair.dlq}" if failed else "")
    )
    return 1 if failed else 0


def _purge(args: argparse.Namespace, target: Target, pairs: list[QueuePair]) -> int:
    with held(args, target, pairs) as state:
        pair, picked, total = state.pair, state.picked, len(state.messages)
        if picked and not args.yes:
            print(
                f"refusing to delete {len(picked)} of {total} message(s) from {pair.dlq} without --yes: "
                f"they may be the only copy of those leads (see them with `clay-pipeline dlq list {pair.name} "
                "--messages`, or replay them)",
                file=sys.stderr,
            )
            return 2
        deleted = state.queue.delete(picked)
        state.done.update(message.message_id for message in picked)
    print(f"deleted {deleted} of {total} message(s) from {pair.dlq}")
    return 0


ACTIONS = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}
