"""``Patient/[id]/$jp-clins``: the JP-CLINS (電子カルテ情報共有サービス) 5情報 + 処方 Bundles.

Followed: JP-CLINS IG "２文書５情報＋患者サマリー" **v1.11.0 (2025-07-14)**, page "電子カルテ情報
共有サービスに医療機関から送信するFHIR仕様" and the profile ``JP_Bundle_CLINS``:

* one ``collection`` Bundle per **report unit** (報告単位), holding the Patient first and then
  resources of ONE type, named in ``meta.tag`` (system ``…/CodeSystem/BundleResourceType_CS``):
  allergies (all, one unit), diagnoses (all, one unit), lab results (one unit per result report,
  i.e. per SS-MIX2 OML-11 file) and prescriptions (one unit per prescription order);
* allergies and diagnoses: those without an end date or ended within 5 years of the newest data
  date; lab results and prescriptions: those within ``days`` of the newest data date;
* ``Bundle.identifier`` = ``{医療機関番号10桁}^{被保険者個人識別子}^{unit id}`` under
  ``http://jpfhir.jp/fhir/clins/bundle-identifier``;
* every resource: the institution-number extension, an eCS profile ``…|1``, the subject
  referenced by the Patient entry's ``fullUrl`` (fresh ``urn:uuid`` each time);
* lab results carry the mandatory local-code coding (``JP_CLINS_ObsLabResult_LocalCode_CS``) and
  JLAC10 under ``urn:oid:1.2.392.200119.4.504`` or the 未標準化コード.

Deviations are returned beside the Bundles (and listed in docs/api.md), never hidden."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import copy

from mappers.serialize import dumps

from . import select

JST = ZoneInfo("Asia/Tokyo")
IG_VERSION = "1.11.0"
BUNDLE_PROFILE = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS|1"
TAG_SYSTEM = "http://jpfhir.jp/fhir/clins/CodeSystem/BundleResourceType_CS"
BUNDLE_ID_SYSTEM = "http://jpfhir.jp/fhir/clins/bundle-identifier"
INSTITUTION_EXT = "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber"
INSTITUTION_NO = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no"
DEPARTMENT_EXT = "http://jpfhir.jp/fhir/eCS/Extension/StructureDefinition/JP_eCS_Department"
MEMBER_ID = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID"
RESOURCE_ID = "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier"
LOCAL_LAB = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS"
JLAC10_OID = "urn:oid:1.2.392.200119.4.504"
JLAC10_URL = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
UNCODED_LAB = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_Uncoded_CS"
SYMBOL_EXT = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSymbol"
NUMBER_EXT = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonNumber"
BRANCH_EXT = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSubNumber"
INSURER = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber"
PROFILES = {
    "Patient": "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS|1",
    "AllergyIntolerance": "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_AllergyIntolerance_eCS|1",
    "Condition": "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Condition_eCS|1",
    "Observation": "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS|1",
    "MedicationRequest": "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_MedicationRequest_eCS|1",
}
TYPES = ("AllergyIntolerance", "Condition", "Observation", "MedicationRequest")
INSTITUTION_RE = re.compile(r"^[0-4][0-9][1-3][0-9]{7}$")
DEFAULT_DAYS = 365
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


@dataclass
class ClinsResult:
    bundles: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    submittable: bool = True


def member_id(resources: list[dict]) -> str | None:
    """被保険者個人識別子 ``保険者番号8桁:記号:番号:枝番`` from the newest health-insurance
    Coverage (one with a 被保険者番号), or None.  A missing 枝番 stays empty (IG text), and a
    missing 記号 too."""
    covs = [c for c in select.of_type(resources, "Coverage")
            if any(e.get("url") == NUMBER_EXT for e in c.get("extension", []))]
    covs.sort(key=lambda c: ((c.get("period") or {}).get("start") or ""), reverse=True)
    for cov in covs:
        ext = {e.get("url"): e.get("valueString", "") for e in cov.get("extension", [])}
        insurer = next((i.get("identifier", {}).get("value") for i in cov.get("payor", [])
                        if i.get("identifier", {}).get("system") == INSURER), None)
        if not insurer or not ext.get(NUMBER_EXT):
            continue
        parts = [insurer.zfill(8), ext.get(SYMBOL_EXT, ""), ext.get(NUMBER_EXT, ""),
                 ext.get(BRANCH_EXT, "")]
        return ":".join("".join(p.split()) for p in parts)
    return None


def _unit_id(prefix: str, key: str) -> str:
    cleaned = re.sub(r"[^A-Z0-9\-]", "-", key.upper())
    return f"{prefix}-{cleaned}"[:128]


def _ended(resource: dict) -> date | None:
    for path in ("abatementDateTime", "lastOccurrence"):
        v = resource.get(path)
        if isinstance(v, str) and len(v) >= 10:
            try:
                return date.fromisoformat(v[:10])
            except ValueError:
                pass
    return None


def _with_common(resource: dict, institution: str, patient_url: str) -> dict:
    """A copy with the eCS profile, institution number and the subject as the Patient entry."""
    r = copy.deepcopy(resource)
    meta = r.setdefault("meta", {})
    meta["profile"] = [PROFILES[r["resourceType"]]]
    r["extension"] = [e for e in r.get("extension", []) if e.get("url") != INSTITUTION_EXT] + [
        {"url": INSTITUTION_EXT, "valueIdentifier": {"system": INSTITUTION_NO,
                                                     "value": institution}}]
    for key in ("subject", "patient"):
        if key in r:
            r[key] = {"reference": patient_url}
    if r["resourceType"] != "Patient" and not any(
            i.get("system") == RESOURCE_ID for i in r.get("identifier", [])):
        r.setdefault("identifier", []).append({"system": RESOURCE_ID, "value": r["id"]})
    return r


def _lab_code(obs: dict) -> dict:
    """The code with the mandatory local-code coding and JLAC10 (or 未標準化) added."""
    code = obs.get("code") or {}
    codings = list(code.get("coding", []))
    local = next((c for c in codings if c.get("system") not in (JLAC10_URL, "http://loinc.org")
                  and c.get("code")), None)
    # a facility whose own item code is the JLAC10 code: that code is its local code too
    local = local or next((c for c in codings if c.get("code")), None)
    name = code.get("text") or next((c.get("display") for c in codings if c.get("display")), "")
    out = []
    if local:
        out.append(_coding(LOCAL_LAB, re.sub(r"[^A-Za-z0-9\-_]", "-", local["code"]),
                           local.get("display") or name))
    jlac = next((c for c in codings if c.get("system") in (JLAC10_URL, JLAC10_OID)), None)
    if jlac:
        out.append(_coding(JLAC10_OID, jlac["code"], jlac.get("display") or name))
    else:
        out.append(_coding(UNCODED_LAB, "99999999999999999", "未標準化コード項目(JLAC)"))
    result: dict = {"coding": out + [c for c in codings if c.get("system") != JLAC10_URL]}
    if name:
        result["text"] = name
    return result


def _coding(system: str, code: str, display: str | None) -> dict:
    """A Coding without empty strings (FHIR forbids them)."""
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def _patient(patient: dict, institution: str, member: str | None) -> dict:
    p = copy.deepcopy(patient)
    p["meta"] = {**p.get("meta", {}), "profile": [PROFILES["Patient"]]}
    p["extension"] = [e for e in p.get("extension", []) if e.get("url") != INSTITUTION_EXT] + [
        {"url": INSTITUTION_EXT, "valueIdentifier": {"system": INSTITUTION_NO,
                                                     "value": institution}}]
    if member:
        p["identifier"] = [i for i in p.get("identifier", []) if i.get("system") != MEMBER_ID] + [
            {"system": MEMBER_ID, "value": member}]
    return p


def _bundle(rtype: str, unit: str, institution: str, member: str | None, patient: dict,
            members: list[dict], now: datetime) -> dict:
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [{"fullUrl": patient_url, "resource": patient}]
    entries += [{"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                 "resource": _with_common(r, institution, patient_url)} for r in members]
    if rtype == "Observation":
        for e in entries[1:]:
            e["resource"]["code"] = _lab_code(e["resource"])
    stamp = now.isoformat(timespec="milliseconds")
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "language": "ja",
            "meta": {"lastUpdated": stamp, "profile": [BUNDLE_PROFILE],
                     "tag": [{"system": TAG_SYSTEM, "code": rtype}]},
            "identifier": {"system": BUNDLE_ID_SYSTEM,
                           "value": f"{institution}^{member or ''}^{unit}"},
            "type": "collection", "timestamp": stamp, "entry": entries}


def _units(rtype: str, resources: list[dict], as_of: date, days: int
           ) -> list[tuple[str, list[dict]]]:
    """The report units of one type: (unit id, resources)."""
    if rtype in ("AllergyIntolerance", "Condition"):
        horizon = as_of - timedelta(days=5 * 365)
        chosen = [r for r in (select.allergies(resources) if rtype == "AllergyIntolerance"
                              else select.of_type(resources, "Condition"))
                  if not select.is_refuted(r) and ((_ended(r) or as_of) >= horizon)]
        prefix = "ALG" if rtype == "AllergyIntolerance" else "CND"
        return [(_unit_id(prefix, "ALL"), chosen)] if chosen else []
    horizon = as_of - timedelta(days=days)
    groups: dict[str, list[dict]] = {}
    for r in select.of_type(resources, rtype):
        d = select.clinical_date(r)
        if d is None or d < horizon or r.get("status") in ("cancelled", "entered-in-error"):
            continue
        if rtype == "Observation":
            if not select.has_category(r, "laboratory"):
                continue
            key = (r.get("meta") or {}).get("source") or r["id"]
            unit = _unit_id("LAB", f"{d.strftime('%Y%m%d')}-{_order_no(r) or _digest(key)}")
        else:
            order = (r.get("groupIdentifier") or {}).get("value") or r["id"]
            unit = _unit_id("RX", f"{d.strftime('%Y%m%d')}-{order}")
        groups.setdefault(unit, []).append(r)
    return sorted(groups.items())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]


def _order_no(obs: dict) -> str | None:
    for b in obs.get("basedOn", []):
        v = (b.get("identifier") or {}).get("value")
        if v:
            return v
    return None


def _split(members: list[dict], max_bytes: int) -> list[list[dict]]:
    """Split a lab report into parts whose JSON stays under ``max_bytes`` (never mid-resource)."""
    parts: list[list[dict]] = [[]]
    size = 0
    for r in members:
        n = len(dumps(r))
        if parts[-1] and size + n > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append(r)
        size += n
    return parts


def build(patient: dict, resources: list[dict], *, institution: str,
          types: tuple[str, ...] = TYPES, days: int = DEFAULT_DAYS,
          max_bytes: int = DEFAULT_MAX_BYTES, now: datetime | None = None) -> ClinsResult:
    """All JP-CLINS Bundles for one patient, with the reasons any of them would be refused."""
    now = (now or datetime.now(JST)).astimezone(JST)
    result = ClinsResult()
    if not INSTITUTION_RE.match(institution):
        result.submittable = False
        result.warnings.append(f"施設コード {institution!r} は医療機関番号10桁（都道府県2桁+区分1桁+7桁）"
                               "の形ではありません (institution-number)")
    member = member_id(resources)
    if member is None:
        result.submittable = False
        result.warnings.append("保険情報（被保険者番号）が記録されていないため、被保険者個人識別子を作れません。"
                               "電子カルテ情報共有サービスには送信できません (no-insurance-member-id)")
    as_of = select.newest_data_date(resources)
    if as_of is None:
        return result
    clins_patient = _patient(patient, institution, member)
    for rtype in types:
        for unit, members in _units(rtype, resources, as_of, days):
            parts = _split(members, max_bytes) if rtype == "Observation" else [members]
            for i, part in enumerate(parts, 1):
                uid = unit if len(parts) == 1 else f"{unit}-P{i}"[:128]
                result.bundles.append(_bundle(rtype, uid, institution, member, clins_patient,
                                              part, now))
            if rtype != "Observation" and len(dumps(members)) > max_bytes:
                result.warnings.append(f"{unit}: {len(members)} 件が {max_bytes} バイトを超えますが、"
                                       "報告単位は分割できないため1つのBundleのままです (unit-too-large)")
    _check_conditions(result)
    return result


def _check_conditions(result: ClinsResult) -> None:
    """Name the JP-CLINS service rules our data cannot meet (department, onset, performer)."""
    missing: dict[str, int] = {}
    for b in result.bundles:
        for e in b["entry"][1:]:
            r = e["resource"]
            t = r["resourceType"]
            if t in ("Condition", "Observation", "MedicationRequest") and not any(
                    x.get("url") == DEPARTMENT_EXT for x in r.get("extension", [])):
                missing[f"{t}: 診療科 (JP_eCS_Department)"] = missing.get(
                    f"{t}: 診療科 (JP_eCS_Department)", 0) + 1
            if t == "Condition" and "onsetDateTime" not in r:
                missing["Condition: 発症日 (onsetDateTime)"] = missing.get(
                    "Condition: 発症日 (onsetDateTime)", 0) + 1
            if t == "Observation" and not any(c.get("system") == LOCAL_LAB
                                              for c in r.get("code", {}).get("coding", [])):
                missing["Observation: 検査項目コード (LocalCode)"] = missing.get(
                    "Observation: 検査項目コード (LocalCode)", 0) + 1
            if t == "Observation" and not r.get("performer"):
                missing["Observation: 検査実施者 (performer)"] = missing.get(
                    "Observation: 検査実施者 (performer)", 0) + 1
    for what, n in sorted(missing.items()):
        result.warnings.append(f"{what} が {n} 件で記録されていません（電子カルテ情報共有サービスでは必須）"
                               " (missing-element)")


def to_collection(result: ClinsResult, patient_id: str, now: datetime | None = None) -> dict:
    """The operation's answer: a collection Bundle whose entries are the CLINS Bundles, and an
    OperationOutcome naming every rule the data could not meet."""
    now = (now or datetime.now(JST)).astimezone(JST)
    entries: list[dict] = [{"fullUrl": f"urn:uuid:{b['id']}", "resource": b}
                           for b in result.bundles]
    issues = [{"severity": "warning", "code": "business-rule", "diagnostics": w}
              for w in result.warnings]
    issues.insert(0, {"severity": "information", "code": "informational",
                      "diagnostics": f"JP-CLINS IG {IG_VERSION}; {len(result.bundles)} bundle(s) for "
                                     f"Patient/{patient_id}; submittable: "
                                     f"{'yes' if result.submittable else 'no'}"})
    entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": {"resourceType": "OperationOutcome", "issue": issues}})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": now.isoformat(timespec="seconds")},
            "type": "collection", "timestamp": now.isoformat(timespec="seconds"),
            "entry": entries}
