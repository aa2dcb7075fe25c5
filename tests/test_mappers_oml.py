"""OML-01 / OML-11 mappers: hand-written messages modelled on the guideline samples (§5.6), the
NHO bacteriology sample, the JAHIS result example; value/comparator/range/interpretation edge
cases; golden files; stable ids; bad input never raises."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from mappers import MapContext, MappingError, map_message
from mappers import terminology as term
from mappers.oml_11 import reference_range
from storage.hl7 import parse
from storage.names import parse_name
from storage.reader import read_bytes
from tests.mapper_testkit import (FACILITY, SAMPLES, by_type, check_golden, garble, map_bytes, map_text,
                                  renamed, sample_files, validate)

OML11_NAME = "9999013_20111220_OML-11_000000011000354_20111220103059000_01_1"
OML01_NAME = "9999013_20111220_OML-01_000000011000354_20111220103059123_15_1"

HEAD = """MSH|^~\\&|HIS123|SEND|GW|RCV|20111220103059.0000||{mtype}|20111220131032|P|2.5||||||~ISO IR87||ISO2022-1994
PID|0001||9999013^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19700405|M
PV1|0001|O|01^^^^^C"""

OBR = ("OBR|1|000000011000354|000000001219001|E001^血液学的検査^99O03|||20111219|20111219||||||||"
       "607^医師一郎^^^^^^^^L^^^^^I||||||20111220103059{status}")
ORC = ("ORC|SC|000000011000354|000000001219001||CM||||20111220103059|||607^医師一郎^^^^^^^^L^^^^^I|"
       "01^^^^^C||||01^内科^99XY1||||登呂病院||||||||O^外来患者オーダ^HL70482")
SPM = "SPM|1|000000001219001||023^血清^JC10|||||||||||||201112191500"


def obx(n: int, vt: str, code: str, value: str, unit: str = "", rng: str = "", flag: str = "",
        status: str = "F") -> str:
    return f"OBX|{n}|{vt}|{code}||{value}|{unit}|{rng}|{flag}|||{status}|||201112191500"


OML11 = "\n".join([
    HEAD.format(mtype="OUL^R22^OUL_R22"), SPM, OBR.format(status=""), ORC,
    obx(1, "NM", "3A016000002327102^A/G比^JC10", "1.7", "", "1.2-2.0"),
    obx(2, "NM", "3A010000002327101^総蛋白^JC10^10222^ＴＰ^99X03", "7.2", "g/dl^g/dl^99XYZ", "6.70-8.3"),
    obx(3, "NM", "3A015000002327101^アルブミン^JC10", "4.9", "g/dl^g/dl^99XYZ", "3.7-5.5"),
])

EDGE = "\n".join([
    HEAD.format(mtype="OUL^R22^OUL_R22"), SPM, OBR.format(status=""), ORC,
    obx(1, "ST", "5C070000002306201^ＣＲＰ^JC10", "> 100", "mg/dl^mg/dl^99XYZ", "<=0.3"),
    obx(2, "ST", "3C015000002327101^Ｃｒｅ^JC10", "<= 0.5", "mg/dl^mg/dl^99XYZ", "0.47-0.79"),
    obx(3, "ST", "3D010000001926101^グルコース^JC10", "≦0.5", "mg/dl^mg/dl^99XYZ"),
    obx(4, "NM", "2A010000001930101^ＷＢＣ^JC10", "2.1", "*10＾3/ul^*10＾3/ul^99UNT", "3.5-9.5"),
    obx(5, "NM", "2A030000001928201^ＨＧＢ^JC10", "19.8", "g/dl^g/dl^99UNT", "11.3-15.2"),
    obx(6, "NM", "3B035000002327201^GOT(AST)^JC10", "120", "IU/L^IU/L^99UNT", "8-38", "HH", "C"),
    obx(7, "ST", "1A020000000191111^尿蛋白^JC10", "(2+)", "", "(-)", "A"),
    obx(8, "CWE", "5E071000002399811^HBs抗原^JC10", "NEG^陰性^99RES"),
    obx(9, "NM", "3H010000002326101^Ｎａ^JC10", "", "mEq/L^mEq/L^99UNT", "", "", "X"),
    obx(10, "NM", "3H015000002326101^Ｋ^JC10", "検体溶血", "mEq/L^mEq/L^99UNT", ">3.5", "", "P"),
    "NTE|||溶血のため参考値",
    obx(11, "TX", "9Z999000000000000^所見^JC10", "コメント1~コメント2", "", "", "", "D"),
])

# OML^O33-style order inside a result (ORC before OBR), two specimens, a comment before SPM
TWO_SPECIMENS = "\n".join([
    HEAD.format(mtype="OUL^R22^OUL_R22"), "NTE|||至急報告",
    SPM, ORC, OBR.format(status="|||P"),
    obx(1, "NM", "3A010000002327101^総蛋白^JC10", "7.2", "g/dl^g/dl^99XYZ", "6.70-8.3", "", "P"),
    "SPM|2|000000001219002||022^血漿^JC10|||||||||||||201112191600",
    ORC, OBR.format(status="").replace("E001^血液学的検査", "E002^凝固検査"),
    obx(1, "NM", "2B030000002231101^ＰＴ^JC10", "11.0", "s^秒^ISO+", "10.0-13.0"),
])

OML01 = "\n".join([
    HEAD.format(mtype="OML^O33^OML_O33").replace("|O|01^^^^^C", "|I|32^305^^^^N"),
    "SPM|1|||023^血清^JC10^01^血清^99Z01|||||||||||||201112191500",
    "ORC|NW|000000011000354|||||||20111220183301|INPUT001^入力^太郎^^^^^^^L^^^^^I||"
    "607^医師^一郎^^^^^^^L^^^^^I|32^305^^^^N||||15^呼吸器外科^99XY1|VMDOCX01^^99XY2|||登呂病院|||||||"
    "|I^入院患者オーダ^HL70482",
    "TQ1|1||||||201112200900||S^至急^HL70485",
    "OBR|1|000000011000354||E002^生化学的検査^99O03||||||||||||607^医師一郎^^^^^^^^L^^^^^I",
    "OBX|1||3A010000002327101^総蛋白^JC10^10222^ＴＰ^99X03||||||||O",
    "OBX|2||3J010000002327101^総ビリルビン^JC10^10213^Ｔ−Ｂｉｌ^99X03||||||||O",
    "SPM|2|||022^血漿^JC10^04^血漿^99Z01|||||||||||||201112191500",
    "ORC|CA|000000011000354|||||||20111220183301|INPUT001^入力^太郎^^^^^^^L^^^^^I||"
    "607^医師^一郎^^^^^^^L^^^^^I|32^305^^^^N||||15^呼吸器外科^99XY1",
    "OBR|1|000000011000354||E001^血液学的検査^99O03||||||||||||607^医師一郎^^^^^^^^L^^^^^I",
    "OBX|1||2B0300000022311^ＰＴ^JC10^30046^ＰＴ^99X03||||||||O",
    "NTE|||抗凝固剤使用中",
])


def _coding(cc: dict, system: str) -> str | None:
    return next((c["code"] for c in cc.get("coding", []) if c.get("system") == system), None)


# --- OML-11 -----------------------------------------------------------------------------------

def test_oml11_resources_and_links():
    out = map_text(OML11, OML11_NAME)
    validate(out)
    [spec] = by_type(out, "Specimen")
    obs = by_type(out, "Observation")
    [dr] = by_type(out, "DiagnosticReport")
    assert spec["id"] == "9999013.20111220.OML-11.000000011000354.s1"
    assert spec["collection"]["collectedDateTime"] == "2011-12-19T15:00:00+09:00"
    assert _coding(spec["type"], term.CODE_SYSTEMS["JC10"]) == "023"
    assert [o["id"] for o in obs] == [f"9999013.20111220.OML-11.000000011000354.r1.{i}" for i in (1, 2, 3)]
    assert dr["id"] == "9999013.20111220.OML-11.000000011000354.r1"
    assert dr["result"] == [{"reference": f"Observation/{o['id']}"} for o in obs]
    assert dr["specimen"] == [{"reference": f"Specimen/{spec['id']}"}]
    assert dr["status"] == "final" and dr["issued"] == "2011-12-20T10:30:59+09:00"
    assert dr["meta"]["profile"] == [term.PROFILE["DiagnosticReportLabResult"]]
    assert _coding(dr["category"][0], term.DIAGNOSTIC_SERVICE_SECTION) == "LAB"
    assert dr["code"]["text"] == "血液学的検査"
    for o in obs:
        assert o["specimen"] == {"reference": f"Specimen/{spec['id']}"}
        assert o["effectiveDateTime"] == "2011-12-19T15:00:00+09:00"  # SPM-17, not OBX-14
        assert o["meta"]["profile"] == [term.PROFILE["ObservationLabResult"]]
        assert o["category"][0]["coding"][0] == {"system": term.JP_OBSERVATION_CATEGORY,
                                                 "code": "laboratory", "display": "検体検査"}
        assert _coding(o["category"][1], term.OBSERVATION_CATEGORY) == "laboratory"
        assert o["status"] == "final"


def test_oml11_value_unit_range_identifier():
    tp = by_type(map_text(OML11, OML11_NAME), "Observation")[1]
    assert _coding(tp["code"], term.CODE_SYSTEMS["JC10"]) == "3A010000002327101"
    assert tp["code"]["coding"][1]["code"] == "10222"  # local code kept
    assert tp["code"]["coding"][1]["system"].startswith(term.LOCAL_BASE)
    assert tp["valueQuantity"] == {"value": Decimal("7.2"), "unit": "g/dl", "system": term.UCUM,
                                   "code": "g/dL"}
    rr = tp["referenceRange"][0]
    assert rr["low"]["value"] == Decimal("6.70") and rr["high"]["value"] == Decimal("8.3")
    assert rr["low"]["code"] == "g/dL" and rr["text"] == "6.70-8.3"
    assert tp["interpretation"][0]["coding"][0]["code"] == "N"
    assert tp["identifier"][0] == {"system": term.RESOURCE_INSTANCE,
                                   "value": "000000011000354_E001_023_3A010000002327101"}
    assert tp["basedOn"][0]["identifier"]["value"] == "000000011000354"


def test_oml11_edge_cases():
    out = map_text(EDGE, OML11_NAME)
    validate(out)
    o = {int(x["id"].rsplit(".", 1)[1]): x for x in by_type(out, "Observation")}
    # ST comparators become Quantity.comparator (half- and full-width)
    assert o[1]["valueQuantity"]["comparator"] == ">" and o[1]["valueQuantity"]["value"] == Decimal("100")
    assert o[1]["referenceRange"][0]["high"]["value"] == Decimal("0.3")
    assert "low" not in o[1]["referenceRange"][0]
    assert "interpretation" not in o[1]  # no flag, and a censored value is not compared
    assert o[2]["valueQuantity"]["comparator"] == "<="
    assert o[3]["valueQuantity"]["comparator"] == "<=" and o[3]["valueQuantity"]["value"] == Decimal("0.5")
    # UCUM from a full-width unit spelling; range-derived interpretation low/high
    assert o[4]["valueQuantity"]["code"] == "10*3/uL" and o[4]["valueQuantity"]["unit"] == "*10＾3/ul"
    assert o[4]["interpretation"][0]["coding"][0]["code"] == "L"
    assert o[5]["interpretation"][0]["coding"][0]["code"] == "H"
    # OBX-8 wins over the range; corrected status
    assert o[6]["interpretation"][0]["coding"][0]["code"] == "HH" and o[6]["status"] == "corrected"
    assert o[6]["valueQuantity"]["code"] == "[IU]/L"
    # qualitative ST stays a string; A flag; text range
    assert o[7]["valueString"] == "(2+)" and o[7]["interpretation"][0]["coding"][0]["code"] == "A"
    assert o[7]["referenceRange"] == [{"text": "(-)"}]
    # CWE value
    assert o[8]["valueCodeableConcept"]["coding"][0]["code"] == "NEG"
    # cancelled without a value -> dataAbsentReason
    assert o[9]["status"] == "cancelled" and "valueQuantity" not in o[9]
    assert o[9]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    # NM that is not a number is kept as text, preliminary, note from NTE, '>3.5' low bound
    assert o[10]["valueString"] == "検体溶血" and o[10]["status"] == "preliminary"
    assert o[10]["note"] == [{"text": "溶血のため参考値"}]
    assert o[10]["referenceRange"][0]["low"]["value"] == Decimal("3.5")
    # repeating TX, entered in error
    assert o[11]["valueString"] == "コメント1\nコメント2" and o[11]["status"] == "entered-in-error"
    [dr] = by_type(out, "DiagnosticReport")
    assert dr["status"] == "partial"  # one preliminary among final results


@pytest.mark.parametrize("text,low,high", [
    ("3.5-5.0", "3.5", "5.0"), ("3.5 - 5.0", "3.5", "5.0"), ("３．５〜５．０", "3.5", "5.0"),
    ("-1.0-1.5", "-1.0", "1.5"), ("<=5", None, "5"), ("≦5", None, "5"), ("<5", None, "5"),
    (">10", "10", None), (">=10", "10", None), ("≧ 10", "10", None), ("陰性", None, None),
    ("(-)", None, None), ("1.2-", None, None),
])
def test_reference_range_forms(text, low, high):
    rr = reference_range(text, {"value": Decimal(1), "unit": "mg/dL", "code": "mg/dL",
                                "system": term.UCUM})
    assert rr["text"] == text
    assert (str(rr["low"]["value"]) if "low" in rr else None) == low
    assert (str(rr["high"]["value"]) if "high" in rr else None) == high
    for side in ("low", "high"):
        if side in rr:
            assert rr[side]["unit"] == "mg/dL" and "comparator" not in rr[side]
    assert reference_range("", None) is None


def test_oml11_two_specimens_and_order_first_layout():
    out = map_text(TWO_SPECIMENS, OML11_NAME)
    validate(out)
    specs = by_type(out, "Specimen")
    reports = by_type(out, "DiagnosticReport")
    assert len(specs) == 2 and len(reports) == 2
    assert reports[0]["specimen"][0]["reference"].endswith(".s1")
    assert reports[1]["specimen"][0]["reference"].endswith(".s2")
    assert reports[0]["status"] == "preliminary"  # OBR-25 P
    assert reports[0]["conclusion"] == "至急報告"
    assert reports[1]["code"]["text"] == "凝固検査"
    pt = by_type(out, "Observation")[1]
    assert pt["effectiveDateTime"] == "2011-12-19T16:00:00+09:00"
    assert pt["valueQuantity"]["code"] == "s"


def test_oml11_golden():
    check_golden("oml-11", map_text(OML11, OML11_NAME) + map_text(EDGE, OML11_NAME))


# --- OML-01 -----------------------------------------------------------------------------------

def test_oml01_service_requests_and_specimens():
    out = map_text(OML01, OML01_NAME)
    validate(out)
    specs = by_type(out, "Specimen")
    [a, b] = by_type(out, "ServiceRequest")
    assert [s["id"] for s in specs] == ["9999013.20111220.OML-01.000000011000354.s1",
                                         "9999013.20111220.OML-01.000000011000354.s2"]
    assert a["id"] == "9999013.20111220.OML-01.000000011000354.r1"
    assert a["meta"]["profile"] == [term.PROFILE["ServiceRequest"]]
    assert a["status"] == "active" and a["intent"] == "order" and a["priority"] == "stat"
    assert b["status"] == "revoked"
    assert a["code"]["coding"][0]["code"] == "E002" and a["code"]["text"] == "生化学的検査"
    assert [d["coding"][0]["code"] for d in a["orderDetail"]] == ["3A010000002327101",
                                                                  "3J010000002327101"]
    assert a["authoredOn"] == "2011-12-20T18:33:01+09:00"
    assert a["requester"]["display"] == "医師 一郎"
    assert a["specimen"] == [{"reference": f"Specimen/{specs[0]['id']}"}]
    assert b["specimen"] == [{"reference": f"Specimen/{specs[1]['id']}"}]
    assert a["identifier"][0]["value"] == "000000011000354"
    assert a["occurrenceDateTime"] == "2011-12-20T09:00:00+09:00"
    assert b["note"] == [{"text": "抗凝固剤使用中"}]
    cats = {(c.get("system"), c["code"]) for cat in a["category"] for c in cat["coding"]}
    assert (term.SSMIX2_DATA_TYPE, "OML-01") in cats
    assert a["extension"][0]["url"] == term.REQUEST_DEPARTMENT_EXT


def test_oml01_golden():
    check_golden("oml-01", map_text(OML01, OML01_NAME))


# --- ids, samples, robustness ------------------------------------------------------------------

@pytest.mark.parametrize("text,name", [(OML11, OML11_NAME), (EDGE, OML11_NAME),
                                       (OML01, OML01_NAME)])
def test_ids_stable_across_versions(text, name):
    v1 = map_text(text, name)
    v2 = map_text(text.replace("|F|||", "|C|||"), renamed(name, timestamp="20111221090000000"), 2)
    assert [r["id"] for r in v1] == [r["id"] for r in v2]
    for rtype in ("Observation", "Specimen", "DiagnosticReport", "ServiceRequest"):
        ids = [r["id"] for r in by_type(v1, rtype)]
        assert len(set(ids)) == len(ids)


def _read_map(data: bytes, name: str) -> list[dict] | None:
    res = read_bytes(data, name, parse_name(name))
    if not res.ok:
        return None
    return map_message(res.message, MapContext(FACILITY, name, parse_name(name)))


def test_guideline_samples_map_and_validate():
    files = sample_files(("OML-01", "OML-11"))
    mapped = 0
    for f in files:
        out = _read_map(f.read_bytes(), f.name)
        if out is None:
            continue
        assert out
        validate(out)
        mapped += 1
    assert mapped >= 2


def test_nho_bacteriology_sample():
    root = SAMPLES / "ssmix2" / "nhoHQ__SSMIX2_support_documents" / "sample" / "standard_root"
    files = [f for f in root.rglob("*OML-11*") if f.is_file()] if root.is_dir() else []
    if not files:
        pytest.skip(f"NHO support-document sample not found under {root}")
    out = _read_map(files[0].read_bytes(), files[0].name)
    validate(out)
    obs = by_type(out, "Observation")
    assert [o["identifier"][0]["value"].rsplit("_", 1)[1] for o in obs] == ["1", "1", "2", "2"]
    assert obs[0]["valueCodeableConcept"]["text"] == "E.Coli"
    assert obs[3]["status"] == "preliminary"
    [spec] = by_type(out, "Specimen")
    assert spec["collection"]["quantity"]["value"] == Decimal("10.0")
    [dr] = by_type(out, "DiagnosticReport")
    assert dr["conclusion"] == "培養同定依頼\n同定結果"


def test_jahis_inspection_result_utf8():
    path = SAMPLES / "ssmix2" / "Acedia-Belphegor__hl7v2-to-fhir" / "debug" / "example_inspection_result.txt"
    if not path.exists():
        pytest.skip(f"JAHIS example not found at {path}")
    data = path.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r") + b"\r"
    out = map_bytes(data, "1014360_20111024_OML-11_000000002928810_20111024181046736_01_1")
    validate(out)
    obs = by_type(out, "Observation")
    assert len(obs) == 21 and len(by_type(out, "DiagnosticReport")) == 2
    hgb = next(o for o in obs if o["code"]["text"] == "ＨＧＢ")
    assert hgb["interpretation"][0]["coding"][0]["code"] == "L"
    crp = next(o for o in obs if o["code"]["text"] == "ＣＲＰ")
    assert crp["interpretation"][0]["coding"][0]["code"] == "H"  # derived: 2.0 > 0.5
    assert len({o["id"] for o in obs}) == 21


def _garble(text: str, rnd: random.Random) -> str:
    return garble(text, rnd, "|^~&\\\r0123456789ABCXZ-.<>≦\"漢", "|^&\r~")


@pytest.mark.parametrize("text,name", [(OML11, OML11_NAME), (EDGE, OML11_NAME),
                                       (TWO_SPECIMENS, OML11_NAME), (OML01, OML01_NAME)])
def test_garbled_messages_never_raise(text, name):
    rnd = random.Random(name + text[-60:])
    fn = parse_name(name)
    for _ in range(150):
        try:
            msg = parse(_garble(text.replace("\n", "\r"), rnd))
        except ValueError:
            continue
        try:
            out = map_message(msg, MapContext(FACILITY, "x/" + name, fn))
        except MappingError:
            continue
        assert all(r["id"] for r in out)
