"""Every resource type a mapper emits is served as a type of its own, checked on generator data
(``synth_hospital``: OML, OMG, OMD, OMP-11/12, vaccinations, receipts, extended storage)."""

from __future__ import annotations

import pytest

from conformance import registry

NEW_TYPES = ["ServiceRequest", "Specimen", "Procedure", "ImagingStudy", "NutritionOrder",
             "Immunization", "Coverage", "MedicationAdministration", "DiagnosticReport",
             "DocumentReference"]


def ids(b: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == mode]


def search(api, rtype: str, **params) -> dict:
    r = api.get(api.base + f"/{rtype}", params={"_count": "1000", **params})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def by_type(synth_server, synth_hospital) -> dict[str, list[dict]]:
    """Every resource of the generated hospital by type (through $everything)."""
    import requests
    out: dict[str, list[dict]] = {}
    for pid in synth_hospital.patients:
        url = f"{synth_server.base}/Patient/{pid}/$everything?_count=1000"
        while url:  # every page: a chart may hold more than one page
            b = requests.get(url, headers=synth_server.headers).json()
            for e in b.get("entry", []):
                if e["search"]["mode"] == "match":
                    out.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
            url = next((lk["url"] for lk in b.get("link", []) if lk["relation"] == "next"), None)
    return out


def pid_of(r: dict) -> str:
    ref = (r.get("subject") or r.get("patient") or r.get("beneficiary"))["reference"]
    return ref.split("/")[-1]


@pytest.mark.parametrize("rtype", NEW_TYPES)
def test_type_is_declared_readable_and_searchable_by_patient(synth_api, by_type, rtype):
    rdef = registry().get(rtype)
    assert rdef is not None and rdef.profile.startswith("http")
    assert "patient" in rdef.params and f"{rtype}:patient" in rdef.includes
    pool = by_type.get(rtype)
    assert pool, f"the generator wrote no {rtype}"
    r = pool[-1]
    got = synth_api.get(synth_api.base + f"/{rtype}/{r['id']}")
    assert got.status_code == 200, got.text
    assert got.json() == r
    vid = r["meta"]["versionId"]
    assert got.headers["ETag"] == f'W/"{vid}"'
    v = synth_api.get(synth_api.base + f"/{rtype}/{r['id']}/_history/{vid}")
    assert v.status_code == 200 and v.json()["id"] == r["id"]
    h = synth_api.get(synth_api.base + f"/{rtype}/{r['id']}/_history").json()
    assert h["type"] == "history" and h["entry"][0]["resource"]["meta"]["versionId"] == vid
    pid = pid_of(r)
    b = search(synth_api, rtype, patient=pid)
    mine = {x["id"] for x in pool if pid_of(x) == pid}
    assert set(ids(b)) == mine  # exactly the patient's resources of the type, nothing else
    assert {e["resource"]["resourceType"] for e in b["entry"]} == {rtype}
    # the patient's $everything lists them, and Patient?_revinclude finds them
    p = search(synth_api, "Patient", _id=pid, _revinclude=f"{rtype}:patient")
    assert mine <= set(ids(p, "include"))


def test_date_parameters_partition_on_the_right_element(synth_api, by_type):
    """lt X and ge X split a patient's resources exactly (implicit day ranges on the element)."""
    for rtype, pname, element in [("ServiceRequest", "authored", "authoredOn"),
                                  ("Specimen", "collected", "collection"),
                                  ("Immunization", "date", "occurrenceDateTime"),
                                  ("NutritionOrder", "datetime", "dateTime"),
                                  ("ImagingStudy", "started", "started"),
                                  ("Procedure", "date", "performedDateTime"),
                                  ("DiagnosticReport", "date", "effectiveDateTime")]:
        pool = by_type[rtype]
        pid = pid_of(max(pool, key=lambda r: sum(pid_of(x) == pid_of(r) for x in pool)))
        mine = sorted((x for x in pool if pid_of(x) == pid), key=lambda x: x["id"])
        every = set(ids(search(synth_api, rtype, patient=pid)))
        vals = [x[element] for x in mine]
        day = (vals[len(vals) // 2]["collectedDateTime"] if element == "collection"
               else vals[len(vals) // 2])[:10]
        lo = set(ids(search(synth_api, rtype, patient=pid, **{pname: f"lt{day}"})))
        hi = set(ids(search(synth_api, rtype, patient=pid, **{pname: f"ge{day}"})))
        assert lo | hi == every and not lo & hi, rtype
        assert hi, f"{rtype}?{pname}=ge{day} is empty"
        on = ids(search(synth_api, rtype, patient=pid, **{pname: day}))
        assert on and set(on) <= hi
        dates = [e["resource"] for e in search(synth_api, rtype, patient=pid, _sort="date")["entry"]]
        assert len(dates) == len(every)  # _sort=date uses the type's date parameter


def test_sort_by_the_types_date_parameter(synth_api, by_type):
    pool = by_type["ServiceRequest"]
    pid = pid_of(pool[0])
    b = search(synth_api, "ServiceRequest", patient=pid, _sort="-date")
    got = [e["resource"]["authoredOn"] for e in b["entry"]]
    assert len(got) > 1 and got == sorted(got, reverse=True)


def test_token_parameters_of_the_new_types(synth_api, by_type):
    imm = by_type["Immunization"][0]
    code = imm["vaccineCode"]["coding"][0]
    b = search(synth_api, "Immunization", patient=pid_of(imm),
               **{"vaccine-code": f"{code['system']}|{code['code']}"})
    assert imm["id"] in ids(b)
    assert all(e["resource"]["vaccineCode"]["coding"][0]["code"] == code["code"]
               for e in b["entry"])
    b = search(synth_api, "Immunization", patient=pid_of(imm), **{"vaccine-code:not": code["code"]})
    assert imm["id"] not in ids(b)
    # a MedicationAdministration of an injection names its drugs in a contained Medication
    ma = next(r for r in by_type["MedicationAdministration"] if r.get("contained"))
    drug = ma["contained"][0]["ingredient"][-1]["itemCodeableConcept"]["coding"][0]
    b = search(synth_api, "MedicationAdministration", patient=pid_of(ma),
               code=f"{drug['system']}|{drug['code']}")
    assert ma["id"] in ids(b)
    sr = next(r for r in by_type["ServiceRequest"] if r.get("specimen"))
    b = search(synth_api, "ServiceRequest", patient=pid_of(sr), category="OML-01", status=sr["status"])
    assert sr["id"] in ids(b)
    assert all(any(c["coding"][0]["code"] == "OML-01" for c in e["resource"]["category"])
               for e in b["entry"])


def test_includes_and_revincludes_follow_references(synth_api, by_type):
    dr = next(r for r in by_type["DiagnosticReport"] if r.get("result") and r.get("specimen"))
    pid = pid_of(dr)
    b = search(synth_api, "DiagnosticReport", _id=dr["id"],
               _include=["DiagnosticReport:result", "DiagnosticReport:specimen"])
    inc = set(ids(b, "include"))
    want = {x["reference"].split("/")[1] for x in dr["result"] + dr["specimen"]}
    assert want <= inc
    # the other way: Observations with the reports that list them
    obs_id = dr["result"][0]["reference"].split("/")[1]
    b = search(synth_api, "Observation", _id=obs_id, _revinclude="DiagnosticReport:result")
    assert ids(b) == [obs_id] and dr["id"] in ids(b, "include")
    # a Specimen with the Observations, reports and orders that point at it
    spec_id = dr["specimen"][0]["reference"].split("/")[1]
    b = search(synth_api, "Specimen", patient=pid, _id=spec_id,
               _revinclude=["Observation:specimen", "DiagnosticReport:specimen"])
    inc = b.get("entry", [])
    assert dr["id"] in ids(b, "include")
    assert {e["resource"]["resourceType"] for e in inc if e["search"]["mode"] == "include"} == \
        {"Observation", "DiagnosticReport"}
    # an order with its specimen
    sr = next(r for r in by_type["ServiceRequest"] if r.get("specimen"))
    b = search(synth_api, "ServiceRequest", _id=sr["id"], _include="ServiceRequest:specimen")
    assert sr["specimen"][0]["reference"].split("/")[1] in ids(b, "include")


def test_imaging_findings_part_of_the_study(synth_api, by_type):
    obs = [o for o in by_type["Observation"] if o.get("partOf")]
    assert obs, "the generator wrote no OMG-11 findings"
    o = obs[0]
    target = o["partOf"][0]["reference"]
    b = search(synth_api, "Observation", patient=pid_of(o), **{"part-of": target},
               _include="Observation:part-of")
    assert o["id"] in ids(b) and target.split("/")[1] in ids(b, "include")
    rtype, rid = target.split("/")
    b = search(synth_api, rtype, _id=rid, _revinclude="Observation:part-of")
    assert o["id"] in ids(b, "include")


def test_receipt_coverage_read_and_beneficiary_search(synth_api, by_type):
    covs = by_type["Coverage"]
    receipt = next(c for c in covs if c["id"].startswith("uke-"))
    adt = next(c for c in covs if ".ADT-00." in c["id"])
    for c in (receipt, adt):
        r = synth_api.get(synth_api.base + f"/Coverage/{c['id']}")
        assert r.status_code == 200 and r.json() == c
        assert synth_api.get(synth_api.base + f"/Coverage/{c['id']}/_history/"
                             f"{c['meta']['versionId']}").status_code == 200
    assert synth_api.get(synth_api.base + f"/Coverage/{receipt['id'][:-1]}x").status_code == 404
    pid = pid_of(receipt)
    b = search(synth_api, "Coverage", beneficiary=f"Patient/{pid}")  # no `patient` needed
    assert receipt["id"] in ids(b)
    assert all(pid_of(e["resource"]) == pid for e in b["entry"])
    b = search(synth_api, "Coverage", _id=receipt["id"])  # the Claim names the patient
    assert ids(b) == [receipt["id"]]
    b = search(synth_api, "Coverage", patient=pid, _include="Coverage:beneficiary")
    assert ids(b, "include") == [pid]


def test_document_reference_from_extended_storage(synth_api, by_type):
    docs = by_type["DocumentReference"]
    d = docs[0]
    assert d["meta"]["source"].startswith("extended/")
    pid = pid_of(d)
    mine = {x["id"] for x in docs if pid_of(x) == pid}
    code = d["type"]["coding"][0]
    b = search(synth_api, "DocumentReference", patient=pid, type=f"{code['system']}|{code['code']}",
               date=d["date"][:10])
    assert d["id"] in ids(b) and set(ids(b)) <= mine
    b = search(synth_api, "DocumentReference", patient=pid, _sort="-date")
    dates = [e["resource"]["date"] for e in b["entry"]]
    assert set(ids(b)) == mine and dates == sorted(dates, reverse=True)
    assert synth_api.get(synth_api.base + "/DocumentReference",
                         params={"type": code["code"]}).status_code == 400  # needs a patient
