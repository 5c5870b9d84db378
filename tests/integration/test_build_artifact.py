"""`sam build` output is what the tests ran: the lock's versions, no runtime SDK, bytecode valid in the zip.

The build is local/artifact.py's (the host's architecture; the layer's Makefile takes LAMBDA_ARCH).
Each handler imports with only its built code, the built layer and the runtime's boto3 on the path,
after every file has been dated 1980 as SAM's zip dates them, and no layer module is compiled from
source there: the layer's .pyc files carry unchecked-hash headers, which no file date invalidates.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local.artifact import RUNTIME_PACKAGES, SAM, layer_site, runtime_dir, sam_build, zip_dates
from local.template import ROOT, functions, placeholder_environment

pytestmark = pytest.mark.integration

UNCHECKED_HASH = 0b01  # the .pyc flags field (PEP 552): hash-based, source not checked


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            found[normalized(name.split("[", 1)[0])] = version.strip()
    return found


def installed(site: Path) -> dict[str, str]:
    """name -> version of every distribution in `site`, from its dist-info METADATA."""
    found = {}
    for metadata in site.glob("*.dist-info/METADATA"):
        fields = dict(line.split(": ", 1) for line in metadata.read_text().splitlines()[:10] if ": " in line)
        found[normalized(fields["Name"])] = fields["Version"]
    return found


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAM.exists():
        pytest.skip("SAM CLI not installed: run through `make test`, which installs it in .venv-tools")
    work = tmp_path_factory.mktemp("sam")
    build = sam_build(work)
    runtime_dir(work)
    zip_dates(build)  # as Lambda unpacks SAM's zip
    return build


def test_layer_holds_the_library_once_under_python(build_dir: Path) -> None:
    layer = layer_site(build_dir)
    assert (layer / "clay_pipeline" / "__init__.py").is_file()
    assert not (layer / "python").exists()
    assert list(build_dir.rglob("clay_pipeline/__init__.py")) == [layer / "clay_pipeline" / "__init__.py"]
    for dependency in ("aws_lambda_powertools", "pydantic", "jwt", "requests"):
        assert (layer / dependency).is_dir(), dependency


def test_layer_versions_are_the_locks(build_dir: Path) -> None:
    # GIVEN the lock the tests install from, WHEN the layer is built, THEN it holds exactly those versions
    lock = pins(ROOT / "requirements.lock")
    layer = installed(layer_site(build_dir))
    assert layer, "no dist-info in the layer"
    assert {name: version for name, version in layer.items() if lock.get(name) != version} == {}
    top_level = pins(ROOT / "layers" / "common" / "requirements.txt")
    assert set(top_level) <= set(layer)


def test_the_runtime_sdk_is_not_shipped(build_dir: Path) -> None:
    # boto3 and botocore come from Lambda's runtime; a copy in the layer would shadow it (/opt/python is first)
    importable = [layer_site(build_dir), *(build_dir / logical_id for logical_id in functions())]
    shipped = {path.name.split("-", 1)[0] for directory in importable for path in directory.iterdir()}
    assert not shipped & set(RUNTIME_PACKAGES)
    assert not set(installed(layer_site(build_dir))) & set(RUNTIME_PACKAGES)


def test_layer_bytecode_is_unchecked_hash_for_this_python(build_dir: Path) -> None:
    layer = layer_site(build_dir)
    sources = [path for path in layer.rglob("*.py") if "-stubs" not in path.parts[-2]]
    assert len(sources) > 500
    missing, wrong = [], []
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.is_file():
            missing.append(source)
            continue
        header = cached.read_bytes()[:8]
        if header[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
            wrong.append(source)
    assert missing == [] and wrong == []


@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_built_handler_imports_with_only_the_layer(build_dir: Path, logical_id: str) -> None:
    code = build_dir / logical_id
    layer = layer_site(build_dir)
    assert (code / "app.py").is_file()
    env = placeholder_environment(logical_id)
    env.update(
        {
            "PATH": os.environ["PATH"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PYTHONPATH": f"{code}:{layer}:{build_dir.parent / 'runtime'}",
            "PYTHONDONTWRITEBYTECODE": "1",  # Lambda's /var/task and /opt are read-only
        }
    )
    # -S: no site-packages, so every import must come from the function, the built layer or the runtime;
    # -v: the import system says where each module's code object came from.
    probe = "import app; assert callable(app.lambda_handler); print('ok', app.__file__)"
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-S", "-v", "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok") and str(code) in result.stdout
    from_layer = re.findall(rf"# code object from '?({re.escape(str(layer))}/[^' ]+)", result.stderr)
    compiled_at_start = [path for path in from_layer if path.endswith(".py")]
    assert len(from_layer) > 100  # the library and its dependencies were imported from the layer...
    assert compiled_at_start == []  # ... every one from its shipped bytecode, despite the 1980 dates
