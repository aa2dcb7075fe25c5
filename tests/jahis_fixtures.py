"""Hand-written messages for the fidelity cases of issue 10, modelled on the public JAHIS
処方・注射 / 臨床検査 データ交換規約 example messages (structure, code tables, typical values).

Each fixture is (file name, message text); :func:`encodings` gives the bytes a storage may
hold for it: ISO-2022-JP (the rule), UTF-8 and CP932 (what third-party writers produce; the
reader accepts them with a ``wrong-encoding`` warning).  Nothing here is copied from a sample.
"""

from __future__ import annotations

from storage.encoding import encode_iso2022jp

PID8 = "99990010"  # an 8-digit patient id (999/900/99990010/)

HEAD = ("MSH|^~\\&|JAHIS|SEND|GW|RCV|{ts}||{mtype}|{ts}01|P|2.5||||||~ISO IR87||ISO 2022-1994\r"
        "PID|0001||{pid}^^^^PI||処方^花子^^^^^L^I~ショホウ^ハナコ^^^^^L^P||19600101|F\r")
PV1_O = "PV1|0001|O|01^^^^^C||||110^医師^一郎^^^^^^^L^^^^^I|||01\r"
AL1 = ("AL1|1|DA|1149019F1^ロキソニン錠^YJ|SV|じんましん|20150401\r"
       "AL1|2|MA|99A001^造影剤以外の検査薬^99XA1|MO|悪心\r")
# ORC-1 NW, ORC-2 order, ORC-4 order_Rp, ORC-9 time, ORC-12 doctor, ORC-17 department,
# ORC-29 order type (checked by test_fixture_fields_are_where_they_belong)
ORC = ("ORC|NW|{order}||{order}_{rp}|||||20160825100000|||110^医師^一郎^^^^^^^L^^^^^I|||||"
       "01^内科^99XY1||||||||||||O^外来患者オーダ^HL70482\r")


def seg(sid: str, fields: dict[int, str]) -> str:
    """One segment from {field number: value}: no counting of bars by hand."""
    n = max(fields)
    return "|".join([sid] + [fields.get(i, "") for i in range(1, n + 1)]) + "\r"


def _msg(mtype: str, body: str, ts: str = "20160825100000", pid: str = PID8) -> str:
    return HEAD.format(ts=ts, mtype=mtype, pid=pid) + body


# 処方: weekday (月曜日、木曜日) and interval (隔日) schedules as further TQ1-3 repetitions, uneven
# dosing in RXE-7 repetitions, AL1 (one DA, one MA) and the height/weight OBX the dose uses.
OMP01_NAME = f"{PID8}_20160825_OMP-01_000000012345678_20160825100000000_01_1"
OMP01 = _msg("RDE^O11^RDE_O11", PV1_O + AL1
             + ORC.format(order="000000012345678", rp="01")
             + seg("RXE", {2: "620004524^メトトレキサート錠２ｍｇ^HOT", 3: "1", 5: "TAB^錠^MR9P",
                           10: "8", 11: "TAB^錠^MR9P", 19: "1^TAB&錠&MR9P", 21: "OHP^外来処方^MR9P"})
             + "TQ1|1||1011000400000000&内服・経口・１日１回朝食後&JAMISDP01~W0100100&月曜日、木曜日&JAMISDP01"
               "|||4^d|20160825\r"
             + "RXR|PO^口^HL70162\r"
             + "OBX|1|NM|9N001000000000001^身長^JC10||158.2|cm^cm^ISO+|||||F\r"
             + "OBX|2|NM|9N006000000000001^体重^JC10||52.5|kg^kg^ISO+|||||F\r"
             + ORC.format(order="000000012345678", rp="02")
             + seg("RXE", {2: "611170508^プレドニン錠５ｍｇ^HOT", 3: "4", 5: "TAB^錠^MR9P",
                           7: "^4錠~^2錠~^1錠", 10: "21", 11: "TAB^錠^MR9P", 19: "7^TAB&錠&MR9P",
                           21: "OHP^外来処方^MR9P"})
             + "TQ1|1||1011000400000000&内服・経口・１日１回朝食後&JAMISDP01~I1100000&隔日&JAMISDP01"
               "|||14^d|20160825\r"
             + "RXR|PO^口^HL70162\r")

# 注射: RXR-3 device, RXR-6 laterality, RXE-7 repetitions, coded and text-only RXC-7, and the
# body height / weight / surface area OBX a cytotoxic dose is computed from.
OMP02_NAME = f"{PID8}_20160825_OMP-02_000000012345679_20160825100000000_01_1"
OMP02 = _msg("RDE^O11^RDE_O11", PV1_O + AL1
             + ORC.format(order="000000012345679", rp="01")
             + seg("RXE", {2: "01^一般^JHSI0002", 3: "500", 5: "ML^mL^MR9P",
                           7: "^緩徐に静注^99IC6~^できるだけ太い静脈を使用^99IC6",
                           21: "IHP^入院処方^MR9P", 23: "102", 24: "ml/hr"})
             + "TQ1|1||||||201608251000|201608251500\r"
             + seg("RXR", {1: "IV^静脈内^HL70162", 2: "LA^左腕^HL70163", 3: "IVP^点滴ポンプ^HL70164",
                           6: "L^左^99RX6"})
             + "RXC|B|620007311^生理食塩液５００ｍＬ^HOT|500|ML^mL^MR9P||||\r"
             + seg("RXC", {1: "A", 2: "620000452^モルヒネ塩酸塩注射液１０ｍｇ^HOT", 3: "1",
                           4: "AMP^アンプル^MR9P", 7: "1^麻薬^JHSI0010"})
             + seg("RXC", {1: "A", 2: "622223301^ドセタキセル点滴静注液^HOT", 3: "60",
                           4: "MG^mg^MR9P", 7: "^劇薬~2^劇薬^JHSI0010"})
             + "OBX|1|NM|9N001000000000001^身長^JC10||158.2|cm^cm^ISO+|||||F\r"
             + "OBX|2|NM|9N006000000000001^体重^JC10||52.5|kg^kg^ISO+|||||F\r"
             + "OBX|3|NM|9N011000000000001^体表面積^JC10||1.52|m2^m2^ISO+|||||F\r")

# 臨床検査 results sent as ORU^R01 (JAHIS 臨床検査) under OML-11, with an unescaped '^' in OBX-6.
OML11_NAME = f"{PID8}_20160825_OML-11_000000012345680_20160825150000000_01_1"
OML11_ORU = _msg("ORU^R01^ORU_R01", PV1_O
                 + "ORC|SC|000000012345680|||CM||||20160825150000\r"
                 + seg("OBR", {1: "1", 2: "000000012345680", 4: "B001^血算^99O03", 7: "20160825090000",
                               22: "20160825150000", 25: "F"})
                 + "OBX|1|NM|2A990000001930101^白血球数^JC10||58|×10^2/μL|33-86||||F\r"
                 + "OBX|2|NM|2A030000001930101^血小板数^JC10||24.5|×10^4/μL|15.8-34.8||||F\r"
                 + "SPM|1|||019^全血^JC10|||||||||||||201608250900\r", ts="20160825150000")

# A vendor's ADT-12 (外来受付) that writes ADT^A01 into MSH-9.
ADT12_NAME = f"{PID8}_20160825_ADT-12_999999999999999_20160825090000000_01_1"
ADT12_A01 = _msg("ADT^A01^ADT_A01", "EVN||201608250900|||||201608250900\r"
                 + seg("PV1", {1: "0001", 2: "O", 3: "01^^^^^C", 7: "110^医師^一郎^^^^^^^L^^^^^I",
                               10: "01", 19: "V0001", 44: "201608250900"}),
                 ts="20160825090000")

# 検体検査オーダ with the patient's height / weight (eGFR, dosing) and an infection status as
# specimen-level OBX with values, the ordered items as value-less OBX (OBX-11 O), and an AL1.
OML01_NAME = f"{PID8}_20160825_OML-01_000000012345681_20160825100000000_01_1"
OML01 = _msg("OML^O33^OML_O33", PV1_O + "AL1|1|FA|J7FA0010^卵^99XA2|MO|じんましん\r"
             + "SPM|1|||023^血清^JC10|||||||||||||201608250900\r"
             + "OBX|1|NM|9N001000000000001^身長^JC10||158.2|cm^cm^ISO+|||||F\r"
             + "OBX|2|NM|9N006000000000001^体重^JC10||52.5|kg^kg^ISO+|||||F\r"
             + "OBX|3|CWE|5E071000002399811^HBs抗原^JC10||2^陰性^99I01||||||F\r"
             + seg("ORC", {1: "NW", 2: "000000012345681", 9: "20160825100000",
                           12: "110^医師^一郎^^^^^^^L^^^^^I", 17: "01^内科^99XY1",
                           29: "O^外来患者オーダ^HL70482"})
             + "TQ1|1||||||201608250900||R^^HL70485\r"
             + "OBR|1|000000012345681||E002^生化学的検査^99O03\r"
             + "OBX|1||3C015000002327101^クレアチニン^JC10||||||||O\r")

CASES = {OML01_NAME: OML01, OMP01_NAME: OMP01, OMP02_NAME: OMP02, OML11_NAME: OML11_ORU, ADT12_NAME: ADT12_A01}


def encodings(text: str) -> dict[str, bytes]:
    """The bytes of one message as ISO-2022-JP (+ 0x1C), UTF-8 and CP932."""
    return {"iso-2022-jp": encode_iso2022jp(text) + b"\x1c",
            "utf-8": text.encode("utf-8"),
            "cp932": text.encode("cp932")}


# 入院 (ADT-22) / 退院 (ADT-52) pairs: one by visit number with a death disposition, one without
# visit numbers (paired by admission time), a discharge that was cancelled (A13), an admission
# cancelled by its own record (A11), and a leave (ADT-31) ended by the return (ADT-32).
def _adt(dtype: str, mtype: str, day: str, order: str, pv1: dict[int, str], ts: str) -> tuple[str, str]:
    name = f"{PID8}_{day}_{dtype}_{order}_{ts}000_01_1"
    body = (f"EVN||{ts}|||||{ts}\r"
            + seg("PV1", {1: "0001", 2: "I", 3: "32^302^1^^^N", 7: "110^医師^一郎^^^^^^^L^^^^^I",
                          10: "01", **pv1}))
    return name, _msg(mtype, body, ts=ts)


ENCOUNTERS = [
    _adt("ADT-21", "ADT^A14^ADT_A05", "20160801", "999999999999999",
         {19: "V1001"}, "20160725100000"),
    _adt("ADT-21", "ADT^A14^ADT_A05", "20161201", "999999999999999",
         {19: "V1009"}, "20161125100000"),
    _adt("ADT-22", "ADT^A01^ADT_A01", "20160801", "999999999999999",
         {19: "V1001", 44: "201608011000"}, "20160801100000"),
    _adt("ADT-52", "ADT^A03^ADT_A03", "20160820", "999999999999999",
         {19: "V1001", 36: "20^死亡^HL70112", 44: "201608011000", 45: "201608201530"},
         "20160820153000"),
    _adt("ADT-22", "ADT^A01^ADT_A01", "20160901", "999999999999999",
         {44: "201609011000"}, "20160901100000"),
    _adt("ADT-52", "ADT^A03^ADT_A03", "20160910", "999999999999999",
         {44: "201609011000", 45: "201609101000", 36: "01^自宅^HL70112"}, "20160910100000"),
    _adt("ADT-22", "ADT^A01^ADT_A01", "20161001", "999999999999999",
         {19: "V1003", 44: "201610011000"}, "20161001100000"),
    _adt("ADT-52", "ADT^A13^ADT_A01", "20161005", "999999999999999",
         {19: "V1003", 44: "201610011000", 45: "201610051000"}, "20161005100000"),
    _adt("ADT-22", "ADT^A01^ADT_A01", "20161101", "999999999999999",
         {19: "V1004", 44: "201611011000"}, "20161101100000"),
    _adt("ADT-22", "ADT^A11^ADT_A09", "20161101", "000000000000002",
         {19: "V1004", 44: "201611011000"}, "20161101120000"),
    _adt("ADT-31", "ADT^A21^ADT_A21", "20160805", "999999999999999",
         {19: "V1001", 44: "201608011000"}, "20160805090000"),
    _adt("ADT-32", "ADT^A22^ADT_A21", "20160806", "999999999999999",
         {19: "V1001", 44: "201608011000"}, "20160806180000"),
]
