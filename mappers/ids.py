"""Stable logical ids that resolve back to their file without a database.

An id is the record key plus the position of the resource inside the message::

    {patient}.{date|-}.{data type}.{order no}[.{position}]    e.g. 9999013.20110701.OMP-01.000000011000185.1.2

The order number is left out when it is the storage's "no order" filler 999999999999999, and a
Patient's id is just the patient id.  Updating an order writes a new file with the same key, so
the id survives updates; only the version changes.  Ids longer than 64 characters (FHIR's limit)
are shortened to ``{patient}.h{hash}`` and resolved by scanning that one patient's records.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import NamedTuple

from storage.memo import memo
from storage.names import (
    DATA_TYPES,
    NO_ORDER,
    FileName,
    RecordKey,
    is_valid_date_folder,
    is_valid_patient_id,
)

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_POSITION = re.compile(r"^[A-Za-z0-9\-]{1,16}$")
_GOOD_POSITIONS: set[str] = set()  # positions already checked ("1", "r1", "s2" ... recur)


class ParsedId(NamedTuple):
    key: RecordKey | None  # None for a hashed id: resolve by scanning the patient
    position: tuple[str, ...]
    patient_id: str
    hashed: str | None = None


def _join(key: RecordKey, position: tuple[str, ...]) -> str:
    return ".".join((_key_text(key), *position)) if position else _key_text(key)


@memo(4096)
def _key_text(key: RecordKey) -> str:
    """``{patient}.{date}.{data type}.{order no|x}``: every resource of a record starts so."""
    return ".".join((key.patient_id, key.date, key.data_type,
                     key.order_no if key.order_no != NO_ORDER else "x"))


def unhashed_id(name: FileName | RecordKey, *position: str) -> str:
    """The id text before the 64-character rule: ``resource_id`` returns it when it fits.

    For building many sibling ids fast (``{prefix}.{m}``); positions must already be valid.
    """
    return _join(name.key if isinstance(name, FileName) else name, position)


def resource_id(name: FileName | RecordKey, *position: object) -> str:
    """The logical id of a resource built from the record ``name`` at ``position``."""
    key = name.key if isinstance(name, FileName) else name
    pos = tuple(p if type(p) is str else str(p) for p in position)
    for p in pos:
        if p not in _GOOD_POSITIONS:
            if not _POSITION.match(p):
                raise ValueError(f"invalid id position {p!r}")
            if len(_GOOD_POSITIONS) < 65536:
                _GOOD_POSITIONS.add(p)
    text = _join(key, pos)
    if len(text) <= 64:
        return text
    digest = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode().lower()
    short = f"{key.patient_id}.h{digest[: 62 - len(key.patient_id)]}"
    return short[:64]


def parse_id(value: str) -> ParsedId | None:
    """Invert :func:`resource_id`; None when the text cannot be one of our ids."""
    if not FHIR_ID.match(value):
        return None
    parts = value.split(".")
    if not is_valid_patient_id(parts[0]):
        return None
    if len(parts) == 2 and parts[1].startswith("h"):
        return ParsedId(None, (), parts[0], parts[1][1:])
    if len(parts) < 4:
        return None
    pid, date, dtype, order = parts[:4]
    if not is_valid_date_folder(date) or dtype not in DATA_TYPES:
        return None
    order_no = NO_ORDER if order == "x" else order
    return ParsedId(RecordKey(pid, date, dtype, order_no), tuple(parts[4:]), pid)


def key_position(value: str) -> str:
    """A business key (PRB-4, IAM-7, a Study UID ...) as one id position.

    Keys that already fit ``[A-Za-z0-9-]{1,16}`` are used as written (readable ids); others
    become ``k`` + 15 lower-case base32 characters of their SHA-256 — stable, because they
    depend only on the key.
    """
    if _POSITION.match(value):
        return value
    digest = base64.b32encode(hashlib.sha256(value.encode()).digest()).decode().lower()
    return "k" + digest[:15]
