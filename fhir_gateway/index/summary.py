"""What the index knows of a patient, and how it is read from the storage.

The demographics come from the patient's current ADT-00 file, mapped by the registered ADT-00
mapper (the same Patient the REST API serves), or straight from PID-5/7/8 when no mapper is
registered.  A patient whose ADT-00 cannot be used is still indexed by id, with the reason, so
it stays findable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from storage.hl7 import parse
from storage.layout import Storage
from storage.names import NO_DATE
from storage.reader import read_file

from .keys import search_key

ADT00 = "ADT-00"
# Segments the ADT-00 mapper reads only for resources other than the Patient (Observations,
# allergies, coverages): left out when the index maps a Patient (most of the mapper's work).
_NOT_PATIENT_SEGMENTS = ("OBX", "AL1", "IN1", "IN2", "IN3", "NTE")
RACY_NS = 2_000_000_000  # as services.listing: a folder changed this recently may change unseen


@dataclass(frozen=True, slots=True)
class PatientSummary:
    """One search hit: enough for a result list, never clinical data."""

    patient_id: str
    name: str = ""  # kanji name as written, family and given separated by a space
    kana: str = ""  # kana name (katakana as stored)
    birthdate: str = ""  # ISO date (YYYY, YYYY-MM or YYYY-MM-DD) or ""
    gender: str = ""  # FHIR code: male, female, other, unknown, or ""
    last_care_date: str = ""  # newest date folder as YYYY-MM-DD, "" when none
    updated: str = ""  # the ADT-00's 発生日時 as an instant (+09:00), "" when none
    problem: str = ""  # why the demographics are missing or doubtful, "" when fine

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NameParts:
    """The parts the index matches on (raw text; keys are made by :meth:`keys`)."""

    family: str = ""
    given: str = ""
    kana_family: str = ""
    kana_given: str = ""

    @property
    def kanji(self) -> str:
        return " ".join(x for x in (self.family, self.given) if x)

    @property
    def kana(self) -> str:
        return " ".join(x for x in (self.kana_family, self.kana_given) if x)


@dataclass(frozen=True, slots=True)
class Extracted:
    summary: PatientSummary
    names: NameParts
    patient: dict | None = None  # the Patient the API serves (search stub source), if any
    # (ADT-00 file relpath, size, mtime_ns, its folder's mtime_ns) when ``patient`` is that file's
    # only Patient: the API may serve the stored Patient while these are unchanged
    source: tuple | None = None


def folder_date(name: str) -> str:
    return f"{name[:4]}-{name[4:6]}-{name[6:8]}" if len(name) == 8 and name.isdigit() else ""


_KANA_ONLY = set("ー・　 ")


def _is_kana(text: str) -> bool:
    k = search_key(text)
    return bool(k) and all("\u30a0" <= c <= "\u30ff" or c in _KANA_ONLY or c == "-" for c in k)


def names_from_patient(patient: dict) -> NameParts:
    """Kanji (IDE) and kana (SYL) names of a FHIR Patient; unmarked names are told apart by
    their characters."""
    kanji: dict | None = None
    kana: dict | None = None
    for n in patient.get("name") or []:
        rep = next((e.get("valueCode") for e in n.get("extension") or []
                    if str(e.get("url", "")).endswith("iso21090-EN-representation")), None)
        text = n.get("text") or " ".join([n.get("family", "")] + list(n.get("given") or []))
        if rep == "SYL" or (rep is None and _is_kana(text)):
            kana = kana or n
        elif rep != "ABC":
            kanji = kanji or n
    def split(n: dict | None) -> tuple[str, str]:
        if not n:
            return "", ""
        return n.get("family", "") or "", " ".join(n.get("given") or [])
    f, g = split(kanji)
    kf, kg = split(kana)
    return NameParts(f, g, kf, kg)


def _patient_resource(message, current, facility: str, version: int) -> tuple[dict | None, str]:
    """The Patient of an ADT-00 message: the registered mapper, else PID-5/7/8 directly."""
    import mappers
    from mappers import datatypes as dt
    from mappers import terminology as term

    if ADT00 in mappers.MAPPERS:
        ctx = mappers.MapContext(facility, current.relpath, current.name, version)
        # Only the segments the Patient's searchable elements come from: the mapper then skips
        # the Observations, allergies and coverages, which are most of its work.
        slim = parse("\r".join(seg.line for seg in message if seg.id not in _NOT_PATIENT_SEGMENTS))
        try:
            resources = mappers.map_message(slim, ctx)
        except mappers.MappingError as exc:
            return None, f"ADT-00 cannot be mapped: {exc}"
        pat = next((r for r in resources if r.get("resourceType") == "Patient"), None)
        return (pat, "") if pat else (None, "the ADT-00 mapper produced no Patient")
    pid = message["PID"]
    pat = {"resourceType": "Patient", "name": dt.human_names(pid[5])}
    if dt.date_(pid[7]):
        pat["birthDate"] = dt.date_(pid[7])
    if term.GENDER.get(pid.get(8)):
        pat["gender"] = term.GENDER[pid.get(8)]
    if message.message_type[1] == "A23":
        pat["active"] = False
    return pat, ""


def extract(storage: Storage, patient_id: str, facility: str, newest_date: str = "") -> Extracted:
    """Read one patient's demographics.  Never raises for bad data: the reason goes to
    ``summary.problem``.  Without a usable ADT-00 the Patient is the one the API derives from
    another message's PID (:func:`derived_patient`), so the search stub matches the API."""
    ex = _extract(storage, patient_id, facility, newest_date)
    if ex.patient is None and ex.summary.problem:
        try:
            derived = derived_patient(storage, patient_id, facility)
        except (OSError, ValueError):
            derived = None
        if derived is not None:
            return Extracted(ex.summary, ex.names, derived)  # no source: mapped on request
    return ex


def derived_patient(storage: Storage, patient_id: str, facility: str,
                    records: dict | None = None) -> dict | None:
    """The Patient built from the newest readable PID of a folder without a usable ADT-00
    (``mappers.adt_00.patient_from_pid``); None when an ADT-00 was deleted (a deleted patient
    stays deleted) or no message has a PID.  ``records``: the folder's records when known."""
    import mappers
    from mappers.adt_00 import patient_from_pid
    from storage.reader import read_path

    if records is None:
        records, _ = storage.records(patient_id)
    if any(r.deleted for k, r in records.items() if k.data_type == ADT00):
        return None
    newest = sorted((r.current for r in records.values() if r.current is not None),
                    key=lambda f: f.name.sort_key, reverse=True)  # type: ignore[union-attr]
    for f in newest:
        res = read_path(storage.root / f.relpath, f.relpath, f.name)
        if res.message is not None and f.name is not None and res.message.segment("PID") is not None:
            return patient_from_pid(res.message, mappers.MapContext(facility, f.relpath, f.name))
    return None


def _extract(storage: Storage, patient_id: str, facility: str, newest_date: str) -> Extracted:
    last = folder_date(newest_date)
    try:
        records, rejects = storage.records(patient_id, [ADT00], [NO_DATE])
    except (OSError, ValueError) as exc:
        return Extracted(PatientSummary(patient_id, last_care_date=last,
                                        problem=f"cannot list the patient folder: {exc}"),
                         NameParts())
    if not records:
        why = "no ADT-00 file" if not rejects else \
            f"no well-named ADT-00 file ({rejects[0].name_error or rejects[0].misplaced})"
        return Extracted(PatientSummary(patient_id, last_care_date=last, problem=why), NameParts())
    # Several ADT-00 records (order numbers) are unusual: the newest wins.
    rec = max(records.values(), key=lambda r: r.latest.name.sort_key)  # type: ignore[union-attr]
    current = rec.current
    if current is None or current.name is None:  # records are grouped by name: always named
        why = ("ADT-00 deleted (flag 0)" if rec.deleted
               else "ADT-00 has no current (flag 1) version")
        return Extracted(PatientSummary(patient_id, last_care_date=last, problem=why), NameParts())
    res = read_file(storage, current)
    if not res.ok:
        reason = res.errors[0].reason if res.errors else "unreadable"
        return Extracted(PatientSummary(patient_id, last_care_date=last,
                                        problem=f"ADT-00 unreadable: {reason}"), NameParts())
    import mappers

    ctx = mappers.MapContext(facility, current.relpath, current.name, rec.versions.index(current) + 1)
    patient, why = _patient_resource(res.message, current, facility, ctx.version)
    if patient is None:
        return Extracted(PatientSummary(patient_id, last_care_date=last, updated=ctx.last_updated,
                                        problem=why), NameParts())
    parts = names_from_patient(patient)
    problems = []
    if patient.get("active") is False:
        problems.append("patient deleted (ADT^A23)")
    if not (parts.kanji or parts.kana):
        problems.append("ADT-00 has no name (PID-5)")
    return Extracted(PatientSummary(
        patient_id, name=parts.kanji, kana=parts.kana, birthdate=patient.get("birthDate", "") or "",
        gender=patient.get("gender", "") or "", last_care_date=last, updated=ctx.last_updated,
        problem="; ".join(problems)), parts, patient,
        _source(storage, current.relpath) if len(records) == 1 else None)


def _source(storage: Storage, relpath: str) -> tuple | None:
    """(relpath, size, mtime_ns, folder mtime_ns) of an ADT-00 file, None when the folder
    changed too recently to trust its mtime."""
    import os
    import time
    try:
        st = os.stat(storage.root / relpath)
        dst = os.stat((storage.root / relpath).parent)
    except OSError:
        return None
    if time.time_ns() - dst.st_mtime_ns <= RACY_NS:
        return None
    return relpath, st.st_size, st.st_mtime_ns, dst.st_mtime_ns
