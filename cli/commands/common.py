"""What the commands share: exit codes, failing in one plain line, terminal-safe output, durations,
ages, JSON output and the pipeline they work on.

`main()` in cli/main.py runs every command through `run_cleanly`, so a command only returns its
exit code: whatever it raises (AWS unreachable or slow, throttled, access denied, Ctrl-C, a closed
pipe, a bug) becomes one `error: ...` line on stderr and the documented exit code below, with the
traceback and the library's JSON logs shown only with `clay-pipeline --debug`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # imported when used: `clay-pipeline --help` and Ctrl-C at start stay quick and quiet
    from cli.operations.target import Target


class Exit(IntEnum):
    """Every command's exit codes (README, "Exit codes")."""

    OK = 0
    FAILED = 1  # it ran, but some of what it was asked to do failed or was not found
    USAGE = 2  # bad arguments, input or configuration: nothing was done
    UNREACHABLE = 3  # AWS (or the local emulator) could not be reached or did not answer in time
    DENIED = 4  # no credentials, or they lack a permission the command needs
    THROTTLED = 5  # AWS kept answering "slow down" after the SDK's retries
    AWS_ERROR = 6  # AWS refused the request for another reason (named in the message)
    INTERNAL = 70  # a bug: rerun with --debug for the traceback (sysexits' EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)
    BROKEN_PIPE = 141  # stdout was closed early (`| head`): 128 + SIGPIPE, as a Unix tool killed by it


EXIT_CODES = """exit codes:
  0    done
  1    it ran, but some of what it was asked to do failed or was not found
  2    usage error: bad arguments, input or configuration; nothing was done
  3    AWS (or the local emulator) unreachable, or no answer in time
  4    no AWS credentials, or a permission missing
  5    AWS throttled the requests after retries
  6    AWS refused a request for another reason (named in the message)
  70   a bug: rerun with --debug for the traceback
  130  interrupted (Ctrl-C, SIGTERM)
  141  stdout closed early (e.g. piped into head)"""

DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "KMSAccessDeniedException",
    }
)
THROTTLED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "LimitExceededException",
    }
)

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
    """Indented JSON; the terminal control characters json leaves raw (DEL, C1, bidi overrides) as JSON
    escapes, so what the terminal gets is safe and still valid JSON for a script."""
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    print(_CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", text))


def usage_error(message: str) -> int:
    return fail(message, Exit.USAGE)


def fail(message: str, code: int = Exit.FAILED) -> int:
    """One `error: ...` line on stderr, control characters escaped; returns `code`."""
    print(f"error: {printable(message, keep_newlines=False)}", file=sys.stderr, flush=True)
    return code


# -- terminal-safe output ---------------------------------------------------------------------
# C0 and C1 control characters (ESC starts the terminal's own commands: colours, titles, cursor
# moves, OSC 52 clipboard writes), DEL, and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_LINE_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, keep_newlines: bool = True) -> str:
    """`text` with terminal control characters shown as \\x1b-style escapes (and line breaks too unless
    `keep_newlines`: for a value printed inside one line, such as a lead id or an error message)."""
    pattern = _CONTROL if keep_newlines else _CONTROL_OR_LINE_BREAK
    return pattern.sub(_escaped, str(text))


class EscapingStream(io.TextIOBase):
    """stdout for the commands: what they print, with the control characters of the data they show escaped.

    Leads, error messages from destinations and DLQ bodies come from outside; printed raw, an ESC in
    one of them would drive the operator's terminal. Newlines and tabs pass (the commands' layout).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


# -- one place for failures ---------------------------------------------------------------------
def run_cleanly(command: Callable[[], int], debug: bool, quiet_logs: bool = True) -> int:
    """Run a command the way a Unix tool fails: its exit code, or one line on stderr and an `Exit` code.

    Without `debug` the pipeline's JSON logs are silenced (`quiet_logs`: they are for CloudWatch; `run`
    and `invoke` show the functions' own) and nothing prints a traceback; with it, both are shown.
    """
    stdout = sys.stdout
    sys.stdout = EscapingStream(stdout)
    try:
        with _library_logs_quiet(quiet_logs and not debug), _sigterm_as_interrupt():
            return _reported(command, debug)
    finally:
        with contextlib.suppress(BrokenPipeError, ValueError):
            sys.stdout.flush()
        sys.stdout = stdout


def _reported(command: Callable[[], int], debug: bool) -> int:
    try:
        code = command()
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except KeyboardInterrupt:
        return fail("interrupted", Exit.INTERRUPTED)
    except BrokenPipeError:
        _stdout_to_devnull()
        return Exit.BROKEN_PIPE
    except Exception as error:
        if debug:
            raise
        return fail(*explained(error))


def explained(error: Exception) -> tuple[str, Exit]:
    """What went wrong in one line, and the exit code for it."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError | ReadTimeoutError):
        return f"cannot reach AWS: {error} (check the network, the region and AWS_ENDPOINT_URL)", Exit.UNREACHABLE
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return f"{error} (aws configure, or AWS_PROFILE)", Exit.DENIED
    if isinstance(error, NoRegionError):
        return f"{error}: pass --region or set AWS_REGION", Exit.USAGE
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        name, message = str(details.get("Code", "")), str(details.get("Message", "") or error)
        operation = getattr(error, "operation_name", "")
        if name in DENIED_CODES:
            return f"AWS denied {operation} ({name}): {message}", Exit.DENIED
        if name in THROTTLED_CODES:
            return f"AWS throttled {operation} ({name}) after retries: try again shortly", Exit.THROTTLED
        return f"AWS refused {operation} ({name}): {message}", Exit.AWS_ERROR
    if isinstance(error, BotoCoreError):
        return f"AWS SDK: {error}", Exit.AWS_ERROR
    return f"unexpected {type(error).__name__}: {error} (rerun with --debug for the traceback)", Exit.INTERNAL


def _stdout_to_devnull() -> None:
    """The reader went away: what Python would still flush at exit goes nowhere (no second BrokenPipeError)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` stops a command as cleanly as Ctrl-C: its finally blocks run (a DLQ read releases what it
    holds, `send` says what it queued). Only the main thread can set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _library_logs_quiet(quiet: bool) -> Iterator[None]:
    """The pipeline's JSON logs are for CloudWatch; a command reports in plain lines of its own."""
    if not quiet:
        yield
        return
    from clay_pipeline.observability import logger

    level = logger.log_level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def with_target(args: argparse.Namespace, needs: tuple[str, ...], command: Callable[[Target], int]) -> int:
    """Run `command` on the pipeline the arguments name; 2 when it cannot be found."""
    from cli.operations.target import TargetError, resolve

    try:
        target = resolve(args, needs)
    except TargetError as error:
        return usage_error(str(error))
    return command(target)
