"""A small HL7 v2 ER7 tokenizer whose accessors count from 1, as the HL7 field tables do.

    msg = parse(text)
    pid = msg.segment("PID")
    pid[5].component(1)           # PID-5.1
    msg.value("PID.5.1")          # the same, as a path
    for obx in msg.segments("OBX"): ...
    for group in msg.groups("ORC"): ...   # runs of segments starting at each ORC

Tokenizing is lazy: segments are split once, fields only when a segment is first touched, so
reading a message costs little more than ``str.split``.  Values returned by ``component``,
``subcomponent``, ``text`` and ``value`` are unescaped; ``raw`` keeps the wire form.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Iterator

_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_HEAD = operator.itemgetter(slice(0, 4))


class HL7Error(ValueError):
    """The text is not an HL7 v2 ER7 message (no usable MSH header)."""


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


STANDARD_DELIMITERS = Delimiters()
_STANDARD_MSH = "MSH|^~\\&|"


def unescape(value: str, d: Delimiters) -> str:
    """Resolve HL7 escape sequences: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\ \\.br\\ \\H\\ \\N\\."""
    e = d.escape
    if not e or e not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != e:
            out.append(ch)
            i += 1
            continue
        end = value.find(e, i + 1)
        if end < 0:  # lone escape character: keep it literally
            out.append(value[i:])
            break
        seq = value[i + 1 : end]
        i = end + 1
        if seq == "F":
            out.append(d.field)
        elif seq == "S":
            out.append(d.component)
        elif seq == "T":
            out.append(d.subcomponent)
        elif seq == "R":
            out.append(d.repetition)
        elif seq == "E":
            out.append(d.escape)
        elif seq == ".br":
            out.append("\n")
        elif seq in ("H", "N"):
            pass  # highlight on/off: formatting only
        elif seq[:1] == "X" and len(seq) > 1:
            try:
                out.append(_hex_text(bytes.fromhex(seq[1:])))
            except ValueError:
                out.append(e + seq + e)
        else:  # unknown or formatting (\.sp\, \Cxxyy\, \Mxxyyzz\ ...): keep it visible
            out.append(e + seq + e)
    return "".join(out)


def _hex_text(data: bytes) -> str:
    """The text of an ``\\Xhh..\\`` escape: its bytes are in the message's character set, which
    for Japanese text is UTF-8 or Shift_JIS (a vendor escaping what its encoder cannot write);
    Latin-1 only when neither decodes (a one-byte character set)."""
    for codec in ("utf-8", "cp932"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


class Field:
    """One field (all of its repetitions).  ``str(field)`` is the raw wire text.

    A field is read many times by a mapper (OBX-3 for the code, the identifier and the key), so
    the split and unescaped components of the first repetition are computed once and kept.
    """

    __slots__ = ("raw", "_d", "_parts", "_values", "_reps")

    def __init__(self, raw: str, delimiters: Delimiters) -> None:
        self.raw = raw
        self._d = delimiters
        self._parts: list[str] | None = None  # raw components of the first repetition
        self._values: list[str] | None = None  # component(n) for each n, unescaped
        self._reps: tuple["Field", ...] | None = None

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"Field({self.raw!r})"

    def __bool__(self) -> bool:
        return bool(self.raw) and self.raw != '""'

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Field):
            return self.raw == other.raw
        if isinstance(other, str):
            return self.raw == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.raw)

    @property
    def delimiters(self) -> Delimiters:
        """The delimiters of the message this field came from (MSH-1/MSH-2)."""
        return self._d

    @property
    def standard_delimiters(self) -> bool:
        """Whether the message uses ``|^~\\&`` (callers may then cache by :attr:`raw`)."""
        return self._d is STANDARD_DELIMITERS

    @property
    def is_null(self) -> bool:
        """HL7's explicit null ``""`` (delete the value), as opposed to simply absent."""
        return self.raw == '""'

    @property
    def repetitions(self) -> list["Field"]:
        reps = self._reps
        if reps is None:
            raw, r = self.raw, self._d.repetition
            if r not in raw:  # not cached: (self,) would be a reference cycle
                return [self] if raw else []
            reps = self._reps = tuple(Field(x, self._d) for x in raw.split(r))
        return list(reps)

    def _first_rep(self) -> str:
        r = self._d.repetition
        return self.raw.split(r, 1)[0] if r in self.raw else self.raw

    def _split(self) -> list[str]:
        parts = self._parts
        if parts is None:
            raw, d = self.raw, self._d
            if d.repetition in raw:
                raw = raw.split(d.repetition, 1)[0]
            parts = self._parts = raw.split(d.component)
        return parts

    def _component_values(self) -> list[str]:
        d = self._d
        raw = self.raw
        parts = self._parts
        if parts is None:
            first = raw.split(d.repetition, 1)[0] if d.repetition in raw else raw
            parts = self._parts = first.split(d.component)
        if d.escape not in raw and d.subcomponent not in raw and '""' not in raw:
            values = parts  # nothing to unescape, split or blank: the raw parts are the values
        else:
            sc, esc = d.subcomponent, d.escape
            values = []
            for value in parts:
                if sc in value:
                    value = value.split(sc, 1)[0]
                if value == '""':
                    value = ""
                elif esc and esc in value:
                    value = unescape(value, d)
                values.append(value)
        self._values = values
        return values

    def components(self) -> list[str]:
        """Unescaped components of the first repetition (index 0 = component 1); sub-components
        stay joined by ``&`` whatever MSH-2 says."""
        d = self._d
        sc = d.subcomponent
        if '""' in self.raw:  # HL7's explicit null reads as empty, like component()
            return ["&".join("" if x == '""' else unescape(x, d) for x in c.split(sc))
                    for c in self._split()]
        if sc == "&" or sc not in self.raw:
            return [unescape(c, d) for c in self._split()]
        return ["&".join(unescape(x, d) for x in c.split(sc)) for c in self._split()]

    def component(self, n: int, sub: int | None = None) -> str:
        """Component ``n`` (1-based) of the first repetition, unescaped; '' when absent."""
        if sub is None:
            values = self._values
            if values is None:
                values = self._component_values()
            return values[n - 1] if 0 < n <= len(values) else ""
        parts = self._split()
        if n < 1 or n > len(parts):
            return ""
        subs = parts[n - 1].split(self._d.subcomponent)
        value = subs[sub - 1] if 1 <= sub <= len(subs) else ""
        return unescape(value, self._d) if value != '""' else ""

    def subcomponents(self, n: int) -> list[str]:
        parts = self._split()
        if n < 1 or n > len(parts):
            return []
        return ["" if s == '""' else unescape(s, self._d)
                for s in parts[n - 1].split(self._d.subcomponent)]

    def joined(self, sep: str = " ") -> str:
        """The first repetition's components joined by ``sep`` (sub-components by ``&``), each
        unescaped, trailing empty ones dropped: free text whose ``^`` split it into components
        (a vendor that did not escape it) reads as words, while an escaped ``\\S\\`` stays a
        literal ``^`` — :attr:`text` cannot tell the two apart."""
        rep = self._first_rep()
        if rep == '""':
            return ""
        d = self._d
        parts = rep.split(d.component)
        while len(parts) > 1 and not parts[-1]:
            parts.pop()
        out = []
        for part in parts:
            subs = ["" if x == '""' else x for x in part.split(d.subcomponent)]
            while len(subs) > 1 and not subs[-1]:
                subs.pop()
            out.append("&".join(unescape(x, d) for x in subs))
        while len(out) > 1 and not out[-1]:
            out.pop()
        return sep.join(out)

    @property
    def text(self) -> str:
        """The whole first repetition, unescaped; components keep their ``^`` and sub-components
        their ``&`` whatever MSH-2 says, and trailing empty ones (``abc^^``) are dropped: the
        same text for every way a producer may write it."""
        rep = self._first_rep()
        if rep == '""':
            return ""
        d = self._d
        if d is STANDARD_DELIMITERS and not rep.endswith(("^", "&")):
            return unescape(rep, d) if "\\" in rep else rep
        return Field.joined(self, "^")  # (not self.joined: the ledger records text as text)


class Segment:
    """One segment.  ``seg[n]`` is field n as numbered in HL7 (MSH-1 is the field separator)."""

    __slots__ = ("id", "line", "index", "_fields", "_d", "_objs")

    def __init__(self, line: str, delimiters: Delimiters, index: int) -> None:
        self.line = line
        self.index = index  # position within the message, 0 = MSH
        self._d = delimiters
        self.id = line[:3]
        self._fields: list[str] | None = None
        # Field objects already handed out; made on the first seg[n], not with the split, so
        # walking raw fields costs one str.split per segment.
        self._objs: list[Field | None] | None = None


    @property
    def standard_delimiters(self) -> bool:
        """Whether the message uses ``|^~\\&`` (callers may then cache by :attr:`line`)."""
        return self._d is STANDARD_DELIMITERS

    def __repr__(self) -> str:
        return f"Segment({self.line[:40]!r})"

    @property
    def fields(self) -> list[str]:
        """Raw field strings, HL7-numbered: ``fields[0]`` is the segment id."""
        parts = self._fields
        if parts is None:
            parts = self.line.split(self._d.field)
            if self.id == "MSH":
                # MSH-1 is the separator itself; MSH-2 the encoding characters.
                parts.insert(1, self._d.field)
            self._fields = parts
        return parts

    def __len__(self) -> int:
        """Number of fields present (the highest field number written)."""
        return len(self.fields) - 1

    def __getitem__(self, n: int) -> Field:
        objs = self._objs
        if objs is None:
            objs = self._objs = [None] * len(self.fields)
        if 0 <= n < len(objs):
            f = objs[n]
            if f is None:
                f = objs[n] = Field(self._fields[n], self._d)  # type: ignore[index]
            return f
        return Field("", self._d)

    def get(self, n: int, component: int = 1, sub: int | None = None) -> str:
        """Unescaped ``SEG-n.component[.sub]`` value; '' when absent."""
        if n < 3 and self.id == "MSH" and n in (1, 2):
            return self.fields[n]
        f = self[n]
        if sub is None:
            values = f._values
            if values is None:
                values = f._component_values()
            return values[component - 1] if 0 < component <= len(values) else ""
        return f.component(component, sub)

    def value(self, path: str) -> str:
        """``seg.value("5.1")`` -> the unescaped value of field 5 component 1."""
        nums = [int(p) for p in path.split(".")]
        if len(nums) == 1:
            return self[nums[0]].text
        return self.get(*nums)


class Message:
    """A parsed HL7 v2 message.  Segment objects are created on first access."""

    __slots__ = ("text", "delimiters", "lines", "_segments", "_by_id", "_type", "_heads")

    def __init__(self, text: str, delimiters: Delimiters, lines: list[str]) -> None:
        self.text = text
        self.delimiters = delimiters
        self.lines = lines
        self._segments: list[Segment | None] | None = None  # made on first segment access
        self._by_id: dict[str, list[int]] | None = None
        self._type: tuple[str, str, str] | None = None
        self._heads: set[str] | None = None

    def _seg(self, i: int) -> Segment:
        segs = self._segments
        if segs is None:
            segs = self._segments = [None] * len(self.lines)
        seg = segs[i]
        if seg is None:
            seg = segs[i] = Segment(self.lines[i], self.delimiters, i)
        return seg

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.all_segments)

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def all_segments(self) -> list[Segment]:
        segs = self._segments
        d = self.delimiters
        if segs is None:  # build them in one comprehension, not one method call per segment
            segs = self._segments = [Segment(line, d, i) for i, line in enumerate(self.lines)]
        elif None in segs:
            segs[:] = [seg if seg is not None else Segment(line, d, i)
                       for i, (seg, line) in enumerate(zip(segs, self.lines))]
        # every slot is filled now; a copy: callers may edit the list they get
        return [seg for seg in segs if seg is not None]

    def _index(self) -> dict[str, list[int]]:
        if self._by_id is None:
            by_id: dict[str, list[int]] = {}
            for i, line in enumerate(self.lines):
                by_id.setdefault(line[:3], []).append(i)
            self._by_id = by_id
        return self._by_id

    def segments(self, segment_id: str) -> list[Segment]:
        return [self._seg(i) for i in self._index().get(segment_id, ())]

    def segment(self, segment_id: str) -> Segment | None:
        found = self._index().get(segment_id)
        return self._seg(found[0]) if found else None

    def __getitem__(self, segment_id: str) -> Segment:
        """First segment of that id; an empty segment when absent, so chained reads stay simple."""
        found = self._index().get(segment_id)
        return self._seg(found[0]) if found else Segment(segment_id, self.delimiters, -1)

    def value(self, path: str) -> str:
        """``msg.value("PID.5.1")``: unescaped value of the first segment with that id."""
        seg_id, _, rest = path.partition(".")
        return self[seg_id].value(rest) if rest else ""

    def groups(self, head: str, stop: tuple[str, ...] = ()) -> list[list[Segment]]:
        """Split the message into runs of segments, each starting at a ``head`` segment.

        A run ends at the next ``head`` or at any segment id in ``stop``.
        """
        runs: list[list[Segment]] = []
        current: list[Segment] | None = None
        for seg in self:
            if seg.id == head:
                current = [seg]
                runs.append(current)
            elif seg.id in stop:
                current = None
            elif current is not None:
                current.append(seg)
        return runs

    @property
    def message_type(self) -> tuple[str, str, str]:
        """(MSH-9.1, MSH-9.2, MSH-9.3), e.g. ("RDE", "O11", "RDE_O11")."""
        if self._type is None:
            # MSH is always the first segment (parse() guarantees it): split just that line.
            d = self.delimiters
            parts = self.lines[0].split(d.field, 9)
            raw = parts[8] if len(parts) > 8 else ""
            if (d.repetition in raw or d.escape in raw or d.subcomponent in raw or '"' in raw):
                msh9 = Field(raw, d)
                self._type = (msh9.component(1), msh9.component(2), msh9.component(3))
            else:  # nothing to unescape or cut: the components are the plain split (no Field)
                c = raw.split(d.component, 3) + ["", ""]
                self._type = (c[0], c[1], c[2])
        return self._type

    @property
    def heads(self) -> set[str]:
        """The first four characters of every line (``"PID|"``; ``"PID"`` for a bare id)."""
        heads = self._heads
        if heads is None:
            heads = self._heads = set(map(_HEAD, self.lines))  # C-level loop over the lines
        return heads

    def has_segment(self, segment_id: str) -> bool:
        """Whether a segment occurs, without building the segment index."""
        if self._by_id is not None:
            return segment_id in self._by_id
        if len(segment_id) == 3:
            # A line starting "PID|" is one after a line break (or the first): the same answer
            # as the text search below, from the set of line heads the reader builds anyway.
            heads = self.heads
            return segment_id + self.delimiters.field in heads or segment_id in heads
        fs = self.delimiters.field
        text = self.text
        return (f"\r{segment_id}{fs}" in text or f"\n{segment_id}{fs}" in text
                or text.startswith(f"{segment_id}{fs}") or segment_id in self.lines)

    @property
    def segment_ids(self) -> list[str]:
        return [line[:3] for line in self.lines]


def parse(text: str) -> Message:
    """Tokenize ER7 text (already decoded).  Raises :class:`HL7Error` when there is no MSH."""
    if text.startswith(_STANDARD_MSH):  # the usual header: every check below would pass
        d = STANDARD_DELIMITERS
        body = text.rstrip("\x1c\x1a\r\n")
        lines = body.split("\r") if "\n" not in body else _SEGMENT_SPLIT.split(body)
        if not all(lines):
            lines = [ln for ln in lines if ln.strip()]
        return Message(text, d, lines)
    start = text.find("MSH")
    if start < 0:
        raise HL7Error("no MSH segment: not an HL7 v2 message")
    if start > 0 and text[:start].strip("\x0b\x1c\x1a\r\n \t\ufeff"):
        raise HL7Error(f"{start} characters of non-HL7 data before MSH")
    text = text[start:]
    if len(text) < 8:
        raise HL7Error("MSH segment too short to declare delimiters")
    fs = text[3]
    enc = text[4:9].split(fs, 1)[0]
    if fs.isalnum() or fs in "\r\n" or len(enc) < 2:
        raise HL7Error(f"invalid delimiters declared in MSH-1/MSH-2: {text[3:9]!r}")
    if fs == "|" and enc == "^~\\&":
        d = STANDARD_DELIMITERS
    else:
        d = Delimiters(
            field=fs,
            component=enc[0],
            repetition=enc[1],
            # An absent escape or subcomponent character is "not used": NUL never occurs in text
            # that passed the reader, so splitting on it is a no-op rather than an error.
            escape=enc[2] if len(enc) > 2 else "\x00",
            subcomponent=enc[3] if len(enc) > 3 else "\x00",
        )
    body = text.rstrip("\x1c\x1a\r\n")
    lines = body.split("\r") if "\n" not in body else _SEGMENT_SPLIT.split(body)
    if not all(lines):
        lines = [ln for ln in lines if ln.strip()]
    return Message(text, d, lines)


def bad_segment_ids(msg: Message) -> list[tuple[int, str]]:
    """Segments whose id is not three upper-case letters/digits (garbage or a broken line)."""
    fs = msg.delimiters.field
    # The cache holds heads seen with the standard "|" only: "PID|" is no segment start when
    # the field separator is another character.
    cached = fs == "|"
    if cached and msg.heads <= _GOOD_HEADS:  # one C-level subset test for the common case
        return []
    bad = []
    for i, line in enumerate(msg.lines):
        head = line[:4]
        if cached and head in _GOOD_HEADS:
            continue
        if _SEGMENT_ID.match(line[:3]) and (len(line) == 3 or line[3] == fs):
            if cached and len(_GOOD_HEADS) < 4096:
                _GOOD_HEADS.add(head)
            continue
        bad.append((i, line[:20]))
    return bad


# Heads ("PID|", "ZXX") of lines seen well formed with "|".  A set, not a storage.memo cache:
# the fast path is one subset test of the message's heads against it; it depends on no table.
_GOOD_HEADS: set[str] = set()
