"""The `clay-pipeline` subcommands: cli.commands.<name> exposes <name>_command(args) -> exit code.

cli/main.py imports only the module of the command given, so `send` or `trace` never load the
local stack that `run` and `invoke` need.
"""
