"""View-models over hand-written JP Core FHIR dicts: banner, categories, medications, labs, SVG,
drug search, receipts, per-date view and data-quality warnings (no browser, no server)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from fhir_gateway.viewer import charts, models
from fhir_gateway.viewer import fhirview as fv

TODAY = date(2024, 6, 1)
EN = fv.EN_REPRESENTATION


def src(date_: str, dtype: str, n: int = 1) -> dict:
    return {"source": f"000/000/0000000001/{date_}/{dtype}/0000000001_{date_}_{dtype}_{n:015d}_"
                      f"{date_}120000000_01_1"}


PATIENT = {"resourceType": "Patient", "id": "0000000001", "gender": "female", "birthDate": "1980-06-02",
           "meta": src("-", "ADT-00"),
           "name": [{"extension": [{"url": EN, "valueCode": "IDE"}], "text": "佐藤 花子"},
                    {"extension": [{"url": EN, "valueCode": "SYL"}], "text": "サトウ ハナコ"}]}


def med(day: str, name: str, days: int, dtype: str = "OMP-01", n: int = 1, status: str = "active") -> dict:
    return {"resourceType": "MedicationRequest", "id": f"m{n}", "meta": src(day.replace("-", ""), dtype, n),
            "status": status, "authoredOn": day,
            "medicationCodeableConcept": {"text": name, "coding": [{"code": "1", "display": name}]},
            "dosageInstruction": [{"timing": {"code": {"text": "1日3回毎食後"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "錠"}}]}],
            "dispenseRequest": {"expectedSupplyDuration": {"value": days, "unit": "日"}}}


def obs(day: str, code: str, name: str, value, unit="mg/dL", low=70, high=110, interp=None, n=1):
    o = {"resourceType": "Observation", "id": f"o{code}{n}", "meta": src(day.replace("-", ""), "OML-11", n),
         "status": "final", "category": [{"coding": [{"code": "laboratory"}]}],
         "code": {"coding": [{"system": "urn:jlac10", "code": code, "display": name}]},
         "effectiveDateTime": f"{day}T09:00:00+09:00",
         "valueQuantity": {"value": value, "unit": unit},
         "referenceRange": [{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}]}
    if interp:
        o["interpretation"] = [{"coding": [{"code": interp}]}]
    return o


def test_names_and_banner_allergy_states():
    assert fv.names(PATIENT) == ("佐藤 花子", "サトウ ハナコ")
    b = models.banner(PATIENT, [PATIENT], "0000000001", TODAY)
    assert (b.kanji, b.kana, b.age, b.gender, b.allergy_state) == ("佐藤 花子", "サトウ ハナコ", 43, "female", "unknown")
    nka = {"resourceType": "AllergyIntolerance", "code": {"coding": [{"code": "716186003"}], "text": "アレルギーなし"}}
    assert models.banner(PATIENT, [nka], "1", TODAY).allergy_state == "nka"
    pen = {"resourceType": "AllergyIntolerance", "code": {"text": "ペニシリン"},
           "reaction": [{"severity": "severe"}]}
    refuted = {"resourceType": "AllergyIntolerance", "code": {"text": "卵"},
               "verificationStatus": {"coding": [{"code": "refuted"}]}}
    b = models.banner(PATIENT, [nka, pen, refuted], "1", TODAY)
    assert b.allergy_state == "present" and b.allergies == ["ペニシリン (severe)"]


def test_categories_from_source_and_type():
    inj = med("2024-05-30", "生理食塩液", 1, "OMP-02", 2)
    adm = {"resourceType": "MedicationAdministration", "meta": src("20240530", "OMP-12"),
           "effectiveDateTime": "2024-05-30T10:00:00+09:00", "medicationCodeableConcept": {"text": "生理食塩液"}}
    sr = {"resourceType": "ServiceRequest", "meta": src("20240530", "OML-01"), "code": {"text": "生化学"}}
    echoed = {"resourceType": "ServiceRequest", "meta": src("20240530", "OML-11")}
    memo = {"resourceType": "DocumentReference", "meta": {"tag": [{"code": models.MEMO_TAG}]}}
    assert [models.category_of(r) for r in (inj, adm, sr, echoed, memo, PATIENT)] == \
        ["injections", "administrations", "lab-orders", None, None, None]
    assert models.category_of(obs("2024-05-01", "A", "x", 1)) == "lab-results"


def test_active_and_past_medications():
    current = med("2024-05-20", "アムロジピン錠5mg", 28, n=1)      # ends 2024-06-16
    old = med("2024-01-10", "ロキソプロフェン錠", 7, n=2)          # ended long ago
    stopped = med("2024-05-25", "ワーファリン錠", 30, n=3, status="stopped")
    rows = models.rows_for("prescriptions", [current, old, stopped], TODAY)
    assert [(r.cells[1], r.status) for r in rows] == [
        ("ワーファリン錠", "past"), ("アムロジピン錠5mg", "active"), ("ロキソプロフェン錠", "past")]
    active = rows[1]
    assert active.cells[2] == "1 錠" and active.cells[3] == "1日3回毎食後" and active.cells[4] == "28"
    assert active.cells[5] == "2024-05-20〜2024-06-16"


def test_lab_table_flags_units_and_dates():
    res = [obs("2024-01-05", "GLU", "血糖", 95), obs("2024-03-01", "GLU", "血糖", Decimal("132.0"), n=2),
           obs("2024-03-01", "K", "カリウム", 3.1, "mmol/L", 3.5, 5.0, n=3),
           obs("2024-04-01", "K", "カリウム", 4.0, "mmol/L", 3.5, 5.0, interp="A", n=4)]
    table = models.lab_table(res)
    assert table.dates == ["2024-04-01", "2024-03-01", "2024-01-05"]  # newest first
    glu = next(t for t in table.tests if t.name == "血糖")
    assert glu.unit == "mg/dL" and glu.range_text == "70–110"
    assert glu.by_day["2024-03-01"].text == "132.0" and glu.by_day["2024-03-01"].flag == "H"
    assert glu.by_day["2024-03-01"].delta == "+37 (+39%)"
    k = next(t for t in table.tests if t.name == "カリウム")
    assert k.by_day["2024-03-01"].flag == "L"      # computed from the range
    assert k.by_day["2024-04-01"].flag == "A"      # OBX-8 wins over the range


def test_trend_svg_time_axis_and_labels():
    res = [obs("2024-01-01", "GLU", "血糖", 100), obs("2024-01-02", "GLU", "血糖", 120, n=2),
           obs("2024-03-01", "GLU", "血糖", 90, n=3)]
    test = models.lab_table(res).tests[0]
    svg = str(charts.trend_svg(test, "0000000001"))
    assert "血糖 (mg/dL)" in svg and "0000000001" in svg and 'class="band"' in svg
    assert "style=" not in svg  # the CSP forbids inline style
    xs = [float(x) for x in re.findall(r'<circle[^>]* cx="([0-9.]+)"', svg)]
    # 1 day then 59 days: real time spacing, not equal steps
    assert (xs[2] - xs[1]) > 20 * (xs[1] - xs[0])
    assert "2024-01-02 09:00: 120 mg/dL" in svg and "Δ +20" in svg


def test_drug_search_is_normalised_and_needs_three_characters():
    res = [med("2024-05-20", "ロキソプロフェンＮａ錠６０ｍｇ", 7), med("2024-05-21", "アムロジピン", 7, n=2),
           med("2024-05-22", "ロキソニン注", 1, "OMP-02", 3)]
    assert models.drug_search(res, "ろき", TODAY) is None
    hits = models.drug_search(res, "ろきそ", TODAY)          # hiragana finds katakana, both categories
    assert {h.cells[0] for h in hits} == {"prescriptions", "injections"} and len(hits) == 2
    assert len(models.drug_search(res, "ﾛｷｿﾌﾟﾛﾌｪﾝ", TODAY)) == 1   # half-width kana
    assert len(models.drug_search(res, "na錠60", TODAY)) == 1       # full-width Latin and digits


def test_receipts_by_month_with_keyword():
    claim = {"resourceType": "Claim", "id": "c1", "billablePeriod": {"start": "2024-03-01"},
             "item": [{"productOrService": {"text": "初診料"}, "category": {"text": "11"}},
                      {"productOrService": {"text": "血液学的検査"}}],
             "diagnosis": [{"diagnosisCodeableConcept": {"text": "胃炎"}}]}
    claim2 = dict(claim, id="c2", billablePeriod={"start": "2024-04-01"},
                  item=[{"productOrService": {"text": "再診料"}}], diagnosis=[])
    months = models.receipts([claim, claim2])
    assert [m.month for m in months] == ["2024-04", "2024-03"]
    hit = models.receipts([claim, claim2], "血液")
    assert [m.month for m in hit] == ["2024-03"] and hit[0].claims[0]["items"][0]["name"] == "血液学的検査"
    assert models.receipts([claim, claim2], "胃炎")[0].claims[0]["diagnoses"] == ["胃炎"]


def test_per_date_view_and_quality():
    res = [med("2024-05-20", "アムロジピン", 28), obs("2024-05-20", "GLU", "血糖", 100),
           obs("2024-05-21", "GLU", "血糖", 100, n=2), PATIENT]
    day = models.on_date(res, "2024-05-20", TODAY)
    assert set(day) == {"prescriptions", "lab-results"}
    problems = [{"path": "000/000/0000000001/20240521/OMP-02/x_1", "kind": "decode-failure",
                 "reason": "not ISO-2022-JP", "severity": "error"}]
    q = models.data_quality(res, problems, 7)
    assert (q.first, q.last) == ("2024-05-20", "2024-05-21")
    assert q.problems["OMP-02"][0]["reason"] == "not ISO-2022-JP"
    assert {f[0] for f in q.freshness} == {"ADT-00", "OMP-01", "OML-11"}


def test_one_allergy_row_per_allergen_lists_every_source():
    """The same allergen from ADT-00 AL1 and ADT-61 IAM is one row with both sources."""
    from fhir_gateway.viewer.models import rows_for
    from datetime import date as _date

    def alg(dtype, day, rid, sev=None):
        a = {"resourceType": "AllergyIntolerance", "id": rid,
             "meta": {"source": f"000/000/0000000001/-/{dtype}/0000000001_-_{dtype}_x_{day}000000000_-_1"},
             "code": {"coding": [{"system": "urn:jc10", "code": "5A1002411023006", "display": "ソバ"}]},
             "recordedDate": f"{day[:4]}-{day[4:6]}-{day[6:]}", "category": ["food"],
             "clinicalStatus": {"coding": [{"code": "active"}]}}
        if sev:
            a["reaction"] = [{"severity": sev, "manifestation": [{"text": "湿疹"}]}]
        return a
    rows = rows_for("allergies", [alg("ADT-00", "20220101", "a1"), alg("ADT-61", "20220301", "a2", "moderate"),
                                  alg("ADT-61", "20220301", "a3")], _date(2026, 1, 1))
    assert len(rows) == 1
    assert "ADT-61 IAM" in rows[0].cells[6] and "ADT-00 AL1 (2022-01-01)" in rows[0].cells[6]
    assert rows[0].cells[4].key == "severity:moderate" and rows[0].cells[2].key == "allergy-category:food"


def test_allergy_sources_include_copies_folded_by_the_patient_view():
    """mappers.chart keeps one AllergyIntolerance per allergen and names the dropped copies'
    files in ``also-recorded-in``: the viewer lists them as sources too."""
    from datetime import date as _date

    from fhir_gateway.viewer.models import rows_for
    from mappers.chart import EXT_ALSO_RECORDED
    kept = {"resourceType": "AllergyIntolerance", "id": "a2",
            "meta": {"source": "000/000/0000000001/-/ADT-61/0000000001_-_ADT-61_x_20220301000000000_-_1"},
            "code": {"coding": [{"system": "urn:jc10", "code": "5A1002411023006", "display": "ソバ"}]},
            "recordedDate": "2022-03-01", "category": ["food"],
            "extension": [{"url": EXT_ALSO_RECORDED,
                           "valueString": "000/000/0000000001/-/ADT-00/0000000001_-_ADT-00_x_20220101000000000_-_1"}]}
    rows = rows_for("allergies", [kept], _date(2026, 1, 1))
    assert len(rows) == 1
    assert rows[0].cells[6].startswith("ADT-61 IAM") and "ADT-00 AL1" in rows[0].cells[6]
