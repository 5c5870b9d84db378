"""`clay-pipeline destination list|pause|resume`: hold a destination's deliveries without a deploy."""

from __future__ import annotations

import argparse
import getpass

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.services.pause import DestinationSwitch, UnknownDestination
from cli.commands.common import print_json, usage_error, with_target
from cli.operations.target import Target
from cli.operations.trace import when


def destination_command(args: argparse.Namespace) -> int:
    return with_target(args, ("state_table",), lambda target: _run(args, target))


def _run(args: argparse.Namespace, target: Target) -> int:
    switch = DestinationSwitch(StateStore(target.state_table))
    try:
        if args.action == "pause":
            switch.pause(args.name, by=getpass.getuser(), reason=args.reason or "")
            print(
                f"{args.name} paused on {target.where}. Within the router's cache time (30 s by default) its "
                "deliveries wait in RoutingQueue, never the DLQ; the other destinations are unaffected.\n"
                f"Resume with: clay-pipeline destination resume {args.name}"
            )
            return 0
        if args.action == "resume":
            if switch.resume(args.name):
                print(f"{args.name} resumed: the deliveries it held go out as their messages come back.")
            else:
                print(f"{args.name} was not paused.")
            return 0
    except UnknownDestination as error:
        return usage_error(str(error))
    states = switch.states()
    if args.json:
        print_json(states)
        return 0
    for name, state in states.items():
        if state["paused"]:
            reason = f": {state['reason']}" if state.get("reason") else ""
            until = f" until {when(state['until'])}" if state.get("until") else ""
            print(f"{name:10} paused since {when(state.get('at'))}{until} by {state.get('by') or '?'}{reason}")
        else:
            print(f"{name:10} delivering")
    return 0
