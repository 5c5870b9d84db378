"""Cold start: whole-process wall time and peak RSS of importing each handler, against plain boto3.

Each sample is a fresh child process run the way Lambda runs a function: `python -S` (no
site-packages) with only the function's code, a lean copy of the layer (pip-installed from
layers/common/requirements.txt with requirements.lock's pins, host architecture) plus the
library, and a runtime directory holding boto3 as Lambda's runtime does. Dev-only packages
(moto, cryptography, ...) cannot leak in. The environment is the template's (parameter
defaults, placeholder resource names) with fake credentials.

Two figures per function: `import` (the module, as Lambda's init phase runs it) and
`+ clients` (also the boto3 clients its first event builds: the services in its template
policy, and the secrets provider). The baseline child imports boto3 and builds one client.
Variants are interleaved run by run so machine noise hits them alike; medians are reported.
Bytecode is cached (a discarded warm-up run writes it), as the layer's pip install would.

    python bench/cold_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import CACHE, ROOT, Section, Target, median

from local.aws import FAKE_CREDENTIALS
from local.template import Resolver, functions, parameter_defaults, placeholder_environment

LAYER = CACHE / "layer"
RUNTIME = CACHE / "runtime"
PYCACHE = CACHE / "pycache"
REQUIREMENTS = (ROOT / "requirements.lock", ROOT / "layers" / "common" / "requirements.txt")
RATIO_TARGET = 1.6  # every function, import + clients, against the boto3 baseline (issue 14)
PEAK_MB_TARGET = 100

BASELINE = 'import boto3\nboto3.session.Session().client("dynamodb")\n'
IMPORT_HANDLER = "import app\n"
# What the first event adds: the clients of the services in the policy (cached by clay_pipeline.aws),
# and the secrets provider (config reads the JSON secret through it when no env var overrides).
FIRST_EVENT = """import app
from clay_pipeline.aws import client
from clay_pipeline import config
for service in {services!r}:
    client(service)
if "secretsmanager" in {services!r}:
    config._secrets_provider()
"""


@dataclass(frozen=True)
class Variant:
    name: str
    code: str
    cwd: Path
    pythonpath: list[Path]
    env: dict[str, str]


@dataclass(frozen=True)
class Sample:
    ready: float  # spawn to the handler being ready (what a cold start costs)
    exited: float  # spawn to process exit (adds interpreter teardown, which Lambda never waits for)
    peak_mb: float


# Appended to every child: report readiness and the process's own peak RSS. VmHWM belongs to the
# process image after exec; os.wait4's ru_maxrss would include the (large) parent it was forked from.
READY = """
import sys
with open("/proc/self/status") as status:
    peak_kib = next((line.split()[1] for line in status if line.startswith("VmHWM")), "0")
sys.stdout.write("ready " + peak_kib + "\\n")
sys.stdout.flush()
"""


def ensure_layer() -> None:
    """pip install the layer's requirements once per lock content (bench/.cache/layer)."""
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in REQUIREMENTS)).hexdigest()[:16]
    stamp = LAYER / f".built-{digest}"
    if not stamp.exists():
        print("building the lean layer in bench/.cache/layer (once per lock file) ...", flush=True)
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade"),
                *("--target", str(LAYER), "-c", str(REQUIREMENTS[0]), "-r", str(REQUIREMENTS[1])),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pip install of the layer failed:\n{result.stderr[-3000:]}")
        stamp.touch()
    RUNTIME.mkdir(parents=True, exist_ok=True)
    import boto3
    import s3transfer

    for package in (boto3, s3transfer):  # Lambda's python runtime ships these
        link = RUNTIME / package.__name__
        if not link.exists():
            link.symlink_to(Path(package.__file__).parent)


def policy_services(logical_id: str) -> list[str]:
    services: set[str] = set()
    for policy in Resolver(refs=parameter_defaults()).resolve(functions()[logical_id].policies):  # as deployed
        statements = policy.get("Statement", []) if isinstance(policy, dict) else []
        for statement in statements:
            actions = statement.get("Action", [])
            for action in [actions] if isinstance(actions, str) else actions:
                services.add(action.split(":", 1)[0])
    return sorted(services)


def base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        **FAKE_CREDENTIALS,
    }


def variants() -> list[Variant]:
    layer_path = [LAYER, ROOT / "layers" / "common", RUNTIME]
    found = [
        Variant("baseline: boto3 + 1 client", BASELINE, CACHE, [RUNTIME, LAYER], base_env()),
        Variant("interpreter only (python -S)", "pass\n", CACHE, [], base_env()),
    ]
    for logical_id, spec in sorted(functions().items()):
        env = {
            **base_env(),
            **placeholder_environment(logical_id),
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        }
        path = [spec.code_dir, *layer_path]
        services = policy_services(logical_id)
        found.append(Variant(f"{logical_id} import", IMPORT_HANDLER, spec.code_dir, path, env))
        found.append(
            Variant(f"{logical_id} + clients", FIRST_EVENT.format(services=services), spec.code_dir, path, env)
        )
    return found


def measure(variant: Variant) -> Sample:
    env = {**variant.env, "PYTHONPATH": os.pathsep.join(str(p) for p in variant.pythonpath)}
    started = time.perf_counter()
    child = subprocess.Popen(  # noqa: S603 - fixed arguments
        [sys.executable, "-S", "-c", variant.code + READY],
        cwd=variant.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline().decode()
    ready = time.perf_counter() - started
    _, status, _ = os.wait4(child.pid, 0)
    exited = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    errors = child.stderr.read().decode()
    child.stdout.close()
    child.stderr.close()
    if child.returncode != 0 or not line.startswith("ready "):
        raise RuntimeError(f"{variant.name} failed:\n{errors[-2000:]}")
    return Sample(ready, exited, int(line.split()[1]) / 1024)


def run(runs: int = 10) -> Section:
    ensure_layer()
    chosen = variants()
    for variant in chosen:  # warm-up: writes bytecode, fills the page cache
        measure(variant)
    samples: dict[str, list[Sample]] = {variant.name: [] for variant in chosen}
    for _ in range(runs):
        order = random.sample(chosen, len(chosen))  # interleaved, in a fresh order each round
        for variant in order:
            samples[variant.name].append(measure(variant))
    baseline = median([s.ready for s in samples[chosen[0].name]])
    baseline_exit = median([s.exited for s in samples[chosen[0].name]])
    rows: list[list[Any]] = []
    for variant in chosen:
        ready = median([s.ready for s in samples[variant.name]])
        exited = median([s.exited for s in samples[variant.name]])
        peak = f"{median([s.peak_mb for s in samples[variant.name]]):.1f}"
        rows.append([variant.name, ready, f"{ready / baseline:.2f}", exited, f"{exited / baseline_exit:.2f}", peak])
    with_clients = [row for row in rows if row[0].endswith("+ clients")]
    slowest = max(with_clients, key=lambda row: float(row[2]))
    heaviest = max(rows, key=lambda row: float(row[-1]))
    return Section(
        title=f"Cold start (median of {runs} interleaved runs, whole process)",
        headers=["process", "ready s", "x baseline", "exit s", "x baseline", "peak RSS MB"],
        rows=rows,
        targets=[
            Target(
                f"every function (import + clients) at most {RATIO_TARGET}x the baseline",
                float(slowest[2]) <= RATIO_TARGET,
                f"(slowest: {slowest[0]}, {slowest[2]}x to ready, {slowest[4]}x to exit)",
            ),
            Target(
                f"every function under {PEAK_MB_TARGET} MB peak",
                float(heaviest[-1]) < PEAK_MB_TARGET,
                f"(largest: {heaviest[0]}, {heaviest[-1]} MB)",
            ),
        ],
        notes=[
            "children run `python -S` with PYTHONPATH = function code, bench/.cache/layer (pip install of "
            "layers/common/requirements.txt pinned by requirements.lock), the library, and boto3 as the runtime",
            "`+ clients` adds the boto3 clients of the services in the function's policy and the secrets provider",
            "not counted: requests, imported by the queue consumers' first HTTP call, and the X-Ray SDK, loaded "
            "only with the DetailedTracing parameter on (their import times are in the next table)",
            "ready: spawn until the child has imported and built its clients (it then reports on stdout); "
            "exit: spawn until the process has exited (adds teardown, which Lambda does not wait for)",
            "peak RSS: the child's VmHWM (os.wait4's ru_maxrss would count the benchmark process it was forked from)",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    run(parser.parse_args().runs).show()


if __name__ == "__main__":
    main()
