"""Patient memos written in the viewer: an append-only journal, one JSON object per line.

Memos are the only data the gateway writes, so they live in ``{data_dir}/memos/{facility}.jsonl``
— never in the SS-MIX2 tree.  Each append is written with a single ``write`` on an ``O_APPEND``
descriptor and ``fsync``-ed before the call returns, so a memo the user saw acknowledged survives
``kill -9`` or a power cut.  A line torn by a crash *during* a write (never acknowledged) is
skipped when reading.  Memos are never edited or deleted: a correction is a new memo whose
``corrects`` names the old one, which is then shown (and served) as entered-in-error.  Each line
carries ``prev``, the SHA-256 of the previous line, so a removed or altered line is detectable.

FHIR: a memo is served as a **DocumentReference** (see :func:`memo_to_fhir`).  Why not
Communication: a Communication is a message sent from someone to someone; a memo is a note filed
in the patient's record for whoever reads it later.  DocumentReference has exactly the status set
we need (current / entered-in-error), ``relatesTo.code = replaces`` for corrections, an author,
a date, a custodian (the facility) and a subject, so it lands in Patient/$everything unchanged.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone, timedelta
from pathlib import Path

JST = timezone(timedelta(hours=9))
MAX_TEXT = 4000
_CODE = re.compile(r"^[0-9A-Za-z]{1,16}$")
_ID = re.compile(r"^memo-[0-9a-f]{32}$")


class MemoError(ValueError):
    """A memo that cannot be written, with a reason for the user."""


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

    def to_json(self) -> dict:
        return {"id": self.id, "facility": self.facility, "patient": self.patient,
                "text": self.text, "author": self.author, "person": self.person,
                "staff_no": self.staff_no, "at": self.at, "corrects": self.corrects}


class MemoJournal:
    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir) / "memos"
        self._lock = threading.Lock()

    def path(self, facility: str) -> Path:
        if not _CODE.match(facility or ""):
            raise MemoError("bad facility code")
        return self.dir / f"{facility}.jsonl"

    def _lines(self, facility: str) -> list[tuple[str, dict]]:
        try:
            raw = self.path(facility).read_bytes()
        except (FileNotFoundError, MemoError):
            return []
        out = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
                out.append((text, json.loads(text)))
            except (UnicodeDecodeError, ValueError):
                continue  # torn tail of an unacknowledged write
        return out

    def append(self, facility: str, patient: str, text: str, *, author: str, person: str = "",
               staff_no: str = "", corrects: str | None = None) -> Memo:
        """Write one memo durably and return it; raises MemoError with a plain reason."""
        text = (text or "").replace("\r\n", "\n").strip()
        if not text:
            raise MemoError("メモが空です (the memo is empty)")
        if len(text) > MAX_TEXT:
            raise MemoError(f"メモは{MAX_TEXT}文字までです (at most {MAX_TEXT} characters)")
        if not patient or len(patient) > 64 or "\n" in patient:
            raise MemoError("bad patient id")
        path = self.path(facility)
        with self._lock:
            if corrects:
                if not _ID.match(corrects) or not any(
                        d.get("id") == corrects and d.get("patient") == patient
                        for _, d in self._lines(facility)):
                    raise MemoError("訂正対象のメモが見つかりません (no such memo for this patient)")
            memo = Memo(id=f"memo-{uuid.uuid4().hex}", facility=facility, patient=patient,
                        text=text, author=author, person=person, staff_no=staff_no,
                        at=datetime.now(JST).isoformat(timespec="seconds"), corrects=corrects)
            created = not path.exists()
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # other processes (CLI tools) append too
                lines = self._lines(facility)
                prev = hashlib.sha256(lines[-1][0].encode("utf-8")).hexdigest() if lines else ""
                record = memo.to_json() | {"prev": prev}
                data = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
                if os.fstat(fd).st_size and not path.read_bytes().endswith(b"\n"):
                    data = b"\n" + data  # isolate a torn tail from the new line
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        return memo

    def for_patient(self, facility: str, patient: str) -> list[Memo]:
        """The patient's memos, newest first, with entered-in-error worked out."""
        memos = [Memo(**{k: d.get(k) for k in ("id", "facility", "patient", "text", "author",
                                               "person", "staff_no", "at", "corrects")})
                 for _, d in self._lines(facility) if d.get("patient") == patient]
        by_id = {m.id: m for m in memos}
        for m in memos:
            if m.corrects and m.corrects in by_id:
                old = by_id[m.corrects]
                old.status = "entered-in-error"
                old.corrected_by.append(m.id)
        return memos[::-1]  # journal order is time order

    def get(self, facility: str, memo_id: str) -> Memo | None:
        for _, d in self._lines(facility):
            if d.get("id") == memo_id:
                return next(m for m in self.for_patient(facility, d["patient"]) if m.id == memo_id)
        return None

    def verify(self, facility: str) -> tuple[bool, int]:
        """Check the prev-hash chain: (intact, lines checked)."""
        prev = ""
        lines = self._lines(facility)
        for n, (text, d) in enumerate(lines):
            if d.get("prev", "") != prev:
                return False, n
            prev = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return True, len(lines)

    def resource_reader(self, facility_code: str, rtype: str, rid: str) -> dict | None:
        """For ``FacilityService.add_resource_reader``: ``DocumentReference/memo-…`` by id."""
        if rtype != "DocumentReference" or not _ID.match(rid):
            return None
        memo = self.get(facility_code, rid)
        return memo_to_fhir(memo) if memo is not None else None

    def patient_source(self, facility_code: str, patient_id: str) -> list[dict]:
        """For ``FacilityService.add_patient_source``: (facility code, patient id) -> FHIR dicts."""
        return [memo_to_fhir(m) for m in self.for_patient(facility_code, patient_id)]


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
