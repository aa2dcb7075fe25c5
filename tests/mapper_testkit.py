"""Helpers shared by the mapper tests: build a stored-like message, map it, validate the output.

Messages are written as Python strings (one segment per line), encoded to ISO-2022-JP exactly
as a storage would hold them and read back through the real reader, so every test exercises
decoding + tokenizing + mapping.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from mappers import MapContext, map_message
from mappers.serialize import dumps, loads
from storage.encoding import encode_iso2022jp
from storage.names import parse_name
from storage.reader import read_bytes

FACILITY = "1312345678"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
GOLDEN = Path(__file__).resolve().parent / "golden"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
GUIDELINE_SAMPLES = SAMPLES / "ssmix2" / "nhoHQ__SSMIX2DataTestingTool" / "sampleData"


def garble(text: str, rnd: random.Random, replace: str, insert: str) -> str:
    """1-40 random edits (replace with a char of ``replace``, delete, insert one of ``insert``):
    the fuzz input of the never-raise tests.  Same ``rnd`` state, same result."""
    chars = list(text)
    for _ in range(rnd.randint(1, 40)):
        i = rnd.randrange(len(chars))
        op = rnd.random()
        if op < 0.4:
            chars[i] = rnd.choice(replace)
        elif op < 0.7:
            del chars[i]
        else:
            chars.insert(i, rnd.choice(insert))
    return "".join(chars)


def relpath_for(name: str) -> str:
    fn = parse_name(name)
    pid = fn.patient_id
    return f"{pid[:3]}/{pid[3:6]}/{pid}/{fn.date}/{fn.data_type}/{name}"


def map_text(text: str, name: str, version: int = 1) -> list[dict]:
    """Encode ``text`` (segments separated by newlines) as stored bytes, read and map it."""
    data = encode_iso2022jp("\r".join(line.strip() for line in text.strip().splitlines()) + "\r")
    return map_bytes(data, name, version)


def map_bytes(data: bytes, name: str, version: int = 1) -> list[dict]:
    rel = relpath_for(name)
    fn = parse_name(name)
    res = read_bytes(data, rel, fn)
    assert res.ok, res.problems
    return map_message(res.message, MapContext(FACILITY, rel, fn, version))


def validate(resources: list[dict]) -> None:
    """Every resource parses with the fhir.resources R4B model, has a valid id and meta."""
    for r in resources:
        assert FHIR_ID.match(r["id"]), r["id"]
        assert r["meta"]["source"], r
        assert r["meta"]["lastUpdated"].endswith("+09:00")
        cls = get_fhir_model_class(r["resourceType"])
        # round-trip through JSON so Decimal values are checked as the server sends them
        cls.model_validate(loads(dumps(r)))


def by_type(resources: list[dict], rtype: str) -> list[dict]:
    return [r for r in resources if r["resourceType"] == rtype]


def check_golden(name: str, resources: list[dict]) -> None:
    """Compare with tests/golden/<name>.json; UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / f"{name}.json"
    text = dumps(resources, pretty=True).decode() + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path.name} missing; create it with UPDATE_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), (
        f"{path.name} differs; rerun with UPDATE_GOLDEN=1 if the change is intended")


def sample_files(data_types: tuple[str, ...]) -> list[Path]:
    """Guideline sample files (nhoHQ SSMIX2DataTestingTool) of these data types, by file name."""
    if not GUIDELINE_SAMPLES.is_dir():
        import pytest

        pytest.skip(f"guideline samples not found at {GUIDELINE_SAMPLES}")
    out = []
    for f in sorted(GUIDELINE_SAMPLES.rglob("*")):
        if f.is_file():
            try:
                fn = parse_name(f.name)
            except ValueError:
                continue
            if fn.data_type in data_types:
                out.append(f)
    return out


def renamed(name: str, timestamp: str | None = None, flag: str | None = None) -> str:
    """The same record key with another 発生日時 / condition flag (an update or a deletion)."""
    fn = parse_name(name)
    return "_".join((fn.patient_id, fn.date, fn.data_type, fn.order_no,
                     timestamp or fn.timestamp, fn.department, flag or fn.flag))
