"""HL7 v2.5 message structure and SS-MIX2 required fields, checked on a parsed message.

Why not hl7apy's own validator: its greedy group finder mis-assigns repeated segments (the
guideline's own RDE^O11 sample "misses" TIMING_ENCODED) and it costs 15-90 ms per message.  We
take the *structures* from hl7apy's HL7 v2.5 reference (groups, order, cardinality), compile each
into a regular expression over segment ids once, and match that — backtracking resolves the
ambiguity, and a check costs microseconds.  The JAHIS-only structures (PPR^ZD1, OMI^Z23) are not
in HL7 v2.5; their grammars below are our own, written after the SS-MIX2 specification.

Everything here is storage-level: it reads :class:`storage.hl7.Message` and knows no FHIR.
Results are ``(kind, reason)`` pairs; the caller turns them into warnings.
"""

from __future__ import annotations

import re
from typing import Any

from .hl7 import Message, Segment
from .memo import memo
from .names import DATA_TYPES

KIND_STRUCTURE = "structure"
KIND_REQUIRED_FIELD = "required-field"
KIND_SUSPICIOUS = "suspicious-components"

VERSION = "2.5"

# Our own grammars for the JAHIS structures, in a compact notation: segment ids, ( ) groups and
# the ? * + suffixes.  PPR^ZD1 after JAHIS 病名情報 / SS-MIX2 spec; OMI^Z23 after JAHIS 放射線・内視鏡.
JAHIS_GRAMMARS: dict[str, str] = {
    "PPR_ZD1": "MSH SFT* PID (PV1 PV2?)? (PRB ZPR? ZPD* NTE* VAR* (ROL VAR*)* (PTH VAR*)* ZI1* "
               "(OBX NTE*)* (GOL NTE* VAR* (ROL VAR*)* (OBX NTE*)*)* "
               "(ORC (OBR NTE* VAR* (OBX NTE* VAR*)*)? (RXO NTE* VAR* RXR+ (RXC NTE*)*)?)*)+",
    "OMI_Z23": "MSH SFT* NTE* (PID PD1? NTE* NK1* (PV1 PV2?)? (IN1 IN2? IN3?)* GT1? AL1*)? "
               "(ORC (TQ1 TQ2*)* OBR NTE* CTD? DG1* (OBX NTE*)* (ZE1 OBX* ZE2*)* IPC+)+",
}
# Z-segments that the JAHIS structures define; any other Z-segment is a local extension that HL7
# allows anywhere, so grammars are matched with it removed.
JAHIS_Z = {"ZPR", "ZPD", "ZI1", "ZE1", "ZE2"}

_TOKEN = re.compile(r"[A-Z][A-Z0-9]{2}")


def _compile_notation(notation: str) -> re.Pattern[str]:
    body = _TOKEN.sub(lambda m: f"(?:{m.group(0)},)", notation)
    body = body.replace("(", "(?:").replace("(?:?:", "(?:").replace(" ", "")
    return re.compile(f"^{body}$")


def _hl7apy_notation(structure: str) -> str | None:
    """Turn hl7apy's v2.5 reference of a message structure into our grammar notation."""
    try:
        from hl7apy import load_reference
        from hl7apy.exceptions import ChildNotFound
    except ImportError:  # pragma: no cover - hl7apy is a declared dependency
        return None
    try:
        ref = load_reference(structure, "Message", VERSION)
    except (ChildNotFound, KeyError, ValueError):
        return None

    def walk(node: tuple[Any, ...]) -> str:  # hl7apy's reference nodes are untyped tuples
        kind, children = node[0], node[1]
        parts = []
        for child in children:
            name, sub, (lo, hi), ctype = child[0], child[1], child[2], child[3]
            inner = f"({walk(sub)})" if ctype == "GRP" else name
            if lo == 0 and hi == 1:
                inner += "?"
            elif lo == 0:
                inner += "*"
            elif hi != 1:
                inner += "+"
            parts.append(inner)
        return (" | " if kind == "choice" else " ").join(parts)

    return walk(ref).replace(" | ", "|")


@memo(None)
def grammar(structure: str) -> re.Pattern[str] | None:
    """Compiled grammar of a message structure (``RDE_O11``), or None when unknown."""
    notation = JAHIS_GRAMMARS.get(structure) or _hl7apy_notation(structure)
    return _compile_notation(notation) if notation else None


@memo(None)
def segment_field_count(segment_id: str) -> int | None:
    """Number of fields HL7 v2.5 defines for a segment (None for Z- or unknown segments)."""
    try:
        from hl7apy import load_reference

        return len(load_reference(segment_id, "Segment", VERSION)[1])
    except Exception:  # noqa: BLE001 - unknown segment: hl7apy raises several kinds
        return None


def structure_of(msg: Message) -> str:
    """MSH-9.3, or the structure the data-type table gives for MSH-9.1^MSH-9.2."""
    mtype, event, structure = msg.message_type
    if structure:
        return structure
    for dt in DATA_TYPES.values():
        for m, e, s in dt.events:
            if m == mtype and e == event:
                return s
    return f"{mtype}_{event}" if mtype and event else ""


def check_structure(msg: Message) -> list[tuple[str, str]]:
    """Segment order/cardinality against the message structure, plus unknown segments and
    segments with more fields than HL7 v2.5 defines."""
    out: list[tuple[str, str]] = []
    structure = structure_of(msg)
    ids = msg.segment_ids
    unknown = sorted({s for s in ids if not s.startswith("Z") and segment_field_count(s) is None})
    if unknown:
        out.append((KIND_STRUCTURE, f"segments not defined in HL7 v{VERSION}: {', '.join(unknown)}"))
    pattern = grammar(structure) if structure else None
    if structure and pattern is None:
        out.append((KIND_STRUCTURE, f"message structure {structure} (MSH-9.3) is not an HL7 "
                    f"v{VERSION} or JAHIS structure"))
    elif pattern is not None:
        local_z = structure not in JAHIS_GRAMMARS
        seq = [s for s in ids if not (s.startswith("Z") and (local_z or s not in JAHIS_Z))]
        if not pattern.match("".join(f"{s}," for s in seq)):
            out.append((KIND_STRUCTURE, f"segment order {' '.join(_squeeze(seq))} does not follow "
                        f"the {structure} structure"))
    for seg in msg:
        defined = segment_field_count(seg.id)
        if defined is None:
            continue
        count = _field_count(seg)
        if count > defined:
            out.append((KIND_STRUCTURE, f"{seg.id} (segment {seg.index + 1}) has {count} fields; "
                        f"HL7 v{VERSION} defines {defined}"))
    return out


def _field_count(seg: Segment) -> int:
    fields = seg.line.rstrip(seg._d.field).split(seg._d.field)  # noqa: SLF001 - delimiter only
    return len(fields) - (0 if seg.id == "MSH" else 1)


def _squeeze(seq: list[str]) -> list[str]:
    """``OBX OBX OBX`` -> ``OBX×3`` so long messages stay readable in the report."""
    out: list[str] = []
    for s in seq:
        if out and out[-1].split("×")[0] == s:
            base, _, n = out[-1].partition("×")
            out[-1] = f"{base}×{int(n or 1) + 1}"
        else:
            out.append(s)
    return out


# --- SS-MIX2 required (R) fields -----------------------------------------------------------------

_ALL = None  # applies to every data type
_OMP = ("OMP-01", "OMP-11", "OMP-02", "OMP-12")
_ORDERS = ("PPR-01", "OMD", *_OMP, "OML-01", "OML-11", "OMG-01", "OMG-11", "OMG-02", "OMG-12",
           "OMG-03", "OMG-13")
_OBR_TYPES = ("OML-01", "OML-11", "OMG-01", "OMG-11", "OMG-02", "OMG-12", "OMG-03", "OMG-13")

# (segment, field, component or None, data types or None for all, label).  From the SS-MIX2
# specification's R fields (reference ssmix2.md §5 and appendix A); checked on every occurrence
# of the segment.  The list is deliberately the fields a viewer cannot do without.
REQUIRED: tuple[tuple[str, int, tuple[str, ...] | None, str], ...] = (
    ("MSH", 7, _ALL, "メッセージ日時 / message date-time"),
    ("MSH", 9, _ALL, "メッセージ型 / message type"),
    ("MSH", 10, _ALL, "メッセージ制御ID / message control id"),
    ("MSH", 11, _ALL, "処理ID / processing id"),
    ("MSH", 12, _ALL, "バージョンID / version id"),
    ("EVN", 2, _ALL, "事象記録日時 / recorded date-time"),
    ("PID", 3, _ALL, "患者IDリスト / patient identifier"),
    ("PID", 5, _ALL, "患者氏名 / patient name"),
    ("PID", 7, _ALL, "生年月日 / date of birth"),
    ("PID", 8, _ALL, "性別 / sex"),
    ("PV1", 2, _ALL, "患者区分 / patient class"),
    ("ORC", 1, _ORDERS, "オーダ制御 / order control"),
    ("ORC", 2, _ORDERS, "依頼者オーダ番号 / placer order number"),
    ("RXE", 2, _OMP, "与薬コード / give code"),
    ("RXE", 3, _OMP, "与薬量 / give amount"),
    ("RXE", 5, _OMP, "与薬単位 / give units"),
    ("RXR", 1, _OMP, "経路 / route"),
    ("RXC", 2, _ALL, "成分コード / component code"),
    ("RXA", 3, _ALL, "投薬開始日時 / administration start"),
    ("RXA", 5, _ALL, "投薬コード / administered code"),
    ("SPM", 4, _ALL, "検体タイプ / specimen type"),
    ("OBR", 4, _OBR_TYPES, "検査項目ID / universal service identifier"),
    ("OBX", 3, _ORDERS, "検査項目 / observation identifier"),
    ("OBX", 11, _ORDERS, "検査結果状態 / result status"),
    ("PRB", 1, _ALL, "アクションコード / action code"),
    ("PRB", 3, _ALL, "プロブレムID / problem id"),
    ("PRB", 4, _ALL, "プロブレムインスタンスID / problem instance id"),
    ("IAM", 3, _ALL, "アレルゲン情報 / allergen"),
    ("IAM", 6, _ALL, "アレルギーアクションコード / allergy action code"),
    ("AL1", 3, _ALL, "アレルゲン情報 / allergen"),
    ("IN1", 2, _ALL, "保険プランID / insurance plan"),
    ("ODS", 3, _ALL, "食事コード / diet code"),
    ("ZPR", 2, _ALL, "病名管理番号 / disease code"),
)


def check_required(msg: Message, data_type: str | None) -> list[tuple[str, str]]:
    """SS-MIX2 R fields that are empty, one reason per field (with how often it is empty)."""
    out: list[tuple[str, str]] = []
    for seg_id, num, types, label in REQUIRED:
        if types is not None and data_type not in types:
            continue
        segs = msg.segments(seg_id)
        if not segs:
            continue
        empty = sum(1 for s in segs if not s[num])
        if empty:
            where = "" if len(segs) == 1 else f" in {empty} of {len(segs)} {seg_id} segments"
            out.append((KIND_REQUIRED_FIELD, f"{seg_id}-{num} {label} is empty{where}"))
    return out


# --- components beyond what the data type allows -------------------------------------------------

# (segment, field) -> (HL7 data type, components it has).  Text fields (ST/TX/FT) have one: a
# '^' inside is an unescaped separator (the mappers read them whole with Field.text).  Units
# (CE) also get the power-of-ten test of :func:`rejoin_units`.
COMPONENT_LIMITS: dict[tuple[str, int], tuple[str, int]] = {
    ("OBX", 7): ("ST", 1), ("TQ1", 10): ("TX", 1), ("TQ1", 11): ("TX", 1), ("NTE", 3): ("FT", 1),
    ("OBR", 13): ("ST", 1),
    ("OBX", 6): ("CE", 6), ("RXE", 5): ("CE", 6), ("RXE", 11): ("CE", 6), ("RXC", 4): ("CE", 6),
    ("RXA", 7): ("CE", 6),
    ("OBX", 3): ("CWE", 9), ("RXE", 2): ("CWE", 9), ("RXC", 2): ("CWE", 9), ("RXA", 5): ("CWE", 9),
    ("SPM", 4): ("CWE", 9), ("OBR", 4): ("CWE", 9), ("PRB", 3): ("CWE", 9), ("IAM", 3): ("CWE", 9),
    ("AL1", 3): ("CWE", 9), ("ODS", 3): ("CWE", 9),
}
_UNIT_FIELDS = {("OBX", 6), ("RXE", 5), ("RXE", 11), ("RXC", 4), ("RXA", 7)}
_POWER_BASE = re.compile(r"(?:^|[x×*＊Xｘ])\s*10$|^10$")


def rejoin_units(comps: list[str]) -> list[str]:
    """Components of a unit with an unescaped ``^`` put back: ``×10`` + ``4/μL`` is the one
    unit ``×10^4/μL`` (a power of ten followed by a number is never two components)."""
    out: list[str] = []
    for c in comps:
        if out and _POWER_BASE.search(out[-1]) and c[:1].isdigit():
            out[-1] = f"{out[-1]}^{c}"
        else:
            out.append(c)
    return out


def check_components(msg: Message) -> list[tuple[str, str]]:
    """Fields with more components than their data type allows (an unescaped '^' written by the
    sender), one reason per field with how it is read."""
    out: list[tuple[str, str]] = []
    d = msg.delimiters
    for seg in msg:
        for (sid, n), (dtype, limit) in COMPONENT_LIMITS.items():
            if sid != seg.id:
                continue
            fs = seg.fields
            if n >= len(fs) or d.component not in fs[n]:
                continue
            for r, rep in enumerate(fs[n].split(d.repetition), 1):
                comps = rep.split(d.component)
                where = f"{sid}-{n} (segment {seg.index + 1}, repetition {r})"
                if (sid, n) in _UNIT_FIELDS and rejoin_units(comps) != comps:
                    joined = rejoin_units(comps)
                    out.append((KIND_SUSPICIOUS, f"{where}: unescaped '^' inside the unit "
                                f"{rep!r}; read as the unit {joined[0]!r}"))
                elif len(comps) > limit:
                    how = ("read whole as text" if limit == 1 else
                           "the written text is kept as the unit" if (sid, n) in _UNIT_FIELDS
                           else "the first components are read as the code")
                    out.append((KIND_SUSPICIOUS, f"{where} has {len(comps)} components, {dtype} "
                                f"allows {limit}: {rep[:40]!r} ({how})"))
    return out


def check_message(msg: Message, data_type: str | None) -> list[tuple[str, str]]:
    """Every check; the drill calls this for every file that tokenized."""
    return check_structure(msg) + check_required(msg, data_type) + check_components(msg)
