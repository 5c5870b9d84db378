"""Errors the core raises that are not outcomes of a record."""

from __future__ import annotations


class ConfigError(RuntimeError):
    """A setting is missing or invalid; raised at cold start so the deploy fails loudly."""
