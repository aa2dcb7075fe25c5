"""PPR-01 (PPR^ZD1) -> JP_Condition_Diagnosis; modelled on reference/ssmix2.md §5.3."""

from __future__ import annotations

import pytest

from mapper_testkit import check_golden, map_bytes, map_text, renamed, sample_files, validate
from mappers import terminology as term

NAME = "9999013_-_PPR-01_999999999999999_20111209163030000_01_1"
HEAD = r"""
MSH|^~\&|HIS123|SEND|GW|RCV|20111209163030||PPR^ZD1^PPR_ZD1|201112091630305|P|2.5||||||~ISO IR87||ISO2022-1994|SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO
PID|0001||9999013^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19650415|M
"""
GASTRITIS = r"""
PRB|AD|20110915|20054174^胃炎^MDCDX2|123456789012345|||20110831||20110915|K297^^I10^O^外来時^JHSD0004||||N^回復せず^HL70241|20110915|20110831|胃炎|1^主診断^JHSD0007|||||||V^非常に限定^HL70177
ZPR||20054174^胃炎^MDCDX2|||TSQF^胃炎^MDCDX2
ZI1|1|01^全国健康保険協会管掌健康保険^JHSD0001|1130012|全国健康保険協会東京支部||||||123456|11010203|20110901|20120831||13||SEL^本人^HL70063|19650415|^^^^1050001^^H^東京都港区虎ノ門１－１９－９||70
ORC|NW|123456789012345||||||||||110^医師^一郎^^^^^^^L^^^^^I~^イシ^イチロウ^^^^^^^L^^^^^P|||||01^内科^MML028||||||||||||O^外来患者オーダ^HL70482
"""
# suspected, with prefix/postfix modifiers, resolved (F), and a deleted diagnosis
MORE = r"""
PRB|AD|20111001|20063678^右急性肺炎疑い^MDCDX2|P-000002|||20111001||20111020|J189^^I10^H^入院時^JHSD0004|||1^疑いあり^JHSD0005|F^全治^HL70241|20111020|20110928||2^副診断^JHSD0007
ZPR|2054^右^MDCDX2|20063678^肺炎^MDCDX2|8002^疑い^MDCDX2|ABCD^右^MDCDX2|PNEU^肺炎^MDCDX2|EFGH^疑い^MDCDX2|入院時に診断
NTE|1||胸部Ｘ線で浸潤影
PRB|DE|20111105|20084317^未コード化病名^MDCDX2|P-000003|||20111101
"""


def _map(text: str, name: str = NAME):
    res = map_text(HEAD + text, name)
    validate(res)
    return res


def test_gastritis_sample_fields():
    (c,) = _map(GASTRITIS)
    assert c["id"] == "9999013.-.PPR-01.x.d.123456789012345"
    assert c["identifier"][0]["value"] == "123456789012345"
    codes = {(x["system"], x["code"]) for x in c["code"]["coding"]}
    assert (term.DISEASE_KEY_NUMBER, "20054174") in codes
    assert (term.CODE_SYSTEMS["I10"], "K297") in codes
    assert (term.DISEASE_EXCHANGE, "TSQF") in codes
    assert c["code"]["text"] == "胃炎"
    assert c["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert c["clinicalStatus"]["coding"][0]["code"] == "active"  # 転帰 N (not recovered)
    assert "abatementDateTime" not in c  # con-4: no abatement while active
    outcome = [e for e in c["extension"] if e["url"] == term.CONDITION_OUTCOME_EXT]
    assert outcome[0]["valueCodeableConcept"]["coding"][0]["code"] == "N"
    cats = [cat["coding"][0]["code"] for cat in c["category"]]
    assert cats == ["encounter-diagnosis", "O", "1"]
    assert c["recordedDate"] == "2011-08-31" and c["onsetDateTime"] == "2011-08-31"
    assert c["recorder"]["display"] == "医師 一郎"


def test_suspected_modifiers_resolved_and_deleted():
    suspected, deleted = _map(MORE)
    assert suspected["verificationStatus"]["coding"][0]["code"] == "unconfirmed"
    assert suspected["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert suspected["abatementDateTime"] == "2011-10-20"
    prefix = [e["valueCodeableConcept"] for e in suspected["extension"]
              if e["url"] == term.CONDITION_PREFIX_EXT]
    postfix = [e["valueCodeableConcept"] for e in suspected["extension"]
               if e["url"] == term.CONDITION_POSTFIX_EXT]
    assert [p["coding"][0]["code"] for p in prefix] == ["2054", "ABCD"]
    assert prefix[0]["coding"][0]["system"] == term.MODIFIER_KEY_NUMBER
    assert prefix[1]["coding"][0]["system"] == term.MODIFIER_EXCHANGE
    assert [p["coding"][0]["code"] for p in postfix] == ["8002", "EFGH"]
    assert suspected["code"]["text"] == "右急性肺炎疑い"
    assert [n["text"] for n in suspected["note"]] == ["入院時に診断", "胸部Ｘ線で浸潤影"]
    assert suspected["category"][-1]["coding"][0]["code"] == "2"
    assert deleted["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in deleted
    assert deleted["id"] == "9999013.-.PPR-01.x.d.P-000003"


def test_condition_id_survives_reordering_and_updates():
    first = {c["identifier"][0]["value"]: c["id"] for c in _map(GASTRITIS + MORE)}
    name2 = renamed(NAME, timestamp="20120101090000000")
    second = {c["identifier"][0]["value"]: c["id"] for c in _map(MORE + GASTRITIS, name2)}
    assert first == second


def test_prb_without_instance_id_uses_position():
    text = GASTRITIS.replace("|123456789012345|||20110831", "||||20110831", 1)
    (c,) = _map(text)
    assert c["id"] == "9999013.-.PPR-01.x.1"


def test_long_instance_id_is_hashed_but_stable():
    text = GASTRITIS.replace("123456789012345|||", "PROBLEM/2011/0915/000001|||", 1)
    a = _map(text)[0]["id"]
    b = _map(text, renamed(NAME, flag="2"))[0]["id"]
    assert a == b and a.startswith("9999013.-.PPR-01.x.d.k")


def test_guideline_sample_and_golden():
    files = sample_files(("PPR-01",))
    if not files:
        pytest.skip("no PPR-01 sample")
    res = map_bytes(files[0].read_bytes(), files[0].name)
    validate(res)
    check_golden("PPR-01", res)
