"""SS-MIX2 拡張ストレージ (extended storage): documents, PDFs, images and NHO vital signs.

``<root>/<id[0:3]>/<id[3:6]>/<id>/<date|->/<data-type folder>/<content folder>/<files>``

The patient/date levels are those of the standardized storage (so :class:`ExtendedStorage`
subclasses :class:`storage.layout.Storage`).  A data-type folder is named
``[local code]^local name^[local system]^standard code^standard name^standard system`` (or the
short ``code^name^system`` form, e.g. NHO's ``L-OBSERVATIONS^OBSERVATIONS^99ZL01``).  A content
folder is named like a standardized-storage file (see ``names.parse_content_folder_name``) and
versioned by the same condition flag (1 current, 2 superseded, 0 deleted).  No FHIR here.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator

from .layout import Storage, UnsafePath, VersionChain, _scandir_names, group_records
from .names import BadFileName, FileName, RecordKey, \
    is_valid_date_folder, parse_content_folder_name
from .reader import _read_all

MAIN_HL7 = "main_document.hl7"


@dataclass(frozen=True, slots=True)
class DataTypeFolder:
    """The parsed name of a data-type folder (caret-separated code names)."""

    raw: str
    local_code: str = ""
    local_name: str = ""
    local_system: str = ""
    code: str = ""  # 標準文書コード (e.g. LOINC 11506-3)
    name: str = ""
    system: str = ""  # 標準コード体系コード (LN = LOINC)

    @property
    def label(self) -> str:
        return self.name or self.local_name or self.code or self.local_code or self.raw


def parse_data_type_folder(name: str) -> DataTypeFolder:
    """6 parts: local code/name/system + standard code/name/system; 3 parts: one triplet."""
    p = name.split("^")
    if len(p) >= 6:
        return DataTypeFolder(name, p[0], p[1], p[2], p[3], p[4], "^".join(p[5:]))
    p += [""] * (3 - len(p))
    if p[2] == "LN":  # a bare standard triplet
        return DataTypeFolder(name, code=p[0], name=p[1], system=p[2])
    return DataTypeFolder(name, p[0], p[1], "^".join(p[2:]))


@dataclass(frozen=True, slots=True)
class ContentFolder:
    """One content folder (one version of one document) and the files inside it."""

    relpath: str  # extended-root-relative, '/'-separated
    name: FileName | None
    data_type: DataTypeFolder
    files: tuple[str, ...] = ()
    name_error: str | None = None
    misplaced: str | None = None

    @property
    def usable(self) -> bool:
        return self.name is not None and self.misplaced is None

    @property
    def folder_name(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def main(self) -> tuple[str, str] | None:
        return main_document(self.files, self.data_type)


@dataclass
class ExtendedRecord(VersionChain[ContentFolder]):
    """All versions (content folders) of one document: same patient, date, data type and key."""


@dataclass(frozen=True, slots=True)
class ContentFile:
    """A file of a content folder: size and SHA-1 always, bytes when asked for."""

    name: str
    size: int
    sha1: str  # base64, as FHIR Attachment.hash wants
    data: bytes | None = None
    error: str | None = None


def main_document(files: Iterable[str], data_type: DataTypeFolder | None = None
                  ) -> tuple[str, str] | None:
    """(file name, kind) of the 主文書: kind is ``hl7`` (vitals ORU^R30), ``cda``, or the extension.

    Order: ``main_document.hl7``; any ``main_document.*``; the only XML file (CDA R2 is the
    guideline's document format); the only file.
    """
    names = sorted(files)
    if MAIN_HL7 in names:
        return MAIN_HL7, "hl7"
    for n in names:
        if n.lower().startswith("main_document."):
            ext = n.rsplit(".", 1)[-1].lower()
            return n, "cda" if ext == "xml" else ext
    xml = [n for n in names if n.lower().endswith(".xml")]
    if len(xml) == 1:
        return xml[0], "cda"
    if len(names) == 1:
        n = names[0]
        return n, n.rsplit(".", 1)[-1].lower() if "." in n else "bin"
    return None


class ExtendedStorage(Storage):
    """Read access to one extended-storage root."""

    def content_folders(self, patient_id: str, dates: Iterable[str] | None = None,
                        data_types: Iterable[str] | None = None) -> Iterator[ContentFolder]:
        pdir = self.patient_dir(patient_id)
        if pdir is None:
            return
        pstr, rel_pdir = str(pdir), self.relative(pdir)  # paths below: plain strings
        wanted = set(data_types) if data_types is not None else None
        for date in (list(dates) if dates is not None else _scandir_names(pstr, True)):
            if not is_valid_date_folder(date):
                continue
            for dtype in _scandir_names(f"{pstr}/{date}", True):
                if wanted is not None and dtype not in wanted:
                    continue
                dt = parse_data_type_folder(dtype)
                tail = f"{date}/{dtype}"
                for cname in _scandir_names(f"{pstr}/{tail}", True):
                    files = tuple(_scandir_names(f"{pstr}/{tail}/{cname}", False))
                    yield _classify(f"{rel_pdir}/{tail}/{cname}", patient_id, date, dt, cname,
                                    files)

    def records(self, patient_id: str, data_types: Iterable[str] | None = None,  # type: ignore[override]
                dates: Iterable[str] | None = None
                ) -> tuple[dict[RecordKey, ExtendedRecord], list[ContentFolder]]:
        """Content folders grouped into documents (versions oldest first) plus the rejects."""
        return group_records(self.content_folders(patient_id, dates, data_types), ExtendedRecord)

    def load(self, folder: ContentFolder, with_data: Iterable[str] = ()) -> list[ContentFile]:
        """Size and hash of every file; bytes for the names in ``with_data``.  Never raises."""
        wanted = set(with_data)
        out = []
        for fname in folder.files:
            try:
                data = _read_all(self.abspath(f"{folder.relpath}/{fname}"))
            except (OSError, UnsafePath) as exc:
                out.append(ContentFile(fname, 0, "", None, f"cannot read the file: {exc}"))
                continue
            digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
            out.append(ContentFile(fname, len(data), digest, data if fname in wanted else None))
        return out


def _classify(relpath: str, patient_id: str, date: str, dt: DataTypeFolder, cname: str,
              files: tuple[str, ...]) -> ContentFolder:
    try:
        name = parse_content_folder_name(cname, dt.raw)
    except BadFileName as exc:
        return ContentFolder(relpath, None, dt, files, name_error=str(exc))
    wrong = []
    if name.patient_id != patient_id:
        wrong.append(f"patient {name.patient_id} in the name, folder {patient_id}")
    if name.date != date:
        wrong.append(f"date {name.date} in the name, folder {date}")
    if name.data_type != dt.raw:
        wrong.append(f"data type {name.data_type} in the name, folder {dt.raw}")
    return ContentFolder(relpath, name, dt, files, misplaced="; ".join(wrong) or None)

