"""Every key of the state table (STATE_TABLE, one string key `pk`), built here and nowhere else.

One function per prefix, so a newcomer finds what lives in the table in one file and no two modules can
spell a key differently. The keys are a contract (a deployed table holds them): never change one.
"""

from __future__ import annotations

SENT_PREFIX = "sent#"


def dedupe(lead_id: str) -> str:
    """A lead's dedupe mark (services/dedupe.py): 'sending', 'sent' or 'unknown'."""
    return f"dedupe#{lead_id}"


def pool(fingerprint: str) -> str:
    """A webhook URL's lifetime submission counter, by the URL's fingerprint (the URL is a secret)."""
    return f"pool#{fingerprint}"


def webhook_dead(fingerprint: str) -> str:
    """A webhook URL Clay answered 404/410 for: retired."""
    return f"webhook-dead#{fingerprint}"


def budget(day: str) -> str:
    """Rows sent on a UTC day (ISO date) against CLAY_DAILY_SEND_BUDGET."""
    return f"budget#{day}"


def rate(window_ms: int, window_index: int) -> str:
    """The pacer's send slots of one window: its length in milliseconds and its number since the epoch."""
    return f"rate#{window_ms}#{window_index}"


def sent(batch_id: str) -> str:
    """One sender invocation's batch record: the leads it sent to Clay."""
    return f"{SENT_PREFIX}{batch_id}"


def batch_id_of_sent(key: str) -> str:
    """The batch id of a `sent#` key."""
    return key.removeprefix(SENT_PREFIX)


def pause() -> str:
    """The one item holding every paused destination."""
    return "pause#destinations"


def sweep_checkpoint() -> str:
    """Where the stale-lead sweeper's last window ended."""
    return "sweep#stale"


def run(run_id: str) -> str:
    """A routine run started by the sender: its leads' inputs."""
    return f"run#{run_id}"


def run_done(run_id: str) -> str:
    """A routine run's ending mark (collected, abandoned, ...)."""
    return f"run-done#{run_id}"


def run_leads(batch_id: str) -> str:
    """A sender invocation's leads whose dedupe marks stayed unconfirmed after their run was recorded."""
    return f"run-leads#{batch_id}"


def run_webhook(run_id: str) -> str:
    """A routine run's results announced by Clay's run webhook."""
    return f"run-webhook#{run_id}"


def token_failures(source_ip: str, username: str) -> str:
    """Failed callback logins of one caller (source IP and the username it gave)."""
    return f"token-failures#{source_ip}#{username}"
