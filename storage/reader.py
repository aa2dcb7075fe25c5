"""Read one stored file into a parsed message, or into a precise problem report.

No exception escapes for bad data: every outcome is a :class:`ReadResult` whose ``problems``
say what is wrong (kind, plain reason, byte offset where useful).  Errors mean the file could
not be used; warnings mean it was read but something about it needs fixing at the source.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field

from .encoding import ESC, Decoded, decode, is_utf16
from .hl7 import HL7Error, Message, bad_segment_ids, parse
from .layout import Storage, StoredFile
from .memo import memo
from .names import DATA_TYPES, FileName
from .text import mojibake_signals, widen_kana

ERROR = "error"
WARNING = "warning"

# Problem kinds (stable strings: the drill report and tests key on them).
KIND_NAME = "bad-name"
KIND_MISPLACED = "misplaced"
KIND_EMPTY = "zero-bytes"
KIND_BINARY = "binary"
KIND_DECODE = "decode-failure"
KIND_REPLACED = "replacement-characters"
KIND_ENCODING = "wrong-encoding"
KIND_NONSTANDARD = "nonstandard-characters"
KIND_LINE_ENDINGS = "line-endings"
KIND_NOT_HL7 = "not-hl7"
KIND_TRUNCATED = "truncated"
KIND_TYPE = "type-mismatch"
KIND_MOJIBAKE = "mojibake"
KIND_IO = "io-error"
KIND_MAPPING = "mapping-error"
KIND_PATIENT = "patient-mismatch"

# Segments without which a message of that structure cannot be what it claims to be.
REQUIRED_SEGMENTS: dict[str, tuple[str, ...]] = {
    "ADT": ("EVN", "PID"),
    "PPR": ("PID", "PRB"),
    "RDE": ("PID", "ORC", "RXE"),
    "RAS": ("PID", "ORC", "RXA"),
    "OML": ("PID", "ORC"),
    "OUL": ("PID", "OBR"),
    "OMG": ("PID", "ORC", "OBR"),
    "OMI": ("PID", "ORC", "OBR"),
    "ORU": ("PID", "OBR"),
    "OMD": ("PID", "ORC"),
}


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    kind: str
    reason: str
    severity: str = ERROR
    offset: int | None = None

    def as_dict(self) -> dict[str, str | int]:
        d: dict[str, str | int] = {"path": self.path, "kind": self.kind, "severity": self.severity, "reason": self.reason}
        if self.offset is not None:
            d["offset"] = self.offset
        return d


@dataclass(slots=True)
class ReadResult:
    path: str
    name: FileName | None
    message: Message | None = None
    codec: str | None = None
    size: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.message is not None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def fail(self, kind: str, reason: str, offset: int | None = None) -> "ReadResult":
        self.problems.append(Problem(self.path, kind, reason, ERROR, offset))
        self.message = None
        return self

    def warn(self, kind: str, reason: str, offset: int | None = None) -> None:
        self.problems.append(Problem(self.path, kind, reason, WARNING, offset))


_BINARY = re.compile(rb"[\x00-\x08\x0c\x0e-\x19\x1d-\x1f\x7f]")


_BINARY_BYTES = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0B, 0x0D, 0x1A, 0x1B, 0x1C))
_BINARY_BYTES += b"\x7f"


def _binary_offset(data: bytes) -> int | None:
    """Offset of the first byte that never occurs in a text message (NUL and most C0 controls)."""
    if len(data.translate(None, _BINARY_BYTES)) == len(data):  # C-speed scan for the common case
        return None
    m = _BINARY.search(data)
    return m.start() if m else None


def _ends_inside_kanji(data: bytes) -> bool:
    """ISO-2022-JP that never shifts back to ASCII was cut in the middle of Japanese text.

    True when the last ``ESC $ B`` / ``ESC $ @`` has no ``ESC (`` after it.  Walking back over
    the ESC bytes (memrchr) usually stops at the first one instead of scanning the whole file
    for a sequence that is absent.
    """
    end = len(data)
    while True:
        i = data.rfind(b"\x1b", 0, end)
        if i < 0:
            return False
        seq = data[i + 1 : i + 3]
        if seq[:1] == b"(":
            return False  # a shift back to a one-byte set after every earlier kanji shift
        if seq in (b"$B", b"$@"):
            return True
        end = i


def _whole_kanji_line(body: bytes) -> bool:
    """After the last kanji shift, whole two-byte characters up to the line end."""
    run = body[body.rfind(b"\x1b") + 3:].rstrip(b"\r\n")
    return len(run) % 2 == 0 and b"\r" not in run and b"\n" not in run


def read_bytes(data: bytes, relpath: str, name: FileName | None = None) -> ReadResult:
    """Decode, tokenize and sanity-check the bytes of one message."""
    res = ReadResult(relpath, name, size=len(data))
    if len(data) < 8 and not data.strip(b"\x0b\x1c\x1a\r\n \t"):
        return res.fail(KIND_EMPTY, "the file is empty (zero bytes)" if not data
                        else "the file holds only framing or whitespace")
    off = None if is_utf16(data) else _binary_offset(data)
    if off is not None:
        return res.fail(KIND_BINARY, f"binary data (byte 0x{data[off]:02x}) is not HL7 text", off)
    dec: Decoded = decode(data)
    res.codec = dec.codec
    if dec.codec == "utf-16":  # the byte-level checks below read one-byte text
        data = data.decode("utf-16-be" if data[:1] == b"\x00" else "utf-16",
                           errors="replace").lstrip("\ufeff").encode("utf-8")
    if dec.codec == "cp932-replace":
        return res.fail(KIND_DECODE, "bytes are neither ISO-2022-JP, UTF-8, EUC-JP nor Shift_JIS "
                        f"({dec.replaced} characters could not be decoded)")
    text = dec.text
    if dec.codec != "iso-2022-jp" or dec.kana:  # strict JIS X 0208 has no half-width kana
        text = widen_kana(text)  # (reported below as not allowed in SS-MIX2)
    try:
        msg = parse(text)
    except HL7Error as exc:
        return res.fail(KIND_NOT_HL7, str(exc))
    res.message = msg
    if dec.replaced:
        res.warn(KIND_REPLACED, f"{dec.replaced} characters were replaced by U+FFFD while decoding")
    if not dec.declared_ok:
        charset = msg["MSH"][18].raw or "(empty)"
        res.warn(KIND_ENCODING, f"bytes are {dec.codec} but the storage requires ISO-2022-JP "
                 f"(MSH-18 declares {charset})")
    elif dec.codec == "iso-2022-jp+cp932":
        res.warn(KIND_NONSTANDARD, "half-width katakana (JIS X 0201, ESC ( I) or Windows-only "
                 "characters (CP50220 style) outside JIS X 0208" if dec.kana else
                 "Windows-only characters (CP50220 style) outside JIS X 0208")
    if b"\n" in data:  # (stripping trailing 0x1C/0x1A first could not remove an LF: no copy)
        res.warn(KIND_LINE_ENDINGS, "segments are separated by LF/CRLF instead of CR")
    _check_truncation(res, data, msg)
    if res.message is None:
        return res
    _check_type(res, msg)
    bad = bad_segment_ids(msg)
    if bad:
        idx, line = bad[0]
        res.warn(KIND_NOT_HL7, f"{len(bad)} lines are not HL7 segments (first: segment {idx + 1} "
                 f"{line!r})")
    # Strict ISO-2022-JP (JIS X 0208 + ASCII) cannot produce the characters the cheap mojibake
    # checks look for, except half-width kana through ESC ( I; skip the text scan then.
    # (dec.kana is exactly "ESC ( I occurs in the bytes", found by decode's one regex pass.)
    if dec.codec != "iso-2022-jp" or dec.kana:
        for signal in mojibake_signals(dec.text):
            res.warn(KIND_MOJIBAKE, signal)
    return res


def _missing_segments(msg: Message, structure: str) -> list[str]:
    required = REQUIRED_SEGMENTS.get(structure)
    if not required:
        return []
    # One subset test on the line heads ("PID|" ...) answers the common case for "|".
    if msg.delimiters.field == "|" and _REQUIRED_HEADS[structure] <= msg.heads:
        return []
    return [s for s in required if not msg.has_segment(s)]


_REQUIRED_HEADS = {k: frozenset(s + "|" for s in v) for k, v in REQUIRED_SEGMENTS.items()}


def _check_truncation(res: ReadResult, data: bytes, msg: Message) -> None:
    """Cut short = evidence, not a missing final terminator.

    A file that merely lacks the CR after its last segment is complete (many writers omit it).
    Evidence of a cut: the bytes end inside Japanese text, required segments are missing, or the
    last segment stops before fields its kind always has (:func:`_cut_mid_segment`).  The last
    case keeps the message (what was written is mapped) with an error, so every resource of the
    file comes with an outcome entry in searches and $everything.
    """
    body = data.rstrip(b"\x1c\x1a \t")
    terminated = body.endswith((b"\r", b"\n"))
    structure = msg.message_type[0]
    in_kanji = ESC in data and _ends_inside_kanji(data)
    if in_kanji and terminated and _whole_kanji_line(body):
        # the last line ends in whole kanji and a line end, never shifting back: an encoder
        # that omits the final ESC ( B, not a cut (the text decoded whole)
        res.warn(KIND_NONSTANDARD, "the last line ends without shifting back to ASCII (ESC ( B)")
        in_kanji = False
    if structure and not _missing_segments(msg, structure) and not in_kanji:
        # no evidence: skip building the reasons
        if not terminated:
            cut = _cut_mid_segment(msg)
            if cut:
                res.problems.append(Problem(res.path, KIND_TRUNCATED, "message is cut short in "
                                            f"its last segment: {cut}; the resources of this "
                                            "file may be incomplete", ERROR, len(data)))
        return
    evidence = []
    if in_kanji:
        evidence.append("ends inside Japanese text without returning to ASCII")
    missing = _missing_segments(msg, structure)
    if missing:
        evidence.append(f"required segments missing: {', '.join(missing)}")
    if not msg.message_type[0]:
        evidence.append("MSH-9 message type is empty")
    if evidence and not terminated:
        res.fail(KIND_TRUNCATED, "message is cut short: " + "; ".join(evidence), len(data))
    elif missing and len(evidence) == 1 and "PID" not in missing and len(msg.lines) > 2:
        # a whole message without a segment its structure requires (a vendor that omits EVN):
        # not a cut - what is there is mapped, and the drill says what is missing
        from .structure import KIND_STRUCTURE
        res.warn(KIND_STRUCTURE, f"required segments missing: {', '.join(missing)} (the rest "
                 "of the message is mapped)")
    elif evidence:
        res.fail(KIND_NOT_HL7 if not msg.message_type[0] else KIND_TRUNCATED,
                 "incomplete message: " + "; ".join(evidence))


def _cut_mid_segment(msg: Message) -> str | None:
    """Why the last segment of an unterminated message was cut, or None when it looks whole:
    its id is not a segment id, it lacks a field SS-MIX2 requires of it, or it has fewer
    fields than every earlier segment of the same kind."""
    from .structure import REQUIRED

    last = msg.lines[-1]
    fs = msg.delimiters.field
    sid = last[:3]
    if len(msg.lines) > 1 and (len(last) < 3 or not last[:3].isalnum() or not last[:3].isupper()
                               or (len(last) > 3 and last[3] != fs)):
        return f"segment {len(msg.lines)} {last[:10]!r} is not a whole segment id"
    count = len(last.split(fs)) - (0 if sid == "MSH" else 1)
    for seg_id, num, _types, label in REQUIRED:
        if seg_id == sid and num > count and any(
                len(line.split(fs)) - 1 >= num for line in msg.lines[:-1] if line[:3] == sid):
            return f"{sid} (segment {len(msg.lines)}) ends before {sid}-{num} {label.split(' / ')[-1]}"
    earlier = [len(line.split(fs)) - 1 for line in msg.lines[:-1] if line[:3] == sid]
    if len(earlier) >= 2 and count < min(earlier):
        return (f"{sid} (segment {len(msg.lines)}) has {count} fields, every earlier {sid} has "
                f"at least {min(earlier)}")
    return None


@memo(4096)
def _type_accepted(data_type: str, mtype: str, event: str) -> bool:
    """Whether the folder's data type holds MSH-9 (a handful of combinations recur in every
    tree: each is decided once)."""
    dtype = DATA_TYPES.get(data_type)
    return not dtype or dtype.accepts(mtype, event)


def _check_type(res: ReadResult, msg: Message) -> None:
    if res.name is None:
        return
    mtype, event, _ = msg.message_type
    if not _type_accepted(res.name.data_type, mtype, event):
        dtype = DATA_TYPES[res.name.data_type]
        reason = (f"MSH-9 is {mtype}^{event}, but data type {dtype.code} holds "
                  + " or ".join(f"{m}^{e}" for m, e, _ in dtype.events))
        if dtype.readable(mtype, event):
            res.warn(KIND_TYPE, reason + f"; read and mapped as {dtype.code} (folder)")
        else:
            res.fail(KIND_TYPE, reason)


def read_file(storage: Storage, stored: StoredFile) -> ReadResult:
    """Read a file found by :class:`Storage`; name and placement problems come first."""
    if stored.name is None:
        return ReadResult(stored.relpath, None).fail(
            KIND_NAME, f"file name breaks the SS-MIX2 rule: {stored.name_error}")
    if stored.misplaced:
        return ReadResult(stored.relpath, stored.name).fail(
            KIND_MISPLACED, f"file is in the wrong folder: {stored.misplaced}")
    try:
        data = _read_all(storage.abspath(stored.relpath))
    except OSError as exc:
        return ReadResult(stored.relpath, stored.name).fail(
            KIND_IO, f"cannot read the file: {exc.strerror or exc}")
    return read_bytes(data, stored.relpath, stored.name)


_CHUNK = 1 << 16  # one read() holds any ordinary message; larger files take a few more


def _read_all(path: str, ahead: "ReadAhead | None" = None) -> bytes:
    """Whole file through os.open/os.read: half the cost of open().read(), which builds a
    FileIO + BufferedReader pair and stats the file for every ~1 KB message.  ``ahead``: the
    file is one of a list read in order (:class:`ReadAhead`)."""
    fd = os.open(path, _O_FLAGS)
    try:
        if ahead is not None and ahead.probing():
            data = ahead.first(fd)
            if data is not None:  # read at an offset: the file position did not move
                return _rest(fd, data, True)
        return _rest(fd, os.read(fd, _CHUNK), False)
    finally:
        os.close(fd)


def _rest(fd: int, data: bytes, positioned: bool) -> bytes:
    """``data`` (the file's first bytes) and the rest of the file, read until end of file as
    open().read() does: network and FUSE mounts may return short reads before the end, so a
    read shorter than asked for proves nothing."""
    if not data:
        return data
    chunks = [data]
    size = len(data)
    while True:
        more = os.pread(fd, _CHUNK, size) if positioned else os.read(fd, _CHUNK)
        if not more:
            return data if len(chunks) == 1 else b"".join(chunks)
        chunks.append(more)
        size += len(more)


_O_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
_NOWAIT = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None


def prefetch(paths: list[str]) -> None:
    """Ask the kernel to start reading ``paths`` now (``posix_fadvise`` WILLNEED), so a cold
    chart's files come off the disk together instead of one read at a time as they are
    mapped.  Advice only: a file that cannot be opened is left for the real read to report."""
    if _WILLNEED is None:
        return
    for path in paths:
        try:
            fd = os.open(path, _O_FLAGS)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, _WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


class ReadAhead:
    """Files read one by one in a known order (a chart, by the export's stream): a cold
    chart's files are announced to the kernel (:func:`prefetch`) so they come off the disk
    together, but only when they are not in the page cache already - announcing costs an
    extra open per file, and most charts are warm.

    The first read of a window is tried without waiting for the disk (``preadv2``
    ``RWF_NOWAIT``): when the file is cached nothing is announced; when it is not (EAGAIN),
    the next :attr:`WINDOW` files from it on are announced and read normally, then the next
    file probes again.  Without ``RWF_NOWAIT`` (not Linux, an old kernel, a file system that
    refuses it) every window is announced, as :func:`prefetch` of the whole list would."""

    WINDOW = 256

    __slots__ = ("paths", "_done", "_until", "_buf")

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self._done = 0  # files read so far (the next one is paths[_done])
        self._until = 0  # files before this index were announced
        self._buf: bytearray | None = None

    def read(self, path: str) -> bytes:
        """The whole file (the next of :attr:`paths`); raises ``OSError`` like a read."""
        try:
            return _read_all(path, self)
        finally:
            self._done += 1

    def probing(self) -> bool:
        """Whether the next read is the first one past the announced window."""
        return self._done >= self._until

    def first(self, fd: int) -> bytes | None:
        """The file's first bytes when they are cached; otherwise None after announcing the
        window that starts at this file (the caller then reads, waiting for the disk)."""
        if _NOWAIT is not None:
            buf = self._buf
            if buf is None:
                buf = self._buf = bytearray(_CHUNK)
            try:
                n = os.preadv(fd, [buf], 0, _NOWAIT)
            except BlockingIOError:
                pass  # not cached: announce the window
            except OSError as exc:
                if exc.errno not in _NOWAIT_REFUSED:
                    raise  # a real read error (a folder, EIO): the caller reports it
            else:
                if n == 0:  # an empty file - or a file system that answers 0, not EAGAIN
                    return os.pread(fd, _CHUNK, 0)
                return bytes(memoryview(buf)[:n])
        start = self._done
        self._until = start + self.WINDOW
        prefetch(self.paths[start:self._until])
        return None


_NOWAIT_REFUSED = {getattr(errno, n) for n in ("EOPNOTSUPP", "ENOTSUP", "EINVAL", "ENOSYS")
                   if hasattr(errno, n)}


def read_path(path: str | os.PathLike[str], relpath: str, name: FileName | None = None,
              ahead: ReadAhead | None = None) -> ReadResult:
    """Read and check the file at ``path`` (shown as ``relpath``); ``ahead``: ``path`` is the
    next file of that list (:class:`ReadAhead`)."""
    try:
        data = ahead.read(os.fspath(path)) if ahead is not None else _read_all(os.fspath(path))
    except OSError as exc:
        return ReadResult(relpath, name).fail(KIND_IO, f"cannot read the file: {exc.strerror or exc}")
    return read_bytes(data, relpath, name)


def patient_mismatch(res: ReadResult) -> str | None:
    """Why the message's PID-3 names a patient other than the one the file is stored for.

    The file is still served under its folder's patient (the storage's own filing); the drill
    reports the disagreement as a warning, since one of the two is wrong at the source.
    """
    if res.message is None or res.name is None:
        return None
    pid3 = res.message["PID"][3]
    ids = [rep.component(1) for rep in pid3.repetitions if rep.component(1)]
    if not ids or res.name.patient_id in ids:
        return None
    return (f"PID-3 names patient {', '.join(ids)}, but the file is stored for patient "
            f"{res.name.patient_id}")
