"""Patient search for the viewer: the patient index when it exists, else a walk over Patient
resources (small trees).  Results carry identification only — never clinical data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from storage.text import search_key

from . import fhirview as fv

log = logging.getLogger(__name__)
MAX_RESULTS = 200


@dataclass
class Hit:
    patient_id: str
    name: str
    kana: str
    birthdate: str
    age: int | None
    gender: str
    last_care_date: str


def normalize_id(text: str) -> str:
    """Full-width digits and letters to ASCII (NFKC), spaces dropped: what the clinician typed,
    as the storage writes it."""
    import unicodedata
    return "".join(unicodedata.normalize("NFKC", text or "").split())


def id_candidates(text: str, widths=(10,)) -> list[str]:
    """The typed ID, without its leading zeros and zero-padded to the storage's ID widths."""
    raw = normalize_id(text)
    out = [raw]
    if raw.isdigit():
        bare = raw.lstrip("0") or "0"
        out += [bare] + [bare.zfill(w) for w in widths if w > len(bare)]
    return list(dict.fromkeys(x for x in out if x))


def resolve_id(svc, text: str) -> tuple[str, list[str]]:
    """(the stored patient ID matching ``text`` or '', the candidates tried)."""
    cands = id_candidates(text)
    for c in cands:
        try:
            if svc.patient_exists(c):
                return c, cands
        except Exception:  # an invalid id for the storage layout: try the next form
            continue
    return "", cands


def _norm_gender(g: str) -> str:
    return {"M": "male", "F": "female", "O": "other", "U": "unknown"}.get(g, g or "unknown")


def search(svc, today: date, *, patient_id: str = "", name: str = "", kana: str = "",
           birthdate: str = "", gender: str = "") -> tuple[list[Hit], bool]:
    """(hits, truncated).  Kanji and kana match as normalised substrings."""
    hits: list[Hit] = []
    if patient_id:
        resolved, _ = resolve_id(svc, patient_id)
        patient_id = resolved or normalize_id(patient_id)
    try:
        crit = {k: v for k, v in (("name", name), ("kana", kana), ("birthdate", birthdate),
                                  ("gender", gender), ("identifier", patient_id)) if v}
        found = svc.index.summaries(**crit)  # None: no index (yet), walk below
        if found is not None:
            hits = [Hit(s.patient_id, s.name or "", s.kana or "", s.birthdate or "",
                        fv.age(s.birthdate or "", today), _norm_gender(s.gender or ""),
                        s.last_care_date or "") for s in found]
            kept = _filter(hits, patient_id, name, kana, birthdate, gender)
            if kept[0] or not patient_id:
                return kept
            # an ID the index does not know (yet): look in the storage directly
        hits = []
    except Exception as exc:  # the index is an accelerator, never a single point of failure
        log.warning("patient index failed (%s); walking the storage", exc)
        hits = []
    if patient_id:
        pids = [patient_id.strip()]
    else:
        pids = svc.patient_ids()
    for pid in pids:
        try:
            data = svc.patient_bundle(pid, {"Patient"})
        except Exception:
            continue
        pat = next((r for r in data.resources if r.get("resourceType") == "Patient"), None)
        if pat is None:
            continue
        kanji, kn = fv.names(pat)
        hit = Hit(pid, kanji, kn, pat.get("birthDate", ""), fv.age(pat.get("birthDate", ""), today),
                  pat.get("gender", "unknown"), "")
        if _match(hit, patient_id, name, kana, birthdate, gender):
            try:
                dates = svc.care_dates(pid)
                real = sorted(d for d in dates if len(d) == 8)
                hit.last_care_date = f"{real[-1][:4]}-{real[-1][4:6]}-{real[-1][6:]}" if real else ""
            except Exception:
                pass
            hits.append(hit)
            if len(hits) > MAX_RESULTS:
                break
    return hits[:MAX_RESULTS], len(hits) > MAX_RESULTS


def _match(h: Hit, patient_id: str, name: str, kana: str, birthdate: str, gender: str) -> bool:
    if patient_id and h.patient_id.lstrip("0") != patient_id.strip().lstrip("0"):
        return False
    if name and search_key(name) not in search_key(h.name):
        return False
    if kana and search_key(kana) not in search_key(h.kana):
        return False
    if birthdate and h.birthdate != birthdate:
        return False
    if gender and h.gender != gender:
        return False
    return True


def _filter(hits, *crit) -> tuple[list[Hit], bool]:
    kept = [h for h in hits if _match(h, *crit)]
    return kept[:MAX_RESULTS], len(kept) > MAX_RESULTS
