"""The state store's error, in a module of its own so the stores (accounts sessions, the
PostgreSQL state) can raise it without importing :mod:`fhir_gateway.state`, which opens them
(no import cycle)."""

from __future__ import annotations


class StateUnavailable(RuntimeError):
    """The shared state store cannot be reached (PostgreSQL down): answered as 503, never 500;
    nothing is written, nothing is guessed (logins, tokens and memos fail closed)."""
