"""Reading what users' Clay tables really hold: numbers, counts, scores, flags and dates sent as text.

Clay's HTTP API column renders every value through a text template, and enrichment providers fill
columns with display text: company sizes as buckets ("51-200 employees", "10,001+"), revenue and
funding with suffixes and currency ("$1.2M", "10M-25M", "$25M - $50M"), scores as percentages,
dates as ISO text or as a JavaScript formula prints them. Each reader below takes one value and
returns it as a number, a flag or an instant, or raises ValueError saying why it cannot; the model
then keeps the value as Clay sent it, treats the column as missing and names it in the callback's
`warnings` (models.EnrichedLead.read). docs/ARCHITECTURE.md ("Reading Clay's column values")
lists what each messy value becomes.

A range reads as its lower bound (and "10,000+" as 10,000; the lead keeps the text beside it):
- it is the one figure every company in the bucket reaches, and an open bucket ("10,001+") has no
  midpoint, so one rule serves both;
- the ICP formula's size steps (more than 10, 50, 200 and 1,000 employees, scoring.SIZE_STEPS) fall
  on the edges of LinkedIn's buckets (1-10, 11-50, 51-200, 201-500, 501-1,000, 1,001-5,000, ...),
  so each of those buckets scores what its companies score, as a midpoint would;
- a bucket that straddles a step ("50-300") is not promoted to the higher band on companies it may
  not have: a lead reaches outreach on what the data guarantees, not on its upper bound.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal
from email.utils import parsedate_to_datetime
from typing import Any

MAX_NUMBER_DIGITS = 40  # longer digit strings are not numbers to us (int() refuses > 4,300 anyway)
MAX_QUANTITY_TEXT = 100  # "$25,000,000 - $50,000,000 USD" is 29 characters: longer text is not a quantity
MAX_INSTANT_TEXT = 100  # the longest date text we read (JavaScript's, with its zone name) is under 80
SCALES = {
    "k": 3,
    "thousand": 3,
    "m": 6,
    "mm": 6,  # finance's "$5MM"
    "mn": 6,
    "million": 6,
    "b": 9,
    "bn": 9,
    "billion": 9,
    "t": 12,
    "trillion": 12,
}
_SCALE = "|".join(sorted(SCALES, key=len, reverse=True))
_AMOUNT = (
    r"(?P<{n}cur>[$€£])?\s*"
    r"(?P<{n}num>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:e(?P<{n}exp>[+-]?\d{{1,2}}))?"
    rf"\s*(?P<{{n}}scale>{_SCALE})?\b\s*(?P<{{n}}pct>%)?"
)
_QUANTITY = re.compile(
    r"(?:~|approx\.?|approximately|about|around|circa|ca\.)?\s*"
    r"(?P<sign>[-+])?\s*"
    + _AMOUNT.format(n="a")
    + r"(?:\s*(?:-|\u2013|\u2014|to)\s*"
    + _AMOUNT.format(n="b")
    + r")?\s*(?P<plus>\+)?\s*(?:employees?|people|staff|usd|eur|gbp)?",
    re.IGNORECASE,
)
_WIDE = Context(prec=80)  # exact for every digit string we accept, times any scale and exponent

TRUE_STRINGS = frozenset({"true", "yes", "y", "1", "t", "valid", "verified", "deliverable"})
FALSE_STRINGS = frozenset({"false", "no", "n", "0", "f", "invalid", "undeliverable"})

# Dates: a year outside these is a typo or a placeholder ("9999-12-31"), and taking it would make
# arithmetic on it overflow (Python's datetime ends at year 9999; an offset past it raises).
MIN_YEAR, MAX_YEAR = 1900, 2199
EPOCH_MILLISECONDS_FROM = 100_000_000_000  # larger epoch numbers are milliseconds (JavaScript's Date.now())
_JS_DATE = re.compile(r"(?:[a-z]{3} )?([a-z]{3} \d{1,2} \d{4} \d{2}:\d{2}:\d{2}) gmt([+-]\d{4})(?: \(.*\))?", re.I)
_DATE_FORMATS = (
    "%B %d, %Y",  # January 15, 2025 (Clay's date display)
    "%b %d, %Y",  # Jan 15, 2025
    "%B %d %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%B %d, %Y %I:%M %p",  # January 15, 2025 10:30 AM
    "%b %d, %Y %I:%M %p",
    "%m/%d/%Y",  # 1/15/2025: US order first, as Clay's US-default locale writes it
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y",  # 15/01/2025: read only when the US order cannot be (a day above 12)
)


@dataclass(frozen=True)
class Quantity:
    """A number as written: its value (a range's lower bound) and what the text said about it."""

    value: Decimal
    ranged: bool = False  # "51-200" or "10,000+"
    percent: bool = False
    currency: bool = False


def _amount(match: re.Match[str], n: str, scale_of_other: str | None) -> Decimal:
    digits = match[f"{n}num"].replace(",", "")
    if len(digits) > MAX_NUMBER_DIGITS:
        raise ValueError(f"has more than {MAX_NUMBER_DIGITS} digits")
    scale = (match[f"{n}scale"] or scale_of_other or "").lower()
    exponent = int(match[f"{n}exp"] or 0) + SCALES.get(scale, 0)
    return _WIDE.multiply(Decimal(digits), Decimal(10) ** exponent)


def read_quantity(text: str) -> Quantity:
    """A number, range or open bucket written as text; ValueError when it is none of them."""
    if sum(char.isdigit() for char in text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"has more than {MAX_NUMBER_DIGITS} digits")
    # Whitespace runs made one space and the length bounded first: the pattern's optional spaces side by
    # side would otherwise backtrack polynomially over a long run of them ("1" + 10,000 spaces + "-x").
    text = " ".join(text.split())
    match = _QUANTITY.fullmatch(text) if len(text) <= MAX_QUANTITY_TEXT else None
    if match is None:
        raise ValueError("is not a number")
    ranged = match["bnum"] is not None
    if ranged and match["sign"]:
        raise ValueError("is not a number")  # "-5-10"
    # "$10-25M": the upper bound's scale applies to a lower bound written without one.
    low = _amount(match, "a", match["bscale"] if ranged else None)
    if ranged and low > _amount(match, "b", None):
        raise ValueError("is a range whose lower bound is above its upper bound")
    if match["sign"] == "-":
        low = -low
    return Quantity(
        value=low,
        ranged=ranged or match["plus"] is not None,
        percent=bool(match["apct"] or match["bpct"]),
        currency=bool(match["acur"] or match["bcur"]),
    )


def _plain(number: Decimal) -> int | float:
    """An int when the number is whole (every digit kept: float() would round past 15), else a float."""
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def _json_number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value


def read_number(value: Any) -> int | float:
    """Any number a column may hold: "1,200", "1.2K", "$1.2M", "85%" (85), "51-200" (51, its lower bound)."""
    number = _json_number(value)
    if number is not None:
        return number
    if not isinstance(value, str):
        raise ValueError("is not a number")
    return _plain(read_quantity(value).value)


def number_or_none(value: Any) -> int | float | None:
    """read_number, or None for what is not a number (the routing rules' comparisons)."""
    try:
        return read_number(value)
    except ValueError:
        return None


def read_count(value: Any) -> int:
    """A count of things (employee_count): whole, not negative, neither a percentage nor money."""
    if isinstance(value, str):
        quantity = read_quantity(value)
        if quantity.percent:
            raise ValueError("is a percentage, not a count")
        if quantity.currency:
            raise ValueError("is an amount of money, not a count")
        number: int | float = _plain(quantity.value)
    else:
        number = read_number(value)
    if isinstance(number, float) and not number.is_integer():
        raise ValueError("is not a whole number")
    if number < 0:
        raise ValueError("is negative")
    return int(number)


def read_score(value: Any) -> float:
    """An ICP score from 0 to 100 ("85", "85.5", "85%"); outside it is an error, never clamped."""
    if isinstance(value, str):
        quantity = read_quantity(value)
        if quantity.ranged:
            raise ValueError("is a range; a score is one number from 0 to 100")
        if quantity.currency:
            raise ValueError("is an amount of money, not a score")
        number: float = float(quantity.value)
    else:
        number = float(read_number(value))
    if not 0 <= number <= 100:
        raise ValueError("is outside 0-100")
    # Rounded so that a tiny value (1e-200) stays a number the leads table can store.
    return round(number, 6)


def read_flag(value: Any) -> bool:
    """True/false as Clay writes it ("TRUE", "yes", "1"), or an email check's verdict ("valid", "invalid")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_STRINGS:
            return True
        if text in FALSE_STRINGS:
            return False
    raise ValueError("is not true or false")


def _from_epoch(number: float) -> datetime:
    seconds = number / 1000 if abs(number) >= EPOCH_MILLISECONDS_FROM else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("is not a date") from None


def _parse_text_instant(text: str) -> datetime:
    if re.fullmatch(r"\d{10}|\d{13}", text):  # epoch seconds or milliseconds, as text
        return _from_epoch(int(text))
    try:
        return datetime.fromisoformat(text)  # ISO 8601 with Z, an offset, a space or only the date
    except ValueError:
        pass
    if match := _JS_DATE.fullmatch(text):  # String(new Date()) in a JavaScript formula column
        return datetime.strptime(f"{match[1]} {match[2]}", "%b %d %Y %H:%M:%S %z")
    try:
        return parsedate_to_datetime(text)  # RFC 2822, as JavaScript's toUTCString() writes it
    except (TypeError, ValueError, IndexError):
        pass
    for layout in _DATE_FORMATS:
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    raise ValueError("is not a date")


def read_instant(value: Any) -> datetime:
    """A moment in UTC from ISO text, Clay's date display, JavaScript's date text or epoch (s or ms)."""
    number = _json_number(value)
    if number is not None:
        moment = _from_epoch(number)
    elif isinstance(value, str) and value.strip() and len(value.strip()) <= MAX_INSTANT_TEXT:
        moment = _parse_text_instant(value.strip())
    else:
        raise ValueError("is not a date")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Clay's timestamps are UTC
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is past the last moment Python can hold
        raise ValueError(f"is not a date from {MIN_YEAR} to {MAX_YEAR}") from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"is not a date from {MIN_YEAR} to {MAX_YEAR}")
    return moment


def instant_text(value: Any) -> str:
    """read_instant as ISO 8601 text in UTC (what the lead stores and destinations receive)."""
    return read_instant(value).isoformat()


# -- identifiers ------------------------------------------------------------------------------------
def is_unicode(text: str) -> bool:
    """False for text holding a lone surrogate, which JSON allows (\\ud800) but UTF-8 cannot encode."""
    return text.isascii() or not any("\ud800" <= char <= "\udfff" for char in text)


def identifier_problem(value: Any, max_length: int) -> str | None:
    """Why `value` cannot be an id written to DynamoDB (a key part, a mark), or None when it can.

    An id is text of 1 to max_length characters that UTF-8 can encode (DynamoDB refuses a lone surrogate;
    boto3 fails before the request, which looked like an outage) and holds no control characters.
    """
    if not isinstance(value, str):
        return "must be text"
    if not 1 <= len(value) <= max_length:
        return f"must have 1-{max_length} characters"
    if not is_unicode(value):
        return "is not valid Unicode (a lone surrogate such as \\ud800)"
    if not value.isprintable() and any(unicodedata.category(char) == "Cc" for char in value):
        return "must not hold control characters"
    return None
