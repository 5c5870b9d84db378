"""Shared by the benchmarks: result sections, tables, the machine description, a Lambda context and the command line."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import platform
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"


@dataclass
class Target:
    """A figure the issue sets a bar for, and whether this run met it."""

    label: str
    met: bool
    detail: str = ""


@dataclass
class Section:
    """One benchmark's output: a markdown table, notes and the targets it checked."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", table(self.headers, self.rows), ""]
        lines += [f"- target: {'MET' if t.met else 'MISSED'}: {t.label} {t.detail}".rstrip() for t in self.targets]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def show(self) -> Section:
        print(self.markdown(), flush=True)
        return self


def command_line(run: Callable[..., Section], description: str | None) -> None:
    """A benchmark's command line: an option per parameter of its `run` (`--run-seconds` for `run_seconds`), with
    `run`'s own type and default, so the defaults are written once; then `run`'s table is printed."""
    parser = argparse.ArgumentParser(description=(description or "").splitlines()[0])
    for parameter in inspect.signature(run, eval_str=True).parameters.values():
        option = "--" + parameter.name.replace("_", "-")
        parser.add_argument(option, type=parameter.annotation, default=parameter.default)
    run(**vars(parser.parse_args())).show()


def leads_finished(counts: dict[str, int]) -> int:
    """Leads whose journey through the local stack ended: routed, skipped (no destination) or dead-lettered."""
    return counts["routed"] + counts["skipped (no destination)"] + counts["dead-lettered (RoutingDLQ)"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[[fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    return {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{cpu_model()} ({platform.machine()})",
        "cores": str(os.cpu_count()),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": f"{platform.system()} {platform.release()}",
    }


class LambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    def __init__(self, function_name: str, memory_mb: int = 256, remaining_ms: int = 30_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = "bench-request"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "bench"
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def quiet_logs() -> None:
    """Benchmarks measure the work, not the terminal: Powertools logs go nowhere."""
    import logging

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF lines would go to stdout
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request


@contextlib.contextmanager
def logs_to_devnull() -> Iterator[None]:
    """Logging and EMF metrics are still formatted and written (their cost is real), just not shown."""
    from clay_pipeline.observability import logger

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        handler = logger.registered_handler
        previous = handler.setStream(sink)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            handler.setStream(previous)  # type: ignore[attr-defined]
