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

# All workers together: each pre-forked worker has its own cache, so `serve` splits this budget
# (per_worker_bytes).  The charge per entry (JSON size x 4 + 512) was measured against the real
# cost: a 3,000-file / 15,001-resource chart is 22 MB of JSON, charged 90 MB, and grows a
# worker's RSS by 80 MB (sys.getsizeof over the dicts: 61 MB; strings are shared), so the bound
# errs on the safe side.  Under `serve` the share is also what the whole worker may grow above
# its start-up size (MappedCache.govern: measured, not estimated).  See docs/performance.md.
DEFAULT_TOTAL_MB = 128
DEFAULT_MAX_BYTES = 96 * 1024 * 1024  # one process (tests, the viewer alone, `check`)


def per_worker_bytes(total_mb: int | None, workers: int) -> int:
    """The cache bound of one worker when ``total_mb`` (None = the default) is shared by
    ``workers`` processes."""
    total = (total_mb if total_mb is not None else DEFAULT_TOTAL_MB) * 1024 * 1024
    return max(8 * 1024 * 1024, total // max(1, workers))


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


_TRIM: list = []  # [libc.malloc_trim] once loaded, [None] when unavailable
_TRIM_LOCK = threading.Lock()
_last_trim = [0.0]


def release_freed_memory(min_interval: float = 2.0) -> None:
    """Hand memory freed by evicted entries back to the OS (glibc ``malloc_trim``), at most
    every ``min_interval`` seconds: without it a worker keeps the peak of its heap, so its PSS
    grows past the cache's byte bound after a heavy chart (docs/performance.md "Memory")."""
    import time
    now = time.monotonic()
    if now - _last_trim[0] < min_interval or not _TRIM_LOCK.acquire(blocking=False):
        return
    try:
        _last_trim[0] = now
        if not _TRIM:
            try:
                import ctypes
                _TRIM.append(ctypes.CDLL("libc.so.6").malloc_trim)
            except (OSError, AttributeError):
                _TRIM.append(None)
        if _TRIM[0] is not None:
            import gc
            gc.collect(0)
            _TRIM[0](0)  # ctypes releases the GIL meanwhile
    finally:
        _TRIM_LOCK.release()


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


_PAGE = 4096
try:
    import os as _os
    _PAGE = _os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    pass


def rss_bytes() -> int | None:
    """This process's resident set (``/proc/self/statm``, a few microseconds), None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class MappedCache:
    """LRU of :class:`Mapped` files bounded by their charge in bytes.

    With :meth:`govern` the bound holds for **the whole process**: about once a second (on a
    ``put``) the process's resident size is read, and what the entries' charges do not explain
    (per-request buffers, the other caches, heap fragmentation, the charge's error) is taken
    off the cache's own allowance, so that growth above the start-up size stays within
    ``process_bytes``; the cache grows back when that memory is returned."""

    CHECK_EVERY = 1.0  # seconds between two RSS readings
    MIN_BYTES = 4 * 1024 * 1024  # the cache never shrinks below this (a page's files)

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.target = max_bytes  # the current allowance (< max_bytes when governed and tight)
        self._data: OrderedDict[tuple, Mapped] = OrderedDict()
        self._bytes = 0
        self._evicted = 0  # bytes let go since memory was last handed back (release_freed_memory)
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.process_bytes: int | None = None
        self._baseline: int | None = None
        self._checked = 0.0
        self._starved = False  # memory outside the entries took a quarter of the share

    def govern(self, process_bytes: int) -> None:
        """Bound the process's growth above its size now (the start-up size) by
        ``process_bytes``: ``serve`` calls this in each worker with the worker's share."""
        self.process_bytes = process_bytes
        rss = rss_bytes()
        self._baseline = None if rss is None else rss - self._bytes

    def _allowance(self) -> int:
        """The cache's allowance now: ``max_bytes``, less what else the process holds above
        its baseline beyond ``process_bytes`` (read at most every CHECK_EVERY seconds)."""
        import time
        if self.process_bytes is None or self._baseline is None:
            return self.max_bytes
        now = time.monotonic()
        if now - self._checked < self.CHECK_EVERY:
            return self.target
        self._checked = now
        rss = rss_bytes()
        if rss is None:
            return self.max_bytes
        other = rss - self._baseline - self._bytes  # not explained by the entries' charges
        self.target = max(self.MIN_BYTES, min(self.max_bytes, self.process_bytes - other))
        # much of that is often heap glibc keeps after a large request freed it: hand it back
        # (put does, outside the lock) so the cache need not shrink for memory nobody uses
        self._starved = other > self.process_bytes // 4
        return self.target

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
            limit = self._allowance()
            while self._bytes > limit and self._data:
                _, ev = self._data.popitem(last=False)
                self._bytes -= ev.cost
                self._evicted += ev.cost
            trim = self._evicted > limit // 4 or self._starved
            if trim:
                self._evicted = 0
                self._starved = False
        if trim:
            release_freed_memory()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class Compartment:
    """One patient's mapped storage resources (SS-MIX2 + extended), as of ``signature``.

    ``files`` are the (path, size, mtime_ns) of the mapped files, re-checked every
    ``CompartmentCache.restat`` seconds: an SS-MIX2 file is never rewritten in place (a new
    version is a new file), but a tool that does so is still noticed within that time.
    ``orders`` caches the sorted/filtered views of ``$everything`` by their parameters."""

    signature: tuple
    resources: tuple[dict, ...]
    when: tuple
    problems: tuple[Problem, ...]
    nfiles: int
    files: tuple[tuple[str, int, int], ...]
    checked: float = 0.0
    orders: dict = field(default_factory=dict)
    cost: int = 0  # the MappedCache charge of its files (bytes, estimated)

    def __bool__(self) -> bool:
        """False when the patient has no folder on the root it was read from."""
        return self.signature[0] is not None


class CompartmentCache:
    """LRU of :class:`Compartment` by (root, patient, types), bounded by entries, by the
    resources they hold and by bytes (their files' :class:`MappedCache` charge).  The resources
    are the same objects as in :class:`MappedCache`, but an entry pins them after the mapped-file
    cache has let them go, so its bytes count against the process's budget too (``max_bytes``:
    half the mapped-file cache's, see docs/performance.md "Memory")."""

    def __init__(self, max_entries: int = 16, max_resources: int = 40_000,
                 restat: float = 10.0, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_resources = max_resources
        self.max_bytes = max_bytes if max_bytes is not None else DEFAULT_MAX_BYTES // 2
        self._bytes = 0
        self.restat = restat
        self._data: OrderedDict[tuple, Compartment] = OrderedDict()
        self._lock = threading.Lock()
        self._count = 0
        self.hits = self.misses = 0

    def get(self, key: tuple, signature: tuple) -> Compartment | None:
        import os
        import time
        with self._lock:
            c = self._data.get(key)
            if c is None or c.signature != signature:
                self.misses += 1
                return None
            self._data.move_to_end(key)
        now = time.monotonic()
        if now - c.checked > self.restat:
            for path, size, mtime in c.files:
                try:
                    st = os.stat(path)
                except OSError:
                    st = None
                if st is None or st.st_size != size or st.st_mtime_ns != mtime:
                    with self._lock:
                        self.misses += 1
                    return None
            c.checked = now
        with self._lock:
            self.hits += 1
        return c

    def put(self, key: tuple, value: Compartment) -> None:
        import time
        n = len(value.resources)
        if n > self.max_resources or value.cost > self.max_bytes:
            return
        value.checked = time.monotonic()
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._count -= len(old.resources)
                self._bytes -= old.cost
            self._data[key] = value
            self._count += n
            self._bytes += value.cost
            while self._data and (len(self._data) > self.max_entries
                                  or self._count > self.max_resources
                                  or self._bytes > self.max_bytes):
                _, ev = self._data.popitem(last=False)
                self._count -= len(ev.resources)
                self._bytes -= ev.cost

    def __len__(self) -> int:
        return len(self._data)
