"""OMD (NutritionOrder) and OMG-01/02/03/11/12/13 (ServiceRequest, ImagingStudy, Procedure,
DiagnosticReport + Observation); modelled on the guideline samples (reference/ssmix2.md §5.8)."""

from __future__ import annotations

import pytest

from mapper_testkit import (by_type, check_golden, map_bytes, map_text, renamed, sample_files,
                            validate)
from mappers import terminology as term

MSH = r"MSH|^~\&|HIS123|SEND|GW|RCV|20111220224447.3399||{type}|20111220000001|P|2.5||||||~ISO IR87||ISO2022-1994"
PID = "PID|0001||9999013^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19501214|M"
DOC = "D12345^医師^太郎^^^^^^^L^^^^^I"

OMD_NAME = "9999013_20111013_OMD_123456789012345_20111014232213000_01_1"
OMD = "\n".join([MSH.format(type="OMD^O03^OMD_O03"), PID,
                 "PV1|0001|I|32^302^^^^N||||110^医師^一郎^^^^^^^L^^^^^I|||01",
                 f"ORC|NW|123456789012345|||||||20111013232213|058^入力者^花子^^^^^^^L^^^^^I||{DOC}|||||01^内科^99XY1|PC32^^99XY2",
                 "TQ1|1||TID&１日３回&HL70335||||2011101607|2011103118|R^ルーチン^HL70485",
                 "ODS|D||001^常食^99XY3|塩分控えめ",
                 "ODS|S||S01^濃厚流動食^99XY3|夕食時",
                 "ODS|P||P01^魚禁^99XY3",
                 "ORC|CA|123456789012346|||||||20111014080000|||" + DOC,
                 "ODS|D||002^絶食^99XY3"])

OMG01_NAME = "9999013_20111220_OMG-01_000201101200100_20111220224447339_-_1"
OMG01 = "\n".join([MSH.format(type="OMG^O19^OMG_O19"), PID,
                   "PV1|0001|O|01^^^^^C||||" + DOC,
                   f"ORC|NW|000201101200100|||||||20111220100059|||{DOC}",
                   "TQ1|1||||||||R^^HL70485",
                   "OBR||000201101200100||1000000000000000^Ｘ線単純撮影^JJ1017",
                   f"ORC|PA|000201101200100|||||||20111220100059|||{DOC}|||||01^内科^99XY1",
                   "TQ1|1||||||||R^^HL70485",
                   f"OBR||000201101200100||1000000000000000^Ｘ線単純撮影^JJ1017||||||||||||{DOC}",
                   "OBX||NM|01-02^体重^JSHR001||62|kg^kg^ISO+|||||F",
                   "DG1|1||K297^胃炎^I10",
                   f"ORC|CH|000201101200101||||||000201101200100|20111220100059|||{DOC}",
                   "TQ1|1||||||20111221093000||S^^HL70485",
                   f"OBR||000201101200101||10000002000102000000010000000000^胸部.Ｘ線単純撮影.立位正面(A→P)^JJ1017||||||||||||{DOC}|||||||||||||000201101200100",
                   f"ORC|CA|000201101200102||||||000201101200100|20111220100059|||{DOC}",
                   "TQ1|1||||||||R^^HL70485",
                   f"OBR||000201101200102||10000002000106000000010000000000^胸部.Ｘ線単純撮影.立位側面(L→R)^JJ1017||||||||||||{DOC}|||||||||||||000201101200100"])

OMG12_NAME = "9999013_20111220_OMG-12_201112201656100_20111220224447339_01_1"
OMG12 = "\n".join([MSH.format(type="OMI^Z23^OMI_Z23"), PID,
                   "PV1|0001|O|||||" + DOC + "|||01",
                   f"ORC|PA|201112201656100|||||||20111220152042|{DOC}||{DOC}|01^^^^^C||||01^内科^99XY1",
                   "TQ1|1||||||||R^^HL70485",
                   f"OBR||201112201656100||11000000000^検査.上部.-.-.-.-^LENDO|||20111220|||||||||{DOC}",
                   "OBX|1|TX|MS3-34^臨床病名^JSHR||胃潰瘍の疑い||||||F",
                   "IPC|A201112200010000|P12345|1.2.392.1114.2008.543233.1||ES^^DCM",
                   f"ORC|CH|201112201656101||||||201112201656100|20111220152042|{DOC}||{DOC}",
                   "TQ1|1||||||||R^^HL70485",
                   f"OBR||201112201656101||11000001000^検査.上部.-.-.上部通常内視鏡.-^LENDO|||20111220|||||||||{DOC}|||||||||||||201112201656100",
                   "ZE1|1|RS|11000001000^検査.上部.-.-.上部通常内視鏡.-^LENDO|||NS-03^看護師|D98765^看護^愛子^^^^^^^L^^^^^I",
                   "OBX|1|XCN|DR-02.EM-01^正従業員の実施医師^JSHR||123456^大江戸^信吉^^^^^^^L^^^^^I||||||F",
                   "OBX|2|TS|TM-P1^開始時間^JSHR||20111220144512||||||F",
                   "OBX|3|TS|TM-P2^終了時間^JSHR||20111220151056||||||F",
                   "OBX|4|ZRD|DE-02^薬品^JSHR||100555401^セルシン5mg^HOT9^1^AMP&管&MR9P||||||F",
                   "OBX|5|CWE|DE-06^内視鏡^JSHR||4953170067938^GIF-XQ240^JAN||||||F",
                   "ZE1|2|RS|11020001401^検査.上部.胃.-.上部通常内視鏡.生検採取^LENDO",
                   "OBX|1|TS|TM-B1^生検時間^JSHR||20111220145908||||||F",
                   "IPC|A201112200010000|P12345|1.2.392.1114.2008.543233.1||ES^^DCM"])

OMG13_NAME = "9999013_20111220_OMG-13_999999999999999_20111220224447339_01_1"
OMG13 = "\n".join([MSH.format(type="ORU^R01^ORU_R01"), PID,
                   "PV1|0001|O|01^^^^^C||||" + DOC + "|01",
                   f"ORC|SC|2011122000089100|||CM||||20111220152000|||{DOC}",
                   f"OBR|1|2011122000089100||9A110^標準１２誘導心電図^JC10|||20111220|||||||||{DOC}||||||20111220152000|||F",
                   "OBX|1|TX|9A100&IMP^心電図所見^JC10|1|心筋虚血疑い||||||F",
                   "OBX|2|NM|32769^心拍数^99MFR|2|67|bpm|||||F",
                   "OBX|3|NM|58240^QRS 幅^99MFR|2|94|msec|||||F",
                   "OBX|4|NM|58368&7^R 振幅&V5^99MFR|2|2.505|mV|||||C",
                   "NTE|1||異常なし"])


def test_omd_nutrition_orders():
    res = map_text(OMD, OMD_NAME)
    validate(res)
    diet, cancelled = res
    assert diet["status"] == "active" and diet["intent"] == "order"
    assert diet["dateTime"] == "2011-10-13T23:22:13+09:00"
    assert diet["orderer"]["display"] == "医師 太郎"
    assert diet["oralDiet"]["type"][0]["coding"][0]["code"] == "001"
    assert diet["oralDiet"]["type"][0]["coding"][0]["system"].endswith("/99XY3")
    assert diet["oralDiet"]["instruction"] == "塩分控えめ"
    sched = diet["oralDiet"]["schedule"][0]
    assert sched["code"]["coding"][0]["code"] == "TID"
    assert sched["repeat"]["boundsPeriod"]["start"] == "2011-10-16T07:00:00+09:00"
    assert diet["supplement"][0]["instruction"] == "夕食時"
    assert diet["foodPreferenceModifier"][0]["coding"][0]["code"] == "P01"
    assert diet["identifier"][0]["value"] == "123456789012345"
    assert cancelled["status"] == "revoked"


def test_omg01_service_requests():
    res = map_text(OMG01, OMG01_NAME)
    validate(res)
    srs = by_type(res, "ServiceRequest")
    # the NW header repeated by the PA group is one order: 4 groups -> 3 requests
    assert len(srs) == 3
    parent, child, cancelled = srs
    assert parent["code"]["coding"][0]["system"] == term.CODE_SYSTEMS["JJ1017"]
    assert parent["authoredOn"] == "2011-12-20T10:00:59+09:00"
    assert parent["requester"]["display"] == "医師 太郎"
    assert parent["priority"] == "routine" and parent["status"] == "active"
    assert parent["reasonCode"][0]["coding"][0]["code"] == "K297"
    assert parent["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "01"
    assert {c["coding"][0]["code"] for c in parent["category"]} == {"OMG-01", "RAD"}
    (obs,) = by_type(res, "Observation")
    assert parent["supportingInfo"] == [{"reference": f"Observation/{obs['id']}"}]
    assert obs["valueQuantity"]["code"] == "kg"
    assert child["basedOn"] == [{"reference": f"ServiceRequest/{parent['id']}"}]
    assert child["priority"] == "stat"
    assert child["occurrencePeriod"]["start"] == "2011-12-21T09:30:00+09:00"
    assert cancelled["status"] == "revoked"


def test_omg12_imaging_study_procedures_observations():
    res = map_text(OMG12, OMG12_NAME)
    validate(res)
    (study,) = by_type(res, "ImagingStudy")
    assert study["identifier"][0] == {"system": "urn:dicom:uid",
                                      "value": "urn:oid:1.2.392.1114.2008.543233.1"}
    assert study["modality"][0]["code"] == "ES"
    assert study["procedureCode"][0]["coding"][0]["code"] == "11000001000"
    assert study["meta"]["profile"] == [term.PROFILE["ImagingStudyEndoscopy"]]
    procs = by_type(res, "Procedure")
    assert len(procs) == 2
    first, biopsy = procs
    assert first["status"] == "completed"
    assert first["performedPeriod"] == {"start": "2011-12-20T14:45:12+09:00",
                                        "end": "2011-12-20T15:10:56+09:00"}
    actors = [p["actor"]["display"] for p in first["performer"]]
    assert actors == ["看護 愛子", "大江戸 信吉"]
    assert first["basedOn"][0]["identifier"]["value"] == "201112201656101"
    parts = [o for o in by_type(res, "Observation") if o.get("partOf", [{}])[0].get(
        "reference") == f"Procedure/{first['id']}"]
    assert [o["code"]["coding"][0]["code"] for o in parts] == ["DE-02", "DE-06"]
    assert parts[0]["valueString"] == "セルシン5mg 1 管 (HOT9 100555401)"  # the drug code is kept
    assert biopsy["code"]["coding"][0]["code"] == "11020001401"
    order_obs = [o for o in by_type(res, "Observation") if o.get("partOf", [{}])[0].get(
        "reference") == f"ImagingStudy/{study['id']}"]
    assert order_obs[0]["valueString"] == "胃潰瘍の疑い"


def test_omg11_without_ze1_gives_one_procedure_per_leaf_order():
    text = OMG12.replace("OMG-12", "OMG-11")
    lines = [ln for ln in text.splitlines() if not ln.startswith(("ZE1", "OBX|2|TS", "OBX|3|TS"))]
    res = map_text("\n".join(lines), OMG12_NAME.replace("OMG-12", "OMG-11"))
    validate(res)
    (proc,) = by_type(res, "Procedure")
    assert proc["code"]["coding"][0]["code"] == "11000001000"
    assert proc["performedDateTime"] == "2011-12-20"
    assert by_type(res, "ImagingStudy")[0]["meta"]["profile"] == [term.PROFILE["ImagingStudy"]]


def test_omg13_report_and_observations():
    res = map_text(OMG13, OMG13_NAME)
    validate(res)
    (report,) = by_type(res, "DiagnosticReport")
    obs = by_type(res, "Observation")
    assert res[0] is report
    assert report["result"] == [{"reference": f"Observation/{o['id']}"} for o in obs]
    assert report["status"] == "final" and report["issued"] == "2011-12-20T15:20:00+09:00"
    assert report["conclusion"] == "異常なし"
    assert report["basedOn"][0]["identifier"]["value"] == "2011122000089100"
    text, rate, qrs, amp = obs
    assert text["valueString"] == "心筋虚血疑い"
    assert rate["valueQuantity"]["code"] == "/min"
    assert qrs["valueQuantity"] == {"value": qrs["valueQuantity"]["value"], "unit": "msec",
                                    "system": term.UCUM, "code": "ms"}
    assert amp["status"] == "corrected"
    assert rate["effectiveDateTime"] == "2011-12-20"


def test_ids_stable_across_updates():
    a = [r["id"] for r in map_text(OMG12, OMG12_NAME)]
    b = [r["id"] for r in map_text(OMG12, renamed(OMG12_NAME, timestamp="20111221101010", flag="2"))]
    assert a == b


MY_TYPES = ("OMD", "OMG-01", "OMG-02", "OMG-03", "OMG-11", "OMG-12", "OMG-13")


def test_guideline_samples_map_without_errors():
    files = sample_files(MY_TYPES)
    assert len(files) >= 7
    for f in files:
        res = map_bytes(f.read_bytes(), f.name)
        assert res, f.name
        validate(res)


@pytest.mark.parametrize("dtype", ["OMD", "OMG-01", "OMG-12", "OMG-13"])
def test_golden(dtype):
    files = sample_files((dtype,))
    if not files:
        pytest.skip(f"no {dtype} sample")
    check_golden(dtype, map_bytes(files[0].read_bytes(), files[0].name))
