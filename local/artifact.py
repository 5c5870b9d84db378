"""The deployable artifact: `sam build` of template.yaml, laid out as Lambda runs it.

Used by the build-artifact tests and the cold-start benchmark, so both look at what `sam deploy`
uploads. The template builds for arm64 (Lambda's Graviton); pydantic-core is compiled, so on another
host architecture the build is of a copy of the template for the host's architecture (the layer's
Makefile takes LAMBDA_ARCH): the layout, pins and bytecode are the same, only the wheels differ.

Lambda unpacks the layer's zip under /opt (so /opt/python is on sys.path, after the function's
/var/task and before the runtime's boto3), from a zip whose entries SAM dates 1980-01-01, on a
read-only file system: `zip_dates` gives a built tree those dates, and children run with
PYTHONDONTWRITEBYTECODE, so whatever bytecode the build did not ship is compiled at every start.
"""

from __future__ import annotations

import os
import platform
import subprocess  # nosec B404 - runs the SAM CLI with fixed arguments
import sys
from pathlib import Path

from local.template import ROOT

SAM = ROOT / ".venv-tools" / "sam" / "bin" / "sam"
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
# What Lambda's python3.13 runtime provides, and the layer leaves out.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")
ZIP_EPOCH = 315532800  # 1980-01-01 00:00 UTC: the date SAM's zip gives every entry


def sam_build(work: Path) -> Path:
    """`sam build` of the template for the host's architecture into work/build; returns that directory."""
    if not SAM.exists():
        raise FileNotFoundError(f"{SAM} is missing: `make build` installs the SAM CLI into .venv-tools")
    work.mkdir(parents=True, exist_ok=True)
    template = (ROOT / "template.yaml").read_text().replace("arm64", HOST_ARCH)
    (work / "template.yaml").write_text(template)
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "LAMBDA_ARCH": HOST_ARCH,
        # the layer's Makefile runs python3.13: this interpreter's
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    build = work / "build"
    result = subprocess.run(  # noqa: S603  # nosec B603 - fixed arguments: the SAM CLI, paths we chose
        [
            str(SAM),
            "build",
            "--template-file",
            str(work / "template.yaml"),
            "--build-dir",
            str(build),
            "--base-dir",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError("sam build failed:\n" + result.stdout[-3000:] + result.stderr[-3000:])
    return build


def layer_site(build: Path) -> Path:
    """The layer's directory Lambda puts on sys.path (/opt/python)."""
    return build / "CommonLayer" / "python"


def runtime_dir(work: Path) -> Path:
    """A directory holding what Lambda's python runtime provides: boto3, botocore, s3transfer and their dependencies.

    The layer (earlier on the path) has its own jmespath, dateutil, six and urllib3; a function without
    it (the cold-start baseline) gets these, as on Lambda.
    """
    import importlib

    runtime = work / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    for name in (*RUNTIME_PACKAGES, "jmespath", "dateutil", "six", "urllib3"):
        module = importlib.import_module(name)
        source = Path(str(module.__file__))
        target = source.parent if source.name == "__init__.py" else source
        link = runtime / target.name
        if not link.exists():
            link.symlink_to(target)
    return runtime


def zip_dates(tree: Path) -> None:
    """Date every file and directory under `tree` 1980-01-01, as Lambda finds them after unpacking SAM's zip."""
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (ZIP_EPOCH, ZIP_EPOCH), follow_symlinks=False)
