"""Extended-storage content folders -> DocumentReference; NHO vital signs (ORU^R30) -> Observation.

Pure functions: the caller lists folders with ``storage.extended.ExtendedStorage`` and passes the
files (size, hash and, for the main HL7 document, the bytes) in :class:`ExtendedContext`.

Ids: ``{patient}.{date|-}.EXT.{hash}`` for the DocumentReference and ``….{OBX position}`` for
each vital-sign Observation, where ``hash`` is a short base32 SHA-256 of data-type folder + 特定キー
(the record key without 発生日時 and flag, so a revised document keeps its id).  A hash cannot be
inverted: the server resolves an id by scanning that patient's date folder and comparing
:func:`extended_id` of each record (see docs/extended-storage.md).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from storage.encoding import decode
from storage.extended import ContentFile, ContentFolder, DataTypeFolder
from storage.hl7 import HL7Error, parse
from storage.names import FLAG_CURRENT, FLAG_DELETED, FileName, is_valid_date_folder, \
    is_valid_patient_id
from storage.timestamps import parse_ts

from .fhirtime import fhir_datetime, instant_text

from .jsontypes import Json
from . import terminology as term
from .datatypes import obx_observation, patient_ref

MARKER = "EXT"
_HASH = re.compile(r"^[a-z2-7]{10}$")

CONTENT_TYPES = {
    "xml": "application/xml", "hl7": "x-application/hl7-v2+er7", "pdf": "application/pdf",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
    "tif": "image/tiff", "tiff": "image/tiff", "bmp": "image/bmp", "css": "text/css",
    "xsl": "application/xslt+xml", "txt": "text/plain", "htm": "text/html", "html": "text/html",
    "csv": "text/csv", "doc": "application/msword", "xls": "application/vnd.ms-excel",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "mp4": "video/mp4", "dcm": "application/dicom", "json": "application/json",
}

# JLAC10 vital-sign codes (first 5 characters) -> LOINC vital-sign codes, so a client that only
# knows the FHIR vital-signs set still finds them.  The JLAC10 coding is always kept.
VITAL_LOINC = {
    "9A751": ("8480-6", "Systolic blood pressure"),
    "9A761": ("8462-4", "Diastolic blood pressure"),
    "9P300": ("8867-4", "Heart rate"),
    "9P200": ("9279-1", "Respiratory rate"),
    "9P100": ("8310-5", "Body temperature"),
    "9N001": ("8302-2", "Body height"),
    "9N006": ("29463-7", "Body weight"),
}


class ExtendedId(NamedTuple):
    patient_id: str
    date: str
    hash: str
    position: tuple[str, ...]


def key_hash(data_type: str, key: str) -> str:
    digest = hashlib.sha256(f"{data_type}\x00{key}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:10]


def extended_id(name: FileName, *position: object) -> str:
    """The id of the document (no position) or of a resource inside it."""
    parts = [name.patient_id, name.date, MARKER, key_hash(name.data_type, name.order_no)]
    parts += [str(p) for p in position]
    return ".".join(parts)


def parse_extended_id(value: str) -> ExtendedId | None:
    """Invert :func:`extended_id` as far as possible; None when it is not one of ours."""
    parts = value.split(".")
    if len(parts) < 4 or parts[2] != MARKER or len(value) > 64:
        return None
    pid, date, _, h = parts[:4]
    if not (is_valid_patient_id(pid) and is_valid_date_folder(date) and _HASH.match(h)):
        return None
    return ExtendedId(pid, date, h, tuple(parts[4:]))


@dataclass(frozen=True, slots=True)
class ExtendedContext:
    facility: str
    files: tuple[ContentFile, ...] = ()  # from ExtendedStorage.load (bytes for the main HL7)
    version: int = 1  # position of this folder in its version chain
    source_prefix: str = "extended/"  # meta.source = prefix + extended-root-relative path
    folder: ContentFolder | None = field(default=None)

    # The attributes below let the shared OBX helper (datatypes.obx_observation) use this context.
    @property
    def patient_id(self) -> str:
        return self.folder.name.patient_id if self.folder and self.folder.name else ""

    def meta(self, profile: str | None = None) -> Json:
        assert self.folder is not None and self.folder.name is not None
        m: Json = {"versionId": str(self.version), "source": self.source_prefix + self.folder.relpath}
        t = parse_ts(self.folder.name.timestamp)
        if t:
            m["lastUpdated"] = instant_text(t)
        if profile:
            m["profile"] = [profile]
        return m


def _system(code_system: str, facility: str) -> str:
    if not code_system:
        return term.DOCUMENT_TYPE_LOCAL
    return term.system_for(code_system, facility) or term.DOCUMENT_TYPE_LOCAL


def document_type(dt: DataTypeFolder, facility: str) -> Json:
    """Standard code (LOINC when ``LN``) first, then the local code; text = the best name."""
    codings = []
    if dt.code:
        c = {"system": _system(dt.system, facility), "code": dt.code}
        if dt.name:
            c["display"] = dt.name
        codings.append(c)
    if dt.local_code:
        c = {"system": _system(dt.local_system, facility), "code": dt.local_code}
        if dt.local_name:
            c["display"] = dt.local_name
        codings.append(c)
    cc: Json = {"text": dt.label}
    if codings:
        cc["coding"] = codings
    return cc


def content_type(fname: str) -> str:
    ext = fname.rsplit(".", 1)[-1].lower() if "." in fname else ""
    return CONTENT_TYPES.get(ext, "application/octet-stream")


def map_extended_folder(folder: ContentFolder, ctx: ExtendedContext) -> list[Json]:
    """A content folder -> [DocumentReference, vital-sign Observations…].

    Superseded folders map with status ``superseded``, deleted ones with ``entered-in-error``;
    unparseable names map to nothing (the drill report lists them).
    """
    name = folder.name
    if name is None:
        return []
    if ctx.folder is not folder:
        ctx = ExtendedContext(ctx.facility, ctx.files, ctx.version, ctx.source_prefix, folder)
    did = extended_id(name)
    doc: Json = {"resourceType": "DocumentReference", "id": did, "meta": ctx.meta()}
    doc["identifier"] = [{"system": term.local_id_system(ctx.facility, "extended-storage-folder"),
                          "value": folder.folder_name}]
    doc["status"] = {FLAG_CURRENT: "current", FLAG_DELETED: "entered-in-error"}.get(
        name.flag, "superseded")
    doc["type"] = document_type(folder.data_type, ctx.facility)
    doc["subject"] = patient_ref(name.patient_id)
    t = parse_ts(name.timestamp)
    if t:
        doc["date"] = instant_text(t)
    main = folder.main
    by_name = {f.name: f for f in ctx.files}
    content = []
    for fname in sorted(folder.files, key=lambda n: (main is None or n != main[0], n)):
        att: Json = {"contentType": content_type(fname), "title": fname}
        f = by_name.get(fname)
        if f is not None and not f.error:
            att["size"] = f.size
            att["hash"] = f.sha1
        content.append({"attachment": att})
    doc["content"] = content or [{"attachment": {"title": "(空のフォルダ)"}}]
    context: Json = {}
    if name.date != "-":
        d = f"{name.date[:4]}-{name.date[4:6]}-{name.date[6:8]}"
        context["period"] = {"start": d, "end": d}
    if name.department not in ("-", ""):
        context["practiceSetting"] = {"coding": [{"system": term.DEPARTMENT,
                                                  "code": name.department}]}
    if context:
        doc["context"] = context
    out = [doc]
    if main and main[1] == "hl7" and name.flag == FLAG_CURRENT:
        f = by_name.get(main[0])
        if f is not None and f.data:
            out.extend(_vitals(f.data, did, ctx))
    return out


@dataclass(frozen=True, slots=True)
class _Document:
    """The context of one document's vital signs (a ``ResourceContext``): its meta is built
    once, not once per OBX."""

    facility: str
    patient_id: str
    base: Json  # ExtendedContext.meta() without a profile

    def meta(self, profile: str | None = None) -> Json:
        m = self.base.copy()
        if profile:
            m["profile"] = [profile]
        return m


def _vitals(data: bytes, did: str, ctx: ExtendedContext) -> list[Json]:
    """ORU^R30 main_document.hl7 -> one vital-signs Observation per OBX."""
    try:
        msg = parse(decode(data).text)
    except HL7Error:
        return []
    doc = _Document(ctx.facility, ctx.patient_id, ctx.meta())
    obr_time = msg.value("OBR.7.1")
    effective = fhir_datetime(obr_time)
    category = [{"coding": [{"system": term.OBSERVATION_CATEGORY, "code": "vital-signs",
                             "display": "Vital Signs"}]}]
    out = []
    profile = term.PROFILE["ObservationVitalSigns"]
    derived = f"DocumentReference/{did}"
    for n, obx in enumerate(msg.segments("OBX"), 1):
        set_id = obx.get(1)
        obs = obx_observation(obx, doc, f"{did}.{set_id if set_id.isdigit() else n}", category,
                              profile, effective)
        loinc = VITAL_LOINC.get(obx.get(3)[:5])
        if loinc:
            obs["code"].setdefault("coding", []).append(
                {"system": "http://loinc.org", "code": loinc[0], "display": loinc[1]})
        obs["derivedFrom"] = [{"reference": derived}]
        out.append(obs)
    return out
