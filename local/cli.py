"""`clay-pipeline`: send leads, run the local pipeline, invoke a function like `sam local invoke`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clay-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    send = commands.add_parser("send", help="enqueue leads from a CSV or JSON-lines file")
    send.add_argument("path", help="CSV (header row) or JSON lines (.jsonl / .ndjson)")
    send.add_argument("--queue-url", help="LeadQueue URL (default: $LEAD_QUEUE_URL)")
    send.add_argument("--source", default="csv-import", help="source tag for every row (default csv-import)")
    send.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    send.add_argument("--encoding", default="utf-8-sig", help="the file's text encoding (default UTF-8)")

    run = commands.add_parser("run", help="run the whole pipeline on the embedded local stack")
    run.add_argument("--serve", action="store_true", help="keep running and print the URLs (Ctrl-C stops)")
    run.add_argument("--leads", help="CSV of sample leads (default: local/sample_leads.csv)")
    run.add_argument(
        "--mode",
        choices=("table", "routine"),
        default="table",
        help="enrichment path: a Clay table (webhook + HTTP API column) or a Clay routine (Public API runs)",
    )

    invoke = commands.add_parser("invoke", help="invoke a function with an event file, like sam local invoke")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. CallbackFunction")
    invoke.add_argument("event", help="event JSON file, e.g. events/callback-token.json")

    args = parser.parse_args(argv)
    # Powertools' logger (log_uncaught_exceptions) turns a crash into one long JSON line: a terminal
    # gets Python's own traceback instead.
    sys.excepthook = sys.__excepthook__
    if args.command == "send":
        from local.commands import send_command

        return send_command(args)
    if args.command == "run":
        from local.commands import run_command

        return run_command(args)
    from local.commands import invoke_command

    return invoke_command(args)


if __name__ == "__main__":
    sys.exit(main())
