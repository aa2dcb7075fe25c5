"""Malformed ids on every type and operation of a real server: always a 4xx OperationOutcome,
never a 5xx (issue 10 item 6).  A few named cases, then a few thousand generated ids, each
percent-encoded byte by byte (NUL, backslashes, dots, undecodable bytes, 200-character ids ...)."""

from __future__ import annotations

import random
from urllib.parse import quote

import pytest

ROUTES = ["Patient/{}", "Patient/{}/_history", "Patient/{}/_history/1", "Patient/{}/$everything",
          "Patient/{}/Observation", "Patient/{}/Claim", "Patient/{}/Coverage", "Claim/{}",
          "Claim/{}/_history", "Claim/{}/_history/1", "Coverage/{}", "Coverage/{}/_history/1",
          "Observation/{}", "Observation/{}/_history", "Encounter/{}/_history/1",
          "DocumentReference/{}", "MedicationRequest/{}", "Patient/0000000100/_history/{}",
          "Claim?patient={}", "Coverage?patient={}", "Patient?_id={}", "Observation?patient={}",
          "Claim?_id={}"]
NAMED = [b"..\\etc", b"9999013\x00", b"\xff\xfe..", b"a" * 200, b"..", b".", b"../../etc/passwd",
         b"uke-", b"uke-1312345678-", b"uke-1312345678-" + b"1" * 40, b"0000000100.x",
         b"0000000100\x00", b"\xc0\xae\xc0\xae", b"\xe3\x81\x82", b"%", b"a b", b"-" * 64,
         b"0" * 65, b"uke-1312345678-h" + b"f" * 16 + b"\\"]


def generated(n: int, seed: int = 10) -> list[bytes]:
    rng = random.Random(seed)
    pieces = [b".", b"..", b"\\", b"/", b"\x00", b"\xff", b"\xfe", b"uke-", b"-", b"%", b"\n",
              b"0000000100", b"\xe3\x81", b" ", b"?", b"#", b"Patient/"]
    out = []
    for _ in range(n):
        size = rng.choice([1, 2, 3, 8, 20, 21, 63, 64, 65, 200])
        if rng.random() < 0.5:
            s = bytes(rng.randrange(256) for _ in range(size))
        else:
            s = b"".join(rng.choice(pieces) for _ in range(max(1, size // 4)))
        out.append(s)
    return out


def _check(api, path: str) -> None:
    r = api.get(f"{api.base}/{path}", timeout=30)
    assert r.status_code < 500, (path, r.status_code, r.text[:300])
    if r.status_code >= 400 and "fhir" in r.headers.get("Content-Type", ""):
        assert r.json()["resourceType"] == "OperationOutcome", path


@pytest.mark.parametrize("raw", NAMED, ids=[repr(x)[:30] for x in NAMED])
def test_named_malformed_ids_are_4xx_everywhere(api, raw: bytes) -> None:
    enc = quote(raw, safe="")
    for route in ROUTES:
        _check(api, route.format(enc))
    r = api.get(f"{api.base}/Patient/{enc}", timeout=30)
    assert 400 <= r.status_code < 500 and r.json()["resourceType"] == "OperationOutcome"


def test_thousands_of_generated_ids_never_5xx(api) -> None:
    rng = random.Random(11)
    ids = generated(2500)
    for raw in ids:
        route = rng.choice(ROUTES)
        _check(api, route.format(quote(raw, safe="")))
