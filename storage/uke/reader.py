"""Bytes -> records -> receipts: the whole file (:func:`read_uke`), its header and RE records
only (:func:`scan_receipts`), or a few receipts at known byte ranges (:func:`read_ranges`).

Every problem becomes a :class:`storage.reader.Problem` whose reason starts with ``line N:``
and whose offset is the byte offset of that line.  Nothing raises."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ..encoding import fold
from ..reader import WARNING
from .dates import parse_uke_date
from .layouts import EOF, HEADER_TYPES, ITEM_TYPES, KNOWN_TYPES, header_variant, layout_for, \
    variant_of
from .records import (
    KIND_DATE,
    KIND_DECODE,
    KIND_EMPTY,
    KIND_FIELDS,
    KIND_IO,
    KIND_STRUCTURE,
    KIND_TOTALS,
    KIND_UNKNOWN,
    Item,
    Receipt,
    UkeFile,
    UkeRecord,
)


# --- reading ------------------------------------------------------------------------------------

def _lines(data: bytes, first_line: int = 1, base: int = 0) -> Iterator[tuple[int, int, int, bytes]]:
    """(line number, byte offset, end offset, bytes) of each non-empty line; the end includes
    the line break.  0x0A never occurs inside a CP932 character, so splitting before decoding is
    safe.  ``first_line``/``base`` number a slice that starts at a line of a larger file."""
    offset = base
    limit = base + len(data)
    for n, raw in enumerate(data.split(b"\n"), first_line):
        start = offset
        offset += len(raw) + 1
        line = raw.rstrip(b"\r").rstrip(EOF)
        if line.strip():
            yield n, start, offset if offset < limit else limit, line


def _sniff(data: bytes) -> tuple[bytes, str]:
    """The bytes without a UTF-8 BOM, and their codec: UTF-8 when all of them decode as UTF-8,
    else CP932 (the Shift_JIS of the receipt files).  :func:`read_uke` and
    :func:`scan_receipts` must choose alike: receipt numbers index one into the other."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        return data, "cp932"


def read_uke(data: bytes, path: str) -> UkeFile:
    """Parse the bytes of one UKE file; problems are collected, never raised."""
    uf = UkeFile(path)
    if not data.strip(EOF + b"\r\n \t"):
        uf.problem(None, KIND_EMPTY, "the file is empty")
        return uf
    stripped, codec = _sniff(data)
    uf.codec = codec
    uf.skip = len(data) - len(stripped)
    _group(uf, _records(uf, stripped, codec))
    _check_totals(uf)
    return uf


def _records(uf: UkeFile, data: bytes, codec: str, first_line: int = 1, base: int = 0
             ) -> list[UkeRecord]:
    recs: list[UkeRecord] = []
    texts = _decoded_lines(data, codec)
    for n, off, end, raw in _lines(data, first_line, base):
        if texts is not None:
            text = texts[n - first_line].rstrip("\r").rstrip("\x1a")
            recs.append(UkeRecord(text.split(","), n, off, end=end))
            continue
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            text = raw.decode(codec, errors="replace")
            rec = UkeRecord(text.split(","), n, off)
            uf.problem(rec, KIND_DECODE, f"bytes at offset {off + exc.start} are not {codec}; "
                       f"{text.count(chr(0xFFFD))} characters replaced")
        text = fold(text)
        recs.append(UkeRecord(text.split(","), n, off, end=end))
    return recs


def _decoded_lines(data: bytes, codec: str) -> list[str] | None:
    """The folded text of every line of ``data`` (``data.split(b"\\n")``) from one decode of
    the whole (a line at a time costs a codec look-up and a decoder each); None when some
    bytes do not decode (then each line is decoded alone, to say where).  In CP932 and UTF-8
    neither a line break nor CR or EOF is ever part of a character, so the lines are the same
    as decoding each byte line."""
    if codec not in ("cp932", "utf-8"):
        return None
    try:
        texts = fold(data.decode(codec)).split("\n")
    except UnicodeDecodeError:
        return None
    return texts if len(texts) == data.count(b"\n") + 1 else None


def read_ranges(path: str | os.PathLike[str], relpath: str, codec: str, skip: int,
                ranges: list[tuple[int, int, int]]) -> UkeFile:
    """Only some receipts of a file: ``ranges`` are (start, end, first line) of the header
    record and then of each receipt, as :func:`read_uke` reported them (offsets after the
    ``skip`` bytes of a BOM; ``codec`` the whole file's).  The receipts come out as
    ``read_uke`` builds them; file-wide checks (GO totals) are not made.  A short read (the file
    shrank) just yields fewer or different records: the caller checks what it got."""
    uf = UkeFile(relpath)
    uf.codec, uf.skip = codec, skip
    recs: list[UkeRecord] = []
    try:
        fd = os.open(path, os.O_RDONLY)  # (no file object: a chunk of an export opens ~1,000)
        try:
            for start, end, line in ranges:
                data = os.pread(fd, max(0, end - start), start + skip)
                recs.extend(_records(uf, data, codec, line, start))
        finally:
            os.close(fd)
    except OSError as exc:
        uf.problem(None, KIND_IO, f"cannot read the file: {exc.strerror or exc}")
        return uf
    _group(uf, recs)
    return uf


def scan_receipts(data: bytes) -> tuple[UkeRecord | None, list[UkeRecord]]:
    """The header (IR/UK/YK) and the RE records of a UKE file, nothing else.

    For indexing receipts by カルテ番号 and number without grouping or checking the other records
    (about 40x cheaper than :func:`read_uke`): the n-th RE returned is ``read_uke(data).receipts[n]``
    (same line splitting and codec choice).  Records carry their layout; never raises."""
    data, codec = _sniff(data)
    header: UkeRecord | None = None
    res: list[UkeRecord] = []
    for n, off, end, raw in _lines(data):
        head = raw[:8].lstrip()
        if not head.startswith((b"RE", b"IR", b"UK", b"YK")):
            continue
        fields = fold(raw.decode(codec, errors="replace")).split(",")
        rtype = fields[0].strip()
        fields[0] = rtype
        rec = UkeRecord(fields, n, off, end=end)
        if rtype == "RE":
            rec.layout = layout_for("RE", len(fields),
                                    variant_of(header["tensuhyo"] if header is not None else ""))
            res.append(rec)
        elif rtype in HEADER_TYPES and (header is None or (header.type != "IR" and rtype == "IR")):
            rec.layout = layout_for(rtype, len(fields), header_variant(fields))
            header = rec
    return header, res


def read_uke_file(path: str | os.PathLike[str], relpath: str | None = None) -> UkeFile:
    p = Path(path)
    rel = relpath or p.name
    try:
        data = p.read_bytes()
    except OSError as exc:
        uf = UkeFile(rel)
        uf.problem(None, KIND_IO, f"cannot read the file: {exc.strerror or exc}")
        return uf
    return read_uke(data, rel)


def _check_fields(uf: UkeFile, rec: UkeRecord, variant: str | None = None) -> None:
    """Give ``rec`` its layout (``variant``: the file's, when the caller knows it) and report
    field counts and dates the layout does not expect."""
    fields = rec.fields
    n = len(fields)
    lay = layout_for(fields[0], n, variant or uf.variant)
    rec.layout = lay
    if lay is None:
        return
    count = lay.count
    if n < count:
        uf.problem(rec, KIND_FIELDS, f"{rec.type} has {n} fields, the {lay.variant} layout has "
                   f"{count}; the missing trailing fields are read as empty", WARNING)
    elif n > count and any(f.strip() for f in fields[count:]):
        uf.problem(rec, KIND_FIELDS, f"{rec.type} has {n} fields, the {lay.variant} layout has "
                   f"{count}; the extra fields are kept unnamed", WARNING)
    for name in lay.dates:
        v = rec[name]
        if v and parse_uke_date(v) is None:
            uf.problem(rec, KIND_DATE, f"{rec.type} {name} {v!r} is not a 和暦 GYYMM(DD) "
                       "or 西暦 YYYYMM(DD) date", WARNING)


_RECORD_ID = re.compile(r"[A-Z0-9]{2}")  # (every KNOWN_TYPES id is one: checked first)
_UNIT_FIELDS = ("category", "points")  # what decides an item's 点数・回数算定単位
# Receipt records kept in a list of their own (HO and MF are single, SI/IY/TO/SS items, CO comments).
_RECEIPT_LISTS: dict[str, Callable[[Receipt], list[UkeRecord]]] = {
    "KO": lambda r: r.ko, "SN": lambda r: r.sn, "JD": lambda r: r.jd,
    "SY": lambda r: r.sy, "HS": lambda r: r.hs, "SJ": lambda r: r.sj,
}


def _group(uf: UkeFile, recs: list[UkeRecord]) -> None:
    """Records -> receipts (RE up to the next RE/GO), header, trailer, orphans, in file order."""
    grouper = _Grouper(uf)
    for rec in recs:
        grouper.add(rec)
    grouper.close()


class _Grouper:
    """Grouping state: the current receipt, its 診療識別 (category) and 点数・回数算定単位
    (unit), and the CO records waiting for the item they precede."""

    def __init__(self, uf: UkeFile) -> None:
        self.uf = uf
        self.cur: Receipt | None = None
        self.category = ""
        self.unit = 0
        self.unit_open = False
        self.pending: list[UkeRecord] = []
        self.variant = uf.variant  # the file's 点数表 variant, known once its headers are read

    def close(self) -> None:
        if self.cur is not None:
            self.cur.comments.extend(self.pending)
        self.pending = []

    def add(self, rec: UkeRecord) -> None:
        uf = self.uf
        rtype = rec.fields[0].strip()
        rec.fields[0] = rtype
        known = rtype in KNOWN_TYPES
        if not known and not _RECORD_ID.fullmatch(rtype):
            uf.problem(rec, KIND_STRUCTURE, f"line does not start with a record id: {rtype[:20]!r}")
            (self.cur.records if self.cur else uf.orphans).append(rec)
            return
        if rtype in HEADER_TYPES:
            self._header(rec, rtype)
            return
        _check_fields(uf, rec, self.variant)
        if not known:
            uf.problem(rec, KIND_UNKNOWN, f"unknown record type {rtype}; the record is kept raw",
                       WARNING)
        if rtype == "GO":
            self._trailer(rec)
        elif rtype == "RE":
            self._receipt(rec)
        elif self.cur is None:
            uf.problem(rec, KIND_STRUCTURE, f"{rtype} record outside any receipt (no RE before it)")
            uf.orphans.append(rec)
        else:
            self._in_receipt(self.cur, rec, rtype)

    def _header(self, rec: UkeRecord, rtype: str) -> None:
        uf = self.uf
        # its own 点数表's layout: a dental file usually starts with its IR
        _check_fields(uf, rec, header_variant(rec.fields))
        if uf.receipts and uf.ir is not None and rec["facility_code"] != uf.ir["facility_code"]:
            uf.problem(rec, KIND_STRUCTURE, "a header for another facility "
                       f"({rec['facility_code']}) inside the file of {uf.ir['facility_code']}")
        uf.headers.append(rec)
        if uf.ir is None or (uf.ir.type != "IR" and rtype == "IR"):
            uf.ir = rec
        self.variant = uf.variant

    def _trailer(self, rec: UkeRecord) -> None:
        self.close()
        self.cur = None
        if self.uf.go is not None:
            self.uf.problem(rec, KIND_STRUCTURE, "a second GO record")
        self.uf.go = rec

    def _receipt(self, rec: UkeRecord) -> None:
        self.close()
        self.cur = Receipt(rec, records=[rec])
        self.uf.receipts.append(self.cur)
        self.category, self.unit, self.unit_open = "", 0, False
        if self.uf.go is not None:
            self.uf.problem(rec, KIND_STRUCTURE, "receipt after the GO trailer")

    def _in_receipt(self, cur: Receipt, rec: UkeRecord, rtype: str) -> None:
        cur.records.append(rec)
        listed = _RECEIPT_LISTS.get(rtype)
        if listed is not None:
            listed(cur).append(rec)
        elif rtype == "HO":
            if cur.ho is not None:
                self.uf.problem(rec, KIND_STRUCTURE, "a second HO record in one receipt", WARNING)
            cur.ho = cur.ho or rec
        elif rtype == "MF":
            cur.mf = rec
        elif rtype in ITEM_TYPES:
            self._item(cur, rec)
        elif rtype == "CO":
            self._comment(cur, rec)

    def _item(self, cur: Receipt, rec: UkeRecord) -> None:
        """An SI/IY/TO/SS: a new 算定単位 starts with a new category or after points."""
        category, points = rec.values(_UNIT_FIELDS)
        if category:
            if category != self.category:
                self.unit_open = False
            self.category = category
        if not self.unit_open:
            self.unit += 1
            self.unit_open = True
        item = Item(rec, self.category, self.unit)
        rec.category = self.category
        pending = self.pending
        if pending and all(c.category == self.category for c in pending):
            item.comments.extend(pending)
        else:
            cur.comments.extend(pending)
        self.pending = []
        cur.items.append(item)
        if points:
            self.unit_open = False  # points close the 点数・回数算定単位

    def _comment(self, cur: Receipt, rec: UkeRecord) -> None:
        """A CO belongs to the item before it in its category, else waits for the next item."""
        if rec["category"]:
            self.category = rec["category"]
        rec.category = self.category
        last = cur.items[-1] if cur.items else None
        if not self.pending and last is not None and last.category == self.category:
            last.comments.append(rec)
        else:
            self.pending.append(rec)


def _check_totals(uf: UkeFile) -> None:
    if uf.ir is None:
        uf.problem(None, KIND_STRUCTURE, "no IR/UK/YK header record")
    if uf.go is None:
        uf.problem(None, KIND_STRUCTURE, "no GO trailer record (file may be cut short)")
        return
    # 総件数 counts each bearer of a receipt (HO and every KO), as the paper 請求書 does: the
    # samples confirm it (7 RE + 6 KO = 13).  A plain receipt count is accepted as well.
    count = uf.go["total_receipts"]
    bearers = sum(max(1, (1 if r.ho else 0) + len(r.ko)) for r in uf.receipts)
    if count.isdigit() and int(count) not in (bearers, len(uf.receipts)):
        uf.problem(uf.go, KIND_TOTALS, f"GO 総件数 is {int(count)}, the file holds "
                   f"{len(uf.receipts)} receipts with {bearers} bearers (HO + KO)")
    points = uf.go["total_points"]
    totals = [r.total_points for r in uf.receipts]
    if points.isdigit() and None not in totals and int(points) != sum(totals):  # type: ignore[arg-type]
        uf.problem(uf.go, KIND_TOTALS, f"GO 総合計点数 is {int(points)}, the receipts add up to "
                   f"{sum(totals)}")  # type: ignore[arg-type]
