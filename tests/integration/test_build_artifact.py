"""`sam build` output works on its own: each handler imports with only the built layer on the path.

The template builds for arm64 (Lambda's Graviton). pydantic-core is compiled, so on another
host architecture the test builds a copy of the template for the host's architecture: the
layout, requirements and import paths under test are the same, only the wheels differ.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local.template import ROOT, functions, placeholder_environment

pytestmark = pytest.mark.integration

SAM = ROOT / ".venv-tools" / "sam" / "bin" / "sam"
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAM.exists():
        pytest.skip("SAM CLI not installed: run through `make test`, which installs it in .venv-tools")
    work = tmp_path_factory.mktemp("sam")
    template = (ROOT / "template.yaml").read_text().replace("arm64", HOST_ARCH)
    (work / "template.yaml").write_text(template)
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("AWS_ENDPOINT_URL", None)
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [
            str(SAM),
            "build",
            "--template-file",
            str(work / "template.yaml"),
            "--build-dir",
            str(work / "build"),
            "--base-dir",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Lambda's python3.13 runtime provides boto3 (after /var/task and /opt/python on the path).
    runtime = work / "runtime"
    runtime.mkdir()
    import boto3
    import s3transfer

    for package in (boto3, s3transfer):
        (runtime / package.__name__).symlink_to(Path(package.__file__).parent)
    return work / "build"


def test_layer_holds_the_library_once_under_python(build_dir: Path) -> None:
    layer = build_dir / "CommonLayer" / "python"
    assert (layer / "clay_pipeline" / "__init__.py").is_file()
    assert not (layer / "python").exists()
    assert list(build_dir.rglob("clay_pipeline/__init__.py")) == [layer / "clay_pipeline" / "__init__.py"]
    for dependency in ("aws_lambda_powertools", "pydantic", "jwt", "requests"):
        assert (layer / dependency).is_dir(), dependency


@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_built_handler_imports_with_only_the_layer(build_dir: Path, logical_id: str) -> None:
    code = build_dir / logical_id
    assert (code / "app.py").is_file()
    env = placeholder_environment(logical_id)
    env.update(
        {
            "PATH": os.environ["PATH"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PYTHONPATH": f"{code}:{build_dir / 'CommonLayer' / 'python'}:{build_dir.parent / 'runtime'}",
        }
    )
    # -S: no site-packages, so every import must come from the function or the built layer.
    probe = "import app; assert callable(app.lambda_handler); print('ok', app.__file__)"
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok") and str(code) in result.stdout
    shutil.rmtree(code / "__pycache__", ignore_errors=True)
