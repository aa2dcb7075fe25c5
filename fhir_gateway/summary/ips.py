"""``Patient/[id]/$summary``: an International Patient Summary (IPS STU2 structure, R4).

A ``document`` Bundle: the Composition first, then the Patient, the facility as author, every
resource a section names and whatever those resources reference in the chart.  Entries keep
their JP Core profiles and ``meta.source`` (the SS-MIX2 file they came from); only the Bundle and
the Composition claim the IPS profiles, because those two are built here to the IPS rules.
Sections are chosen by :mod:`.select` relative to the chart's newest data date."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from fhir_gateway.services import medication_summary as ms

from . import narrative as nv
from . import select

JST = ZoneInfo("Asia/Tokyo")
LOINC = "http://loinc.org"
IPS_BUNDLE = "http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"
IPS_COMPOSITION = "http://hl7.org/fhir/uv/ips/StructureDefinition/Composition-uv-ips"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
INSTITUTION_NO = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no"
_UUID_NS = uuid.UUID("5b0c3e2a-7f55-4d0e-9a43-6a1f3c1b2d90")
_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class Section:
    key: str
    loinc: str
    loinc_display: str
    title: str
    required: bool


SECTIONS = (
    Section("problems", "11450-4", "Problem list - Reported", "現在の問題・傷病名", True),
    Section("allergies", "48765-2", "Allergies and adverse reactions Document",
            "アレルギー・不耐性", True),
    Section("medications", "10160-0", "History of Medication use Narrative", "服薬（最終データ日時点）",
            True),
    Section("results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative",
            "検査結果（直近）", False),
    Section("vitals", "8716-3", "Vital signs", "バイタルサイン（直近）", False),
    Section("procedures", "47519-4", "History of Procedures Document", "処置・手術歴", False),
    Section("immunizations", "11369-6", "History of Immunization Narrative", "予防接種歴", False),
    Section("past", "11348-0", "History of Past illness Narrative", "既往歴（終了した傷病名）", False),
)


def facility_organization(code: str, name: str) -> dict:
    """The facility as an Organization (document author and custodian)."""
    return {"resourceType": "Organization", "id": f"facility-{code}",
            "identifier": [{"system": INSTITUTION_NO, "value": code}], "name": name or code}


def _medication_resources(resources: list[dict], meds: ms.MedicationSummary) -> list[dict]:
    """The MedicationRequests behind the summary's lines, running first, in the summary's order."""
    by_id = {r.get("id"): r for r in select.of_type(resources, "MedicationRequest")}
    ids = [ln.resource_id for g in meds.running + meds.ended for ln in g.lines]
    return [by_id[i] for i in ids if i in by_id]


def _choose(key: str, resources: list[dict], meds: ms.MedicationSummary) -> list[dict]:
    if key == "problems":
        return select.active_problems(resources)
    if key == "allergies":
        return select.allergies(resources)
    if key == "medications":
        return _medication_resources(resources, meds)
    if key == "results":
        return select.latest_observations(resources, "laboratory")
    if key == "vitals":
        return select.latest_observations(resources, "vital-signs")
    if key == "procedures":
        return select.of_type(resources, "Procedure")
    if key == "immunizations":
        return select.of_type(resources, "Immunization")
    if key == "past":
        return select.past_problems(resources)
    raise KeyError(key)


def _rows(key: str, chosen: list[dict], meds: ms.MedicationSummary) -> tuple[list[str], list]:
    """Headers and rows of a section's narrative table."""
    if key in ("problems", "past"):
        return (["傷病名", "状態", "記録日"],
                [[nv.text_of(r.get("code")), nv.status_ja(r), nv.date_text(r)] for r in chosen])
    if key == "allergies":
        return (["原因", "分類", "重要度", "状態", "記録日"],
                [[nv.text_of(r.get("code")),
                  "・".join(nv.CATEGORY_JA.get(c, c) for c in r.get("category", [])),
                  nv.CRITICALITY_JA.get(r.get("criticality", ""), r.get("criticality", "")),
                  nv.status_ja(r), nv.date_text(r)] for r in chosen])
    if key == "medications":
        rows = []
        for group in meds.running + meds.ended:
            for ln in group.lines:
                how = "・".join(x for x in (ln.dose, ln.usage, ln.route, ln.rate) if x)
                rows.append([ln.drug, "注射" if ln.kind == "injection" else "処方", how,
                             ln.start, ln.end or "不明",
                             "継続中" if group.running else ln.state_ja])
        return ["薬剤", "種別", "用法・用量", "開始日", "終了（予定）日", "最終データ日時点"], rows
    if key in ("results", "vitals"):
        return (["項目", "結果", "日付"],
                [[nv.text_of(r.get("code")), nv.observation_value(r), nv.date_text(r)]
                 for r in chosen])
    if key == "procedures":
        return (["処置", "状態", "実施日"],
                [[nv.text_of(r.get("code")), nv.status_ja(r), nv.date_text(r)] for r in chosen])
    if key == "immunizations":
        return (["ワクチン", "状態", "接種日"],
                [[nv.text_of(r.get("vaccineCode")), nv.status_ja(r), nv.date_text(r)]
                 for r in chosen])
    raise KeyError(key)


def _references(value) -> list[str]:
    """Every literal ``Type/id`` reference inside a resource (contained ``#x`` ones excluded)."""
    out: list[str] = []
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and _REF.match(ref):
            out.append(ref)
        for k, v in value.items():
            if k != "contained":
                out.extend(_references(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(_references(v))
    return out


def _closure(start: list[dict], chart: dict[str, dict]) -> list[dict]:
    """``start`` plus every chart resource they reference, transitively, each once."""
    seen: dict[str, dict] = {}
    todo = list(start)
    while todo:
        r = todo.pop(0)
        key = f"{r['resourceType']}/{r['id']}"
        if key in seen:
            continue
        seen[key] = r
        todo.extend(chart[ref] for ref in _references(r) if ref in chart and ref not in seen)
    return list(seen.values())


def build(patient: dict, resources: list[dict], *, facility_code: str, facility_name: str,
          base_url: str, now: datetime | None = None, read_problems: int = 0) -> dict:
    """The IPS document Bundle for one patient from their mapped resources."""
    now = (now or datetime.now(JST)).astimezone(JST)
    as_of: date | None = select.newest_data_date(resources)
    meds = ms.medication_summary(resources, as_of.isoformat() if as_of else None)
    org = facility_organization(facility_code, facility_name)
    org_url = f"urn:uuid:{uuid.uuid5(_UUID_NS, 'org:' + facility_code)}"
    patient_ref = f"Patient/{patient['id']}"

    sections, named = [], []
    for sec in SECTIONS:
        chosen = _choose(sec.key, resources, meds)
        if not chosen and not sec.required:
            continue
        entry: dict[str, object] = {"title": sec.title,
                 "code": {"coding": [{"system": LOINC, "code": sec.loinc,
                                      "display": sec.loinc_display}], "text": sec.title}}
        if chosen:
            headers, rows = _rows(sec.key, chosen, meds)
            note = ""
            if sec.key == "medications":
                note = (f"最終データ日 {as_of.isoformat()} 時点。継続中の処方・注射と、"
                        f"{meds.since} 以降に終了したものを Rp ごとに示す。" if as_of else "")
            entry["text"] = {"status": "generated", "div": nv.table(sec.title, headers, rows, note)}
            entry["entry"] = [{"reference": f"{r['resourceType']}/{r['id']}"} for r in chosen]
            named.extend(chosen)
        else:
            entry["text"] = {"status": "generated",
                             "div": nv.paragraph(f"{sec.title}: バックアップに記録がありません（情報なし）。")}
            entry["emptyReason"] = {"coding": [{"system": EMPTY_REASON, "code": "unavailable",
                                                "display": "Unavailable"}], "text": "情報なし"}
        sections.append(entry)

    as_of_text = as_of.isoformat() if as_of else "不明"
    composition = {
        "resourceType": "Composition",
        "id": str(uuid.uuid5(_UUID_NS, f"ips:{facility_code}:{patient['id']}:{now.isoformat()}")),
        "meta": {"profile": [IPS_COMPOSITION]},
        "language": "ja",
        "text": {"status": "generated", "div": nv.paragraph(
            f"{facility_name} の SS-MIX2 バックアップから作成した患者サマリー。最終データ日 {as_of_text}、"
            f"作成 {now.strftime('%Y-%m-%d %H:%M')}。" +
            (f" 読めなかったファイル {read_problems} 件は含まれていません。" if read_problems else ""))},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "60591-5",
                             "display": "Patient summary Document"}], "text": "患者サマリー"},
        "subject": {"reference": patient_ref},
        "date": now.isoformat(timespec="seconds"),
        "author": [{"reference": org_url, "display": facility_name}],
        "title": "患者サマリー（International Patient Summary）",
        "confidentiality": "N",
        "custodian": {"reference": org_url, "display": facility_name},
        "event": [{"code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActClass",
                                         "code": "PCPR"}]}],
                   "period": {"end": as_of.isoformat()} if as_of else {"end": now.date().isoformat()}}],
        "section": sections,
    }
    chart = {f"{r['resourceType']}/{r['id']}": r for r in resources if r.get("id")}
    chart[patient_ref] = patient
    members = _closure([patient] + named, chart)
    entries = [{"fullUrl": f"urn:uuid:{composition['id']}", "resource": composition}]
    entries += [{"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r}
                for r in members]
    entries.append({"fullUrl": org_url, "resource": org})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
            "meta": {"profile": [IPS_BUNDLE], "lastUpdated": now.isoformat(timespec="seconds")},
            "language": "ja",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
            "type": "document", "timestamp": now.isoformat(timespec="seconds"), "entry": entries}
