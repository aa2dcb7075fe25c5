"""The CapabilityStatement is the truth: every declared search parameter works on a live server,
and nothing undeclared is accepted.  Runs on generator data (``synth_hospital``: every mapped data
type, extended storage and receipts), so a newly declared type or parameter is exercised as soon as
the generator writes data for it."""

from __future__ import annotations

import random
import string

import pytest

from conformance import registry
from fhir_gateway.services import match

CLINICAL = [t for t, r in registry().resources.items() if r.needs_patient]
# Every declared type: the data types and the restricted ones (AuditEvent, audit scope only).
DECLARED = {**registry().resources, **registry().restricted}


def _rdef(rtype: str):
    return DECLARED[rtype]


@pytest.fixture(scope="session")
def audit_session(synth_server, synth_hospital):
    """A session with a ``token create --audit`` token, over a trail with rows of several
    accounts, patients and actions (written through the server's own account store)."""
    import subprocess

    import requests

    from fhir_gateway.accounts.store import AccountStore
    from conftest import BIN, FACILITY
    store = AccountStore(synth_hospital.data_dir)
    for i, (user, action) in enumerate([("naika", "login"), ("naika", "patient-view"),
                                        ("geka", "patient-search"), ("geka", "patient-print"),
                                        ("naika", "memo-create"), ("naika", "logout")]):
        store.audit(action, username=user, person=f"{user} 太郎", staff_no=f"S{i}",
                    facility=FACILITY, ip="127.0.0.1",
                    patient=synth_hospital.patients[i % 2] if "patient" in action else "")
    out = subprocess.run([str(BIN / "fhir-gateway"), "token", "create", "--data-dir",
                          str(synth_hospital.data_dir), "--name", "auditor", "--facility",
                          FACILITY, "--audit"], capture_output=True, text=True, check=True)
    sess = requests.Session()
    sess.headers["Authorization"] = f"Bearer {out.stdout.strip()}"
    sess.base = synth_server.base  # type: ignore[attr-defined]
    yield sess
    sess.close()


def _session(rtype: str, data_api, audit_session):
    return audit_session if rtype in registry().restricted else data_api


@pytest.fixture(scope="session")
def corpus(synth_server, synth_hospital, audit_session):
    """Every resource of the generated hospital, fetched through $everything (all pages), and
    the audit trail through the audit token."""
    import requests
    out: list[dict] = []
    url = f"{synth_server.base}/AuditEvent?_count=1000"
    while url:
        b = audit_session.get(url).json()
        out += [e["resource"] for e in b.get("entry", [])]
        url = next((lk["url"] for lk in b.get("link", []) if lk["relation"] == "next"), None)
    for pid in synth_hospital.patients:
        url = f"{synth_server.base}/Patient/{pid}/$everything?_count=1000"
        while url:
            b = requests.get(url, headers=synth_server.headers).json()
            out += [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]
            url = next((lk["url"] for lk in b.get("link", []) if lk["relation"] == "next"), None)
    groups = requests.get(f"{synth_server.base}/Group", headers=synth_server.headers).json()
    out += [e["resource"] for e in groups.get("entry", []) if e["search"]["mode"] == "match"]
    return out


def test_corpus_has_every_declared_type(corpus):
    """Guards the fixture: a declared type without generator data would be tested by :missing
    only."""
    missing = set(DECLARED) - {r["resourceType"] for r in corpus}
    assert not missing, f"no generator data for {sorted(missing)}"


def _value_for(resource: dict, param) -> str | None:
    vals = match.values(resource, param)
    if not vals:
        return None
    v = vals[0]
    if param.type == "token":
        for system, code, _ in match.codings(v):
            if code is not None:
                return f"{system}|{code}" if system else code
        return None
    if param.type == "string":
        return next(iter(match._strings(v)), None)
    if param.type == "date":
        for v in vals:
            if isinstance(v, str) and match.date_range(v):
                return v[:10]
            if isinstance(v, dict) and v.get("start") and match.date_range(v["start"]):
                return "ge" + v["start"][:10]  # an open Period is never inside one day
        return None
    if param.type == "reference":
        return v.get("reference") if isinstance(v, dict) else None
    if param.type == "quantity":
        return str(v["value"]) if isinstance(v, dict) and "value" in v else None
    return None


def _patient_of(r: dict) -> str | None:
    ref = (r.get("subject") or r.get("patient") or r.get("beneficiary") or {}).get("reference", "")
    return ref.split("/")[-1] if ref.startswith("Patient/") else (
        r["id"] if r["resourceType"] == "Patient" else None)


def _cases():
    for rtype, rdef in DECLARED.items():
        for name in rdef.params:
            yield rtype, name


@pytest.mark.parametrize("rtype,name", list(_cases()))
def test_every_declared_parameter_is_implemented(synth_api, audit_session, synth_hospital, corpus,
                                                 rtype, name):
    api = _session(rtype, synth_api, audit_session)
    param = _rdef(rtype).params[name]
    pool = [r for r in corpus if r["resourceType"] == rtype]
    if rtype == "Claim":
        pool += [e["resource"] for e in api.get(api.base + "/Claim").json().get("entry", [])
                 if e["search"]["mode"] == "match"]
    sample = next(((r, v) for r in pool if (v := _value_for(r, param))), None)
    if sample is None and any(match.values(r, param) for r in pool):
        pytest.skip(f"{rtype}.{name} values in the test data are not searchable values")
    if sample is not None and rtype in registry().restricted:
        _check_restricted_filter(api, rtype, param, pool, *sample)
        return
    if sample is None:
        # no data has the element: the parameter must still be accepted and :missing must hold
        pid = next((_patient_of(r) for r in pool if _patient_of(r)), synth_hospital.patients[0])
        base = {"patient": pid} if registry().get(rtype).needs_patient else {}
        r = api.get(api.base + f"/{rtype}", params={**base, f"{name}:missing": "true"})
        assert r.status_code == 200, r.text
        all_ = api.get(api.base + f"/{rtype}", params=base).json()
        assert r.json()["total"] == all_["total"]
        pytest.skip(f"no test data has {rtype}.{name}")
    resource, value = sample
    params = {name: value, "_count": "1000"}
    if registry().get(rtype).needs_patient and name not in ("patient", "subject", "_id"):
        params["patient"] = _patient_of(resource)
    r = api.get(api.base + f"/{rtype}", params=params)
    assert r.status_code == 200, r.text
    ids = [e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    assert resource["id"] in ids, f"{rtype}?{name}={value} misses {resource['id']}"
    if param.type in ("token", "string", "reference", "date") and \
            name not in ("patient", "subject", "_id"):
        # the parameter filters: the :missing=true complement excludes the sample
        params2 = {k: v for k, v in params.items() if k != name}
        params2[f"{name}:missing"] = "true"
        r2 = api.get(api.base + f"/{rtype}", params=params2)
        assert r2.status_code == 200
        assert resource["id"] not in [e["resource"]["id"] for e in r2.json().get("entry", [])
                                      if e["search"]["mode"] == "match"]


def _check_restricted_filter(api, rtype: str, param, pool: list[dict], resource: dict,
                             value: str) -> None:
    """A restricted type's search (no :missing there): the sample is found, and a resource with
    another value (or, for dates, the sample itself under ``lt``) is filtered out."""
    def ids(params):
        r = api.get(api.base + f"/{rtype}", params={**params, "_count": "1000"})
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in r.json().get("entry", [])]
    assert resource["id"] in ids({param.name: value}), f"{rtype}?{param.name}={value}"
    if param.type == "date":
        assert resource["id"] not in ids({param.name: "lt" + value})
        return
    other = next((r for r in pool if value not in
                  {_value_for(r, param)} | {str(v) for v in match.values(r, param)}), None)
    assert other is not None, f"the trail has one {param.name} only: the test data is too thin"
    assert other["id"] not in ids({param.name: value}), f"{rtype}?{param.name} does not filter"


@pytest.mark.parametrize("rtype", list(DECLARED))
def test_undeclared_parameters_are_refused(synth_api, audit_session, rtype, synth_hospital):
    api, first = _session(rtype, synth_api, audit_session), synth_hospital.patients[0]
    rng = random.Random(rtype)
    declared = set(_rdef(rtype).params)
    base = {"patient": first} if rtype in CLINICAL else {}
    for _ in range(5):
        name = "".join(rng.choice(string.ascii_lowercase + "-") for _ in range(rng.randint(3, 12)))
        if name in declared:
            continue
        r = api.get(api.base + f"/{rtype}", params={**base, name: "1"})
        assert r.status_code == 400, f"{rtype}?{name} accepted"
        assert r.json()["resourceType"] == "OperationOutcome"


def test_declared_includes_are_accepted(synth_api, synth_hospital):
    api, first = synth_api, synth_hospital.patients[0]
    for rtype, rdef in registry().resources.items():
        base = {"patient": first} if rdef.needs_patient else \
            ({"_id": first} if rtype == "Patient" else {})
        for inc in rdef.includes:
            assert api.get(api.base + f"/{rtype}", params={**base, "_include": inc}).status_code \
                == 200, inc
        for rev in rdef.revincludes:
            assert api.get(api.base + f"/{rtype}",
                           params={**base, "_revinclude": rev}).status_code == 200, rev


def test_capability_statement(api):
    cs = api.get(api.base + "/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    assert "application/fhir+xml" in cs["format"]
    rest = cs["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert set(types) == set(DECLARED)
    assert "--audit" in types["AuditEvent"]["documentation"]
    assert "system/AuditEvent.read" in types["AuditEvent"]["documentation"]
    for t, r in types.items():
        assert "extension" not in r
        assert r["profile"].startswith("http")
        assert {i["code"] for i in r["interaction"]} >= {"read", "vread", "search-type"}
        for sp in r["searchParam"]:
            assert sp["type"] and sp["documentation"] and "extension" not in sp
    assert types["Patient"]["operation"][0]["name"] == "everything"
    assert "jp-kana-sort" in {sp["name"] for sp in types["Patient"]["searchParam"]}


@pytest.mark.parametrize("rtype", list(DECLARED))
def test_every_declared_interaction_works(synth_api, audit_session, corpus, rtype):
    """Each declared interaction answers on a live server: a restricted type through a token
    with its scope, and a data token is refused (403) on every one of them."""
    api = _session(rtype, synth_api, audit_session)
    cs = synth_api.get(synth_api.base + "/metadata").json()
    decl = next(r for r in cs["rest"][0]["resource"] if r["type"] == rtype)
    sample = next(r for r in corpus if r["resourceType"] == rtype)
    rid = sample["id"]
    search = f"/{rtype}?patient={_patient_of(sample)}" if _rdef(rtype).needs_patient else \
        f"/{rtype}"
    urls = {"read": f"/{rtype}/{rid}", "search-type": search,
            "vread": f"/{rtype}/{rid}/_history/{sample.get('meta', {}).get('versionId', '1')}",
            "history-instance": f"/{rtype}/{rid}/_history"}
    codes = [i["code"] for i in decl["interaction"]]
    assert set(codes) <= set(urls), f"{rtype} declares an interaction this test does not know"
    for code in codes:
        r = api.get(api.base + urls[code])
        assert r.status_code == 200, f"{rtype} {code}: {r.status_code} {r.text[:200]}"
        body = r.json()
        if code in ("read", "vread"):
            assert body["resourceType"] == rtype and body["id"] == rid
        else:
            assert body["resourceType"] == "Bundle"
            if code == "search-type" and rtype in registry().restricted:
                assert rid in {e["resource"]["id"] for e in body.get("entry", [])}
        if rtype in registry().restricted:
            denied = synth_api.get(synth_api.base + urls[code])
            assert denied.status_code == 403, f"a data token reads {rtype} {code}"
            assert denied.json()["resourceType"] == "OperationOutcome"
    if "vread" in codes and rtype in registry().restricted:
        assert api.get(api.base + f"/{rtype}/{rid}/_history/2").status_code == 404
