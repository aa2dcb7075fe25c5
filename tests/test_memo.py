"""storage.memo: one cache decorator whose table-reading caches are emptied explicitly.

The mappers cache unit lookups (OBX-6 -> UCUM) per field text.  When the unit table changes
(``datatypes.add_ucum_units``) the next mapping must use the new table - no cache keyed on the
table's size, no stale answer.  Here through the real reader and mapper: a lab result whose
unit is unknown has no UCUM code; after the unit is added the same message maps with it.
"""

from __future__ import annotations

import pytest

from mappers import datatypes as dt
from storage import memo
from tests.mapper_testkit import map_text

_UNIT = "zzqunit/dl"  # a spelling no table has
_LAB = f"""
MSH|^~\\&|HIS|SEND|GW|RCV|20111220103059||OUL^R22^OUL_R22|1|P|2.5||||||~ISO IR87||ISO 2022-1994
PID|0001||1000001^^^^PI||患者^太郎^^^^^L^I||19700405|M
SPM|1|1||023^血清^JC10|||||||||||||201112191500
OBR|1|000000000000001||E001^生化学^99O03|||20111219||||||||||||||20111220103059
ORC|SC|000000000000001|||CM||||20111220103059
OBX|1|NM|3A010000002327101^総蛋白^JC10||7.2|{_UNIT}^{_UNIT}^99XYZ|6.70-8.3||||F
"""
_NAME = "1000001_20111220_OML-11_000000000000001_20111220103059000_01_1"


def _quantity() -> dict:
    obs = [r for r in map_text(_LAB, _NAME) if r["resourceType"] == "Observation"]
    assert len(obs) == 1
    return obs[0]["valueQuantity"]


@pytest.fixture
def restore_units():
    yield
    dt._UCUM.pop(_UNIT, None)  # noqa: SLF001 - the test's own addition, then the documented reset
    dt._UCUM.pop(_UNIT.upper(), None)  # noqa: SLF001
    memo.invalidate("ucum")


def test_added_unit_is_seen_by_the_next_mapping(restore_units) -> None:
    before = _quantity()
    assert before["unit"] == _UNIT and "code" not in before  # unknown: text only, never guessed
    assert dt.ucum(_UNIT.upper()) is None
    dt.add_ucum_units({_UNIT: "mg/dL"})
    after = _quantity()  # same message, same field texts: served from the caches unless emptied
    assert after["code"] == "mg/dL" and after["system"] == "http://unitsofmeasure.org"
    assert after["value"] == before["value"]
    assert dt.ucum(_UNIT.upper()) == "mg/dL"  # the folded (NFKC, lower-case) table was rebuilt
    dt.add_ucum_units({_UNIT: "g/dL"})  # a changed spelling, same table size
    assert _quantity()["code"] == "g/dL"


def test_the_unit_table_changes_only_through_add_ucum_units() -> None:
    with pytest.raises(TypeError):
        dt.UCUM_UNITS[_UNIT] = "mg/dL"  # type: ignore[index]


def test_invalidate_empties_exactly_the_caches_that_read_the_table() -> None:
    table = {"a": 1}
    calls: list[str] = []

    @memo.memo(8, reads="test-table")
    def look(key: str) -> int | None:
        calls.append(key)
        return table.get(key)

    @memo.memo(8)
    def unrelated(key: str) -> str:
        calls.append("u" + key)
        return key

    assert look("a") == 1 and unrelated("a") == "a"
    table["a"] = 2
    assert look("a") == 1  # cached: the table change alone is not seen
    assert memo.invalidate("test-table") == 1
    assert look("a") == 2
    assert unrelated("a") == "a"
    assert calls == ["a", "ua", "a"]  # the unrelated cache was kept
    assert memo.invalidate("no-such-table") == 0
