"""Receipt-built Patients (``Patient/uke-…``, issue 10 item 6) over a real server: on a whole
synthetic hospital plus a month of receipts for people the SS-MIX2 storage does not know, every
``Claim.patient`` resolves to a readable Patient; a receipt Patient is read, vread, in its
``_history``, listed by ``GET Patient``, found by name, kana, birth date, gender and identifier,
has its Claims and Coverages in its ``$everything``; ``Claim?patient=`` works for both kinds."""

from __future__ import annotations

import pytest
from conftest import FACILITY, build_synth_hospital, make_token

from fhir_gateway.synth.uke import build_record, encode_uke

# (カルテ番号, 氏名, カナ, sex, 生年月日): not in the storage (ids of 7 digits; synth uses 10)
STRANGERS = [("7770001", "外来　一郎", "ガイライ　イチロウ", "1", "4030215"),
             ("7770002", "外来　花子", "ガイライ　ハナコ", "2", "19881120"),
             ("", "名無　権兵衛", "ナナシ　ゴンベエ", "1", "3450101")]  # no カルテ番号: hashed id


def _write(folder, month: str, people) -> None:
    recs = [build_record("IR", {"payer": "1", "prefecture": "13", "tensuhyo": "1",
                                "facility_code": "0000017", "facility_name": "合成病院",
                                "claim_month": month, "volume": "00", "phone": "03-0000-0000"})]
    for n, (karte, name, kana, sex, birth) in enumerate(people, 1):
        recs += [build_record("RE", {"receipt_no": str(n), "receipt_type": "1112",
                                     "service_month": month, "name": name, "sex": sex,
                                     "birth_date": birth, "karte_no": karte, "kana": kana}),
                 build_record("HO", {"insurer_no": "  133066", "symbol": "１２", "number": str(n),
                                     "days": "1", "points": "100"}),
                 build_record("SI", {"category": "11", "burden": "1", "code": "111000110",
                                     "points": "100", "count": "1", "day09": "1"})]
    recs.append(build_record("GO", {"total_receipts": str(len(people)),
                                    "total_points": str(100 * len(people)), "volume": "99"}))
    (folder / f"OUTSIDERS_{month}.UKE").write_bytes(encode_uke(recs))


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_factory):
    h = build_synth_hospital(tmp_path_factory.mktemp("receipt-patients"))
    _write(h.receipts, "202401", STRANGERS)
    _write(h.receipts, "202402", STRANGERS[:1])
    s = server_factory(["--config", str(h.config)], token=make_token(h.data_dir))
    import requests
    sess = requests.Session()
    sess.headers.update(s.headers)

    def get(path: str, **params):
        r = sess.get(f"{s.base}/{path}", params=params, timeout=60)
        return r

    get.hospital = h  # type: ignore[attr-defined]
    return get


def _all(get, path: str, **params) -> list[dict]:
    """Every match entry of a search, following next links."""
    out, r = [], get(path, _count="500", **params)
    while True:
        assert r.status_code == 200, r.text
        b = r.json()
        out += [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]
        nxt = [link["url"] for link in b["link"] if link["relation"] == "next"]
        if not nxt:
            return out
        r = get(nxt[0].split(f"/fhir/{FACILITY}/", 1)[1])


def _receipt_ids(get) -> list[str]:
    refs = {c["patient"]["reference"] for c in _all(get, "Claim")}
    return sorted(r.split("/", 1)[1] for r in refs if r.startswith("Patient/uke-"))


def test_every_claim_patient_resolves(site) -> None:
    claims = _all(site, "Claim")
    assert len(claims) > 50
    refs = {c["patient"]["reference"] for c in claims}
    uke = [r for r in refs if r.startswith("Patient/uke-")]
    assert len(uke) == 3 and len(refs) > 3  # the strangers, and the storage's patients
    for ref in sorted(refs):
        r = site(ref)
        assert r.status_code == 200, (ref, r.text[:200])
        assert r.json()["resourceType"] == "Patient" and f"Patient/{r.json()['id']}" == ref


def test_a_receipt_patient_is_read_vread_and_history(site) -> None:
    pid = f"uke-{FACILITY}-7770001"
    p = site(f"Patient/{pid}").json()
    assert p["id"] == pid and p["birthDate"] == "1991-02-15" and p["gender"] == "male"
    assert p["identifier"][0]["value"] == "7770001"
    assert p["meta"]["source"] == "receipts/OUTSIDERS_202402.UKE"  # the newest receipt
    assert site(f"Patient/{pid}/_history/1").json()["id"] == pid
    assert site(f"Patient/{pid}/_history/2").status_code == 404
    h = site(f"Patient/{pid}/_history").json()
    assert h["type"] == "history" and [e["resource"]["id"] for e in h["entry"]] == [pid]
    assert site(f"Patient/uke-{FACILITY}-7779999").status_code == 404


def test_receipt_patients_are_listed_and_searchable(site) -> None:
    listed = {p["id"] for p in _all(site, "Patient")}
    ids = _receipt_ids(site)
    assert set(ids) <= listed
    assert set(site.hospital.patients) <= listed  # the storage's patients are still there
    one = f"uke-{FACILITY}-7770001"
    two = f"uke-{FACILITY}-7770002"

    def found(**params) -> set[str]:
        return {p["id"] for p in _all(site, "Patient", **params)}

    assert {one, two} <= found(name="外来")
    assert found(name="外来 花子") >= {two} and one not in found(name="外来 花子")
    assert {one, two} <= found(name="ガイライ")
    assert found(birthdate="1988-11-20") >= {two} and one not in found(birthdate="1988-11-20")
    assert found(identifier="7770002") == {two}
    assert found(_id=one) == {one}
    assert one in found(gender="male") and two not in found(gender="male")
    hashed = [i for i in ids if i.startswith(f"uke-{FACILITY}-h")]
    assert len(hashed) == 1 and found(name="名無") >= set(hashed)


def test_everything_and_claim_search_for_both_kinds(site) -> None:
    pid = f"uke-{FACILITY}-7770001"
    b = site(f"Patient/{pid}/$everything").json()
    types = [e["resource"]["resourceType"] for e in b["entry"] if e["search"]["mode"] == "match"]
    assert types.count("Patient") == 1 and types.count("Claim") == 2 and "Coverage" in types
    claims = _all(site, "Claim", patient=f"Patient/{pid}")
    assert len(claims) == 2 and all(c["patient"]["reference"] == f"Patient/{pid}" for c in claims)
    assert len(_all(site, f"Patient/{pid}/Claim")) == 2
    assert {c["beneficiary"]["reference"] for c in _all(site, "Coverage", patient=pid)} \
        == {f"Patient/{pid}"}
    storage_pid = site.hospital.patients[0]
    mine = _all(site, "Claim", patient=storage_pid)
    assert mine and {c["patient"]["reference"] for c in mine} == {f"Patient/{storage_pid}"}
