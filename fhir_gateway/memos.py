"""Patient memos written in the viewer: an append-only journal, one JSON object per line.

Memos are the only data the gateway writes, so they live in ``{data_dir}/memos/{facility}.jsonl``
— never in the SS-MIX2 tree.  Each append holds an exclusive ``flock`` (one writer across
processes), is written with a loop until every byte is down (``os.write`` may write less: a nearly
full disk) and ``fsync``-ed before the call returns, so a memo the user saw acknowledged survives
``kill -9`` or a power cut.  Any failure truncates the journal back to where it was and raises
:class:`MemoStorageError`: the memo is refused, never half-written (issue 13 H2).  A line torn by a
crash *during* a write (never acknowledged) is skipped when reading.  Memos are never edited or
deleted: a correction is a new memo whose ``corrects`` names the old one, which is then shown (and
served) as entered-in-error; only the memo's author (same account and staff number) or an admin of
the facility may do that — everyone else adds a new memo (issue 11 item 9).

Integrity: each line carries ``prev`` (the previous line's ``mac``) and ``mac``, an HMAC-SHA256
with the data directory's key (:mod:`fhir_gateway.integrity`); ``{facility}.head`` holds the keyed
count and last mac, so a dropped tail shows.  The journal is verified whenever it is read: a
tampered line is still shown, marked, with a warning (``fhir-gateway memos verify`` exits non-zero).

FHIR: a memo is served as a **DocumentReference** (see :func:`memo_to_fhir`).  Why not
Communication: a Communication is a message sent from someone to someone; a memo is a note filed
in the patient's record for whoever reads it later.  DocumentReference has exactly the status set
we need (current / entered-in-error), ``relatesTo.code = replaces`` for corrections, an author,
a date, a custodian (the facility) and a subject, so it lands in Patient/$everything unchanged.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone, timedelta
from pathlib import Path
from typing import Any

from . import integrity, textsafe

log = logging.getLogger(__name__)
JST = timezone(timedelta(hours=9))
MAX_TEXT = 4000
_CODE = re.compile(r"^[0-9A-Za-z]{1,16}$")
_ID = re.compile(r"^memo-[0-9a-f]{32}$")
_FIELDS = ("id", "facility", "patient", "text", "author", "person", "staff_no", "at", "corrects")


class MemoError(ValueError):
    """A memo that cannot be written, with a reason for the user."""


class MemoRefused(MemoError):
    """This user may not do this (mark another person's memo as 誤記)."""


class MemoStorageError(MemoError):
    """The journal could not be written (disk full, read-only, I/O error): nothing was stored."""


@dataclass
class Memo:
    id: str
    facility: str
    patient: str
    text: str
    author: str          # account name (department account)
    person: str          # the individual's name given at login
    staff_no: str
    at: str              # ISO 8601 with +09:00
    corrects: str | None = None
    status: str = "current"  # computed on read: entered-in-error when a later memo corrects it
    corrected_by: list[str] = field(default_factory=list)
    tampered: str = ""   # why this journal line fails verification ("" = intact)

    def to_json(self) -> dict:
        return {"id": self.id, "facility": self.facility, "patient": self.patient,
                "text": self.text, "author": self.author, "person": self.person,
                "staff_no": self.staff_no, "at": self.at, "corrects": self.corrects}

    def may_be_corrected_by(self, author: str, staff_no: str, admin: bool) -> bool:
        """Only the author (same account and staff number) or an admin of the facility."""
        return admin or (author == self.author and staff_no == self.staff_no)


@dataclass
class _Entry:
    text: str
    data: dict
    link: str            # what the next line's ``prev`` must be
    problem: str = ""


class MemoJournal:
    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / "memos"
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._checked: dict[str, tuple[tuple[object, ...], list[_Entry], integrity.Report]] = {}

    def key(self) -> bytes:
        if self._key is None:
            self._key = integrity.load_key(self.data_dir)
        return self._key

    def path(self, facility: str) -> Path:
        if not _CODE.match(facility or ""):
            raise MemoError("bad facility code")
        return self.dir / f"{facility}.jsonl"

    def head_path(self, facility: str) -> Path:
        return self.path(facility).with_suffix(".head")

    def facilities(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.jsonl") if _CODE.match(p.stem))

    @staticmethod
    def _parse(raw: bytes) -> list[tuple[str, dict]]:
        out = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
                d = json.loads(text)
            except (UnicodeDecodeError, ValueError):
                continue  # torn tail of an unacknowledged write
            if isinstance(d, dict):
                out.append((text, d))
        return out

    def _lines(self, facility: str) -> list[tuple[str, dict]]:
        try:
            raw = self.path(facility).read_bytes()
        except (FileNotFoundError, NotADirectoryError, MemoError):
            return []
        return self._parse(raw)

    # --- verification ------------------------------------------------------------------------
    def _verify_lines(self, facility: str, lines: list[tuple[str, dict]]) -> tuple[list[_Entry], integrity.Report]:
        key = self.key()
        entries: list[_Entry] = []
        prev, keyed = "", False
        for text, d in lines:
            problem = ""
            if d.get("prev", "") != prev:
                problem = "the line before it is missing or was replaced"
            if "mac" in d:
                keyed = True
                body = {k: v for k, v in d.items() if k != "mac"}
                want = integrity.mac(key, str(d.get("prev", "")), integrity.canonical(body))
                if not hmac.compare_digest(str(d["mac"]), want):
                    problem = "edited after it was written (MAC does not match)"
            elif keyed:
                problem = "a line without MAC among keyed lines (inserted or rewritten)"
            link = _link(text, d)
            entries.append(_Entry(text, d, link, problem))
            prev = link
        report = integrity.Report(f"memos/{facility}", len(entries))
        bad = tuple(i for i, e in enumerate(entries, 1) if e.problem)
        if bad:
            report.ok, report.first_bad, report.bad = False, bad[0], bad
            report.reason = entries[bad[0] - 1].problem
        head = self._read_head(facility)
        if report.ok and keyed and head is None:
            report.ok, report.first_bad = False, len(entries)
            report.reason = "the keyed head record is missing (the tail may have been dropped)"
        elif report.ok and head is not None:
            count, last, sig = head
            if not hmac.compare_digest(sig, integrity.head_mac(key, facility, count, last)):
                report.ok, report.first_bad = False, min(count, len(entries)) or 1
                report.reason = "the head record was edited"
            elif count > len(entries):
                report.ok, report.first_bad = False, len(entries) + 1
                report.reason = f"{count - len(entries)} line(s) at the end were dropped"
            elif count and entries[count - 1].link != last:
                report.ok, report.first_bad = False, count
                report.reason = "the journal was rewritten up to the head"
        return entries, report

    def checked(self, facility: str) -> tuple[list[_Entry], integrity.Report]:
        """Every parsed line with its verification, cached while the files are unchanged."""
        try:
            st = self.path(facility).stat()
            hst = self.head_path(facility).stat() if self.head_path(facility).exists() else None
            stamp = (st.st_size, st.st_mtime_ns, hst.st_mtime_ns if hst else 0)
        except (FileNotFoundError, MemoError):
            return [], integrity.Report(f"memos/{facility}", 0)
        except OSError as exc:  # the journal cannot be read: say so, do not fail the page
            log.error("memo journal %s unreadable: %s", facility, exc)
            return [], integrity.Report(f"memos/{facility}", 0, False, 1,
                                        f"cannot be read ({exc.strerror or exc})")
        hit = self._checked.get(facility)
        if hit and hit[0] == stamp:
            return hit[1], hit[2]
        entries, report = self._verify_lines(facility, self._lines(facility))
        self._checked[facility] = (stamp, entries, report)
        if not report.ok:
            log.warning("memo journal %s fails verification: %s", facility, report.line())
        return entries, report

    def verify_report(self, facility: str, anchor: integrity.Anchor | None = None) -> integrity.Report:
        entries, report = self._verify_lines(facility, self._lines(facility))
        if anchor is not None:
            integrity.check_anchor(report, anchor, [e.link for e in entries])
        return report

    def verify(self, facility: str) -> tuple[bool, int]:
        """(intact, lines checked up to the first bad one)."""
        r = self.verify_report(facility)
        return r.ok, (r.count if r.ok else (r.first_bad or 1) - 1)

    def anchor(self, facility: str) -> integrity.Anchor:
        entries, _ = self._verify_lines(facility, self._lines(facility))
        return integrity.Anchor(f"memos/{facility}", len(entries),
                                entries[-1].link if entries else "")

    def _read_head(self, facility: str) -> tuple[int, str, str] | None:
        try:
            d = json.loads(self.head_path(facility).read_text(encoding="utf-8"))
            return int(d["count"]), str(d["last"]), str(d["mac"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return (0, "", "")  # unreadable: fails the keyed check

    def _write_head(self, facility: str, count: int, last: str) -> None:
        """Best effort after the memo itself is durable: a missing update only makes the head
        lag (count < lines), which verification accepts."""
        path = self.head_path(facility)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        data = json.dumps({"count": count, "last": last,
                           "mac": integrity.head_mac(self.key(), facility, count, last)})
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, data.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("memo head %s not updated: %s", path, exc)
            try:
                tmp.unlink()
            except OSError:
                pass

    # --- writing -----------------------------------------------------------------------------
    def append(self, facility: str, patient: str, text: str, *, author: str, person: str = "",
               staff_no: str = "", corrects: str | None = None, admin: bool = False) -> Memo:
        """Write one memo durably and return it; raises MemoError with a plain reason.

        ``admin``: the writer administers this facility (may mark anyone's memo as 誤記)."""
        text = (text or "").replace("\r\n", "\n").strip()
        if not text:
            raise MemoError("メモが空です (the memo is empty)")
        if len(text) > MAX_TEXT:
            raise MemoError(f"メモは{MAX_TEXT}文字までです (at most {MAX_TEXT} characters)")
        why = textsafe.describe(text)
        if why:
            raise MemoError(why)
        if not patient or len(patient) > 64 or textsafe.forbidden(patient) or "\n" in patient:
            raise MemoError("bad patient id")
        person, staff_no = textsafe.strip(person), textsafe.strip(staff_no)
        self.path(facility)  # a bad facility code is refused before anything is written
        memo = Memo(id=f"memo-{uuid.uuid4().hex}", facility=facility, patient=patient,
                    text=text, author=author, person=person, staff_no=staff_no,
                    at=datetime.now(JST).isoformat(timespec="seconds"), corrects=corrects)
        self._store(memo, admin)
        return memo

    def _record(self, lines: list[tuple[str, dict]], memo: Memo, admin: bool) -> dict:
        """The chained, keyed journal record of ``memo`` after ``lines`` (checks a correction)."""
        if memo.corrects:
            self._check_correction(lines, memo.patient, memo.corrects, memo.author,
                                   memo.staff_no, admin)
        prev = _link(*lines[-1]) if lines else ""
        record = memo.to_json() | {"prev": prev}
        record["mac"] = integrity.mac(self.key(), prev, integrity.canonical(record))
        return record

    def _store(self, memo: Memo, admin: bool) -> None:
        """Append durably to ``{facility}.jsonl`` (the embedded store; PostgreSQL: see
        :class:`fhir_gateway.scale.pgstate.PgMemoJournal`)."""
        facility = memo.facility
        path = self.path(facility)
        with self._lock:
            try:
                self.key()  # the integrity key exists (or fails here) before any line
                created = not path.exists()
                self.dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise _storage_error(exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # one writer across processes
                size = os.fstat(fd).st_size
                lines = self._parse(os.pread(fd, size, 0)) if size else []
                record = self._record(lines, memo, admin)
                data = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # isolate a torn tail from the new line
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError as exc:
                    _roll_back(fd, size)
                    raise _storage_error(exc) from exc
                self._write_head(facility, len(lines) + 1, record["mac"])
            finally:
                os.close(fd)
            if created:
                try:
                    dfd = os.open(self.dir, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
                except OSError as exc:
                    log.warning("fsync of %s failed: %s", self.dir, exc)

    def _check_correction(self, lines, patient: str, corrects: str, author: str, staff_no: str,
                          admin: bool) -> None:
        old = None
        if _ID.match(corrects):
            old = next((d for _, d in lines
                        if d.get("id") == corrects and d.get("patient") == patient), None)
        if old is None:
            raise MemoError("訂正対象のメモが見つかりません (no such memo for this patient)")
        target = Memo(**{k: old.get(k) for k in _FIELDS})
        if not target.may_be_corrected_by(author, staff_no, admin):
            raise MemoRefused("誤記にできるのはメモを書いた本人か病院管理者だけです。新しいメモを追加してください "
                              "(only the author or a hospital admin may mark this memo as entered in "
                              "error; add a new memo instead)")

    # --- reading -----------------------------------------------------------------------------
    def for_patient(self, facility: str, patient: str) -> list[Memo]:
        """The patient's memos, newest first, with entered-in-error and tampering worked out."""
        entries, _ = self.checked(facility)
        memos = []
        for e in entries:
            if e.data.get("patient") != patient:
                continue
            fields: dict[str, Any] = {k: e.data.get(k) for k in _FIELDS}  # a verified journal line
            m = Memo(**fields)
            m.tampered = e.problem
            memos.append(m)
        by_id = {m.id: m for m in memos}
        for m in memos:
            if m.corrects and m.corrects in by_id:
                old = by_id[m.corrects]
                old.status = "entered-in-error"
                old.corrected_by.append(m.id)
        return memos[::-1]  # journal order is time order

    def warning(self, facility: str) -> integrity.Report | None:
        """The journal's failed verification, for a visible warning (None when intact)."""
        _, report = self.checked(facility)
        return None if report.ok else report

    def get(self, facility: str, memo_id: str) -> Memo | None:
        for e in self.checked(facility)[0]:
            if e.data.get("id") == memo_id:
                return next(m for m in self.for_patient(facility, e.data["patient"])
                            if m.id == memo_id)
        return None

    def resource_reader(self, facility_code: str, rtype: str, rid: str) -> dict | None:
        """For ``FacilityService.add_resource_reader``: ``DocumentReference/memo-…`` by id."""
        if rtype != "DocumentReference" or not _ID.match(rid):
            return None
        memo = self.get(facility_code, rid)
        return memo_to_fhir(memo) if memo is not None else None

    def patient_source(self, facility_code: str, patient_id: str) -> list[dict]:
        """For ``FacilityService.add_patient_source``: (facility code, patient id) -> FHIR dicts."""
        return [memo_to_fhir(m) for m in self.for_patient(facility_code, patient_id)]


def _link(text: str, d: dict) -> str:
    """What the next line's ``prev`` names: the line's mac (the sha256 of a pre-MAC line)."""
    return str(d["mac"]) if "mac" in d else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: a short write (nearly full disk, a file size
    limit) is continued, a write of 0 bytes is an error, never a silent loss."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, "no space left: the write made no progress")
        view = view[n:]


def _roll_back(fd: int, size: int) -> None:
    """Cut a partly written line off again, so a refused memo leaves no torn bytes."""
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as exc:
        log.error("could not truncate the memo journal back to %d bytes: %s", size, exc)


def _storage_error(exc: OSError) -> MemoStorageError:
    log.error("memo not stored: %s", exc)
    why = {errno.ENOSPC: "ディスクがいっぱいです (disk full)",
           errno.EFBIG: "ファイルの大きさの上限です (file size limit)",
           errno.EROFS: "読み取り専用です (read-only file system)",
           errno.EACCES: "書き込み権限がありません (permission denied)",
           errno.EPERM: "書き込み権限がありません (permission denied)"}.get(
        exc.errno or 0, f"{exc.strerror or type(exc).__name__}")
    return MemoStorageError(f"メモを保存できませんでした: {why}。メモは保存されていません。入力した文は"
                            f"下に残っています (the memo was NOT saved; your text is kept below)")


def memo_to_fhir(memo: Memo) -> dict:
    """A memo as a FHIR R4 DocumentReference (why DocumentReference: see the module docstring)."""
    res: dict = {
        "resourceType": "DocumentReference",
        "id": memo.id,
        "meta": {"versionId": "1", "lastUpdated": memo.at,
                 "source": f"memos/{memo.facility}.jsonl",
                 "tag": [{"system": "http://fhir-gateway.example.org/CodeSystem/origin",
                          "code": "viewer-memo", "display": "診療メモ (viewer)"}]},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{memo.id[5:]}"}],
        "status": memo.status,
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "34109-9",
                             "display": "Note"}], "text": "診療メモ"},
        "category": [{"coding": [{"system": "http://fhir-gateway.example.org/CodeSystem/document-category",
                                  "code": "memo", "display": "診療メモ"}]}],
        "subject": {"reference": f"Patient/{memo.patient}"},
        "date": memo.at,
        "author": [{"display": " ".join(x for x in (memo.person, f"({memo.staff_no})" if memo.staff_no else "",
                                                       f"[{memo.author}]") if x)}],
        "custodian": {"identifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no",
                                     "value": memo.facility}},
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8", "language": "ja",
            "data": base64.b64encode(memo.text.encode("utf-8")).decode("ascii"),
            "creation": memo.at}}],
    }
    if memo.corrects:
        res["relatesTo"] = [{"code": "replaces",
                             "target": {"reference": f"DocumentReference/{memo.corrects}"}}]
    return res
