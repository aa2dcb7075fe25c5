"""One memo decorator for the pure lookups of the lower layers, with explicit invalidation.

``@memo(4096)`` caches a function of hashable arguments (``functools.lru_cache`` underneath:
the cached function *is* the C-level wrapper, no extra Python call per hit).  A function whose
answer also depends on a module table says so, ``@memo(4096, reads="ucum")``; whoever changes
that table calls :func:`invalidate` with the table's name and every cache that read it is
emptied, so the next call sees the new table.  No cache keys on a table's size or version.

A cached function that returns a dict or list must never hand that object out: its public
wrapper copies it (see ``mappers.datatypes.copy_concept``); tests/test_mappers_cache.py checks.
Knows no FHIR (storage layer; the mappers use it too).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ParamSpec, Protocol, TypeVar, cast

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Memoized(Protocol[P, R_co]):
    """A memoised function: called like the original, plus the lru_cache controls."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_clear(self) -> None: ...

    def cache_info(self) -> Any: ...  # functools' private _CacheInfo named tuple


_READERS: dict[str, list[Memoized[..., object]]] = {}  # table name -> the caches that read it
_ALL: list[Memoized[..., object]] = []


def memo(maxsize: int | None = 4096, *, reads: str | tuple[str, ...] = ()
         ) -> Callable[[Callable[P, R]], Memoized[P, R]]:
    """Memoise a pure function; ``reads`` names the tables (see :func:`invalidate`) it reads."""
    tables = (reads,) if isinstance(reads, str) else reads

    def wrap(fn: Callable[P, R]) -> Memoized[P, R]:
        # lru_cache's own type hint erases the parameters; the protocol keeps them
        cached = cast("Memoized[P, R]", functools.lru_cache(maxsize=maxsize)(fn))
        for table in tables:
            _READERS.setdefault(table, []).append(cached)
        _ALL.append(cached)
        return cached

    return wrap


def invalidate(table: str) -> int:
    """Empty every cache that reads ``table``; call it right after changing the table.
    Returns how many caches were emptied (0: nothing declared that it reads the table)."""
    readers = _READERS.get(table, [])
    for fn in readers:
        fn.cache_clear()
    return len(readers)


def clear_all() -> None:
    """Empty every memo (tests; an operator-triggered reload)."""
    for fn in _ALL:
        fn.cache_clear()
