"""The README as a newcomer uses it: its make targets exist, its commands match what the tools print,
its HMAC recipe signs as the callback verifies, and it (and docs/OPERATIONS.md, the operator's reference
it links) links nowhere outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clay_pipeline.config import CallbackSettings, SenderSettings
from clay_pipeline.core import auth
from cli.commands.run import try_commands

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> str:
    """The fenced code block that follows the line holding `marker`."""
    found = re.search(re.escape(marker) + r".*?\n```[a-z]*\n(.*?)\n```", README, re.DOTALL)
    assert found, f"no code block after {marker!r}"
    return found.group(1)


def test_every_make_target_the_readme_names_exists_and_is_in_make_help() -> None:
    named = set(re.findall(r"(?:`|^)make ([a-z][a-z-]+)", README, re.MULTILINE))  # in code, not prose
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    help_text = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout  # noqa: S607
    assert named, "the README names no make target"
    assert named <= targets, named - targets
    assert {name for name in named if f"make {name}" not in help_text} == set(), help_text


def test_try_it_block_is_what_run_serve_prints() -> None:
    block = block_after("tests/e2e/test_serve.py runs this block")
    assert block.splitlines() == [line for command in try_commands() for line in command.splitlines()]


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, as GitHub makes them."""
    titles = re.findall(r"^#+ (.*)$", path.read_text(), re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-") for title in titles}


@pytest.mark.parametrize("document", ["README.md", "docs/OPERATIONS.md"])
def test_readme_links_only_inside_the_repository(document: str) -> None:
    # The operator's reference moved out of the README into docs/OPERATIONS.md: both link only inside the
    # repository, and a link to a section names one that exists.
    path = ROOT / document
    for target in re.findall(r"\]\(([^)]+)\)", path.read_text()):
        assert not re.match(r"[a-z]+:", target), target
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), target
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), target


@pytest.mark.parametrize(
    ("name", "settings_default"),
    [
        ("CALLBACK_MAX_BODY_BYTES", CallbackSettings.model_fields["callback_max_body_bytes"].default),
        ("CLAY_UNKNOWN_HOLD_SECONDS", SenderSettings.model_fields["clay_unknown_hold_seconds"].default),
        ("CLAY_DEDUPE_DAYS", SenderSettings.model_fields["clay_dedupe_days"].default),
    ],
)
def test_documented_defaults_are_the_real_ones(name: str, settings_default: int) -> None:
    row = re.search(rf"^\| `{name}` \|.*\| (\d+) \|$", README, re.MULTILINE)
    assert row, name
    assert int(row.group(1)) == settings_default


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the recipe uses openssl")
def test_hmac_recipe_signs_as_the_callback_verifies() -> None:
    # GIVEN the README's recipe up to the curl line, with a callback secret
    secret = "readme-recipe-secret-0123456789abcdef"
    recipe = block_after("tests/unit/test_readme.py signs with this block").split("\ncurl")[0]
    printed = subprocess.run(  # noqa: S603
        ["bash", "-c", recipe + '\nprintf "%s\\n%s\\n%s" "$TS" "$SIG" "$BODY"'],  # noqa: S607
        env={"CALLBACK_SECRET": secret, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stamp, signature, body = printed.split("\n", 2)
    # THEN the headers it sends pass the callback's HMAC verifier
    verifier = auth.HmacVerifier("X-Clay-Signature", [secret], tolerance_seconds=300)
    headers = {"x-clay-signature": f"sha256={signature}", "x-clay-timestamp": stamp}
    assert verifier.verify(headers, body.encode())
