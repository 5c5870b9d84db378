"""What the operator commands share: durations, ages, JSON output, the pipeline they work on."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from local.operations.target import Target, TargetError, resolve

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def duration(text: str) -> float:
    """'90s', '15m', '2h', '3d', '1w' (a bare number is seconds) in seconds; argparse's type for ages."""
    match = _DURATION.match(text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 2h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def age(seconds: float) -> str:
    """3725 -> '1h 02m'; 90 -> '1m 30s'; 200000 -> '2d 07h'."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def with_target(args: argparse.Namespace, needs: tuple[str, ...], command: Callable[[Target], int]) -> int:
    """Run `command` on the pipeline the arguments name; 2 when it cannot be found."""
    try:
        target = resolve(args, needs)
    except TargetError as error:
        return usage_error(str(error))
    return command(target)
