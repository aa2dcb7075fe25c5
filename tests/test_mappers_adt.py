"""ADT-00 (Patient + OBX/AL1/IN1), ADT-61 (allergies) and every encounter ADT type.

Messages are modelled on the guideline samples (reference/ssmix2.md §5.1, §5.2, §5.7).
"""

from __future__ import annotations

import pytest

from mapper_testkit import (FACILITY, by_type, check_golden, map_bytes, map_text, renamed,
                            sample_files, validate)
from mappers import MappingError
from mappers.encounter import ENCOUNTER_TYPES
from storage.names import DATA_TYPES, parse_name

ADT00_NAME = "9999013_-_ADT-00_999999999999999_20111220224447339_-_1"
ADT00 = r"""
MSH|^~\&|HIS123|SEND|GW|RCV|20111220224447.3399||ADT^A08^ADT_A01|20111220000001|P|2.5||||||~ISO IR87||ISO 2022-1994|SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO
EVN||201112202100|||||SEND001
PID|0001||9999013^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M|||^^^^422-8033^JPN^H^静岡県静岡市登呂１－３－５||^PRN^PH^^^^^^^^^054-000-0000~^EMR^PH^^^^^^^^^03-5999-9999|^WPN^PH^^^^^^^^^03-3599-9993|||||||||||||||||||20111219121551
NK1|1|患者^花子^^^^^L^I~カンジャ^ハナコ^^^^^L^P|SPO^配偶者^HL70063|^^^^422-8033^JPN^H^静岡県静岡市登呂１－３－５|^PRN^PH^^^^^^^^^054-000-0001|^WPN^PH^^^^^^^^^03-3599-9990|||||||鹿ノ門商事株式会社^D
PV1|0001|I|32^302^1^^^N||||220^医師^一郎^^^^^^^L^^^^^I
DB1|1|PT||Y
OBX|1|NM|9N001000000000001^身長^JC10||167.8|cm^cm^ISO+|||||F
OBX|2|NM|9N006000000000001^体重^JC10||63.50|kg^kg^ISO+|||||F|||20111201
OBX|3|CWE|5H010000009199911^血液型-ABO式^JC10||A^A^JSHR002||||||F
AL1|1|DA^薬剤アレルギー^HL70127|1^ペニシリン^99XYZ|SV^重度^HL70128|じんましん
IN1|1|67^国民健康保険退職者^JHSD0001|67999991|静岡市||||||記号１^^^^^|１２３４５|20091201|20120331||||SEL^本人^HL70063
"""

ADT61_NAME = "9999013_-_ADT-61_999999999999999_20111014232213000_-_1"
ADT61 = r"""
MSH|^~\&|HIS123|SEND|GW|RCV|20111014232213||ADT^A60^ADT_A60|20111014232213|P|2.5||||||~ISO IR87||ISO2022-1994|SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO
EVN||20111013232213
PID|0001||9999013^^^^PI||山田^太郎^^^^^L^I~ヤマダ^タロウ^^^^^L^P||19650415|M
IAM|1|LA^花粉アレルギー^HL70127|5A1002216023023^スギ^JC10|MI^軽度^HL70128|目のかゆみ|A^追加^HL70323|||||199601
IAM|2|FA^食物アレルギー^HL70127|5A1002411023006^ソバ^JC10|MO^中等度^HL70128|湿疹|A^追加^HL70323||||||小学校低学年の頃
IAM|3|DA^薬剤アレルギー^HL70127|106824501^アリナミン^HOT9|SV^重度^HL70128|のどの渇き|D^削除^HL70323|ALG-0003|||||20070710
IAM|4|DA^薬剤アレルギー^HL70127|610000001^院内薬^99ABC|||U^更新^HL70323|ALG-0004|||||2010|||||C^確認済^HL70438|110^医師^一郎^^^^^^^L^^^^^I
"""


def test_adt00_patient_fields():
    res = map_text(ADT00, ADT00_NAME)
    validate(res)
    (p,) = by_type(res, "Patient")
    assert p["id"] == "9999013"
    assert p["identifier"] == [{"system": f"urn:oid:1.2.392.100495.20.3.51.1{FACILITY}",
                                "value": "9999013"}]
    kanji, kana = p["name"]
    assert kanji["family"] == "患者" and kanji["given"] == ["太郎"] and kanji["use"] == "usual"
    assert kanji["extension"][0]["valueCode"] == "IDE"
    assert kana["text"] == "カンジャ タロウ" and kana["extension"][0]["valueCode"] == "SYL"
    assert p["gender"] == "male" and p["birthDate"] == "1948-04-05"
    assert p["address"][0]["postalCode"] == "422-8033"
    assert p["address"][0]["text"].startswith("静岡県静岡市登呂")
    assert {"system": "phone", "value": "03-3599-9993", "use": "work"} in p["telecom"]
    assert p["telecom"][0] == {"system": "phone", "value": "054-000-0000", "use": "home"}
    contact = p["contact"][0]
    assert contact["relationship"][0]["coding"][0]["code"] == "SPO"
    assert contact["name"]["family"] == "患者" and contact["organization"]["display"] == "鹿ノ門商事株式会社"
    assert p["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PT"
    assert "active" not in p and "deceasedBoolean" not in p


def test_adt00_observations_allergy_coverage():
    res = map_text(ADT00, ADT00_NAME)
    height, weight, abo = by_type(res, "Observation")
    assert height["meta"]["profile"] == [
        "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Observation_BodyMeasurement"]
    codes = {c["code"] for c in height["code"]["coding"]}
    assert codes == {"9N001000000000001", "31000298"}
    assert height["valueQuantity"]["code"] == "cm" and str(height["valueQuantity"]["value"]) == "167.8"
    assert height["effectiveDateTime"] == "2011-12-20T21:00:00+09:00"  # EVN-2 fallback
    assert {"31000296"} <= {c["code"] for c in weight["code"]["coding"]}
    assert str(weight["valueQuantity"]["value"]) == "63.50"  # written precision kept
    assert weight["effectiveDateTime"] == "2011-12-01"
    assert abo["category"][0]["coding"][0]["code"] == "laboratory"
    assert "5H010000001910114" in {c["code"] for c in abo["code"]["coding"]}
    assert abo["valueCodeableConcept"]["coding"][0]["code"] == "A"

    (allergy,) = by_type(res, "AllergyIntolerance")
    assert allergy["category"] == ["medication"]
    assert allergy["code"]["coding"][0]["system"].endswith(f"/{FACILITY}/99XYZ")  # local, kept
    assert allergy["reaction"][0]["severity"] == "severe"
    assert allergy["reaction"][0]["manifestation"][0]["text"] == "じんましん"

    (cov,) = by_type(res, "Coverage")
    assert cov["type"]["coding"][0]["code"] == "67"
    assert cov["type"]["coding"][0]["system"].endswith("/JHSD0001")
    assert cov["payor"][0]["identifier"]["value"] == "67999991"
    assert cov["relationship"]["coding"][0]["code"] == "self"
    assert cov["period"] == {"start": "2009-12-01", "end": "2012-03-31"}
    ext = {e["url"].rsplit("_", 1)[-1]: e["valueString"] for e in cov["extension"]}
    assert ext == {"InsuredPersonSymbol": "記号１", "InsuredPersonNumber": "１２３４５"}
    assert cov["beneficiary"] == {"reference": "Patient/9999013"}


def test_adt00_deletion_marks_patient_inactive():
    text = ADT00.replace("ADT^A08^ADT_A01", "ADT^A23^ADT_A21")
    res = map_text(text, renamed(ADT00_NAME, flag="0"))
    validate(res)
    assert [r["resourceType"] for r in res] == ["Patient"]
    assert res[0]["active"] is False


def test_adt00_deceased():
    text = ADT00.replace("|" * 19 + "20111219121551", "|" * 15 + "20111230101500|Y|||20111219121551")
    (p,) = by_type(map_text(text, ADT00_NAME), "Patient")
    assert p["deceasedDateTime"] == "2011-12-30T10:15:00+09:00"


def test_ids_stable_across_updates():
    first = map_text(ADT00, ADT00_NAME)
    later = map_text(ADT00, renamed(ADT00_NAME, timestamp="20120105101010123", flag="2"), version=2)
    assert [r["id"] for r in first] == [r["id"] for r in later]
    assert later[0]["meta"]["versionId"] == "2"
    assert later[0]["meta"]["lastUpdated"] == "2012-01-05T10:10:10.123+09:00"


def test_adt61_allergies():
    res = map_text(ADT61, ADT61_NAME)
    validate(res)
    assert len(res) == 4
    pollen, soba, deleted, local = res
    assert pollen["category"] == ["environment"] and pollen["onsetDateTime"] == "1996-01"
    assert pollen["reaction"][0]["severity"] == "mild"
    assert pollen["clinicalStatus"]["coding"][0]["code"] == "active"
    assert soba["onsetString"] == "小学校低学年の頃" and soba["category"] == ["food"]
    assert deleted["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in deleted
    assert deleted["id"] == "9999013.-.ADT-61.x.u.ALG-0003"
    assert deleted["identifier"][0]["value"] == "ALG-0003"
    assert local["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert local["asserter"]["display"] == "医師 一郎"
    assert local["code"]["coding"][0]["system"].endswith("/99ABC")
    assert "reaction" not in local


def test_adt61_id_follows_iam7_not_position():
    """An allergy keeps its id when another one is inserted before it."""
    lines = ADT61.strip().splitlines()
    inserted = "\n".join(lines[:3] + [lines[6].replace("IAM|4", "IAM|0").replace("ALG-0004", "ALG-0009")]
                         + lines[3:])
    ids = {r["identifier"][0]["value"]: r["id"] for r in map_text(inserted, ADT61_NAME)
           if r.get("identifier")}
    assert ids["ALG-0003"] == "9999013.-.ADT-61.x.u.ALG-0003"


# --- encounters -------------------------------------------------------------------------------

EVENTS = {  # data type -> (normal event, cancel event or None, structure)
    dt: (t.events[0][1], t.events[1][1] if len(t.events) > 1 else None, t.events[0][2])
    for dt, t in DATA_TYPES.items() if dt in ENCOUNTER_TYPES
}
EXPECTED_STATUS = {"ADT-01": "in-progress", "ADT-12": "arrived", "ADT-21": "planned",
                   "ADT-22": "in-progress", "ADT-31": "onleave", "ADT-32": "in-progress",
                   "ADT-41": "planned", "ADT-42": "in-progress", "ADT-51": "planned",
                   "ADT-52": "finished"}


def _adt(dtype: str, event: str) -> tuple[str, str]:
    date = "-" if DATA_TYPES[dtype].dateless else "20111220"
    name = f"9999013_{date}_{dtype}_999999999999999_20111220224447339_01_1"
    pv1_class = "O" if dtype == "ADT-12" else "I"
    text = rf"""
MSH|^~\&|HIS123|SEND|GW|RCV|20111220224447.3399||ADT^{event}^ADT_A01|20111220000001|P|2.5||||||~ISO IR87||ISO 2022-1994
EVN||201112202100||||201112202000|SEND001
PID|0001||9999013^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M
PV1|0001|{pv1_class}|32^305^1^^^N|||32^302^1^^^N|220^医師^一郎^^^^^^^L^^^^^I|||01|||||||607^医師^二郎^^^^^^^L^^^^^I||V0001|||||||||||||||||01||||||||201111201600|201112201200
PV2|41^501^2^^^N|||||||201111201500|201112251000
"""
    return text, name


@pytest.mark.parametrize("dtype", ENCOUNTER_TYPES)
def test_encounter_each_type(dtype):
    normal, cancel, _ = EVENTS[dtype]
    text, name = _adt(dtype, normal)
    (enc,) = map_text(text, name)
    validate([enc])
    assert enc["status"] == EXPECTED_STATUS[dtype]
    assert enc["class"]["code"] == ("AMB" if dtype == "ADT-12" else "IMP")
    assert enc["subject"] == {"reference": "Patient/9999013"}
    assert enc["period"]["start"] == "2011-11-20T16:00:00+09:00"
    assert enc["period"]["end"] == "2011-12-20T12:00:00+09:00"
    assert enc["serviceType"]["coding"][0]["code"] == "01"
    assert enc["identifier"][0]["value"] == "V0001"
    types = [p["type"][0]["coding"][0]["code"] for p in enc["participant"]]
    assert types == ["ATND", "ADM"]
    assert enc["location"][0]["location"]["display"] == "病棟 32 / 病室 305 / ベッド 1"
    assert enc["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "01"
    if cancel:
        text, name = _adt(dtype, cancel)
        (cancelled,) = map_text(text, name)
        validate([cancelled])
        assert cancelled["status"] == "cancelled"
        assert cancelled["id"] == enc["id"]


def test_transfer_keeps_prior_location():
    text, name = _adt("ADT-42", "A02")
    (enc,) = map_text(text, name)
    prior = [loc for loc in enc["location"] if loc["status"] == "completed"]
    assert prior[0]["location"]["display"] == "病棟 32 / 病室 302 / ベッド 1"
    assert prior[0]["period"]["end"] == "2011-12-20T20:00:00+09:00"  # EVN-6


def test_planned_admission_uses_pv2_when_pv1_empty():
    text, name = _adt("ADT-21", "A14")
    text = text.replace("|201111201600|201112201200", "||")
    (enc,) = map_text(text, name)
    assert enc["period"] == {"start": "2011-11-20T15:00:00+09:00"}
    assert enc["status"] == "planned"


def test_attending_change_has_period_from_evn6():
    text, name = _adt("ADT-01", "A54")
    (enc,) = map_text(text, name)
    assert enc["participant"][0]["period"]["start"] == "2011-12-20T20:00:00+09:00"
    assert enc["id"] == "9999013.-.ADT-01.x"


def test_unknown_data_type_raises_mapping_error():
    import dataclasses  # noqa: PLC0415

    from mappers import MapContext, map_message  # noqa: PLC0415
    from storage.hl7 import parse  # noqa: PLC0415

    text, name = _adt("ADT-22", "A01")
    fn = dataclasses.replace(parse_name(name), data_type="ADT-99")
    with pytest.raises(MappingError):
        map_message(parse(text.strip().replace("\n", "\r")), MapContext(FACILITY, "x", fn))


# --- guideline samples and golden files ---------------------------------------------------------

MY_ADT = ("ADT-00", "ADT-61") + ENCOUNTER_TYPES


def test_guideline_samples_map_without_errors():
    files = sample_files(MY_ADT)
    assert files, "no ADT samples found"
    for f in files:
        res = map_bytes(f.read_bytes(), f.name)
        assert res, f.name
        validate(res)


@pytest.mark.parametrize("dtype", ["ADT-00", "ADT-61", "ADT-22", "ADT-52"])
def test_golden(dtype):
    files = [f for f in sample_files((dtype,)) if parse_name(f.name).data_type == dtype]
    if not files:
        pytest.skip(f"no {dtype} sample")
    check_golden(dtype, map_bytes(files[0].read_bytes(), files[0].name))


# --- synthetic hospital (fhir_gateway/synth) -----------------------------------------------------

MY_TYPES = MY_ADT + ("PPR-01", "OMD", "OMG-01", "OMG-02", "OMG-03", "OMG-11", "OMG-12", "OMG-13")


def _synth_docs(seed: int, index: int, years: int = 3):
    """The documents of one generated patient, in memory (no files written)."""
    synth = pytest.importorskip("fhir_gateway.synth.writer")
    import random  # noqa: PLC0415

    from fhir_gateway.synth.patients import make_patient, patient_id  # noqa: PLC0415
    from fhir_gateway.synth.timeline import Course  # noqa: PLC0415

    opts = synth.Options(out="unused", patients=1, seed=seed, years=years)
    start, end = synth._period(opts)
    pid = patient_id(seed, index)
    rng = random.Random(f"fhir-gateway-synth:{seed}:{pid}")
    course = Course(rng, make_patient(rng, index, pid, start, end), FACILITY, start, end)
    course.run()
    for d in course.docs:
        if d.dtype in MY_TYPES:
            name = "_".join((pid, d.date, d.dtype, d.order_no,
                             d.when.strftime("%Y%m%d%H%M%S") + f"{d.when.microsecond // 1000:03d}",
                             d.dept, d.flag))
            yield name, synth.encode_message(d.text)


def _accounted_segments(dtype: str) -> set[str]:
    """Segment ids a mapper maps or lists as not mapped (by design)."""
    from mappers import MAPPERS  # noqa: PLC0415
    import sys  # noqa: PLC0415

    mod = sys.modules[MAPPERS[dtype].__module__]
    rows = [r[0] for r in mod.MAPPING] + [r[0] for r in mod.NOT_MAPPED]
    return {"MSH"} | {r.split("-")[0] for r in rows}


def test_small_synthetic_hospital_maps_every_message():
    seen: set[str] = set()
    count = 0
    for index in range(8):
        for name, data in _synth_docs(7, index):
            res = map_bytes(data, name)
            validate(res)
            seen.add(parse_name(name).data_type)
            count += 1
    assert count > 50
    assert {"ADT-00", "ADT-12", "PPR-01", "ADT-22", "ADT-52"} <= seen


def test_generated_patients_drop_no_segment():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st  # noqa: PLC0415

    from storage.encoding import decode  # noqa: PLC0415
    from storage.hl7 import parse  # noqa: PLC0415

    @hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
    @hypothesis.given(seed=st.integers(1, 10_000), index=st.integers(0, 5_000))
    def check(seed: int, index: int) -> None:
        for name, data in _synth_docs(seed, index, years=2):
            dtype = parse_name(name).data_type
            res = map_bytes(data, name)
            assert res, name
            ids = {s.id for s in parse(decode(data).text)}
            dropped = ids - _accounted_segments(dtype)
            assert not dropped, f"{name}: segments {sorted(dropped)} neither mapped nor listed"

    check()
