"""Cold start: instructions, CPU time, wall time and peak RSS of importing each handler, against plain boto3.

Each sample is a fresh child process run the way Lambda runs a function: `python -S` (no
site-packages) with only the function's code, the layer and a runtime directory holding what
Lambda's python runtime provides (boto3, botocore). Dev-only packages (moto, cryptography, ...)
cannot leak in. The environment is the template's (parameter defaults, placeholder resource
names) with fake credentials. Two layouts:

- built artifact (the figure the target is on): `sam build` of the template (local/artifact.py,
  the host's architecture), each function's built code and the built layer as Lambda lays them
  out (/var/task, then /opt/python, then the runtime), every file dated 1980 as SAM's zip dates
  it, and no bytecode written (Lambda's file system is read-only): what the build did not compile
  validly is compiled at every start, as on Lambda.
- source tree (the method before issue 23): the function's source, a pip install of the layer's
  requirements with the lock's pins (bench/.cache/layer, botocore included, as the X-Ray SDK
  pulls it) plus the library, bytecode cached by a warm-up run.

Two figures per function: `import` (the module, as Lambda's init phase runs it) and
`+ clients` (also the boto3 clients its first event builds: the services in its template
policy, and the secrets provider). The baseline child imports boto3 and builds one client.
CPU is the child's own process time when it is ready (user + system, interpreter start
included): on a busy machine it grows far less than wall time, which counts waiting for a core.
Every variant of both layouts is interleaved run by run, in a fresh order each round, so
machine noise hits them alike; ratios are against the same layout's baseline.

Instructions: each built-artifact child is also run once under valgrind (cachegrind, no cache
simulation), when it is installed, counting the instructions it executes to ready. The count is the
same on a quiet or a busy machine (within 0.2 % over runs here, the ratios within 0.004x, where
the CPU ratio of a function moved by up to 0.13x between two consecutive runs of 15, 0.06x for most):
the target is on it, and on CPU without valgrind. CPU stays the figure Lambda bills; the two ratios
agree within about 0.1x, the CPU figures' own noise included.

The CPU figure of a variant is the mean of its faster half of runs. A busy machine only ever adds
CPU time to a child (caches and the core's other thread shared with other processes), in bursts
that hit some runs and not others: the slower runs measure the neighbours more than the child.
Over 40 interleaved runs on this shared 2-core machine, the ratio from two disjoint sets of 10 runs
differed by up to 0.13x (90th percentile) with medians, 0.06x with the faster half's mean (0.04x
with 15 runs); both estimators agree on the level (within about 0.01x over all 40 runs).

    python bench/cold_start.py [--runs 15] [--only RouterFunction,SenderFunction]

`--only` keeps the baselines and the named functions (logical ids, comma-separated): one function's
instruction count against the baseline needs one run (`--runs 1`), as the count does not vary.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import CACHE, ROOT, Section, Target, command_line, median

from local.artifact import layer_site, runtime_dir, sam_build, zip_dates
from local.aws import FAKE_CREDENTIALS
from local.template import Resolver, functions, parameter_defaults, placeholder_environment

LAYER = CACHE / "layer"
RUNTIME = CACHE / "runtime"
PYCACHE = CACHE / "pycache"
REQUIREMENTS = (ROOT / "requirements.lock", ROOT / "layers" / "common" / "requirements.txt")
ARTIFACT = CACHE / "sam"
RATIO_TARGET = 1.5  # every function, import + clients, CPU against the boto3 baseline, built artifact (issue 23)
PEAK_MB_TARGET = 100

BASELINE = 'import boto3\nboto3.session.Session().client("dynamodb")\n'
# For reference only: the baseline with the garbage collector off during its init, as the handlers run theirs in
# Lambda (clay_pipeline/__init__.py), to tell that saving from the library's own import trims.
BASELINE_WITHOUT_COLLECTIONS = "import gc\ngc.disable()\n" + BASELINE + "gc.freeze()\ngc.enable()\n"
IMPORT_HANDLER = "import app\n"
# What the first event adds: the clients of the services in the policy (cached by clay_pipeline.adapters.aws),
# and the secrets provider (config reads the JSON secret through it when no env var overrides).
FIRST_EVENT = """import app
from clay_pipeline.adapters.aws import client
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
    cpu: float  # the child's own CPU (user + system) when ready


@dataclass(frozen=True)
class Layout:
    """Where a function's code, the layer and the runtime's packages are, and the environment on top."""

    name: str
    code: dict[str, Path]  # logical id -> the function's code directory
    layer: list[Path]
    runtime: Path
    env: dict[str, str]
    baseline_path: list[Path]


# Appended to every child: report readiness, the process's own peak RSS and CPU. VmHWM belongs to the
# process image after exec; os.wait4's ru_maxrss would include the (large) parent it was forked from.
READY = """
import sys, time
cpu = time.process_time()
with open("/proc/self/status") as status:
    peak_kib = next((line.split()[1] for line in status if line.startswith("VmHWM")), "0")
sys.stdout.write("ready " + peak_kib + " " + repr(cpu) + "\\n")
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
        **FAKE_CREDENTIALS,
    }


def source_layout() -> Layout:
    """The method before issue 23: sources, a pip-installed layer, bytecode cached by the warm-up."""
    ensure_layer()
    return Layout(
        name="source tree",
        code={logical_id: spec.code_dir for logical_id, spec in functions().items()},
        layer=[LAYER, ROOT / "layers" / "common"],
        runtime=RUNTIME,
        env={"PYTHONPYCACHEPREFIX": str(PYCACHE)},
        baseline_path=[RUNTIME, LAYER],  # botocore came from the layer
    )


def built_layout() -> Layout:
    """`sam build` output as Lambda lays it out: dated 1980 like the zip's entries, read-only (no bytecode written)."""
    print("sam build into bench/.cache/sam ...", flush=True)
    build = sam_build(ARTIFACT)
    zip_dates(build)
    runtime = runtime_dir(ARTIFACT)
    return Layout(
        name="built artifact",
        code={logical_id: build / logical_id for logical_id in functions()},
        layer=[layer_site(build)],
        runtime=runtime,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        baseline_path=[runtime],
    )


def variants(layout: Layout, only: str = "") -> list[Variant]:
    """The baselines, then each function's two variants (only those named in `only`, when given)."""
    env = {**base_env(), **layout.env}
    chosen = {name.strip() for name in only.split(",") if name.strip()}
    unknown = chosen - set(functions())
    if unknown:
        raise ValueError(f"no such function in template.yaml: {', '.join(sorted(unknown))}")
    found = [
        Variant("baseline: boto3 + 1 client", BASELINE, CACHE, layout.baseline_path, env),
        Variant("baseline, collector off in init", BASELINE_WITHOUT_COLLECTIONS, CACHE, layout.baseline_path, env),
        Variant("interpreter only (python -S)", "pass\n", CACHE, [], env),
    ]
    for logical_id, spec in sorted(functions().items()):
        if chosen and logical_id not in chosen:
            continue
        function_env = {
            **env,
            **placeholder_environment(logical_id),
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",  # as in every Lambda environment: init without collections
        }
        code = layout.code[logical_id]
        path = [code, *layout.layer, layout.runtime]
        services = policy_services(logical_id)
        found.append(Variant(f"{logical_id} import", IMPORT_HANDLER, code, path, function_env))
        found.append(
            Variant(f"{logical_id} + clients", FIRST_EVENT.format(services=services), code, path, function_env)
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
    _, peak_kib, cpu = line.split()
    return Sample(ready, exited, int(peak_kib) / 1024, float(cpu))


VALGRIND = shutil.which("valgrind")
TO_READY = "\nimport os\nos._exit(0)\n"  # the count stops at ready: Lambda never waits for the interpreter's teardown


def instructions(variant: Variant) -> int:
    """Instructions the child executes to ready, under valgrind's cachegrind (no cache simulation)."""
    assert VALGRIND is not None
    env = {**variant.env, "PYTHONPATH": os.pathsep.join(str(p) for p in variant.pythonpath)}
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [
            *(VALGRIND, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"),
            *(sys.executable, "-S", "-c", variant.code + TO_READY),
        ],
        cwd=variant.cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{variant.name} failed under valgrind:\n{result.stderr[-2000:]}")
    return int(found[1].replace(",", ""))


def count_all(layout: Layout, only: str = "") -> dict[str, int]:
    """variant -> instructions to ready, two children at a time (the count does not depend on the machine's load)."""
    if VALGRIND is None:
        return {}
    chosen = variants(layout, only)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([variant.name for variant in chosen], pool.map(instructions, chosen), strict=True))


def sample_all(layouts: list[Layout], runs: int, only: str = "") -> dict[tuple[str, str], list[Sample]]:
    """(layout, variant) -> samples: every variant of every layout once per round, in a fresh random order."""
    chosen = [(layout.name, variant) for layout in layouts for variant in variants(layout, only)]
    for _, variant in chosen:  # warm-up: the page cache (and the source tree's bytecode cache)
        measure(variant)
    samples: dict[tuple[str, str], list[Sample]] = {(name, variant.name): [] for name, variant in chosen}
    for _ in range(runs):
        for name, variant in random.sample(chosen, len(chosen)):
            samples[(name, variant.name)].append(measure(variant))
    return samples


def faster_half_mean(values: list[float]) -> float:
    """The mean of the faster half of the runs (all of one): what the child costs without its neighbours' bursts."""
    faster = sorted(values)[: max(1, len(values) // 2)]
    return sum(faster) / len(faster)


def run(runs: int = 15, only: str = "") -> Section:
    layouts = [built_layout(), source_layout()]
    samples = sample_all(layouts, runs, only)
    counted = count_all(layouts[0], only)
    built, source = (layout.name for layout in layouts)
    names = [variant.name for variant in variants(layouts[0], only)]

    def typical(layout: str, name: str, figure: str) -> float:
        values = [getattr(sample, figure) for sample in samples[(layout, name)]]
        return faster_half_mean(values) if figure == "cpu" else median(values)

    base = names[0]
    rows: list[list[Any]] = []
    for name in names:
        cpu = typical(built, name, "cpu")
        ready = typical(built, name, "ready")
        rows.append(
            [
                name,
                f"{counted[name] / counted[base]:.3f}" if counted else "-",
                f"{cpu:.3f}",
                f"{cpu / typical(built, base, 'cpu'):.2f}",
                f"{ready:.3f}",
                f"{ready / typical(built, base, 'ready'):.2f}",
                f"{typical(built, name, 'peak_mb'):.1f}",
                f"{typical(source, name, 'cpu') / typical(source, base, 'cpu'):.2f}",
                f"{typical(source, name, 'ready') / typical(source, base, 'ready'):.2f}",
            ]
        )
    with_clients = [row for row in rows if row[0].endswith("+ clients")]
    on = 1 if counted else 3  # the column the target is on: instructions when counted, else CPU
    slowest = max(with_clients, key=lambda row: float(row[on]))
    heaviest = max(rows, key=lambda row: float(row[6]))
    figure = "instructions" if counted else "CPU (valgrind not installed: no instruction counts)"
    scope = f"only {only}" if only else "every function"
    return Section(
        title=f"Cold start of the built artifact ({runs} interleaved runs: CPU the faster half's mean, else medians)",
        headers=[
            "process",
            "instructions x baseline",
            "CPU s",
            "x baseline",
            "ready s",
            "x baseline",
            "peak RSS MB",
            "source tree: CPU x",
            "source tree: ready x",
        ],
        rows=rows,
        targets=[
            Target(
                f"{scope} (import + clients), built artifact, at most {RATIO_TARGET}x the baseline's {figure}",
                float(slowest[on]) <= RATIO_TARGET,
                f"(slowest: {slowest[0]}, {slowest[1]}x instructions, {slowest[3]}x CPU, {slowest[5]}x to ready)",
            ),
            Target(
                f"{scope} under {PEAK_MB_TARGET} MB peak",
                float(heaviest[6]) < PEAK_MB_TARGET,
                f"(largest: {heaviest[0]}, {heaviest[6]} MB)",
            ),
        ],
        notes=[
            "instructions: executed by the child to ready, one run under valgrind's cachegrind (`--cache-sim=no`), "
            "the same within 0.2 % on a quiet or busy machine: the figure the target is on when valgrind is installed",
            "built artifact: `sam build` (local/artifact.py, host architecture); PYTHONPATH = the function's built "
            "code, the built layer's python/ (as /opt/python), then boto3 and botocore as the runtime provides them; "
            "every file dated 1980-01-01 as in SAM's zip, PYTHONDONTWRITEBYTECODE as on Lambda's read-only disk",
            "CPU: the child's user + system time when ready (interpreter start, imports, clients), the mean of the "
            "faster half of the runs (a busy machine only adds to it: see the docstring); ready: wall time from spawn "
            "to that point, median; CPU is what Lambda bills, and a busy machine inflates it far less than wall time",
            "source tree: the method before issue 23 (sources, bench/.cache/layer pip-installed with the lock's "
            "pins and botocore in it, bytecode cached by a warm-up run), ratios against its own baseline",
            "`+ clients` adds the boto3 clients of the services in the function's policy and the secrets provider",
            "not counted: requests, imported by the queue consumers' first HTTP call, and the X-Ray SDK, loaded "
            "only with the DetailedTracing parameter on (their import times are in the next table)",
            "peak RSS: the child's VmHWM (os.wait4's ru_maxrss would count the benchmark process it was forked from)",
            "the function children have AWS_LAMBDA_RUNTIME_API set, as every Lambda environment does: their init "
            "runs with the garbage collector off (clay_pipeline/__init__.py); `baseline, collector off in init` is "
            "the baseline given the same, for reference (the target is on the plain baseline)",
        ],
    )


if __name__ == "__main__":
    command_line(run, __doc__)
