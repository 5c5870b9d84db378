"""`clay-pipeline send leads.csv`: validate a CSV or JSON-lines file and queue its leads on LeadQueue.

Works against a real queue (--queue-url or LEAD_QUEUE_URL, with the usual AWS credentials)
or the local stack (AWS_ENDPOINT_URL pointing at its emulator). Exit code 0 when every
valid row was queued, 1 when some could not be, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, get_args

from clay_pipeline.csv_import import prepare
from clay_pipeline.intake import Rows, enqueue
from clay_pipeline.models import Source
from clay_pipeline.stores import Queue

CHUNK = 100  # leads per progress step (SendMessageBatch itself takes ten at a time)
MAX_LISTED_REJECTIONS = 50


def send_command(args: argparse.Namespace) -> int:
    queue_url = args.queue_url or os.environ.get("LEAD_QUEUE_URL", "")
    path = Path(args.path)
    problem = _usage_problem(queue_url, path, args.source)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    rows = prepare(path, source=args.source)
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
