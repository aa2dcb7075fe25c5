"""UKE receipts -> Claim (+ Coverage per bearer, + Patient when no SS-MIX2 patient matches).

One RE record with the records up to the next RE (a :class:`storage.uke.Receipt`) becomes one
Claim.  Pure functions: the caller reads the file (``storage.uke``), resolves the patient with
``storage.uke.match_patient`` and passes the result in :class:`ClaimContext`.

Money: UKE amounts are 点数; 1 点 = 10 円 (the national fee-schedule rate) unless RE-15
割引点数単価 says otherwise, so ``unitPrice = 点数 × 10 JPY`` and ``net = unitPrice × 回数``.
The field → element table is in docs/receipts.md.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Callable

from storage.memo import memo
from storage.reader import KIND_MAPPING, Problem
from storage.uke import Item, Layout, Receipt, UkeFile, UkeRecord, facility_code, \
    match_patient, parse_uke_date, read_uke_file, uke_month

from .jsontypes import Json
from . import terminology as term

YEN_PER_POINT = 10
JST = timezone(timedelta(hours=9))
_SAFE = re.compile(r"[^A-Za-z0-9\-]")
_ID_PART = re.compile(r"^[A-Za-z0-9\-]{1,20}$")


@dataclass(frozen=True, slots=True)
class ClaimContext:
    facility: str  # configured facility code (used in ids)
    source: str  # receipts-folder-relative path of the UKE file -> meta.source "receipts/..."
    patient_id: str | None = None  # SS-MIX2 patient resolved by the caller, or None
    last_updated: str | None = None  # the file's mtime as a FHIR instant (see mtime_instant)
    header: UkeRecord | None = None  # the file's IR (UK/YK) record


@memo(1024)
def mtime_instant(mtime: float) -> str:
    """A file mtime (seconds since the epoch) as a FHIR instant in +09:00."""
    return datetime.fromtimestamp(mtime, JST).isoformat(timespec="seconds")


# --- ids ----------------------------------------------------------------------------------------

@memo(4096)
def _safe(text: str) -> str:
    return _SAFE.sub("", text) or "x"


@dataclass(frozen=True, slots=True)
class _Head:
    """What every receipt's Claim takes from its file's header record (IR/UK/YK): the same for
    all receipts of a file, so worked out once per header (:func:`_head`)."""

    month: str  # 請求年月 as YYYYMM; "000000" when absent or invalid
    kind: str  # 審査支払機関 + 点数表, id-safe
    tensuhyo: str
    facility10: str  # :func:`storage.uke.facility_code`; "" without a header
    name: str  # 医療機関名称
    created: str | None  # 請求年月's first day


def _head_facts(header: UkeRecord | None) -> _Head:
    month = uke_month(header["claim_month"]) if header else None
    kind = (header["payer"] + header["tensuhyo"]) if header else ""
    created = _month_period(header["claim_month"]) if header else None
    return _Head(month or "000000", _safe(kind) or "0", header["tensuhyo"] if header else "",
                 facility_code(header), header["facility_name"] if header else "",
                 created["start"] if created else None)


@memo(1024)
def _head_of(fields: tuple[str, ...], layout: Layout | None) -> _Head:
    return _head_facts(UkeRecord(list(fields), 0, layout=layout))


def _head(header: UkeRecord | None) -> _Head:
    return _NO_HEAD if header is None else _head_of(tuple(header.fields), header.layout)


def claim_id(facility: str, header: UkeRecord | None, receipt: Receipt) -> str:
    """``uke-{facility}-{請求年月 YYYYMM}-{審査支払機関}{点数表}-{レセプト番号}``.

    RE-2 is unique only within one file; a facility sends one file per payer and 点数表 per
    month, so those two codes make the id unique and stable across re-reads.
    """
    head = _head(header)
    return "-".join(("uke", _safe(facility)[:20], head.month, head.kind,
                     _safe(receipt.receipt_no)[:10]))


def parse_claim_id(value: str) -> tuple[str, str, str, str] | None:
    """Invert :func:`claim_id`: (facility, YYYYMM, payer+点数表, receipt no), or None."""
    m = re.fullmatch(r"uke-([A-Za-z0-9]{1,20})-(\d{6})-([A-Za-z0-9]{1,4})-([A-Za-z0-9]{1,10})",
                     value)
    return (m.group(1), m.group(2), m.group(3), m.group(4)) if m else None


def receipt_patient_id(facility: str, receipt: Receipt) -> str:
    """Id of the Patient built from RE when no SS-MIX2 patient matched.

    ``uke-{facility}-{カルテ番号}`` when the number is a usable id part, else
    ``uke-{facility}-h{hash}`` of name, birth date, sex and the HO insurance numbers, so the
    same person gets the same id in every month's file.
    """
    karte = receipt.karte_no
    if karte and _ID_PART.match(karte):
        return f"uke-{_safe(facility)[:20]}-{karte}"
    re_ = receipt.re
    ho = receipt.ho
    basis = "|".join((re_["name"], re_["birth_date"], re_["sex"],
                      ho["insurer_no"] if ho else "", _nfkc(ho["symbol"]) if ho else "",
                      _nfkc(ho["number"]) if ho else ""))
    digest = hashlib.sha256(basis.encode()).hexdigest()[:16]
    return f"uke-{_safe(facility)[:20]}-h{digest}"


# --- helpers ------------------------------------------------------------------------------------

def uke_date_fhir(text: str) -> str | None:
    """FHIR date text (``YYYY-MM`` or ``YYYY-MM-DD``) of a UKE date; None when invalid/empty."""
    p = parse_uke_date(text)
    if p is None:
        return None
    y, m, d = p
    return f"{y:04d}-{m:02d}" + (f"-{d:02d}" if d else "")


@memo(4096)
def _nfkc(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text or "").split())


def _dec(text: str) -> Decimal | None:
    return _number((text or "").strip())


@memo(4096)
def _number(text: str) -> Decimal | None:
    """The Decimal of a stripped field; None when empty or not a number.  Remembered: the same
    few counts, quantities and points recur on every item (a Decimal is immutable)."""
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _yen(points: Decimal | int, unit: Decimal | int = YEN_PER_POINT) -> Json:
    value = points * unit if points.__class__ is unit.__class__ is Decimal \
        else Decimal(points) * Decimal(unit)  # (Decimal(x) of a Decimal is x: skipped)
    return {"value": value, "currency": "JPY"}


def _month_period(text: str) -> dict[str, str] | None:
    bounds = _month_bounds(text)
    return {"start": bounds[0], "end": bounds[1]} if bounds else None


@memo(1024)
def _month_bounds(text: str) -> tuple[str, str] | None:
    """First and last day of a UKE month (every receipt of a file has the same)."""
    p = parse_uke_date(text)
    if p is None:
        return None
    y, m, _ = p
    last = (date(y + (m == 12), m % 12 + 1, 1) - timedelta(days=1)).day
    return f"{y:04d}-{m:02d}-01", f"{y:04d}-{m:02d}-{last:02d}"


_NO_HEAD = _head_facts(None)


def _ext(name: str, key: str, value: object) -> Json:
    """A UKE extension ``name`` with its one ``value[x]`` element ``key``."""
    return {"url": term.UKE_EXT + name, key: value}


def _coding(system: str, code: str, display: str = "") -> Json:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


@memo(1024)
def _source(rel: str) -> str:
    """meta.source of a UKE file's resources: ``receipts/`` + its receipts-relative path."""
    src = rel.replace("\\", "/").lstrip("/")
    return src if src.startswith("receipts/") else f"receipts/{src}"


def _meta(ctx: ClaimContext, profile: str | None = None) -> Json:
    m: Json = {"versionId": "1", "source": _source(ctx.source)}
    if ctx.last_updated:
        m["lastUpdated"] = ctx.last_updated
    if profile:
        m["profile"] = [profile]
    return m


_CLAIM_TYPE = {"3": "oral", "4": "pharmacy"}
_RE_FIELDS = ("receipt_type", "service_month", "admission_date")  # what map_receipt reads of RE
# RE fields kept as string extensions (the url's last part: the name with "-" for "_")
_RE_STRINGS = ("benefit_ratio", "special_notes", "beds", "karte_no", "discount_unit_price",
               "search_no", "claim_info", "patient_status")
_RE_EXTENSIONS = tuple(name.replace("_", "-") for name in _RE_STRINGS)
_ITEM_SYSTEM = {"SI": term.RECEIPT_PROCEDURE, "IY": term.RECEIPT_DRUG, "TO": term.RECEIPT_DEVICE,
                "SS": term.RECEIPT_DENTAL_PROCEDURE}


# --- resources ----------------------------------------------------------------------------------

def _identifier(receipt: Receipt, head: _Head, facility10: str) -> list[Json]:
    return [{"system": f"{term.RECEIPT_NUMBER}/{facility10}/{head.month}",
             "value": receipt.receipt_no or "0"}]


def _created(head: _Head, period: dict[str, str] | None) -> str:
    """請求年月's first day; else the end of 診療年月 (``period``); else the epoch (never
    absent: 1..1)."""
    return head.created or (period or {}).get("end", "1970-01-01")


def claim_stub(receipt: Receipt, ctx: ClaimContext) -> Json:
    """The elements of the receipt's Claim that the header and RE record alone decide (id,
    meta.lastUpdated, identifier, status, use, created) — what :func:`map_receipt` writes for
    them, without mapping the rest (the receipt index stores it to answer searches on them)."""
    header = ctx.header
    head = _head(header)
    stub: Json = {"resourceType": "Claim", "id": claim_id(ctx.facility, header, receipt),
                  "meta": {"lastUpdated": ctx.last_updated},
                  "identifier": _identifier(receipt, head, head.facility10 or ctx.facility),
                  "status": "active", "use": "claim",
                  "created": _created(head, _month_period(receipt.re["service_month"]))}
    return stub


def map_receipt(receipt: Receipt, ctx: ClaimContext) -> list[Json]:
    """One receipt -> [Claim, Coverage…, (Patient)].  Never drops a receipt for lack of a match."""
    header = ctx.header
    head = _head(header)
    cid = claim_id(ctx.facility, header, receipt)
    out: list[Json] = []
    patient_id = ctx.patient_id or receipt_patient_id(ctx.facility, receipt)
    patient = {"reference": f"Patient/{patient_id}"}
    tensuhyo = head.tensuhyo
    facility10 = head.facility10 or ctx.facility
    re_ = receipt.re
    receipt_type, service_month, admission = re_.values(_RE_FIELDS)

    claim: Json = {"resourceType": "Claim", "id": cid, "meta": _meta(ctx)}
    exts = []
    if tensuhyo:
        exts.append(_ext("tensuhyo", "valueCoding", _coding(term.RECEIPT_TENSUHYO, tensuhyo)))
    for name, v in zip(_RE_EXTENSIONS, re_.values(_RE_STRINGS)):
        if v:
            exts.append(_ext(name, "valueString", v))
    if exts:
        claim["extension"] = exts
    claim["identifier"] = _identifier(receipt, head, facility10)
    claim["status"] = "active"
    claim["type"] = {"coding": [_coding(term.CLAIM_TYPE, _CLAIM_TYPE.get(
        tensuhyo, "institutional" if receipt.inpatient else "professional"))]}
    if receipt_type:
        claim["subType"] = {"coding": [_coding(term.RECEIPT_TYPE, receipt_type)]}
    claim["use"] = "claim"
    claim["patient"] = patient
    period = _month_period(service_month)
    if period:
        claim["billablePeriod"] = period
    claim["created"] = _created(head, period)
    provider: Json = {"type": "Organization",
                      "identifier": {"system": term.MEDICAL_INSTITUTION, "value": facility10}}
    if head.name:
        provider["display"] = head.name
    claim["provider"] = provider
    claim["priority"] = {"coding": [_coding(term.PROCESS_PRIORITY, "normal")]}

    coverages = _coverages(receipt, cid, patient, ctx)
    claim["insurance"] = [
        {"sequence": i, "focal": i == 1, "coverage": {"reference": f"Coverage/{c['id']}"}}
        for i, c in enumerate(coverages, 1)
    ] or [{"sequence": 1, "focal": True, "coverage": {"display": "保険情報なし (no HO/KO record)"}}]
    if receipt.ho and receipt.ho["insurer_no"]:
        claim["insurer"] = {"type": "Organization", "identifier": {
            "system": term.INSURER_NUMBER, "value": receipt.ho["insurer_no"]}}

    info: list[Json] = []
    diagnosis = _diagnoses(receipt)
    if diagnosis:
        claim["diagnosis"] = diagnosis
    unit_price = _unit_price(receipt)
    ym = period["start"][:8] if period else None
    items = [_item(it, n, ym, unit_price, info) for n, it in enumerate(receipt.items, 1)]
    for co in receipt.comments:
        _comment_info(co["code"], co["text"], info)
    for sj in receipt.sj:
        info.append({"sequence": len(info) + 1,
                     "category": {"coding": [_coding(term.CLAIM_INFO_CATEGORY, "info")],
                                  "text": "症状詳記"},
                     "code": {"coding": [_coding(term.UKE_BASE + "/symptom-detail", sj["kind"] or "0")]},
                     **({"valueString": sj["text"]} if sj["text"] else {})})
    if admission:
        adm = uke_date_fhir(admission)
        if adm:
            info.append({"sequence": len(info) + 1, "category": {"coding": [
                _coding(term.CLAIM_INFO_CATEGORY, "admissionperiod")]}, "timingPeriod": {"start": adm}})
    if info:
        claim["supportingInfo"] = info
    if items:
        claim["item"] = items
    total = receipt.total_points
    if total is not None:
        claim["total"] = _yen(total, unit_price)
    out.append(claim)
    out.extend(coverages)
    if ctx.patient_id is None:
        out.append(map_re_patient(receipt, patient_id, facility10, ctx))
    return out


def _unit_price(receipt: Receipt) -> Decimal:
    """Yen per point: RE-15 割引点数単価 (e.g. 9.5) when set, else 10."""
    d = _dec(receipt.re["discount_unit_price"])
    return d if d and d > 0 else Decimal(YEN_PER_POINT)


def _coverages(receipt: Receipt, cid: str, patient: Json, ctx: ClaimContext) -> list[Json]:
    out = []
    if receipt.ho is not None:
        ho = receipt.ho
        cov: Json = {"resourceType": "Coverage", "id": f"{cid}-ho",
                     "meta": _meta(ctx, term.PROFILE["Coverage"])}
        exts = []
        for name, url in (("symbol", "JP_Coverage_InsuredPersonSymbol"),
                          ("number", "JP_Coverage_InsuredPersonNumber")):
            v = _nfkc(ho[name])
            if v:
                exts.append({"url": f"{term.JP_CORE}/Extension/StructureDefinition/{url}",
                             "valueString": v})
        if exts:
            cov["extension"] = exts
        cov["status"] = "active"
        cov["beneficiary"] = patient
        insurer = ho["insurer_no"]  # field is right-aligned and space-padded; [] strips it
        cov["payor"] = [{"type": "Organization", "identifier": {
            "system": term.INSURER_NUMBER, "value": insurer}} if insurer
            else {"display": "保険者番号なし"}]
        out.append(cov)
    for i, ko in enumerate(receipt.ko, 1):
        cov = {"resourceType": "Coverage", "id": f"{cid}-ko{i}",
               "meta": _meta(ctx, term.PROFILE["Coverage"]), "status": "active"}
        if ko["recipient_no"]:
            cov["identifier"] = [{"system": term.PUBLIC_RECIPIENT, "value": ko["recipient_no"]}]
        cov["beneficiary"] = patient
        cov["payor"] = [{"type": "Organization", "identifier": {
            "system": term.PUBLIC_PAYER, "value": ko["payer_no"]}} if ko["payer_no"]
            else {"display": "公費負担者番号なし"}]
        cov["order"] = i + (1 if receipt.ho is not None else 0)
        out.append(cov)
    return out


# The fields of an SY record that :func:`_diagnoses` reads, in its unpacking order.
_SY_FIELDS = ("disease_code", "disease_name", "modifiers", "start_date", "outcome", "supplement",
              "main")


def _diagnoses(receipt: Receipt) -> list[Json]:
    out = []
    for n, sy in enumerate(receipt.sy, 1):
        code, name, mods, start_text, outcome, supplement, main = sy.values(_SY_FIELDS)
        cc: Json = {}
        if code:
            cc["coding"] = [_coding(term.RECEIPT_DISEASE, code)]
        if name:
            cc["text"] = name
        if not cc:
            cc["text"] = "傷病名コードなし"
        d: Json = {"sequence": n}
        exts = []
        for i in range(0, len(mods), 4):
            exts.append(_ext("disease-modifier", "valueCoding", _coding(
                term.RECEIPT_DISEASE_MODIFIER, mods[i:i + 4])))
        start = uke_date_fhir(start_text)
        if start:
            exts.append(_ext("start-date", "valueDate", start))
        if outcome:
            exts.append(_ext("outcome", "valueCoding", _coding(term.RECEIPT_OUTCOME, outcome)))
        if supplement:
            exts.append(_ext("supplement", "valueString", supplement))
        if exts:
            d["extension"] = exts
        d["diagnosisCodeableConcept"] = cc
        if main == "01":
            d["type"] = [{"coding": [_coding(term.DIAGNOSIS_TYPE, "principal")]}]
        out.append(d)
    # 歯科 HS 傷病名部位: diagnosis with the teeth (部位) kept as an extension
    for hs in receipt.hs:
        d = {"sequence": len(out) + 1}
        teeth = hs["teeth"]
        if teeth:
            d["extension"] = [_ext("teeth", "valueString", teeth)]
        code = hs["disease_code"]
        d["diagnosisCodeableConcept"] = ({"coding": [_coding(term.RECEIPT_DISEASE, code)]}
                                         if code else {"text": "傷病名コードなし"})
        out.append(d)
    return out


def _comment_info(code: str, text: str, info: list[Json]) -> int:
    """Append a CO/inline comment as Claim.supportingInfo; return its sequence."""
    seq = len(info) + 1
    entry: Json = {"sequence": seq, "category": {"coding": [
        _coding(term.CLAIM_INFO_CATEGORY, "info")], "text": "コメント"}}
    if code:
        entry["code"] = {"coding": [_coding(term.RECEIPT_COMMENT, code)]}
    if text:
        entry["valueString"] = text
    info.append(entry)
    return seq


# The fields of an SI/IY/TO/SS record that :func:`_item` reads, in its unpacking order.
_ITEM_FIELDS = ("burden", "quantity", "comment_code_1", "comment_text_1", "comment_code_2",
                "comment_text_2", "comment_code_3", "comment_text_3", "device_name", "product_name",
                "code", "count", "points")


def _item(it: Item, seq: int, ym: str | None, unit_price: Decimal, info: list[Json]) -> Json:
    """One SI/IY/TO/SS item; ``ym`` the receipt's service month as ``YYYY-MM-``, ``unit_price``
    its yen per point (both the same for every item of a receipt: computed once by the caller)."""
    rec = it.record
    (burden, quantity, code1, text1, code2, text2, code3, text3, device, product, code,
     count_text, points_text) = rec.values(_ITEM_FIELDS)
    item: Json = {"sequence": seq}
    exts = [_ext("billing-unit", "valueInteger", it.unit)]
    if burden:
        exts.append(_ext("burden-class", "valueCoding", _coding(term.RECEIPT_BURDEN, burden)))
    amount = _number(quantity)
    if amount is not None:
        exts.append(_ext("quantity-data", "valueDecimal", amount))
    days = rec.days() if ym else None
    if days:
        for day, n in days.items():
            exts.append(_ext("service-day", "valueString", f"{ym}{day:02d}×{n}"))
    item["extension"] = exts
    links = [_comment_info(c["code"], c["text"], info) for c in it.comments] \
        if it.comments else []
    if code1 or text1 or code2 or text2 or code3 or text3:  # (most items have none)
        for ccode, ctext in ((code1, text1), (code2, text2), (code3, text3)):
            if ccode or ctext:
                links.append(_comment_info(ccode, ctext, info))
    if links:
        item["informationSequence"] = links
    if it.category:
        item["category"] = {"coding": [_coding(term.RECEIPT_CATEGORY, it.category)]}
    display = device or product
    pos: Json = {"coding": [_coding(_ITEM_SYSTEM.get(rec.type, term.UKE_BASE), code or "0",
                                    display)]}
    if display:
        pos["text"] = display
    item["productOrService"] = pos
    if days:
        first, last = min(days), max(days)
        if first == last:
            item["servicedDate"] = f"{ym}{first:02d}"
        else:
            item["servicedPeriod"] = {"start": f"{ym}{first:02d}", "end": f"{ym}{last:02d}"}
    count = _number(count_text)
    if count is not None:
        item["quantity"] = {"value": count}
    points = _number(points_text)
    if points is not None:  # only the last record of a 算定単位 carries the unit's points
        item["unitPrice"] = _yen(points, unit_price)
        item["net"] = _yen(points * (count if count is not None else 1), unit_price)
    return item


def _split_name(text: str) -> tuple[str, str]:
    parts = re.split(r"[ \u3000]+", text.strip(), maxsplit=1)
    return (parts[0], parts[1]) if len(parts) == 2 else ("", "")


def map_re_patient(receipt: Receipt, patient_id: str, facility10: str, ctx: ClaimContext) -> Json:
    """A JP_Patient from the RE record (name, kana, sex, birth date from 和暦/西暦)."""
    re_ = receipt.re
    p: Json = {"resourceType": "Patient", "id": patient_id,
               "meta": _meta(ctx, term.PROFILE["Patient"])}
    karte = receipt.karte_no
    if karte:
        p["identifier"] = [{"system": term.patient_identifier_system(facility10), "value": karte}]
    else:  # JP_Patient needs an identifier; no カルテ番号 -> the id's person key, locally
        p["identifier"] = [{"system": term.local_id_system(facility10, "uke-patient"),
                            "value": patient_id}]
    names = []
    for text, rep in ((re_["name"], "IDE"), (re_["kana"], "SYL")):
        if not text:
            continue
        n: Json = {"extension": [{"url": term.NAME_REPRESENTATION, "valueCode": rep}],
                   "use": "official", "text": text}
        family, given = _split_name(text)
        if family:
            n["family"], n["given"] = family, [given]
        names.append(n)
    if names:
        p["name"] = names
    p["gender"] = {"1": "male", "2": "female"}.get(re_["sex"], "unknown")
    birth = uke_date_fhir(re_["birth_date"])
    if birth:
        p["birthDate"] = birth
    return p


def map_uke_file(uf: UkeFile, ctx_factory: Callable[[Receipt], ClaimContext]) -> list[Json]:
    """Every receipt of a file; Patients built from RE are emitted once per id."""
    out: list[Json] = []
    seen: set[str] = set()
    for r in uf.receipts:
        ctx = ctx_factory(r)
        if ctx.header is None:
            ctx = replace(ctx, header=uf.ir)
        for res in map_receipt(r, ctx):
            if res["resourceType"] == "Patient":
                if res["id"] in seen:
                    continue
                seen.add(res["id"])
            out.append(res)
    return out


def map_receipt_file(path: str | Path, rel: str, facility: str,
                     patient_exists: Callable[[str], bool] | None = None
                     ) -> tuple[list[Json], list[Problem]]:
    """Caller convenience (the one helper here that touches files, through ``storage.uke``):
    read a UKE file, match each receipt's カルテ番号 with ``patient_exists`` (e.g.
    ``lambda c: storage.patient_dir(c) is not None``), map everything.  Never raises for bad data.
    """
    uf = read_uke_file(path, rel)
    problems = list(uf.problems)
    try:
        last = mtime_instant(Path(path).stat().st_mtime)
    except OSError:
        last = None

    def ctx(r: Receipt) -> ClaimContext:
        pid = match_patient(r.re["karte_no"], patient_exists) if patient_exists else None
        return ClaimContext(facility, rel, pid, last, uf.ir)

    out: list[Json] = []
    seen: set[str] = set()
    for r in uf.receipts:
        try:
            res = map_receipt(r, ctx(r))
        except (ValueError, KeyError, TypeError, IndexError, ArithmeticError) as exc:
            problems.append(Problem(rel, KIND_MAPPING, f"line {r.re.line}: receipt "
                                    f"{r.receipt_no}: {type(exc).__name__}: {exc}"))
            continue
        for x in res:
            if x["resourceType"] == "Patient":
                if x["id"] in seen:
                    continue
                seen.add(x["id"])
            out.append(x)
    return out, problems
