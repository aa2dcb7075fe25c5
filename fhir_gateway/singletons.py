"""One object per name, made on first use and shared: the stores of a state backend
(:mod:`fhir_gateway.state` for SQLite, :mod:`fhir_gateway.scale.pgstate` for PostgreSQL) each
open a database or journal once per process.  A module of its own so both backends use it without
importing each other (tests/test_import_graph.py keeps that layering)."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar, cast

T = TypeVar("T")


class Singletons:
    """Thread-safe: two requests asking for the same store at once get the same object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, object] = {}

    def get(self, name: str, make: Callable[[], T]) -> T:
        """The object kept under ``name``, made by ``make()`` the first time."""
        with self._lock:
            if name not in self._made:
                self._made[name] = make()
            return cast(T, self._made[name])  # a name is always made by the same ``make``
