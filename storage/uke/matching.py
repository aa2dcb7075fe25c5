"""Which SS-MIX2 patient a receipt's カルテ番号 names (no FHIR, no files: the caller says which
ids exist)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from ..names import is_valid_patient_id


def normalise_karte_no(text: str) -> str:
    """RE カルテ番号等 as an id: NFKC (full-width -> half-width), all whitespace removed."""
    return "".join(unicodedata.normalize("NFKC", text or "").split())


def karte_candidates(karte_no: str, widths: tuple[int, ...] = (10,)) -> list[str]:
    """Ids to try for a カルテ番号, in order: as written, zero-padded to ``widths``, unpadded."""
    n = normalise_karte_no(karte_no)
    if not n:
        return []
    out = [n]
    if n.isdigit():
        stripped = n.lstrip("0") or "0"
        out += [stripped.zfill(w) for w in widths if w >= len(stripped)]
        out.append(stripped)
    seen: list[str] = []
    for c in out:
        if c not in seen and is_valid_patient_id(c):
            seen.append(c)
    return seen


def match_patient(karte_no: str, candidate_exists: Callable[[str], bool],
                  widths: tuple[int, ...] = (10,)) -> str | None:
    """The SS-MIX2 patient id a receipt's カルテ番号 refers to, or None.

    Tried in order: the normalised number as written; for digit strings, zero-padded to each
    width in ``widths`` (10 by default) and with leading zeros removed.  Only ids that pass the
    storage's patient-id rule reach ``candidate_exists``.
    """
    for c in karte_candidates(karte_no, widths):
        try:
            if candidate_exists(c):
                return c
        except (OSError, ValueError):
            continue
    return None
