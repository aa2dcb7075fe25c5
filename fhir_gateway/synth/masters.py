"""Small 基本マスター files (支払基金 layout, CP932 CSV) for the codes the generator bills, so the
demo and the tests exercise ``fhir-gateway masters import`` exactly as with the official files.

Layout (0-based columns, as the official CSVs; the rest of each row is left empty):
医薬品 ``y``: 0 変更区分, 1 マスター種別 Y, 2 コード, 3/4 漢字有効桁数/漢字名称, 5/6 カナ, 7 単位コード,
8/9 単位漢字; 診療行為 ``s``: 2 コード, 3/4 省略漢字名称, 5/6 省略カナ, 7 データ規格コード, 8/9 データ規格名;
特定器材 ``t``: like 医薬品; 傷病名 ``b``: 2 コード, 3 移行先コード, 4/5 基本名称, 6/7 省略名称,
8/9 カナ, 10 病名管理番号; 修飾語 ``z``: 2 コード, 5/6 修飾語名称, 8/9 修飾語カナ名称.
"""

from __future__ import annotations

from pathlib import Path

from . import content as C

# widths of the official rows (2024 layouts); only the leading columns are filled
WIDTHS = {"Y": 42, "S": 150, "T": 41, "B": 27, "Z": 19}
FILES = {"Y": "y_ALL20260401.csv", "S": "s_ALL20260401.csv", "T": "t_ALL20260401.csv",
         "B": "b_ALL20260401.csv", "Z": "z_ALL20260401.csv"}
# 診療行為 the generator bills (its fee constants carry only code and points)
PROCEDURE_NAMES = {
    C.FEE_FIRST_VISIT[0]: "初診料", C.FEE_RETURN_VISIT[0]: "再診料",
    C.FEE_OUTPATIENT_MGMT[0]: "外来管理加算", C.FEE_PRESCRIPTION[0]: "処方料（その他）",
    C.FEE_DISPENSING[0]: "調剤料（内服薬・浸煎薬・屯服薬）", C.FEE_BLOOD_DRAW[0]: "Ｂ－Ｖ",
    C.FEE_LAB_JUDGEMENT[0]: "判生Ｉ", C.FEE_HEMATOLOGY[0]: "末梢血液一般",
    C.FEE_BIOCHEM[0]: "生化学的検査（１）（１０項目以上）", C.FEE_HBA1C[0]: "ＨｂＡ１ｃ",
    C.FEE_ADMISSION[0]: "急性期一般入院料１", C.FEE_INJECTION_IV[0]: "点滴注射",
    C.FEE_MEAL[0]: "入院時食事療養（１）", C.FEE_ECG[0]: "ＥＣＧ１２",
}
DEVICES = {"710010141": ("静脈留置針", "本")}


def _kana(name: str) -> str:
    return ""  # the synthetic hospital has no kana readings for its codes; the column stays empty


def _row(kind: str, values: dict[int, str]) -> list[str]:
    row = [""] * WIDTHS[kind]
    row[0], row[1] = "1", kind
    for i, v in values.items():
        row[i] = v
    return row


def catalogue() -> dict[str, list[list[str]]]:
    """Rows per master kind for every code the generator can bill."""
    rows: dict[str, list[list[str]]] = {k: [] for k in FILES}
    seen: set[tuple[str, str]] = set()

    def add(kind: str, code: str, values: dict[int, str]) -> None:
        if (kind, code) not in seen:
            seen.add((kind, code))
            rows[kind].append(_row(kind, {2: code, **values}))

    def named(name: str, unit: str = "") -> dict[int, str]:
        return {3: str(len(name)), 4: name, 5: "0", 6: _kana(name), 8: str(len(unit)), 9: unit}

    for d in C.DRUGS.values():
        add("Y", d.receipt, named(d.name, d.unit_name))
    for i in C.INJECTIONS.values():
        add("Y", i.receipt, named(i.name, i.unit_name))
    for _key, name, _hot, receipt, _lot in C.VACCINES:
        add("Y", receipt, named(name, "瓶"))
    for code, name in PROCEDURE_NAMES.items():
        add("S", code, named(name))
    for _jj, name, _mod, receipt, _pts in C.RADIOLOGY:
        add("S", receipt, named(name))
    for _code, name, receipt, _pts in C.ENDOSCOPY:
        add("S", receipt, named(name))
    for code, (name, unit) in DEVICES.items():
        add("T", code, named(name, unit))
    for dis in C.DISEASES.values():
        add("B", dis.receipt, {4: str(len(dis.name)), 5: dis.name, 6: str(len(dis.name)),
                               7: dis.name, 8: "0", 9: "", 10: dis.medis})
    add("Z", C.MODIFIER_SUSPECTED[0], {5: str(len(C.MODIFIER_SUSPECTED[1])),
                                        6: C.MODIFIER_SUSPECTED[1], 8: "0", 9: ""})
    return rows


def write_masters(folder: Path) -> list[Path]:
    """Write the five master files (CP932, CRLF, every field quoted) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for kind, rows in catalogue().items():
        path = folder / FILES[kind]
        text = "".join(",".join(f'"{v}"' for v in row) + "\r\n" for row in rows)
        path.write_bytes(text.encode("cp932"))
        out.append(path)
    return out
