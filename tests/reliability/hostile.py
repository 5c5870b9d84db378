"""Hypothesis strategies for input that once got a 503 (issue 15): what a fuzzer of ours must keep trying.

Each class targets a limit or a regular expression of the pipeline: numbers DynamoDB cannot hold,
nesting around the 16-level limit and past what json.loads can recurse into, lone surrogates in
values and keys, text around the 10,000-character and 128-character field limits, and strings
built to make each pattern (email, number, domain, LinkedIn URL, job title, HMAC timestamp)
backtrack.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from clay_pipeline.core.leads import MAX_VALUE_DEPTH


def json_values(text_size: int, key_size: int, max_leaves: int) -> st.SearchStrategy[Any]:
    """Any JSON document: scalars, and lists and objects of them (what a fuzzer posts as a body or a column)."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=text_size),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=key_size), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


extreme_numbers = (
    st.sampled_from([1e200, -1e200, 1e-200, 5e-324, 1.7976931348623157e308, 1e125, 1e126, 1e-130, 1e-131, 0.1, -0.0])
    | st.integers(10**37, 10**45)
    | st.integers(-(10**45), -(10**37))
)
lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
odd_text = st.text(max_size=12) | lone_surrogates | st.sampled_from(["\uffff", "\ufffe", "\x00", "\u2028", " "])


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


depths = st.sampled_from([MAX_VALUE_DEPTH - 1, MAX_VALUE_DEPTH, MAX_VALUE_DEPTH + 1, 31, 33, 500, 990, 3000])
nested_values = depths.map(nested) | depths.map(lambda d: json.dumps(nested(d)))  # as JSON text too (Clay's lists)


def _pathological(n: int) -> list[str]:
    return [
        "a@" + "." * n + "@",  # the email pattern's old worst case
        "a@b" + ".c" * (n // 2) + "@",
        "@" * n,
        "a" * n + "@",
        "1" * n + "x",  # the number pattern
        "1," + "111," * (n // 4) + "x",
        "1" * (n // 2) + "." + "1" * (n // 2) + "x",
        "1" + " " * (n // 2) + "-" + " " * (n // 2) + "x",  # the quantity pattern's optional spaces side by side
        "a." * (n // 2) + "!",  # the domain pattern
        "linkedin.com/" + "/" * n,
        "https://" + "linkedin.com." * (n // 13) + "/in/x",
        "vice " * (n // 5) + "presiden",  # the job-title patterns
        "\t \n" * (n // 3),
    ]


pathological_strings = st.sampled_from([100, 2_000, 9_990]).flatmap(lambda n: st.sampled_from(_pathological(n)))
hostile_values = extreme_numbers | nested_values | odd_text | pathological_strings
hostile_keys = (
    st.sampled_from(["", " ", "lead_id ", " email", "\t", "icp_score"]) | lone_surrogates | st.text(max_size=8)
)
# Declared fields get hostile values too: a regex or a number parser sits behind most of them.
hostile_fields = st.sampled_from(
    ["email", "domain", "linkedin_url", "lead_id", "employee_count", "icp_score", "job_title", "first_name", "notes"]
)


@st.composite
def hostile_leads(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with a few fields and extra columns set to hostile values (and hostile column names)."""
    lead = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        lead[draw(hostile_fields)] = draw(hostile_values)
    for _ in range(draw(st.integers(0, 2))):
        lead[draw(hostile_keys)] = draw(hostile_values | st.text(max_size=5))
    return lead


def dumps(value: Any) -> bytes:
    """JSON as a client sends it: lone surrogates as \\\\ud800 escapes (valid JSON, not valid Unicode)."""
    return json.dumps(value).encode()


def sized_document(size: int, base: dict[str, Any]) -> bytes:
    """`base` padded with a notes column to exactly `size` bytes of JSON."""
    empty = dumps({**base, "notes": ""})
    return dumps({**base, "notes": "x" * max(0, size - len(empty))})


def deep_text(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth
