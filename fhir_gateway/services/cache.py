"""A bounded, thread-safe LRU of read+mapped files.

The key is ``(absolute path, size, mtime_ns, version)``: every request stats the file, so an edited
or replaced file is re-read at once (the files stay the truth); a renamed file (flag 1 -> 2) has a
new path.  Entries are charged an estimate of their memory (serialised size x 4)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from mappers.serialize import dumps
from storage.reader import Problem

DEFAULT_MAX_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class Mapped:
    """The outcome of one file: its resources (never mutate them) and its problems."""

    resources: tuple[dict, ...]
    problems: tuple[Problem, ...] = ()
    cost: int = field(default=0, compare=False)
    # per resource: (lo, hi) epoch range of its clinical date, or None (sorting, $everything)
    when: tuple = field(default=(), compare=False)

    @classmethod
    def build(cls, resources: list[dict], problems: list[Problem]) -> "Mapped":
        try:
            size = len(dumps(resources)) * 4 + 512  # dicts take several times their JSON
        except TypeError:
            size = 4096 * max(1, len(resources))
        return cls(tuple(resources), tuple(problems), size,
                   tuple(clinical_range(r) for r in resources))


def clinical_range(resource: dict) -> tuple[float, float] | None:
    """The union of the ranges of the resource's clinical date parameter (None if it has none)."""
    from conformance import registry

    from . import match
    rdef = registry().get(resource.get("resourceType", ""))
    param = rdef.date_param if rdef else None
    if param is None:
        return None
    rs = [x for x in (match.value_range(v) for v in match.values(resource, param)) if x]
    if not rs:
        return None
    return min(x[0] for x in rs), max(x[1] for x in rs)


class MappedCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple, Mapped] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> Mapped | None:
        with self._lock:
            m = self._data.get(key)
            if m is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return m

    def put(self, key: tuple, value: Mapped) -> None:
        if value.cost > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.cost
            self._data[key] = value
            self._bytes += value.cost
            while self._bytes > self.max_bytes and self._data:
                _, ev = self._data.popitem(last=False)
                self._bytes -= ev.cost

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)
