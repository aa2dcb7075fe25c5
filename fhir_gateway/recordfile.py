"""A JSON list of records in one private file (API tokens, SMART clients): read again only when
its mtime changes, replaced atomically with mode 0600.  What the embedded stores of
:mod:`fhir_gateway.auth_tokens` and :mod:`fhir_gateway.smart.clients` share."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

import orjson

T = TypeVar("T")


class RecordFile(Generic[T]):
    """Records keyed by their ``id``; ``make(**fields)`` builds one, ``error`` is raised (with the
    file and the reason) when the file is not a readable list of them — callers fail closed."""

    def __init__(self, path: Path, make: Callable[..., T], what: str,
                 error: Callable[[str], Exception]) -> None:
        self.path = path
        self._str = str(path)  # os.stat on a str: once per API request (token check)
        self._make, self._what, self._error = make, what, error
        self._lock = threading.Lock()
        self._mtime: int | None = -1
        self._records: dict[str, T] = {}

    def load(self) -> dict[str, T]:
        """The records as of the file's current mtime (cached between changes)."""
        try:
            mtime: int | None = os.stat(self._str).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        with self._lock:
            if mtime != self._mtime:
                self._records = {} if mtime is None else self._read()
                self._mtime = mtime
            return self._records

    def _read(self) -> dict[str, T]:
        try:
            raw = orjson.loads(self.path.read_bytes() or b"[]")
            return {r["id"]: self._make(**r) for r in raw}
        except (OSError, orjson.JSONDecodeError, TypeError, KeyError) as exc:
            raise self._error(f"{self.path} is not a readable {self._what} file "
                              f"({type(exc).__name__}: {exc})") from exc

    def forget(self) -> None:
        """Read the file again on the next :meth:`load` (another process may have written it)."""
        self._mtime = -1

    def save(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file atomically (a temporary file, mode 0600, renamed over it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        data = orjson.dumps(list(records), option=orjson.OPT_INDENT_2)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)
