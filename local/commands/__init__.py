"""The `clay-pipeline` subcommands. run and invoke are imported only when used (they load the local stack)."""

from __future__ import annotations

import argparse

from local.commands.send import send_command

__all__ = ["invoke_command", "run_command", "send_command"]


def run_command(args: argparse.Namespace) -> int:
    from local.commands.run import run_command as run

    return run(args)


def invoke_command(args: argparse.Namespace) -> int:
    from local.commands.invoke import invoke_command as invoke

    return invoke(args)
