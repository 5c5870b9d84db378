"""The one JSON text form: every message body and every canonical hash uses it."""

from __future__ import annotations

import json
from typing import Any


def dump_json(value: Any) -> str:
    """Compact JSON used for every message body and canonical hash."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)
