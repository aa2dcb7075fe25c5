"""Acceptance probes of the FHIR API from the outside: a real server, plain HTTP.

Edge inputs an independent acceptance suite sends; each answer must be a proper
OperationOutcome with a 4xx status, never a 500 and never a silently empty result."""

from __future__ import annotations

import pytest


def get(api, path: str, **kw):
    return api.get(api.base + path, timeout=30, **kw)


@pytest.mark.parametrize("value", [
    "2011-13-45",                 # no month 13
    "2023-02-30",                 # no 30 February
    "2023-01-10T25:00",           # no hour 25
    "2023-01-10T10:00:61",        # no second 61
    "2023-01-10T10:00%2B25:00",   # zone beyond +14:00
    "gt2023-01-10T10:00%2B99:99",
])
def test_impossible_dates_are_400(api, hospital, value):
    pid = hospital.facts["first"]
    for path in (f"/Observation?patient={pid}&date={value}",
                 f"/Patient?birthdate={value}",
                 f"/Observation?patient={pid}&_lastUpdated={value}"):
        r = get(api, path)
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59%2B14:00", "9999", "9999-12", "0001-01-01",
                                   "le0001-01-01T00:00:00-12:00", "ge9999-12-31"])
def test_extreme_but_valid_dates_answer(api, hospital, value):
    pid = hospital.facts["first"]
    r = get(api, f"/Observation?patient={pid}&date={value}")
    assert r.status_code == 200, (value, r.text[:300])
    assert r.json()["resourceType"] == "Bundle"
