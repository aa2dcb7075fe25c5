"""Caches behind the mappers never leak state between calls.

The mappers memoise pure conversions (CodeableConcepts per coded field, coding-system URIs,
timestamps, units).  A cached *dict* handed out twice would let one caller's edit (a mapper
adding a display, a server adding an extension) show up in an unrelated resource, so this maps
every message twice, vandalises every dict and list of the first result, and checks the second
result is byte-identical to the first one as it was before the vandalism.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mappers import MapContext, MappingError, map_message
from mappers.serialize import dumps
from storage.encoding import decode
from storage.hl7 import parse
from storage.names import parse_name
from tests.mapper_testkit import FACILITY, map_text

_LAB = """
MSH|^~\\&|HIS|SEND|GW|RCV|20111220103059||OUL^R22^OUL_R22|1|P|2.5||||||~ISO IR87||ISO 2022-1994
PID|0001||1000001^^^^PI||患者^太郎^^^^^L^I||19700405|M
SPM|1|1||023^血清^JC10|||||||||||||201112191500
OBR|1|000000000000001||E001^生化学^99O03|||20111219||||||||||||||20111220103059
ORC|SC|000000000000001|||CM||||20111220103059
OBX|1|NM|3A010000002327101^総蛋白^JC10||7.2|g/dl^g/dl^99XYZ|6.70-8.3||||F
OBX|2|NM|3A010000002327101^総蛋白^JC10||9.1|g/dl^g/dl^99XYZ|6.70-8.3|H|||F
OBX|3|ST|3A015000002327101^アルブミン^JC10||> 100|mg/dl|<=5||||F
"""

_RX = """
MSH|^~\\&|HIS|SEND|GW|RCV|20111220103059||RDE^O11^RDE_O11|1|P|2.5||||||~ISO IR87||ISO 2022-1994
PID|0001||1000001^^^^PI||患者^太郎^^^^^L^I||19700405|M
PV1|0001|O|01^^^^^C
ORC|NW|000000000000002||1|||||20110701103045|||110^医師^一郎^^^^^^^L^^^^^I|||||01^内科^99XY1
RXE||108665201^ダーゼン錠（５mg)^HOT9|1||TAB^錠^MR9P|||||15|TAB^錠^MR9P||||||||3^TAB&錠&MR9P||OHP^外来処方^MR9P~OHI^院内処方^MR9P
TQ1|1||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||5^d|2011070100
RXR|PO^口^HL70162
ORC|NW|000000000000002||1|||||20110701103045|||110^医師^一郎^^^^^^^L^^^^^I|||||01^内科^99XY1
RXE||108665201^ダーゼン錠（５mg)^HOT9|1||TAB^錠^MR9P|||||15|TAB^錠^MR9P||||||||3^TAB&錠&MR9P||OHP^外来処方^MR9P~OHI^院内処方^MR9P
TQ1|1||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||5^d|2011070100
RXR|PO^口^HL70162
"""


def vandalise(x: object) -> None:
    """Change every dict and list reachable from ``x`` in place."""
    if isinstance(x, dict):
        for k in list(x):
            vandalise(x[k])
            if isinstance(x[k], str):
                x[k] += "!"
        x["vandalised"] = True
    elif isinstance(x, list):
        for v in x:
            vandalise(v)
        x.append("vandalised")


def _twice(map_once) -> None:
    first = map_once()
    before = dumps(first)
    vandalise(first)
    assert dumps(first) != before  # the vandalism reached the result
    assert dumps(map_once()) == before


@pytest.mark.parametrize("text,name", [
    (_LAB, "1000001_20111220_OML-11_000000000000001_20111220103059000_01_1"),
    (_RX, "1000001_20111220_OMP-01_000000000000002_20111220103059000_01_1"),
])
def test_handwritten_messages_map_the_same_after_mutating_a_result(text: str, name: str) -> None:
    _twice(lambda: map_text(text, name))


def test_every_synthetic_data_type_maps_the_same_after_mutating_a_result() -> None:
    try:
        from fhir_gateway.synth import Options, generate
    except ImportError:
        pytest.skip("fhir_gateway.synth is not available")
    with tempfile.TemporaryDirectory() as tmp:
        generate(Options(out=Path(tmp) / "store", patients=3, years=2, progress=False, workers=1))
        seen = set()
        for f in sorted((Path(tmp) / "store").rglob("*")):
            try:
                name = parse_name(f.name)
            except ValueError:
                continue
            if not f.is_file() or name.data_type in seen:
                continue
            seen.add(name.data_type)
            text = decode(f.read_bytes()).text
            ctx = MapContext(FACILITY, f.name, name)
            try:
                map_message(parse(text), ctx)
            except MappingError:
                continue
            _twice(lambda: map_message(parse(text), ctx))
        assert {"OMP-01", "OML-11"} <= seen


def _containers(x: object, seen: dict[int, str], path: str) -> list[str]:
    """Paths of dicts/lists reachable twice from ``x`` (one object shared by two places)."""
    shared = []
    if isinstance(x, (dict, list)):
        if id(x) in seen:
            return [f"{path} is {seen[id(x)]}"]
        seen[id(x)] = path
        items = x.items() if isinstance(x, dict) else enumerate(x)
        for k, v in items:
            shared += _containers(v, seen, f"{path}.{k}")
    return shared


# Several results of the same test item (same OBX-3/6/7/11) in one report, and in two reports:
# the per-item templates behind OML-11 must be copied into every Observation.
_LAB_REPEATS = _LAB.rstrip("\n") + """
OBX|4|NM|3A010000002327101^総蛋白^JC10||5.0|g/dl^g/dl^99XYZ|6.70-8.3||||F
OBX|5|CWE|5E071000002399811^HBs抗原^JC10||-^陰性^99XYZ||-||||F
OBR|2|000000000000001||E002^生化学2^99O03|||20111219||||||||||||||20111220103059
OBX|1|NM|3A010000002327101^総蛋白^JC10||7.2|g/dl^g/dl^99XYZ|6.70-8.3||||F
OBX|2|NM|3A010000002327101^総蛋白^JC10||6.0|g/dl^g/dl^99XYZ|6.70-8.3||||C
OBX|3|ST|3A015000002327101^アルブミン^JC10||> 100|mg/dl|<=5||||F
"""


def test_lab_observations_share_no_dict_or_list() -> None:
    name = "1000001_20111220_OML-11_000000000000001_20111220103059000_01_1"
    out = map_text(_LAB_REPEATS, name)
    observations = [r for r in out if r["resourceType"] == "Observation"]
    assert len(observations) == 8
    assert _containers(out, {}, "result") == []
    # vandalising one Observation leaves its siblings of the same test item alone
    before = [dumps(o) for o in observations]
    vandalise(observations[0])
    assert [dumps(o) for o in observations[1:]] == before[1:]
    _twice(lambda: map_text(_LAB_REPEATS, name))


def test_prescription_requests_share_no_dict_or_list() -> None:
    """Two identical RXE blocks: the cached categories, drug, dosage and doctor pieces are
    copied into each MedicationRequest."""
    out = map_text(_RX, "1000001_20111220_OMP-01_000000000000002_20111220103059000_01_1")
    assert len(out) == 2
    assert _containers(out, {}, "result") == []
    before = dumps(out[1])
    vandalise(out[0])
    assert dumps(out[1]) == before
