"""Audit mode: map a message and report every non-empty part no mapper read.

``audit_message(msg, ctx)`` maps through :mod:`storage.ledger`'s recording accessors and
returns the resources plus the content that was neither read nor listed with a reason in the
mapper module's ``NOT_MAPPED`` table (or :data:`COMMON_NOT_MAPPED`, which every mapper shares).
Those are problems of kind ``unmapped-content``: the drill (``fhir-gateway check``) reports
them per data type and field, and the mapping tests fail on any.

``NOT_MAPPED`` keys: ``"SEG"`` (the whole segment), ``"SEG-n"`` (a field), ``"SEG-n.c"`` (a
component).  The request path never calls this module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from storage.hl7 import Message
from storage.ledger import Content, audited, unread

from .context import MapContext
from .registry import MAPPERS, map_message

KIND_UNMAPPED = "unmapped-content"

# Header and patient fields no mapper of a clinical message reads, with the reason.  The
# Patient is ADT-00's (mappers/adt_00.py reads PID itself, so these apply to other types).
COMMON_NOT_MAPPED: list[tuple[str, str]] = [
    ("MSH-3", "sending application: transmission routing, not clinical content"),
    ("MSH-4", "sending facility: the facility is the storage's (MapContext.facility)"),
    ("MSH-5", "receiving application: transmission routing"),
    ("MSH-6", "receiving facility: transmission routing"),
    ("MSH-7", "message time; read only as a fallback time by the order mappers"),
    ("MSH-9", "message type: checked by the reader against the folder's data type"),
    ("MSH-10", "message control id identifies the transmission; meta.source names the file"),
    ("MSH-11", "processing id (P/T/D): transmission control"),
    ("MSH-12", "HL7 version: checked by the drill"),
    ("MSH-15", "accept acknowledgment type: transmission control"),
    ("MSH-16", "application acknowledgment type: transmission control"),
    ("MSH-17", "country code: always JPN"),
    ("MSH-18", "character set: used by the decoder"),
    ("MSH-19", "principal language: always Japanese"),
    ("MSH-20", "alternate character set handling: used by the decoder"),
    ("MSH-21", "message profile (SS-MIX2 version): checked by the drill"),
    ("EVN", "event type / record time: meta.lastUpdated comes from the file's 発生日時"),
    ("PID", "Patient data come from ADT-00 (a Patient is derived from this PID by the service "
            "only when the patient has no usable ADT-00)"),
    ("PD1", "additional demographics: Patient data come from ADT-00"),
    ("NK1", "next of kin: Patient data come from ADT-00"),
    ("IN1", "insurance: Coverage comes from ADT-00"),
    ("IN2", "insurance: Coverage comes from ADT-00"),
    ("SFT", "software segment: the sending system, not clinical content"),
    ("PV1-1", "set id"),
]


@dataclass(frozen=True, slots=True)
class Unmapped:
    """One ``unmapped-content`` finding: a field repetition with unread components."""

    segment: int  # 0-based position
    where: str  # "TQ1-3"
    repetition: int
    components: tuple[int, ...]
    excerpt: str

    def reason(self) -> str:
        comps = ",".join(str(c) for c in self.components)
        return (f"{self.where} (segment {self.segment + 1}, repetition {self.repetition}, "
                f"component {comps}) is not mapped and has no NOT_MAPPED reason: "
                f"{self.excerpt!r}")


def not_mapped(data_type: str) -> dict[str, str]:
    """Every NOT_MAPPED key of the mapper of ``data_type`` plus the common ones."""
    table = dict(COMMON_NOT_MAPPED)
    fn = MAPPERS.get(data_type)
    if fn is not None:
        mod = sys.modules.get(fn.__module__)
        for key, reason in getattr(mod, "NOT_MAPPED", []):
            table[key] = reason
        for key, reason in getattr(mod, "NOT_MAPPED_EXTRA", {}).get(data_type, []):
            table[key] = reason
        # ADT-00 reads the patient segments itself: the common reasons do not apply there.
        for seg in getattr(mod, "READS_SEGMENTS", ()):
            table.pop(seg, None)
    return table


def _explained(c: Content, table: dict[str, str]) -> bool:
    return (c.segment_id in table or f"{c.segment_id}-{c.field}" in table
            or f"{c.segment_id}-{c.field}.{c.component}" in table)


def audit_message(msg: Message, ctx: MapContext) -> tuple[list[dict], list[Unmapped]]:
    """Map ``msg`` in audit mode.  Raises MappingError like :func:`map_message`."""
    amsg = audited(msg)
    resources = map_message(amsg, ctx)
    table = not_mapped(ctx.name.data_type)
    grouped: dict[tuple[int, int, int], list[Content]] = {}
    for c in unread(amsg):
        if not _explained(c, table):
            grouped.setdefault((c.segment, c.field, c.repetition), []).append(c)
    out = []
    for (seg, _n, rep), items in grouped.items():
        excerpt = "^".join(c.value for c in items)
        if len(excerpt) > 60:
            excerpt = excerpt[:57] + "..."
        out.append(Unmapped(seg, items[0].where, rep, tuple(c.component for c in items), excerpt))
    return resources, out
