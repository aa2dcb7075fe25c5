"""The ER7 tokenizer: delimiters from MSH, escapes, Z-segments, HL7 numbering; checked against
python-hl7 on the same messages."""

from __future__ import annotations

from pathlib import Path

import hl7 as python_hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.encoding import decode
from storage.hl7 import Delimiters, HL7Error, parse, unescape

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "ssmix2"

ADT = (
    "MSH|^~\\&|HIS123|SEND|GW|RCV|20111220224447.3399||ADT^A08^ADT_A01|20111220000001|P|2.5"
    "||||||~ISO IR87||ISO 2022-1994\r"
    "EVN||201112202100|||||SEND001\r"
    "PID|0001||9999013||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M|||"
    "^^^^422-8033^JPN^H^静岡県静岡市登呂１－３－５\r"
    "OBX|1|NM|9N001000000000001^身長^JC10||167.8|cm^cm^ISO+|||||F\r"
    "ZPR|1|20054174||||TSQF|comment\r"
)


def test_numbering_follows_hl7_field_tables() -> None:
    msg = parse(ADT)
    pid = msg.segment("PID")
    assert pid is not None
    assert pid[3].component(1) == "9999013"
    assert pid[5].component(1) == "患者" and pid[5].component(2) == "太郎"
    assert [r.component(1) for r in pid[5].repetitions] == ["患者", "カンジャ"]
    assert pid[7].text == "19480405"
    assert pid[11].component(8) == "静岡県静岡市登呂１－３－５"
    assert msg.value("PID.5.2") == "太郎"
    assert msg.value("OBX.3.3") == "JC10"


def test_msh_special_fields() -> None:
    msg = parse(ADT)
    msh = msg["MSH"]
    assert msh.get(1) == "|" and msh.get(2) == "^~\\&"
    assert msh[3].text == "HIS123"
    assert msh[9].component(2) == "A08"
    assert msg.message_type == ("ADT", "A08", "ADT_A01")
    assert msh[18].repetitions[1].text == "ISO IR87"


def test_z_segments_are_kept() -> None:
    msg = parse(ADT)
    assert msg.segment_ids == ["MSH", "EVN", "PID", "OBX", "ZPR"]
    assert msg["ZPR"][6].text == "TSQF"


def test_missing_trailing_fields_are_empty_not_errors() -> None:
    msg = parse(ADT)
    evn = msg["EVN"]
    assert evn[40].text == "" and not evn[40] and evn[40].component(3) == ""
    assert msg["PV1"][3].text == ""  # absent segment reads as empty
    assert msg.segment("PV1") is None and msg.segments("PV1") == []


def test_custom_delimiters_from_msh() -> None:
    msg = parse("MSH#:*!@#A#B\rPID#1##123:^x*456:y##A@B:C")
    pid = msg["PID"]
    assert pid[3].component(1) == "123" and pid[3].component(2) == "^x"
    assert [r.component(1) for r in pid[3].repetitions] == ["123", "456"]
    assert pid[5].component(1) == "A" and pid[5].component(1, 2) == "B"


def test_msh2_without_escape_and_subcomponent_characters() -> None:
    msg = parse("MSH|^~|A\rPID|1||12^x&y~34||a\\b")
    pid = msg["PID"]
    assert pid[3].component(2) == "x&y" and pid[3].component(1, 1) == "12"
    assert pid[5].text == "a\\b" and pid[3].subcomponents(2) == ["x&y"]


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("a\\F\\b", "a|b"), ("a\\S\\b", "a^b"), ("a\\T\\b", "a&b"), ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"), ("line1\\.br\\line2", "line1\nline2"), ("\\H\\bold\\N\\", "bold"),
        ("\\X41\\", "A"), ("\\X4142\\", "AB"), ("trailing\\", "trailing\\"), ("\\Z12\\", "\\Z12\\"),
    ],
)
def test_escape_sequences(raw: str, expected: str) -> None:
    assert unescape(raw, Delimiters()) == expected


def test_escapes_resolved_in_components_only_after_splitting() -> None:
    msg = parse("MSH|^~\\&|A\rNTE|1||100\\S\\200\\F\\x^second")
    nte = msg["NTE"]
    assert nte[3].component(1) == "100^200|x" and nte[3].component(2) == "second"


def test_groups_split_at_head_segment() -> None:
    msg = parse("MSH|^~\\&|A\rPID|1\rORC|NW|1\rRXE|a\rTQ1|1\rORC|NW|2\rRXE|b\rRXR|PO")
    groups = msg.groups("ORC")
    assert [[s.id for s in g] for g in groups] == [["ORC", "RXE", "TQ1"], ["ORC", "RXE", "RXR"]]


@pytest.mark.parametrize("sep", ["\r", "\r\n", "\n"])
def test_segment_separators(sep: str) -> None:
    msg = parse(sep.join(["MSH|^~\\&|A", "PID|1||9", "PV1|1|O"]) + sep)
    assert msg.segment_ids == ["MSH", "PID", "PV1"]


@pytest.mark.parametrize("text", ["", "hello world", "PID|1||2", "MSH"])
def test_not_hl7(text: str) -> None:
    with pytest.raises(HL7Error):
        parse(text)


def _sample_messages() -> list[str]:
    if not SAMPLES.exists():
        pytest.skip(f"public samples not found at {SAMPLES}")
    out = []
    for p in sorted(SAMPLES.rglob("*")):
        if p.is_file() and not p.name.endswith((".md", ".json")) and p.stat().st_size:
            text = decode(p.read_bytes()).text
            if text.startswith("MSH"):
                out.append(text)
    return out


def test_cross_check_against_python_hl7_on_samples() -> None:
    messages = _sample_messages()
    assert len(messages) >= 20
    for text in messages:
        ours = parse(text)
        cr_text = "\r".join(seg.line for seg in ours)
        theirs = python_hl7.parse(cr_text)
        assert len(theirs) == len(ours)
        for seg, tseg in zip(ours, theirs):
            assert str(tseg[0]) == seg.id
            for n in range(1, len(seg) + 1):
                if seg.id == "MSH" and n <= 2:
                    continue
                t_field = str(tseg[n]) if n < len(tseg) else ""
                assert seg[n].raw == t_field, (seg.id, n)
                if seg[n].raw and "\\" not in seg[n].raw and n < len(tseg):
                    theirs_c1 = _first_component(tseg[n])
                    assert seg[n].component(1) == ("" if theirs_c1 == "\"\"" else theirs_c1), (seg.id, n)


def _first_component(value: object) -> str:
    """python-hl7 nests Field -> Repetition -> Component; plain strings stop the descent."""
    while not isinstance(value, str) and len(value) and not isinstance(value, python_hl7.Component):
        value = value[0]
    if isinstance(value, python_hl7.Component):
        value = value[0]
    return str(value)


_values = st.text(alphabet=st.characters(codec="iso2022_jp", exclude_characters="|^~\\&",
                                         exclude_categories=("Cc", "Cs")),
                  max_size=12)


@given(st.lists(st.lists(st.lists(_values, min_size=1, max_size=3), min_size=1, max_size=6),
                min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)
def test_property_encode_decode_tokenize(segments: list[list[list[str]]]) -> None:
    """Any message built from fields/components survives encoding, decoding and tokenizing."""
    from storage.encoding import encode_iso2022jp
    from storage.reader import read_bytes

    lines = ["MSH|^~\\&|GEN|F|GW|R|20240101||ZZZ^Z99|1|P|2.5||||||~ISO IR87||ISO 2022-1994"]
    for fields in segments:
        lines.append("ZXX|" + "|".join("^".join(c.strip() for c in comps) for comps in fields))
    raw = encode_iso2022jp("\r".join(lines) + "\r") + b"\x1c"
    msg = parse(decode(raw).text)
    zxx = msg.segments("ZXX")
    assert len(zxx) == len(segments)
    for seg, fields in zip(zxx, segments):
        for n, comps in enumerate(fields, start=1):
            for c, value in enumerate(comps, start=1):
                assert seg[n].component(c) == value.strip().translate(
                    __import__("storage.encoding", fromlist=["WAVE_DASH_FOLD"]).WAVE_DASH_FOLD
                ).replace("\u203e", "\uffe3").replace("\u00a5", "\uffe5")
    assert read_bytes(raw, "x").message is not None
