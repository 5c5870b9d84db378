"""Cold start by package: which imports a function's init spends its time on (`python -X importtime`).

The children are cold_start.py's `+ clients` children of the built artifact (same layout and environment), for
the functions with the most imports, plus the imports the functions keep out of init.

    python bench/import_time.py [--runs 3]
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from cold_start import Variant, built_layout, variants
from harness import Section, command_line, median

PROFILED = ("CallbackFunction", "RouterFunction", "SenderFunction")
LAZY_IMPORTS = {  # imported after init, not at module level: what each would add to a cold start
    "requests (the queue consumers' first HTTP call)": "import requests\n",
    "aws_xray_sdk (only with DetailedTracing on)": "import aws_xray_sdk.core\n",
}


def import_times(variant: Variant) -> dict[str, float]:
    """Milliseconds per top-level package a child imports: the self times of its modules (`-X importtime`)."""
    env = {**variant.env, "PYTHONPATH": os.pathsep.join(str(p) for p in variant.pythonpath)}
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-S", "-X", "importtime", "-c", variant.code],
        cwd=variant.cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{variant.name} failed:\n{result.stderr[-2000:]}")
    packages: dict[str, float] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        if not own.strip().isdigit():  # the header line
            continue
        root = name.strip().split(".")[0]
        packages[root] = packages.get(root, 0.0) + int(own) / 1000
    return packages


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {name: median([sample.get(name, 0.0) for sample in samples]) for name in samples[0]}


def run(runs: int = 3) -> Section:
    """The largest top-level imports of the heaviest functions, and of the imports kept out of init."""
    chosen = variants(built_layout())
    for variant in chosen:  # warm-up: the page cache, as cold_start.py does
        import_times(variant)
    by_name = {variant.name: variant for variant in chosen}
    rows: list[list[Any]] = []
    for logical_id in PROFILED:
        packages = medians([import_times(by_name[f"{logical_id} + clients"]) for _ in range(runs)])
        top = sorted(packages.items(), key=lambda item: -item[1])[:8]
        rows.append([logical_id, f"{sum(packages.values()):.0f}", ", ".join(f"{n} {ms:.0f}" for n, ms in top)])
    router = by_name["RouterFunction + clients"]
    before = sum(medians([import_times(router) for _ in range(runs)]).values())
    for label, code in LAZY_IMPORTS.items():
        lazy = Variant(label, router.code + code, router.cwd, router.pythonpath, router.env)
        added = medians([import_times(lazy) for _ in range(runs)])
        rows.append([label, f"+{sum(added.values()) - before:.0f}", "on top of the router's init; not at init"])
    return Section(
        title=f"Cold start: import time by package (python -X importtime, median of {runs}, ms)",
        headers=["process", "imports ms", "largest packages (ms of their own modules)"],
        rows=rows,
        notes=[
            "the `+ clients` child of each function (cold_start.py), each module's own import time summed by "
            "top-level package; `-X importtime` adds overhead of its own, so the figures are for ranking",
            "removed from init for issue 14 (measured the same way before the change): the X-Ray SDK (about 86 ms, "
            "now behind DetailedTracing), Powertools' batch utility and event data classes (about 69 ms, replaced by "
            "clay_pipeline.queue_batch), the Lambda context type (about 33 ms, imported for type checking only) and "
            "requests (about 27 ms, imported by the first HTTP call)",
        ],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
