"""Decoding before splitting: every encoding real SS-MIX2 trees contain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.encoding import decode, encode_iso2022jp, is_cp932_only, strip_framing

MSH = "MSH|^~\\&|HIS|SEND|GW|RCV|20111220224447||ADT^A08^ADT_A01|1|P|2.5||||||~ISO IR87||ISO 2022-1994\r"


def test_ascii_only() -> None:
    d = decode(b"MSH|^~\\&|A\r")
    assert d.codec == "ascii" and d.text == "MSH|^~\\&|A" and d.declared_ok


def test_iso2022jp_kanji_and_kana() -> None:
    raw = encode_iso2022jp("PID|||9999013||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P\r")
    assert b"\x1b$B" in raw and raw.isascii()
    d = decode(raw)
    assert d.codec == "iso-2022-jp"
    assert "患者^太郎" in d.text and "カンジャ^タロウ" in d.text
    assert d.replaced == 0


@pytest.mark.parametrize("char", ["①", "㈱", "髙", "Ⅰ", "㍉", "∵"])
def test_windows_only_characters_cp50220(char: str) -> None:
    raw = encode_iso2022jp(f"NTE|1||{char}テスト\r")
    d = decode(raw)
    assert char in d.text
    if is_cp932_only(char):
        assert d.codec == "iso-2022-jp+cp932"


def test_cp50220_literal_bytes_from_reference() -> None:
    assert decode(b"\x1b$B-!\x1b(B").text == "①"


def test_esc_paren_j_keeps_backslash_and_tilde() -> None:
    raw = b"MSH|^~\\&|A\r\x1b(JPID|~x\\y\x1b(B\r" + encode_iso2022jp("患者")
    d = decode(raw)
    assert "PID|~x\\y" in d.text and "患者" in d.text


def test_esc_paren_i_half_width_kana() -> None:
    raw = b"A\x1b(I\x31\x32\x1b(B"  # ｱｲ in JIS X 0201 katakana
    d = decode(raw)
    assert d.text == "Aｱｲ"


@pytest.mark.parametrize("codec,name", [("cp932", "cp932"), ("utf-8", "utf-8"), ("euc_jp", "euc-jp")])
def test_files_in_other_encodings_claiming_ir87(codec: str, name: str) -> None:
    text = MSH + "PID|||1||山田^花子^^^^^L^I~ヤマダ^ハナコ^^^^^L^P\r"
    d = decode(text.encode(codec))
    assert d.codec == name
    assert "山田^花子" in d.text and "ヤマダ^ハナコ" in d.text
    assert not d.declared_ok


def test_cp932_windows_characters_in_shift_jis_file() -> None:
    d = decode("①髙橋㈱".encode("cp932"))
    assert d.text == "①髙橋㈱" and d.codec == "cp932"


def test_undecodable_bytes_are_counted_not_raised() -> None:
    d = decode(b"MSH|\x81\xff\xfe\x80\x85\xa0")
    assert d.codec == "cp932-replace" and d.replaced > 0


@pytest.mark.parametrize(
    "raw", [b"\x0bMSH|^~\\&|A\r\x1c", b"MSH|^~\\&|A\r\x1c\r", b"MSH|^~\\&|A\r\n\x1a", b"MSH|^~\\&|A"]
)
def test_framing_bytes_stripped(raw: bytes) -> None:
    assert strip_framing(raw) == b"MSH|^~\\&|A"


def test_wave_dash_family_folded_the_same_for_every_encoding() -> None:
    jis = decode(encode_iso2022jp("ソリタ－Ｔ３号〜")).text
    sjis = decode("ソリタ－Ｔ３号～".encode("cp932")).text
    utf = decode("ソリタ−Ｔ３号〜".encode("utf-8")).text
    assert jis == sjis == utf == "ソリタ－Ｔ３号～"


def test_python_iso2022jp_minus_folds_to_windows_form() -> None:
    # Python's codec maps JIS 0x215D to U+2212; CP932 maps the same pair to U+FF0D.
    assert decode(b"\x1b$B!]\x1b(B").text == "\uff0d"


# Text that an SS-MIX2 writer can legally put in a message (JIS X 0208 + ASCII).
_jis_chars = st.characters(
    codec="iso2022_jp", exclude_characters="\r\n\x1b\x0b\x1c\x1a\x00", min_codepoint=0x20
)


@given(st.text(alphabet=_jis_chars, min_size=0, max_size=60))
@settings(max_examples=300, deadline=None)
def test_property_iso2022jp_round_trip(text: str) -> None:
    from storage.encoding import WAVE_DASH_FOLD

    d = decode(encode_iso2022jp(text))
    assert d.replaced == 0
    expected = text.translate(WAVE_DASH_FOLD).replace("\u203e", "\uffe3").replace("\u00a5", "\uffe5")
    assert d.text == expected.strip("\r\n \t")


@given(st.text(alphabet=st.characters(codec="cp932", min_codepoint=0x80), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_property_cp932_text_never_garbled(text: str) -> None:
    from storage.encoding import WAVE_DASH_FOLD

    d = decode(text.encode("cp932"))
    assert d.replaced == 0
    # A short CP932 string can also be valid UTF-8 or EUC-JP; what matters is a lossless,
    # reported decode whenever the bytes are unambiguous CP932.
    if d.codec == "cp932":
        assert d.text == text.translate(WAVE_DASH_FOLD)
