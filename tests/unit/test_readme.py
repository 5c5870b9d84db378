"""The README as a newcomer uses it, and docs/OPERATIONS.md (the operator's reference it links): the make
targets exist, the commands match what the tools print (the try-it block, `dlq show`), the HMAC recipe signs
as the callback verifies, and they link nowhere outside the repository."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from clay_pipeline.adapters.dead_letter_queues import QUEUES, DeadLetterMessage
from clay_pipeline.config import CLAY_MAX_PAYLOAD_BYTES, CallbackSettings, SenderSettings
from clay_pipeline.core import auth
from clay_pipeline.core.outcomes import DeadLetter
from clay_pipeline.services.intake import clay_payload, payload_problem
from clay_pipeline.services.sender import parse_lead
from cli.commands import dlq
from cli.commands.run import try_commands

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "OPERATIONS.md").read_text()


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


# The bodies the `dlq show` samples of docs/OPERATIONS.md were made with: put straight on LeadQueue by a producer that
# skips the intake (which refuses an oversize lead itself), and a message cut off mid-string.
DEAD_LETTER_BODIES = [
    json.dumps(
        {
            "email": "big.notes@initech.example",
            "first_name": "Peter",
            **{f"notes_{number}": "x" * 9_500 for number in range(12)},
        }
    ),
    '{"email": "cut-off@',
]


def sender_dead_letter(body: str) -> DeadLetter:
    """Why the sender dead-letters this body (its own checks, in its order)."""
    try:
        problem = payload_problem(clay_payload(parse_lead(body)), CLAY_MAX_PAYLOAD_BYTES)
    except DeadLetter as refused:
        return refused
    assert problem, "the sender would send this body"
    return DeadLetter("oversize", problem)


def readme_dlq_shows() -> list[tuple[str, list[str]]]:
    """Each `$ clay-pipeline dlq show ID` in docs/OPERATIONS.md: the id, and the lines printed after it."""
    found = re.findall(r"^\$ clay-pipeline dlq show (\S+)\n(.*?)(?=\n\n|\n```)", OPERATIONS, re.DOTALL | re.MULTILINE)
    assert len(found) == 2, "docs/OPERATIONS.md shows an oversize lead and a replayed malformed one"
    return [(message_id, printed.splitlines()) for message_id, printed in found]


AGE = re.compile(r" \(\d+[smhd](?: \d+[smhd])? ago\)$")  # "(10s ago)", "(7m 48s ago)", as common.age prints


@pytest.mark.parametrize(("message_id", "printed"), readme_dlq_shows())
def test_dlq_show_samples_are_what_the_command_prints(
    message_id: str, printed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the dead letter the sender writes for the sample's body (reason and detail from its own checks;
    # the message ids and the time are a run's, taken from the sample)
    facts = {line[2:16].strip(): line[17:] for line in printed[1:] if re.match(r"  [a-z]", line)}  # label, value
    [body] = [body for body in DEAD_LETTER_BODIES if sender_dead_letter(body).reason == facts["reason"]]
    ending = sender_dead_letter(body)
    dead_lettered = datetime.fromisoformat(AGE.sub("", facts["dead-lettered"]))
    attributes = {
        "reason": ending.reason,
        "detail": ending.detail,
        "source_message_id": facts["original id"],  # adapters.queues.origin_attributes
        "delivery_attempts": "1",
    }
    message = DeadLetterMessage(QUEUES["lead"], message_id, "receipt", body, attributes, dead_lettered.timestamp())
    # WHEN `dlq show` prints it
    dlq._print_message(message, as_json=False)
    # THEN docs/OPERATIONS.md shows exactly that (the age aside, which depends on when it ran)
    shown = capsys.readouterr().out.splitlines()
    assert [AGE.sub("", line) for line in shown] == [AGE.sub("", line) for line in printed]
