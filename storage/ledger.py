"""The content ledger: which parts of a message a reader actually read.

``audited(msg)`` returns the same message as an :class:`AuditMessage`, whose segments and
fields record every read into a :class:`Ledger` (segment position, field, repetition,
component).  :func:`unread` then lists every non-empty component nobody read.  Because the
recording sits in the accessors every mapper already uses (``seg[n]``, ``seg.get``,
``field.component``, ``field.repetitions`` ...), the ledger holds by construction: a new
mapper, or a new field read in an old one, is accounted for without any per-mapper list.

The request path never sees these classes: :func:`storage.hl7.parse` builds plain
:class:`Message` objects and pays nothing.  Audit messages carry a *copy* of the delimiters,
so every ``field._d is STANDARD_DELIMITERS`` fast path (the raw-text caches of the mappers) is
skipped and the mapper reads through the recording accessors instead.

Granularity is the component: reading a component reads its sub-components; ``field.text``
reads the whole repetition; ``str(field)`` and the raw ``seg.fields[n]`` read every
repetition of the field.  Knows no FHIR (storage layer).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, SupportsIndex, overload

from .hl7 import Delimiters, Field, Message, Segment

ALL = 0  # component "all components" in a read record
EVERY = -1  # repetition "every repetition" in a read record


class Ledger:
    """The set of reads: ``(segment position, field, repetition, component)``."""

    __slots__ = ("reads",)

    def __init__(self) -> None:
        self.reads: set[tuple[int, int, int, int]] = set()

    def covered(self, seg: int, n: int, rep: int, comp: int) -> bool:
        r = self.reads
        return ((seg, n, EVERY, ALL) in r or (seg, n, rep, ALL) in r or (seg, n, rep, comp) in r
                or (seg, ALL, EVERY, ALL) in r)


class AuditField(Field):
    """A :class:`Field` that records what is read of it."""

    __slots__ = ("_ledger", "_seg", "_n", "_rep")

    def __init__(self, raw: str, delimiters: Delimiters, ledger: Ledger, seg: int, n: int,
                 rep: int = EVERY) -> None:
        super().__init__(raw, delimiters)
        self._ledger, self._seg, self._n, self._rep = ledger, seg, n, rep

    def _mark(self, comp: int, rep: int | None = None) -> None:
        # a whole field (rep EVERY) answers component reads from its first repetition
        self._ledger.reads.add((self._seg, self._n, max(self._rep, 0) if rep is None else rep,
                                comp))

    def __str__(self) -> str:
        self._mark(ALL, self._rep)
        return self.raw

    @property
    def repetitions(self) -> list[Field]:
        raw, r = self.raw, self._d.repetition
        if not raw:
            return []
        if self._rep != EVERY:
            return [self]
        if r not in raw:
            return [AuditField(raw, self._d, self._ledger, self._seg, self._n, 0)]
        return [AuditField(x, self._d, self._ledger, self._seg, self._n, i)
                for i, x in enumerate(raw.split(r))]

    def components(self) -> list[str]:
        self._mark(ALL)
        return super().components()

    def component(self, n: int, sub: int | None = None) -> str:
        self._mark(n)
        return super().component(n, sub)

    def subcomponents(self, n: int) -> list[str]:
        self._mark(n)
        return super().subcomponents(n)

    @property
    def text(self) -> str:
        self._mark(ALL)
        return super().text

    def joined(self, sep: str = " ") -> str:
        self._mark(ALL)
        return super().joined(sep)


class _RawFields(list[str]):
    """``seg.fields`` of an audit segment: indexing a raw field reads all of it."""

    __slots__ = ("_ledger", "_seg")
    _ledger: Ledger
    _seg: int

    def _mark(self, n: int) -> None:
        self._ledger.reads.add((self._seg, n, EVERY, ALL))

    @overload
    def __getitem__(self, i: SupportsIndex) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: SupportsIndex | slice) -> str | list[str]:
        if isinstance(i, slice):
            for n in range(*i.indices(len(self))):
                self._mark(n)
        else:
            n = i.__index__()
            self._mark(n if n >= 0 else len(self) + n)
        return list.__getitem__(self, i)

    def __iter__(self) -> Iterator[str]:
        for n in range(len(self)):
            self._mark(n)
        return list.__iter__(self)

    def __add__(self, other: list[str]) -> _RawFields:  # type: ignore[override]
        out = _RawFields(list.__add__(self, other))
        out._ledger, out._seg = self._ledger, self._seg
        return out


class AuditSegment(Segment):
    __slots__ = ("_ledger",)

    def __init__(self, line: str, delimiters: Delimiters, index: int, ledger: Ledger) -> None:
        super().__init__(line, delimiters, index)
        self._ledger = ledger

    @property
    def fields(self) -> list[str]:
        parts = super().fields
        out = _RawFields(parts)
        out._ledger, out._seg = self._ledger, self.index
        return out

    def __getitem__(self, n: int) -> Field:
        objs = self._objs
        parts = super().fields
        if objs is None:
            objs = self._objs = [None] * len(parts)
        if 0 <= n < len(objs):
            f = objs[n]
            if f is None:
                f = objs[n] = AuditField(parts[n], self._d, self._ledger, self.index, n)
            return f
        return AuditField("", self._d, self._ledger, self.index, n)

    def get(self, n: int, component: int = 1, sub: int | None = None) -> str:
        if n < 3 and self.id == "MSH" and n in (1, 2):
            return super().fields[n]
        return self[n].component(component, sub)


class AuditMessage(Message):
    __slots__ = ("ledger",)

    def __init__(self, text: str, delimiters: Delimiters, lines: list[str]) -> None:
        super().__init__(text, delimiters, lines)
        self.ledger = Ledger()

    def _seg(self, i: int) -> Segment:
        segs = self._segments
        if segs is None:
            segs = self._segments = [None] * len(self.lines)
        seg = segs[i]
        if seg is None:
            seg = segs[i] = AuditSegment(self.lines[i], self.delimiters, i, self.ledger)
        return seg

    @property
    def all_segments(self) -> list[Segment]:
        return [self._seg(i) for i in range(len(self.lines))]

    def __getitem__(self, segment_id: str) -> Segment:
        found = self._index().get(segment_id)
        return self._seg(found[0]) if found else Segment(segment_id, self.delimiters, -1)


def audited(msg: Message) -> AuditMessage:
    """The same message with recording accessors (delimiters copied: no raw-text caches)."""
    return AuditMessage(msg.text, replace(msg.delimiters), msg.lines)


@dataclass(frozen=True, slots=True)
class Content:
    """One non-empty component nobody read."""

    segment: int  # 0-based position in the message
    segment_id: str
    field: int
    repetition: int  # 1-based
    component: int  # 1-based
    value: str  # raw (escaped) text of the component

    @property
    def where(self) -> str:
        return f"{self.segment_id}-{self.field}"


def contents(msg: Message) -> Iterator[tuple[int, str, int, int, int, str]]:
    """Every non-empty component: (segment position, id, field, repetition 1.., component 1.., raw)."""
    d = msg.delimiters
    for i, line in enumerate(msg.lines):
        sid = line[:3]
        parts = line.split(d.field)
        if sid == "MSH":
            parts.insert(1, d.field)
            first = 3
        else:
            first = 1
        for n in range(first, len(parts)):
            raw = parts[n]
            if not raw or raw == '""':
                continue
            for r, rep in enumerate(raw.split(d.repetition), 1):
                for c, comp in enumerate(rep.split(d.component), 1):
                    if comp and comp != '""' and comp.strip(d.subcomponent + " "):
                        yield i, sid, n, r, c, comp


def unread(msg: AuditMessage) -> list[Content]:
    """Non-empty components the reader never touched, in message order."""
    led = msg.ledger
    return [Content(i, sid, n, r, c, v) for i, sid, n, r, c, v in contents(msg)
            if not led.covered(i, n, r - 1, c)]
