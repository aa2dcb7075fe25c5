"""Adversarial-but-legal vendor variants of real SS-MIX2 messages (issue 10, round 3).

Each variant rewrites one message the way some producer legitimately could — another byte
encoding (declared in MSH-18 or not), other segment terminators and framing, trailing empty
fields/components, HL7 escapes for ordinary characters, other encoding characters in MSH-1/2,
timestamps with seconds, fractions or a zone, extra vendor Z-segments — and says what the
gateway must do with it: ``same`` (map to exactly the resources of the original) or ``report``
(map what it can and report the rest with a reason).  The messages are the public samples, read
at test time (never copied into the repository)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from storage.encoding import decode, encode_iso2022jp

SAME, REPORT, CARRIED, MAPS = "same", "report", "carried", "maps"
# SAME: exactly the original's resources.  REPORT: the original's resources, and what the
# variant adds (``marker``) is in them or reported (unmapped content / a problem).  CARRIED:
# what the variant adds (``marker``) is in the resources, as written.  MAPS: the same resources
# (ids), without what a dropped optional segment said, and no error.
_TS = re.compile(r"^(\d{12}|\d{14})$")


@dataclass(frozen=True)
class Variant:
    name: str
    expect: str  # SAME or REPORT
    make: Callable[[str], bytes]  # canonical text (segments joined by CR) -> stored bytes
    why: str
    warnings: frozenset[str] = frozenset()  # problem kinds the variant may add (warnings only)
    same_instants: bool = False  # compare dateTimes as instants (".000" is no new content)
    needs: str = ""  # only messages holding this text (e.g. a segment to drop)
    marker: str = ""  # text the variant adds (REPORT, CARRIED)
    where: str = ""  # the field the marker is in ("PV2-3"): a NOT_MAPPED reason also reports it
    adds: frozenset[str] = frozenset()  # segment ids the variant adds (the drill may report them)
    rare: bool = False  # changes few messages (the generator guard asks for one)

    def applies(self, text: str) -> bool:
        """Whether the variant is meaningful for ``text``.  A bare segment id as the last line
        is indistinguishable from a cut when the final terminator is gone too (the reader's
        truncation rule): that sample is left out of ``no-final-terminator``."""
        if self.needs and self.needs not in text:
            return False
        last = text.rsplit("\r", 1)[-1]
        return not (self.name == "no-final-terminator" and "|" not in last)


def same_instants(dump: str) -> str:
    """``…:10.000+09:00`` -> ``…:10+09:00`` in a JSON dump."""
    return re.sub(r"(T\d\d:\d\d:\d\d)\.0+(?=[+\-Z\"])", r"\1", dump)


def canonical(data: bytes) -> str:
    """The decoded message, segments joined by CR, no final terminator."""
    text = decode(data).text
    segs = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    return "\r".join(segs)


def _segs(text: str) -> list[str]:
    return text.split("\r")


def _jis(text: str, end: str = "\r") -> bytes:
    return encode_iso2022jp(text + end)


def _set_msh(text: str, n: int, value: str) -> str:
    """MSH-n (n >= 3) set to ``value`` (fields added as needed)."""
    segs = _segs(text)
    f = segs[0].split("|")  # f[0] = "MSH", f[1] = MSH-2: MSH-n is f[n-1]
    while len(f) < n:
        f.append("")
    f[n - 1] = value
    segs[0] = "|".join(f)
    return "\r".join(segs)


def _map_fields(text: str, fn: Callable[[str, int, int], str]) -> str:
    """``fn(value, segment index, field number)`` applied to every field but MSH-1/2."""
    out = []
    for i, seg in enumerate(_segs(text)):
        f = seg.split("|")
        start = 2 if f[0] == "MSH" else 1
        for n in range(start, len(f)):
            number = n + 1 if f[0] == "MSH" else n
            f[n] = fn(f[n], i, number)
        out.append("|".join(f))
    return "\r".join(out)


def _trailing_components(value: str, _i: int, _n: int) -> str:
    if not value or "\\" in value:
        return value
    return "~".join(r + "^" if r and not r.endswith("^") else r for r in value.split("~"))


def _hex_escape_ascii(value: str, _i: int, _n: int) -> str:
    """'-' and '/' inside text (components holding non-ASCII) as \\X2D\\ / \\X2F\\."""
    if not any(ord(c) > 127 for c in value) or "\\" in value:
        return value
    return value.replace("-", "\\X2D\\").replace("/", "\\X2F\\")


def _hex_escape_utf8(value: str, _i: int, _n: int) -> str:
    """Every non-ASCII character as its UTF-8 bytes in \\Xhh..\\ (MSH-18 says UNICODE UTF-8)."""
    if "\\" in value:
        return value
    return re.sub(r"[^\x00-\x7f]+", lambda m: "\\X" + m.group().encode("utf-8").hex().upper() + "\\",
                  value)


def _seconds(value: str, _i: int, _n: int) -> str:
    """YYYYMMDDHHMM timestamps (a component of their own) with :00 seconds."""
    parts = value.split("^")
    return "^".join(p + "00" if re.fullmatch(r"(19|20)\d{10}", p) else p for p in parts)


def _zone(value: str, _i: int, _n: int) -> str:
    """YYYYMMDDHHMMSS timestamps with the storage's own zone written (+0900)."""
    parts = value.split("^")
    return "^".join(p + "+0900" if re.fullmatch(r"(19|20)\d{12}", p) else p for p in parts)


def _fraction(value: str, _i: int, _n: int) -> str:
    parts = value.split("^")
    return "^".join(p + ".000" if re.fullmatch(r"(19|20)\d{12}", p) else p for p in parts)


def _delimiters(text: str, new: str) -> str:
    """The whole message re-written with other encoding characters (``new`` = field, component,
    repetition, escape, subcomponent), only when none of them occurs in the message."""
    if any(c in text for c in new):
        raise ValueError("the new delimiters occur in the message")
    return text.translate(str.maketrans("|^~\\&", new))


def _halfwidth(text: str) -> str:
    """Full-width katakana of PID-5 (the kana name) as half-width (JIS X 0201)."""
    segs = _segs(text)
    for i, seg in enumerate(segs):
        if seg.startswith("PID|"):
            f = seg.split("|")
            if len(f) > 5:
                f[5] = "".join(_HALF.get(c, c) for c in f[5])
                segs[i] = "|".join(f)
    return "\r".join(segs)


# full-width katakana -> half-width (NFKC's inverse, for the kana that have one)
_HALF = {}
for _c in range(0xFF61, 0xFFA0):
    _full = unicodedata.normalize("NFKC", chr(_c))
    if len(_full) == 1:
        _HALF.setdefault(_full, chr(_c))
for _c in "ガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポヴ":
    _base = unicodedata.normalize("NFD", _c)
    if _base[0] in _HALF:
        _HALF[_c] = _HALF[_base[0]] + ("\uff9e" if _base[1] == "\u3099" else "\uff9f")


def _jis_halfwidth(text: str) -> bytes:
    """ISO-2022-JP with half-width kana as JIS X 0201 (ESC ( I), as a CP50221 writer does."""
    out = bytearray()
    for chunk in re.split(r"([\uff61-\uff9f]+)", text + "\r"):
        if not chunk:
            continue
        if "\uff61" <= chunk[0] <= "\uff9f":
            out += b"\x1b(I" + bytes(ord(c) - 0xFF61 + 0x21 for c in chunk) + b"\x1b(B"
        else:
            out += encode_iso2022jp(chunk)
    return bytes(out)


def _z_segment(text: str) -> str:
    segs = _segs(text)
    at = next((i + 1 for i, s in enumerate(segs) if s.startswith("PID|")), len(segs))
    segs.insert(at, "ZXX|1|ベンダー拡張情報|VENDOR-01")
    return "\r".join(segs)


ESCAPED = " A\\S\\B\\T\\C\\F\\D\\R\\E\\E\\"  # -> " A^B&C|D~E\\"


def _escaped_delimiters(text: str) -> str:
    """Every text OBX value (TX/ST/FT) with all five escaped delimiters appended."""
    out = []
    for seg in _segs(text):
        f = seg.split("|")
        if f[0] == "OBX" and len(f) > 5 and f[2] in ("TX", "FT") and f[5]:
            f[5] += ESCAPED
        out.append("|".join(f))
    return "\r".join(out)


def _nte_after_obx(text: str) -> str:
    out = []
    for seg in _segs(text):
        out.append(seg)
        if seg.startswith("OBX|"):
            out.append("NTE|1||検査コメント：再検済み")
    return "\r".join(out)


def _euc(text: str) -> bytes:
    try:
        return (text + "\r").encode("euc_jp")
    except UnicodeEncodeError:  # a CP932-only character (－ ①): EUC-JP cannot carry it
        raise ValueError("not encodable in EUC-JP") from None


def _per_char(data: bytes) -> bytes:
    out, kanji = bytearray(), False
    for part in re.split(rb"(\x1b\$B|\x1b\(B)", data):
        if part in (b"\x1b$B", b"\x1b(B"):
            kanji = part == b"\x1b$B"
        elif kanji:
            for j in range(0, len(part), 2):
                out += b"\x1b$B" + part[j:j + 2] + b"\x1b(B"
        else:
            out += part
    return bytes(out)


def _explicit_nulls(text: str) -> str:
    """Every empty field before a field with a value written as HL7's explicit null ``""``."""
    out = []
    for seg in _segs(text):
        f = seg.split("|")
        last = max((i for i, x in enumerate(f) if x), default=0)
        for i in range(3 if f[0] == "MSH" else 1, last):
            if not f[i]:
                f[i] = '""'
        out.append("|".join(f))
    return "\r".join(out)


def _optional_segments(text: str) -> str:
    """PD1 after PID, PV2 after PV1 and ROL after ORC, as some vendors write them."""
    out = []
    for seg in _segs(text):
        out.append(seg)
        if seg.startswith("PID|"):
            out.append("PD1|||登呂病院^^1234567")
        elif seg.startswith("PV1|"):
            out.append("PV2|||^入院目的テキスト")
        elif seg.startswith("ORC|"):
            out.append("ROL|1|AD|PP^主治医^HL70443|110^医師^一郎^^^^^^^L^^^^^I")
    return "\r".join(out)


def _msh9(text: str, fn: Callable[[list[str]], list[str]]) -> str:
    return _set_msh(text, 9, "^".join(fn(_segs(text)[0].split("|")[8].split("^"))))


def _name_in_one_component(text: str) -> str:
    """PID-5 (every repetition) written as ``姓　名`` in XPN.1, XPN.2 empty."""
    segs = _segs(text)
    for i, seg in enumerate(segs):
        f = seg.split("|")
        if f[0] == "PID" and len(f) > 5 and f[5]:
            reps = []
            for rep in f[5].split("~"):
                c = rep.split("^")
                if len(c) > 1 and c[0] and c[1]:
                    c[0], c[1] = c[0] + "\u3000" + c[1], ""
                reps.append("^".join(c))
            f[5] = "~".join(reps)
            segs[i] = "|".join(f)
    return "\r".join(segs)


def _drop(text: str, seg_id: str) -> str:
    segs = [s for s in _segs(text) if not s.startswith(seg_id + "|")]
    return "\r".join(segs)


VARIANTS: list[Variant] = [
    Variant("iso2022jp-cr", SAME, lambda t: _jis(t), "the guideline's own form"),
    Variant("lf", SAME, lambda t: _jis(t.replace("\r", "\n"), "\n"), "LF segment terminators",
            frozenset({"line-endings"})),
    Variant("crlf", SAME, lambda t: _jis(t.replace("\r", "\r\n"), "\r\n"), "CRLF terminators",
            frozenset({"line-endings"})),
    Variant("no-final-terminator", SAME, lambda t: _jis(t, ""), "last segment unterminated"),
    Variant("mllp-framing", SAME, lambda t: b"\x0b" + _jis(t) + b"\x1c\r", "MLLP start/end bytes"),
    Variant("utf8-declared", SAME, lambda t: (_set_msh(t, 18, "UNICODE UTF-8") + "\r").encode(),
            "UTF-8 declared in MSH-18", frozenset({"wrong-encoding"})),
    Variant("utf8-bom-undeclared", SAME, lambda t: b"\xef\xbb\xbf" + (t + "\r").encode(),
            "UTF-8 with a BOM, MSH-18 still ISO IR87", frozenset({"wrong-encoding"})),
    Variant("shift-jis-declared", SAME,
            lambda t: (_set_msh(t, 18, "SHIFT JIS") + "\r").encode("cp932"),
            "Shift_JIS declared in MSH-18", frozenset({"wrong-encoding"})),
    Variant("cp932-undeclared", SAME, lambda t: (t + "\r").encode("cp932"),
            "CP932 bytes, MSH-18 still ISO IR87", frozenset({"wrong-encoding"})),
    Variant("utf16-declared", SAME,
            lambda t: (_set_msh(t, 18, "UNICODE UTF-16") + "\r").encode("utf-16"),
            "UTF-16 with a BOM, declared in MSH-18", frozenset({"wrong-encoding"})),
    Variant("utf16le-no-bom", SAME,
            lambda t: (_set_msh(t, 18, "UNICODE UTF-16") + "\r").encode("utf-16-le"),
            "UTF-16 little-endian without a BOM", frozenset({"wrong-encoding"})),
    Variant("euc-jp", SAME, lambda t: _euc(t), "EUC-JP bytes (a Unix writer)",
            frozenset({"wrong-encoding"})),
    Variant("jis-1978-designation", SAME, lambda t: _jis(t).replace(b"\x1b$B", b"\x1b$@"),
            "kanji designated with ESC $ @ (JIS C 6226-1978)"),
    Variant("jis-roman-return", SAME, lambda t: _jis(t).replace(b"\x1b(B", b"\x1b(J"),
            "back to one byte with ESC ( J (JIS-Roman)"),
    Variant("escape-per-character", SAME, lambda t: _per_char(_jis(t)),
            "every kanji shifted in and out on its own"),
    Variant("no-ascii-shift-at-line-end", SAME, lambda t: _jis(t).replace(b"\x1b(B\r", b"\r"),
            "lines (the last one too) that end in kanji without ESC ( B",
            frozenset({"nonstandard-characters"}), rare=True),
    Variant("msh18-no-space", SAME, lambda t: _jis(_set_msh(t, 18, "~ISOIR87")),
            "~ISOIR87 / ISO2022-1994 spellings"),
    Variant("trailing-empty-fields", SAME,
            lambda t: _jis("\r".join(s + "|||" for s in _segs(t))), "trailing empty fields"),
    Variant("trailing-empty-components", SAME, lambda t: _jis(_map_fields(t, _trailing_components)),
            "a trailing empty component on every repetition"),
    Variant("hex-escape-ascii", SAME, lambda t: _jis(_map_fields(t, _hex_escape_ascii)),
            "'-' and '/' in Japanese text as \\Xhh\\"),
    Variant("hex-escape-utf8", SAME,
            lambda t: (_map_fields(_set_msh(t, 18, "UNICODE UTF-8"), _hex_escape_utf8)
                       + "\r").encode(), "Japanese text as UTF-8 \\Xhh..\\ escapes",
            frozenset({"wrong-encoding"})),
    Variant("other-delimiters", SAME, lambda t: _jis(_delimiters(t, "#$*/%")),
            "other encoding characters in MSH-1/2"),
    Variant("msh2-truncation-char", SAME,
            lambda t: _jis(t.replace("MSH|^~\\&|", "MSH|^~\\&#|", 1)),
            "a fifth encoding character (truncation, HL7 2.7+)"),
    Variant("timestamps-with-seconds", SAME, lambda t: _jis(_map_fields(t, _seconds)),
            "YYYYMMDDHHMM written with :00"),
    Variant("timestamps-with-zone", SAME, lambda t: _jis(_map_fields(t, _zone)),
            "timestamps with +0900 written"),
    Variant("timestamps-with-fraction", SAME, lambda t: _jis(_map_fields(t, _fraction)),
            "timestamps with .000", same_instants=True),
    Variant("halfwidth-kana", SAME, lambda t: _jis_halfwidth(_halfwidth(t)),
            "the kana name in half-width katakana (JIS X 0201)",
            frozenset({"nonstandard-characters", "mojibake"})),
    Variant("z-segment", REPORT, lambda t: _jis(_z_segment(t)),
            "a vendor Z-segment: reported as unmapped content, the rest maps",
            marker="ベンダー拡張情報", adds=frozenset({"ZXX"})),
    Variant("escaped-delimiters", CARRIED, lambda t: _jis(_escaped_delimiters(t)),
            "\\S\\ \\T\\ \\F\\ \\R\\ \\E\\ in text results: the literal characters",
            needs="|TX|", marker=" A^B&C|D~E\\"),
    Variant("nte-after-obx", REPORT, lambda t: _jis(_nte_after_obx(t)),
            "a comment (NTE) after every result: mapped as a note or reported",
            needs="\rOBX|", marker="再検済み", adds=frozenset({"NTE"})),
    Variant("msh9-without-structure", SAME, lambda t: _jis(_msh9(t, lambda c: c[:2])),
            "MSH-9 as ADT^A08 (no message structure component)"),
    Variant("msh9-own-structure", SAME,
            lambda t: _jis(_msh9(t, lambda c: c[:2] + ["_".join(c[:2])])),
            "MSH-9.3 named after the event (ADT_A08 for ADT_A01)", rare=True),
    Variant("msh12-2.5.1", SAME, lambda t: _jis(_set_msh(t, 12, "2.5.1")), "version 2.5.1"),
    Variant("name-in-one-component", SAME, lambda t: _jis(_name_in_one_component(t)),
            "the patient's name as 姓　名 in XPN.1 alone", needs="\rPID|"),
    Variant("explicit-nulls", SAME, lambda t: _jis(_explicit_nulls(t)),
            'empty fields written as HL7\'s explicit null ""'),
    Variant("optional-segments", REPORT, lambda t: _jis(_optional_segments(t)),
            "PD1, PV2 and ROL segments: mapped or reported", needs="\rPV1|",
            marker="入院目的テキスト", where="PV2-3", adds=frozenset({"PD1", "PV2", "ROL"})),
    Variant("no-pv1", MAPS, lambda t: _jis(_drop(t, "PV1")),
            "the optional PV1 absent (what it said is absent too)", needs="\rPV1|"),
    Variant("no-evn", REPORT, lambda t: _jis(_drop(t, "EVN")),
            "EVN absent (some vendors omit it): reported as a structure warning, mapped",
            frozenset({"structure"}), needs="\rEVN|"),
]


# -- UKE receipt files ------------------------------------------------------------------------

def _uke_trailing_comma(text: str) -> str:
    return "\n".join(line + "," if line else line for line in text.split("\n"))


def _cp932(text: str) -> bytes:
    try:
        return text.encode("cp932")
    except UnicodeEncodeError:
        raise ValueError("not encodable in CP932") from None


# name -> UTF-8 text of a receipt file -> bytes; every one must give the same Claims
UKE_VARIANTS: dict[str, Callable[[str], bytes]] = {
    "crlf": lambda t: t.replace("\r\n", "\n").replace("\n", "\r\n").encode(),
    "cp932": lambda t: _cp932(t.replace("\r\n", "\n").replace("\n", "\r\n")),
    "utf8-bom": lambda t: b"\xef\xbb\xbf" + t.encode(),
    "eof-1a": lambda t: t.encode() + b"\x1a",
    "trailing-comma": lambda t: _uke_trailing_comma(t).encode(),
    "no-final-newline": lambda t: t.rstrip("\r\n").encode(),
}
