"""Japanese text helpers: search normalisation and mojibake signals.

Search keys fold what a clinician types on a phone onto what the storage holds: full/half width,
hiragana/katakana, separated voiced marks, the dash family, spaces.  Display text is never
normalised — only the keys we compare.
"""

from __future__ import annotations

import re
import unicodedata

from .memo import memo

_DASHES = re.compile("[\u2010-\u2015\u2212\u30fc\uff0d\uff70\u2500\u301c\uff5e-]")
_SPACES = re.compile(r"[\s\u3000]+")
_VOICED = str.maketrans({"\u309b": "\u3099", "\u309c": "\u309a"})


def hira_to_kata(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in text)


def search_key(text: str) -> str:
    """Normalise text for matching: NFKC, katakana, no spaces, one dash, upper-case Latin."""
    if not text:
        return ""
    text = text.translate(_VOICED)
    text = unicodedata.normalize("NFKC", text)
    text = hira_to_kata(text)
    text = _DASHES.sub("-", text)
    text = _SPACES.sub("", text)
    return text.upper()


# --- mojibake signals -----------------------------------------------------------------------------

_C1 = re.compile("[\u0080-\u009f]")
_HALF_KANA = re.compile("[\uff61-\uff9f]")
_PUA = re.compile("[\ue000-\uf8ff]")
# Characters that Shift_JIS bytes produce when read as Latin-1/CP1252 or as ISO-2022-JP pairs.
_LATIN_NOISE = re.compile("[\u00c0-\u00ff]{3,}")
# Kana and kanji: the characters whose mix tells real Japanese from bytes read with the wrong
# table (full-width digits and letters say nothing either way and are not counted).
_JAPANESE = re.compile("[\u3040-\u30ff\u4e00-\u9fff]")
_KANJI = re.compile("[\u4e00-\u9fff]")


@memo(8192)
def _rare_kanji(ch: str) -> bool:
    """JIS X 0208 level 2 (EUC-JP lead byte 0xD0-0xF4) or outside JIS X 0208 altogether.

    Unicode orders kanji by radical, not frequency (阿 部 都 野 are above U+8000), so the level is
    read from the JIS table: level 1 is the 2,965 everyday kanji names and addresses use."""
    try:
        b = ch.encode("euc_jp")
    except UnicodeEncodeError:
        return True
    return len(b) != 2 or b[0] >= 0xD0


_SUSPECT = re.compile("[\u0080-\u00ff\ufffd\uff61-\uff9f\ue000-\uf8ff]")


_HALF_KANA_RUN = re.compile("[\uff61-\uff9f]+")


def widen_kana(text: str) -> str:
    """Half-width katakana (JIS X 0201: ESC ( I, CP932 single bytes) as full-width, voiced marks
    joined (ｶﾞ -> ガ): SS-MIX2 allows only JIS X 0208, JP Core kana names are full-width, and
    the characters are compatibility equivalents — nothing is lost.  Other text is unchanged."""
    if _HALF_KANA.search(text) is None:
        return text
    return _HALF_KANA_RUN.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


def mojibake_signals(text: str, deep: bool = False) -> list[str]:
    """Plain-language reasons why decoded text looks garbled (empty when it looks fine).

    The cheap checks (one regex pass when the text is clean) run on every read; ``deep`` adds
    the statistical "implausible Japanese" check that the drill report runs.
    """
    if not _SUSPECT.search(text):
        return implausible_japanese(text) if deep else []
    signals: list[str] = []
    n = text.count("\ufffd")
    if n:
        signals.append(f"{n} U+FFFD replacement characters")
    if _C1.search(text):
        signals.append("C1 control characters (U+0080-U+009F): bytes decoded with the wrong table")
    m = _HALF_KANA.findall(text)
    if m:
        signals.append(f"{len(m)} half-width katakana, which SS-MIX2 does not allow")
    if _PUA.search(text):
        signals.append("private-use characters (外字) that no other system can display")
    if _LATIN_NOISE.search(text):
        signals.append("runs of accented Latin letters typical of Japanese bytes read as Latin-1")
    if deep:
        signals.extend(implausible_japanese(text))
    return signals


def implausible_japanese(text: str) -> list[str]:
    """Text that decodes but is mostly rare kanji is typical of bytes read with the wrong table."""
    jp = _JAPANESE.findall(text)
    if len(jp) >= 8:
        rare = sum(1 for ch in _KANJI.findall(text) if _rare_kanji(ch))
        if rare / len(jp) > 0.5:
            return ["implausible Japanese: mostly rare kanji, typical of a wrong decoder"]
    return []
