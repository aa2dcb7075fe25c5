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

from .jsontypes import Json
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
    ("MSH-13", "sequence number: transmission control"),
    ("MSH-14", "continuation pointer: transmission control"),
    ("PV1-1", "set id"),
    ("PID-1", "set id"),
    ("NK1-1", "set id"),
    ("DB1-1", "set id"),
    ("AL1-1", "set id; the AL1 position gives the resource id"),
    ("IAM-1", "set id; IAM-7 or the position gives the resource id"),
    ("OBX-1", "set id; the OBX position gives the resource id"),
    ("OBR-1", "set id; the OBR position gives the resource id"),
    ("SPM-1", "set id; the SPM position gives the resource id"),
    ("TQ1-1", "set id; dosageInstruction.sequence numbers the TQ1 segments"),
    ("NTE-1", "set id"),
    ("DG1-1", "set id"),
    ("OBX-4", "sub-id: groups the OBX of one item; mapped where results have isolates (OML-11 identifier)"),
    ("OBX-9", "probability: no Observation element, not written by SS-MIX2 sources"),
    ("ORC-13", "enterer's location (端末の場所): where the order was typed, no request element"),
    ("ORC-18", "entering device (入力装置): the terminal, not clinical content"),
    ("ORC-21", "ordering facility name: the facility is the storage's"),
    ("ORC-22", "ordering facility address: the facility is the storage's"),
    ("ORC-23", "ordering facility phone: the facility is the storage's"),
    ("ORC-24", "ordering provider address"),
    ("ORC-30", "enterer authorization mode; some writers put the order type here (ORC-29 is the order type)"),
]

# XCN fields (doctors, nurses, operators).  Only their first repetition is a Practitioner
# reference (id, family, given); the parts below are metadata of the name, and a further
# repetition is the same person's name in another representation (kana, romaji).
XCN_FIELDS = frozenset({
    "ORC-10", "ORC-11", "ORC-12", "ORC-19", "OBR-10", "OBR-16", "OBR-28", "OBR-32", "OBR-33",
    "OBR-34", "OBR-35", "PV1-7", "PV1-8", "PV1-9", "PV1-17", "RXE-13", "RXA-10", "ZE1-7",
    "OBX-16", "EVN-5", "IAM-18", "ROL-4", "RXE-14"})
XCN_METADATA = {7: "degree", 9: "assigning authority", 10: "name type code (L = legal)",
                13: "identifier type code", 14: "assigning facility",
                15: "name representation code (I kanji / P kana)"}


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


def _explained(c: Content, table: dict[str, str], xcn_value: bool = False) -> bool:
    where = f"{c.segment_id}-{c.field}"
    if c.segment_id in table or where in table or f"{where}.{c.component}" in table:
        return True
    if where in XCN_FIELDS or xcn_value:
        return c.repetition > 1 or c.component in XCN_METADATA
    return False


def audit_message(msg: Message, ctx: MapContext) -> tuple[list[Json], list[Unmapped]]:
    """Map ``msg`` in audit mode.  Raises MappingError like :func:`map_message`."""
    amsg = audited(msg)
    resources = map_message(amsg, ctx)
    table = not_mapped(ctx.name.data_type)
    grouped: dict[tuple[int, int, int], list[Content]] = {}
    d = amsg.delimiters  # OBX-2 value type: its first component (``XCN^`` is XCN too)
    xcn_values = {i for i, line in enumerate(amsg.lines) if line.startswith("OBX") and
                  [f.split(d.component, 1)[0] for f in line.split(d.field)[2:3]] == ["XCN"]}
    for c in unread(amsg):
        if not _explained(c, table, c.field == 5 and c.segment in xcn_values):
            grouped.setdefault((c.segment, c.field, c.repetition), []).append(c)
    out = []
    for (seg, _n, rep), items in grouped.items():
        excerpt = "^".join(c.value for c in items)
        if len(excerpt) > 60:
            excerpt = excerpt[:57] + "..."
        out.append(Unmapped(seg, items[0].where, rep, tuple(c.component for c in items), excerpt))
    return resources, out
