"""Issue 10: content that was dropped silently is mapped, in every encoding a storage holds,
and audit mode (mappers.audit) finds no unread content in these messages."""

from __future__ import annotations

import pytest

from mappers import MapContext
from mappers.audit import audit_message
from storage.names import parse_name
from storage.reader import KIND_TYPE, WARNING, read_bytes
from tests import jahis_fixtures as J
from tests.mapper_testkit import FACILITY, by_type, validate

ENCODINGS = ("iso-2022-jp", "utf-8", "cp932")


def _map(name: str, text: str, encoding: str = "iso-2022-jp"):
    fn = parse_name(name)
    pid = fn.patient_id
    rel = f"{pid[:3]}/{pid[3:6]}/{pid}/{fn.date}/{fn.data_type}/{name}"
    res = read_bytes(J.encodings(text)[encoding], rel, fn)
    assert res.ok, res.problems
    resources, unmapped = audit_message(res.message, MapContext(FACILITY, rel, fn))
    validate(resources)
    return res, resources, unmapped


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", list(J.CASES))
def test_every_case_maps_without_unread_content(name: str, encoding: str) -> None:
    _res, resources, unmapped = _map(name, J.CASES[name], encoding)
    assert resources
    assert not unmapped, [u.reason() for u in unmapped]


def test_tq1_3_weekday_and_interval_repetitions() -> None:
    _res, out, _ = _map(J.OMP01_NAME, J.OMP01)
    reqs = by_type(out, "MedicationRequest")
    weekly, alternate = reqs[0]["dosageInstruction"][0], reqs[1]["dosageInstruction"][0]
    assert weekly["timing"]["code"]["coding"][0]["code"] == "1011000400000000"
    assert weekly["timing"]["repeat"]["dayOfWeek"] == ["mon", "thu"]
    assert "月曜日、木曜日" in weekly["text"]
    assert weekly["additionalInstruction"][0]["coding"][0]["code"] == "W0100100"
    assert alternate["timing"]["repeat"]["period"] == 2 and alternate["timing"]["repeat"]["periodUnit"] == "d"
    assert "隔日" in alternate["text"]


def test_rxe_7_every_repetition() -> None:
    _res, out, _ = _map(J.OMP01_NAME, J.OMP01)
    texts = [a.get("text") for a in by_type(out, "MedicationRequest")[1]["dosageInstruction"][0]
             ["additionalInstruction"]]
    assert ["4錠", "2錠", "1錠"] == [t for t in texts if t.endswith("錠")]
    _res, out, _ = _map(J.OMP02_NAME, J.OMP02)
    texts = [a.get("text") for a in by_type(out, "MedicationRequest")[0]["dosageInstruction"][0]
             ["additionalInstruction"]]
    assert "緩徐に静注" in texts and "できるだけ太い静脈を使用" in texts


def test_rxr_device_and_site_modifier_rxc_7_as_property() -> None:
    _res, out, _ = _map(J.OMP02_NAME, J.OMP02)
    req = by_type(out, "MedicationRequest")[0]
    d = req["dosageInstruction"][0]
    assert d["site"]["text"].startswith("左") and any(c["code"] == "L" for c in d["site"]["coding"])
    device = [e for e in d["extension"] if e["url"].endswith("dosage-administration-device")]
    assert device[0]["valueCodeableConcept"]["coding"][0]["code"] == "IVP"
    ings = req["contained"][0]["ingredient"]
    morphine, docetaxel = ings[1], ings[2]
    # 麻薬 is a property of the component, not another code of the drug
    assert all(c.get("code") != "1" for c in morphine["itemCodeableConcept"]["coding"])
    props = [e["valueCodeableConcept"] for e in morphine["extension"]
             if e["url"].endswith("ingredient-supplementary-code")]
    assert props[0]["coding"][0]["code"] == "1" and props[0]["text"] == "麻薬"
    texts = [e["valueCodeableConcept"].get("text") for e in docetaxel["extension"]
             if e["url"].endswith("ingredient-supplementary-code")]
    assert texts == ["劇薬", "劇薬"]  # text-only and coded both kept


def test_obx_in_orders_become_linked_observations() -> None:
    _res, out, _ = _map(J.OMP02_NAME, J.OMP02)
    req = by_type(out, "MedicationRequest")[0]
    obs = {o["id"]: o for o in by_type(out, "Observation")}
    refs = [r["reference"].split("/", 1)[1] for r in req["supportingInformation"]]
    assert len(refs) == 3 and all(r in obs for r in refs)
    cats = [[c["code"] for cc in obs[r]["category"] for c in cc["coding"]] for r in refs]
    assert all("vital-signs" in c for c in cats)
    bsa = obs[refs[2]]
    assert any(c.get("code") == "8277-6" for c in bsa["code"]["coding"])
    assert str(bsa["valueQuantity"]["value"]) == "1.52"


def test_al1_in_orders_and_ma_is_not_medication() -> None:
    _res, out, _ = _map(J.OMP01_NAME, J.OMP01)
    allergies = by_type(out, "AllergyIntolerance")
    assert len(allergies) == 2
    assert allergies[0]["category"] == ["medication"]
    assert "category" not in allergies[1]  # MA: miscellaneous, not a medication allergy


def test_oru_r01_under_oml_11_and_unescaped_caret_in_units() -> None:
    res, out, _ = _map(J.OML11_NAME, J.OML11_ORU)
    assert any(p.kind == KIND_TYPE and p.severity == WARNING for p in res.problems)
    obs = by_type(out, "Observation")
    assert [o["valueQuantity"]["unit"] for o in obs] == ["×10^2/μL", "×10^4/μL"]
    assert obs[1]["valueQuantity"]["code"] == "10*4/uL"
    dr = by_type(out, "DiagnosticReport")[0]
    assert dr["specimen"] and len(dr["result"]) == 2


def test_adt_a01_in_adt_12_is_a_warning_and_an_encounter() -> None:
    res, out, _ = _map(J.ADT12_NAME, J.ADT12_A01)
    kinds = [(p.kind, p.severity) for p in res.problems]
    assert (KIND_TYPE, WARNING) in kinds
    enc = by_type(out, "Encounter")[0]
    assert enc["status"] == "arrived" and enc["class"]["code"] == "AMB"


def test_check_reports_unmapped_content_per_data_type_and_field(tmp_path, capsys) -> None:
    """`fhir-gateway check` runs in audit mode: the fixtures give no finding, an injected
    field nobody maps is counted per data type and field and listed with an excerpt."""
    import json

    from fhir_gateway.cli import main
    from storage.names import parse_name as pn
    from tests.treebuilder import write

    root = tmp_path / "st"
    for name, text in J.CASES.items():
        write(root, pn(name), raw=J.encodings(text)["iso-2022-jp"])
    code = main(["check", "--storage", str(root), "--workers", "1", "--json", "--data-dir",
                 str(tmp_path / "d")])
    fac = json.loads(capsys.readouterr().out)["facilities"][0]
    assert fac["unmapped_content"] == {}
    assert not [p for p in fac["problems"] if p["kind"] == "unmapped-content"]
    line = "RXC|B|620007311^生理食塩液５００ｍＬ^HOT|500|ML^mL^MR9P||||\r"
    assert line in J.OMP02
    injected = J.OMP02.replace(line, line[:-5] + "|" * 7 + "ZZ1^未対応の項目\r", 1)
    pid = J.PID8
    name = J.OMP02_NAME.replace("_01_1", "_02_1").replace("000000012345679", "000000012345690")
    write(root, pn(name), raw=J.encodings(injected)["iso-2022-jp"])
    main(["check", "--storage", str(root), "--workers", "1", "--json", "--data-dir",
          str(tmp_path / "d")])
    fac = json.loads(capsys.readouterr().out)["facilities"][0]
    assert fac["unmapped_content"] == {"OMP-02": {"RXC-11": 1}}
    found = [p for p in fac["problems"] if p["kind"] == "unmapped-content"]
    assert len(found) == 1 and found[0]["field"] == "RXC-11" and "未対応の項目" in found[0]["excerpt"]
    assert found[0]["path"].startswith(f"{pid[:3]}/{pid[3:6]}/{pid}/") and code in (0, 1)


def test_suspicious_components_reported_and_units_never_a_fragment(tmp_path, capsys) -> None:
    """An unescaped '^' in OBX-6 / OBX-7 is reported by the drill (suspicious-components) and
    the written text is what the resource carries."""
    import json

    from fhir_gateway.cli import main
    from storage.names import parse_name as pn
    from tests.treebuilder import write

    text = J.OML11_ORU.replace("|33-86|", "|33^86|").replace(
        "|24.5|×10^4/μL|", "|24.5|a^b^c^d^e^f^g|")
    _res, out, unmapped = _map(J.OML11_NAME, text)
    obs = by_type(out, "Observation")
    assert obs[0]["valueQuantity"]["unit"] == "×10^2/μL"
    assert obs[0]["referenceRange"][0]["text"] == "33^86"
    assert obs[1]["valueQuantity"]["unit"] == "a^b^c^d^e^f^g" and "code" not in obs[1]["valueQuantity"]
    assert not unmapped
    root = tmp_path / "st"
    write(root, pn(J.OML11_NAME), raw=J.encodings(text)["iso-2022-jp"])
    main(["check", "--storage", str(root), "--workers", "1", "--json", "--data-dir", str(tmp_path / "d")])
    fac = json.loads(capsys.readouterr().out)["facilities"][0]
    reasons = [p["reason"] for p in fac["problems"] if p["kind"] == "suspicious-components"]
    assert len(reasons) == 3, reasons
    assert any("OBX-6" in r and "×10^2/μL" in r for r in reasons)
    assert any("OBX-7" in r for r in reasons) and any("7 components" in r for r in reasons)


def test_oml01_specimen_obx_become_observations_of_the_request() -> None:
    _res, out, unmapped = _map(J.OML01_NAME, J.OML01)
    assert not unmapped
    reqs = by_type(out, "ServiceRequest")
    assert len(reqs) == 1  # the specimen-level OBX are no request of their own
    assert [d["coding"][0]["code"] for d in reqs[0]["orderDetail"]] == ["3C015000002327101"]
    obs = {o["id"]: o for o in by_type(out, "Observation")}
    refs = [r["reference"].split("/", 1)[1] for r in reqs[0]["supportingInfo"]]
    assert len(refs) == 3 and all(r in obs for r in refs)
    assert str(obs[refs[1]]["valueQuantity"]["value"]) == "52.5"
    assert obs[refs[2]]["valueCodeableConcept"]["text"] == "陰性"
    assert by_type(out, "AllergyIntolerance")[0]["category"] == ["food"]


def test_fixture_fields_are_where_they_belong() -> None:
    """The hand-written ORC puts each value in the field the JAHIS tables name."""
    from storage.hl7 import parse

    orc = parse(J.OMP01.replace("\n", "\r"))["ORC"]
    assert orc.get(1) == "NW" and orc.get(4).endswith("_01") and orc.get(9) == "20160825100000"
    assert orc.get(12) == "110" and orc.get(17) == "01" and orc.get(29) == "O"
