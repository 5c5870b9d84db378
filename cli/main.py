"""`clay-pipeline`: send leads, run the local pipeline, invoke a function, and operate a deployed pipeline."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from cli.commands.common import EXIT_CODES, Exit, fail, run_cleanly

# Commands whose purpose includes the functions' own logs (run: .local-stack/run.log; invoke: stderr).
SHOWS_FUNCTION_LOGS = frozenset({"run", "invoke"})


def _add_dlq_filters(parser: argparse.ArgumentParser) -> None:
    from cli.commands.common import duration

    parser.add_argument("--reason", action="append", help="only this reason attribute (repeatable)")
    parser.add_argument("--older-than", type=duration, metavar="AGE", help="only messages older than this (2h, 1d)")
    parser.add_argument("--newer-than", type=duration, metavar="AGE", help="only messages newer than this")
    parser.add_argument("--id", action="append", metavar="MESSAGE_ID", help="only this message (repeatable)")
    parser.add_argument("--grep", metavar="TEXT", help="only messages whose reason, detail or statuses contain TEXT")
    parser.add_argument("--limit", type=int, help="at most this many, oldest first")


def _operations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cli.commands.common import duration
    from cli.operations.target import add_target_arguments

    trace = commands.add_parser("trace", help="what happened to a lead: intake, Clay, callbacks, routing, DLQs")
    trace.add_argument("who", help="an email, a lead_id or a domain")
    trace.add_argument(
        "--as", dest="kind", choices=("email", "lead_id", "domain"), help="what WHO is (default: guessed)"
    )
    trace.add_argument("--json", action="store_true", help="machine-readable output")
    trace.add_argument("--no-dlq", action="store_true", help="do not read the dead-letter queues")
    add_target_arguments(trace)

    dlq = commands.add_parser("dlq", help="list, show, replay or purge LeadDLQ, RoutingDLQ and RunPollDLQ")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="messages grouped by reason")
    listing.add_argument("queue", nargs="?", help="lead, routing or run-poll (default: lead and routing)")
    listing.add_argument("--messages", action="store_true", help="also list each message")
    listing.add_argument("--json", action="store_true")
    _add_dlq_filters(listing)
    show = actions.add_parser("show", help="one message, decoded")
    show.add_argument("message_id")
    show.add_argument("--queue", help="lead, routing or run-poll (default: lead and routing)")
    show.add_argument("--json", action="store_true")
    replay = actions.add_parser("replay", help="send selected messages back to their source queue")
    replay.add_argument("queue", help="lead (to LeadQueue), routing (to RoutingQueue) or run-poll (to RunPollQueue)")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    replay.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_dlq_filters(replay)
    purge = actions.add_parser("purge", help="delete selected messages (needs --yes)")
    purge.add_argument("queue", help="lead, routing or run-poll")
    purge.add_argument("--yes", action="store_true", help="really delete them")
    _add_dlq_filters(purge)
    for parser in (listing, show, replay, purge):
        add_target_arguments(parser)

    destination = commands.add_parser("destination", help="pause or resume a destination without a deploy")
    switch = destination.add_subparsers(dest="action", required=True)
    states = switch.add_parser("list", help="which destinations are paused")
    states.add_argument("--json", action="store_true")
    pause = switch.add_parser("pause", help="hold a destination's deliveries in RoutingQueue")
    pause.add_argument("name", help="outreach, hubspot, nurture, slack or zapier")
    pause.add_argument("--reason", help="shown by `destination list` and `trace`")
    resume = switch.add_parser("resume", help="deliver again, held deliveries included")
    resume.add_argument("name")
    for parser in (states, pause, resume):
        add_target_arguments(parser)

    stale = commands.add_parser("stale", help="leads sent to Clay with no callback since (read-only)")
    stale.add_argument("--hours", type=float, help="no callback for this many hours (default $STALE_AFTER_HOURS or 24)")
    stale.add_argument("--since", type=duration, default=duration("7d"), metavar="AGE", help="sent within (7d)")
    stale.add_argument("--limit", type=int, default=50, help="leads listed (default 50; --json and --export list all)")
    stale.add_argument("--json", action="store_true")
    stale.add_argument(
        "--export", choices=("filter", "condition"), help="only the ids, for a Clay table filter or run condition"
    )
    add_target_arguments(stale)
    _settle(commands)
    _clay_setup(commands)


def _settle(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cli.operations.target import add_target_arguments

    settle = commands.add_parser("settle", help="say whether a delivery whose outcome is unknown arrived")
    settle.add_argument("lead", help="a lead_id or an email")
    settle.add_argument("destination", help="outreach, nurture, zapier or slack (as `trace` shows it)")
    answer = settle.add_mutually_exclusive_group(required=True)
    answer.add_argument("--delivered", action="store_true", help="it arrived: record it, never send it again")
    answer.add_argument("--resend", action="store_true", help="it did not: send it once more")
    settle.add_argument("--json", action="store_true")
    add_target_arguments(settle)


def _secrets(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    secret = commands.add_parser("secret", help="list, fill in, set, rotate or prune the pipeline's secrets")
    actions = secret.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="which settings are set (never their values)")
    actions.add_parser("init", help="generate what the pipeline can generate, only where missing")
    setter = actions.add_parser("set", help="set one value, keeping the others")
    setter.add_argument("name", help="e.g. HUBSPOT_ACCESS_TOKEN")
    setter.add_argument("value", help="the value, or - to read it from stdin")
    getter = actions.add_parser("get", help="print one value (for scripts)")
    getter.add_argument("name")
    rotate = actions.add_parser("rotate", help="a new random value first, the current one kept after it")
    rotate.add_argument("name", choices=("INTAKE_API_KEYS", "CALLBACK_SECRETS"))
    actions.add_parser(
        "prune", help="after an upgrade: remove from the shared secret the values now in their own secrets"
    )
    for parser in actions.choices.values():
        group = parser.add_argument_group("which secrets (default: CONFIG_SECRET_ID, else the local stack's)")
        group.add_argument("--secret-id", help="one secret's name or ARN, taken to hold every name")
        group.add_argument("--stack", help="deployed stack name: each name in its own secret (the *SecretName outputs)")
        group.add_argument("--region", help="AWS region (default: the AWS CLI's)")


def _clay_setup(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = commands.add_parser("clay-setup", help="what to set in Clay: webhook source and HTTP API column")
    setup.add_argument("--stack", help="deployed stack name (default: the local stack of `make run ARGS=--serve`)")
    setup.add_argument("--region", help="AWS region of the stack (default: the AWS CLI's)")
    setup.add_argument("--show-secrets", action="store_true", help="print the secrets instead of masking them")


def _hubspot(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hubspot = commands.add_parser("hubspot", help="HubSpot setup: the contact properties the mapping needs")
    hubspot_actions = hubspot.add_subparsers(dest="action", required=True)
    setup = hubspot_actions.add_parser("setup", help="create the missing properties in the group clay (idempotent)")
    setup.add_argument("--dry-run", action="store_true", help="say what would be created, change nothing")
    setup.add_argument("--json", action="store_true")
    setup.add_argument("--base-url", help="default $HUBSPOT_BASE_URL, else https://api.hubapi.com")
    setup.add_argument("--stack", help="deployed stack name: the token from its config secret")
    setup.add_argument("--region", help="AWS region of the stack (default: the AWS CLI's)")
    setup.add_argument("--secret-id", help="the config secret holding HUBSPOT_ACCESS_TOKEN (default $CONFIG_SECRET_ID)")


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the commands' modules load
        return fail("interrupted", Exit.INTERRUPTED)
    # Every command runs as cli.commands.<name>.<name>_command(args) -> exit code, inside one
    # wrapper that turns whatever it raises into one line on stderr and a documented exit code.
    return run_cleanly(lambda: _command(args), debug=args.debug, quiet_logs=args.command not in SHOWS_FUNCTION_LOGS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clay-pipeline", description=__doc__, epilog=EXIT_CODES)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--debug", action="store_true", help="on failure, the traceback; and the JSON logs")
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
    run.add_argument(
        "--crm",
        choices=("hubspot", "salesforce", "both"),
        default="hubspot",
        help="the CRM destination on: HubSpot (default), Salesforce (its simulator; HubSpot off) or both",
    )

    invoke = commands.add_parser("invoke", help="invoke a function with an event file, like sam local invoke")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. CallbackFunction")
    invoke.add_argument("event", help="event JSON file, e.g. events/callback-token.json")

    _operations(commands)
    _hubspot(commands)
    _secrets(commands)
    return parser


def _command(args: argparse.Namespace) -> int:
    name = args.command.replace("-", "_")  # clay-setup: cli.commands.clay_setup.clay_setup_command
    module = importlib.import_module(f"cli.commands.{name}")
    # Importing the pipeline's library creates Powertools' Logger(log_uncaught_exceptions=True), which
    # installs its own sys.excepthook (a crash as one long JSON line): a terminal gets Python's own.
    sys.excepthook = sys.__excepthook__
    command: Callable[[argparse.Namespace], int] = getattr(module, f"{name}_command")
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
