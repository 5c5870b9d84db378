"""Durations and ages as the operator commands read and print them (cli/commands/common.py)."""

from __future__ import annotations

import argparse

import pytest

from cli.commands.common import age, duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129_600), ("1w", 604_800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "yesterday", "2 hours", "-1h", "1y"])
def test_bad_durations_are_argparse_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (90, "1m 30s"), (3725, "1h 02m"), (200_000, "2d 07h")])
def test_ages(seconds: float, text: str) -> None:
    assert age(seconds) == text
