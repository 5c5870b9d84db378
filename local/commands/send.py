"""`clay-pipeline send leads.csv`: validate a CSV or JSON-lines file and queue its leads on LeadQueue.

Works against a real queue (--queue-url or LEAD_QUEUE_URL, with the usual AWS credentials; the
region is read from the queue URL when none is configured) or the local stack: a queue URL on
127.0.0.1 (what `clay-pipeline run --serve` prints) is reached through that emulator with dummy
credentials, so nothing needs to be set. CSV files may use , ; tab or | between columns. Exit
code 0 when every valid row was queued, 1 when some could not be (or the file held no lead, or
the queue could not be reached), 2 for a usage error. Problems are one plain line each.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from clay_pipeline.aws import client, reset_clients
from clay_pipeline.csv_import import prepare
from clay_pipeline.intake import Rows, enqueue
from clay_pipeline.models import Source
from clay_pipeline.observability import logger
from clay_pipeline.stores import Queue
from local.aws import FAKE_CREDENTIALS
from local.template import environment

CHUNK = 100  # leads per progress step (SendMessageBatch itself takes ten at a time)
MAX_LISTED_REJECTIONS = 50
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def send_command(args: argparse.Namespace) -> int:
    queue_url = args.queue_url or os.environ.get("LEAD_QUEUE_URL", "")
    path = Path(args.path)
    problem = _usage_problem(queue_url, path, args.source) or _encoding_problem(path, args.encoding)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    rows = prepare(path, source=args.source, encoding=args.encoding)
    if not rows.valid:
        _print_summary(0, rows.rejected, [], queue_url)
        print(f"error: no lead in {path}: {_hint(rows)}", file=sys.stderr)
        return 1
    with _aws_for(queue_url), _library_logs_quiet():
        if problem := _unreachable(queue_url):
            print(f"error: cannot use the queue {queue_url}: {problem}", file=sys.stderr)
            return 1
        unqueued = _send_with_progress(Queue(queue_url), rows, show=not args.no_progress)
    _print_summary(len(rows.valid) - len(unqueued), rows.rejected, unqueued, queue_url)
    return 1 if unqueued else 0


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
    if not rows.rejected:
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


@contextlib.contextmanager
def _library_logs_quiet() -> Iterator[None]:
    """The pipeline's JSON logs are for CloudWatch; this command reports in plain lines of its own."""
    level = logger.log_level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _unreachable(queue_url: str) -> str:
    """Why the queue cannot be used (no credentials, no such queue, nothing listening), or ''."""
    try:
        client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("AccessDenied", "AccessDeniedException"):
            return ""  # allowed to send but not to read attributes: try sending
        return str(error.response.get("Error", {}).get("Message") or error)
    except BotoCoreError as error:
        return str(error)
    return ""


def _send_with_progress(queue: Queue, rows: Rows, show: bool) -> list[dict[str, Any]]:
    from tqdm import tqdm

    unqueued: list[dict[str, Any]] = []
    with tqdm(total=len(rows.valid), unit="lead", desc="queueing", disable=not show, file=sys.stderr) as bar:
        for start in range(0, len(rows.valid), CHUNK):
            chunk = Rows(valid=rows.valid[start : start + CHUNK])
            unqueued.extend(enqueue(queue, chunk))
            bar.update(len(chunk.valid))
    return unqueued


def _print_summary(sent: int, rejected: list[dict[str, Any]], unqueued: list[dict[str, Any]], queue_url: str) -> None:
    queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    print(f"sent {sent} lead(s) to {queue_name}; rejected {len(rejected)} row(s); failed to queue {len(unqueued)}")
    problems = sorted(rejected + unqueued, key=lambda item: int(item["index"]))
    for item in problems[:MAX_LISTED_REJECTIONS]:
        print(f"  line {item['index']}: {item['error']}")
    if len(problems) > MAX_LISTED_REJECTIONS:
        print(f"  ... and {len(problems) - MAX_LISTED_REJECTIONS} more")
