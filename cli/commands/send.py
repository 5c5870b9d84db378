"""`clay-pipeline send leads.csv`: validate a CSV or JSON-lines file and queue its leads on LeadQueue.

Works against a real queue (--queue-url or LEAD_QUEUE_URL, with the usual AWS credentials; the
region is read from the queue URL when none is configured) or the local stack: a queue URL on
127.0.0.1 (what `clay-pipeline run --serve` prints) is reached through that emulator with dummy
credentials, so nothing needs to be set. CSV files may use , ; tab or | between columns.

Every row is reported by line: rejected (with the reason: no identifier, a bad email, over Clay's
100 KB, malformed quoting, unreadable JSON, nesting too deep), skipped as a duplicate of an
earlier line (the same lead), or sent. Leads go out SEND_THREADS batches of ten at a time.

Exit codes (the CLI's, README "Exit codes"): 0 every valid row was queued; 1 some could not be, or
the file held no lead; 2 a usage error (no queue, no file, wrong encoding, no such queue); 3 the
queue could not be reached; 4 no credentials or no permission; 130 interrupted: it says how many
leads were queued, and sending the file again is safe (the sender never sends a lead to Clay
twice within CLAY_DEDUPE_DAYS).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client, reset_clients
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.core.leads import Source
from clay_pipeline.services.intake import Rows, enqueue
from cli.commands.common import Exit, fail
from cli.operations.csv_import import prepare
from local.aws import FAKE_CREDENTIALS
from local.template import environment

CHUNK = 50  # leads per task: five SendMessageBatch calls of ten
SEND_THREADS = 8  # chunks in flight at once (the SQS client's pool holds 50 connections)
MAX_LISTED_REJECTIONS = 50
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
NO_SUCH_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


@dataclass
class Sent:
    """What the sending loop did: the leads queued, those SQS refused, and whether Ctrl-C stopped it."""

    queued: int = 0
    unqueued: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False


def send_command(args: argparse.Namespace) -> int:
    queue_url = args.queue_url or os.environ.get("LEAD_QUEUE_URL", "")
    path = Path(args.path)
    problem = _usage_problem(queue_url, path, args.source) or _encoding_problem(path, args.encoding)
    if problem:
        return fail(problem, Exit.USAGE)
    rows = prepare(path, source=args.source, encoding=args.encoding)
    if not rows.valid:
        _print_summary(Sent(), rows, queue_url)
        return fail(f"no lead in {path}: {_hint(rows)}")
    with _aws_for(queue_url):
        if problem := _missing_queue(queue_url):
            return fail(f"cannot use the queue {queue_url}: {problem}", Exit.USAGE)
        sent = _send_with_progress(Queue(queue_url), rows, show=not args.no_progress)
    _print_summary(sent, rows, queue_url)
    if sent.interrupted:
        return fail(
            f"interrupted: {sent.queued} of {len(rows.valid)} lead(s) were queued. Sending the file again is "
            "safe: the sender never sends a lead to Clay twice (CLAY_DEDUPE_DAYS)",
            Exit.INTERRUPTED,
        )
    return Exit.FAILED if sent.unqueued else Exit.OK


def _usage_problem(queue_url: str, path: Path, source: str) -> str:
    if not queue_url:
        return "no queue: pass --queue-url or set LEAD_QUEUE_URL"
    if not path.is_file():
        return f"{path} is not a file"
    if source not in get_args(Source):
        return f"--source must be one of {', '.join(get_args(Source))}"
    return ""


def _encoding_problem(path: Path, encoding: str) -> str:
    """A file that is not in `encoding` (Excel's CSV is often Windows-1252): where, and how to read it."""
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
    except LookupError:
        return f"--encoding {encoding} is not an encoding Python knows"
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return (
            f"{path} is not {encoding} text (byte 0x{raw[error.start]:02x} on line {line}); "
            "save it as UTF-8, or pass --encoding cp1252 (Excel on Windows) or --encoding latin-1"
        )
    return ""


def _hint(rows: Rows) -> str:
    if not rows.rejected and not rows.duplicates:
        return "the file has a header row but no rows"
    return "every row was rejected (see above); each lead needs an email, a domain or a linkedin_url column"


@contextlib.contextmanager
def _aws_for(queue_url: str) -> Iterator[None]:
    """AWS settings the queue URL implies, for this command only: the local emulator on loopback (dummy
    credentials, its endpoint), else the region in an sqs.<region>.amazonaws.com URL when none is set."""
    parts = urlsplit(queue_url)
    implied: dict[str, str] = {}
    if parts.hostname in LOOPBACK_HOSTS:
        implied = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": f"{parts.scheme}://{parts.netloc}"}
    elif (host := parts.hostname or "").startswith("sqs.") and not (
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    ):
        implied = {"AWS_DEFAULT_REGION": host.split(".")[1]}
    with environment(implied):
        reset_clients()
        try:
            yield
        finally:
            reset_clients()


def _missing_queue(queue_url: str) -> str:
    """Why the queue does not exist, or ''. Unreachable, denied and throttled propagate: the CLI's wrapper
    reports them with their own exit codes."""
    try:
        client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    except ClientError as error:
        details = error.response.get("Error", {})
        if details.get("Code") in NO_SUCH_QUEUE:
            return str(details.get("Message") or "no such queue")
        if details.get("Code") in ("AccessDenied", "AccessDeniedException"):
            return ""  # allowed to send but not to read attributes: try sending
        raise
    return ""


def _send_with_progress(queue: Queue, rows: Rows, show: bool) -> Sent:
    """Queue the valid rows, SEND_THREADS chunks at a time. Ctrl-C stops it: chunks in flight finish (each is
    a few SendMessageBatch calls), the others are not sent, and the count says what went."""
    from tqdm import tqdm

    sent = Sent()
    chunks = [Rows(valid=rows.valid[start : start + CHUNK]) for start in range(0, len(rows.valid), CHUNK)]
    pool = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send")
    with tqdm(total=len(rows.valid), unit="lead", desc="queueing", disable=not show, file=sys.stderr) as bar:
        pending: dict[Future[list[dict[str, Any]]], Rows] = {}
        try:
            for chunk in chunks:
                pending[pool.submit(enqueue, queue, chunk)] = chunk
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    _count(sent, pending.pop(future), future.result(), bar)
        except KeyboardInterrupt:
            sent.interrupted = True
            for future in list(pending):
                if future.cancel():
                    del pending[future]
            for future in list(pending):  # already running: let it finish, so the count is true
                _count(sent, pending.pop(future), future.result(), bar)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return sent


def _count(sent: Sent, chunk: Rows, unqueued: list[dict[str, Any]], bar: Any) -> None:
    sent.queued += len(chunk.valid) - len(unqueued)
    sent.unqueued.extend(unqueued)
    bar.update(len(chunk.valid))


def _print_summary(sent: Sent, rows: Rows, queue_url: str) -> None:
    queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    duplicates = f"; skipped {len(rows.duplicates)} duplicate row(s)" if rows.duplicates else ""
    print(
        f"sent {sent.queued} lead(s) to {queue_name}; rejected {len(rows.rejected)} row(s){duplicates}; "
        f"failed to queue {len(sent.unqueued)}"
    )
    problems = sorted(rows.rejected + rows.duplicates + sent.unqueued, key=lambda item: int(item["index"]))
    for item in problems[:MAX_LISTED_REJECTIONS]:
        print(f"  line {item['index']}: {item['error']}")
    if len(problems) > MAX_LISTED_REJECTIONS:
        print(f"  ... and {len(problems) - MAX_LISTED_REJECTIONS} more")
