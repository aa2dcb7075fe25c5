"""Audit mode over every message the project has: the public samples (guideline tree, NHO
sample, JAHIS UTF-8 examples), the hand-written mapper test messages and the fidelity
fixtures.  Any non-empty component no mapper read and no NOT_MAPPED table explains fails."""

from __future__ import annotations


import pytest

from mappers import MapContext, MappingError
from mappers.audit import COMMON_NOT_MAPPED, audit_message
from storage.names import parse_name
from storage.reader import read_bytes
from tests import jahis_fixtures as J
from tests import test_mappers_adt, test_mappers_oml, test_mappers_omp, test_mappers_orders_omg, \
    test_mappers_ppr
from tests.mapper_testkit import FACILITY, SAMPLES
from tests.test_mapping_docs import INDEX, parse_tables

ACEDIA = SAMPLES / "ssmix2" / "Acedia-Belphegor__hl7v2-to-fhir" / "debug"
ACEDIA_NAMES = {
    "example_prescription.txt": "1000000001_20160825_OMP-01_12345678_20160821161523000_01_1",
    "example_injection.txt": "1000000001_20160701_OMP-02_123456789012345_20160821161523000_01_1",
    "example_inspection_result.txt": "1000000001_20160825_OML-11_12345678_20160821161523000_01_1",
}


def _sample_files() -> list[tuple[str, bytes, str]]:
    out = []
    for f in sorted((SAMPLES / "ssmix2").rglob("*")):
        if not f.is_file():
            continue
        try:
            parse_name(f.name)
        except ValueError:
            if f.name in ACEDIA_NAMES:
                data = f.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r") + b"\r"
                out.append((ACEDIA_NAMES[f.name], data, str(f)))
            continue
        out.append((f.name, f.read_bytes(), str(f)))
    return out


def _test_messages() -> list[tuple[str, bytes, str]]:
    """Every module-level (text, name) pair of the mapper tests, and the fidelity fixtures."""
    out = []
    for mod in (test_mappers_adt, test_mappers_oml, test_mappers_omp, test_mappers_orders_omg,
                test_mappers_ppr):
        names = {k[:-5]: v for k, v in vars(mod).items() if k.endswith("_NAME") and isinstance(v, str)}
        for key, value in vars(mod).items():
            if isinstance(value, str) and value.startswith("MSH|"):
                name = names.get(key) or names.get(key.split("_")[0])
                if name:
                    text = "\r".join(ln.strip() for ln in value.strip().splitlines()) + "\r"
                    out.append((name, J.encodings(text)["iso-2022-jp"], f"{mod.__name__}.{key}"))
    for name, text in list(J.CASES.items()) + J.ENCOUNTERS:
        for enc, data in J.encodings(text).items():
            out.append((name, data, f"jahis_fixtures {enc}"))
    return out


def _audit(name: str, data: bytes) -> list[str]:
    fn = parse_name(name)
    res = read_bytes(data, name, fn)
    if not res.ok:
        return []
    try:
        _out, unmapped = audit_message(res.message, MapContext(FACILITY, name, fn))
    except MappingError:
        return []
    return [u.reason() for u in unmapped]


def test_public_samples_have_no_unexplained_content() -> None:
    files = _sample_files()
    if not files:
        pytest.skip(f"samples not found at {SAMPLES}")
    found = {src: r for name, data, src in files if (r := _audit(name, data))}
    assert not found, found


def test_test_messages_have_no_unexplained_content() -> None:
    msgs = _test_messages()
    assert len(msgs) > 20
    found = {src: r for name, data, src in msgs if (r := _audit(name, data))}
    assert not found, found


def test_audit_finds_injected_content() -> None:
    """A field nobody maps, added to a fixture, is reported with its place and an excerpt."""
    text = J.OMP01.replace("RXR|PO^口^HL70162\r", "RXR|PO^口^HL70162|||||||||ZZZ^謎の値\r", 1)
    found = _audit(J.OMP01_NAME, J.encodings(text)["iso-2022-jp"])
    assert len(found) == 1 and "RXR-10" in found[0] and "謎の値" in found[0]
    extra_rep = J.OMP01.replace("&JAMISDP01|||4^d", "&JAMISDP01~|||4^d", 1)  # empty: nothing
    assert not _audit(J.OMP01_NAME, J.encodings(extra_rep)["iso-2022-jp"])


def test_common_not_mapped_table_is_documented() -> None:
    rows = parse_tables(INDEX.read_text(encoding="utf-8")).get(("Field", "Reason (every data type)"), [])
    assert rows == [tuple(r) for r in COMMON_NOT_MAPPED]


def render_common() -> str:
    """The table of docs/mapping.md (``UPDATE_DOCS=1`` rewrites it there)."""
    rows = [f"| {k} | {r.replace('|', chr(92) + '|')} |" for k, r in COMMON_NOT_MAPPED]
    return "\n".join(["| Field | Reason (every data type) |", "|---|---|", *rows])


def test_update_common_table() -> None:
    import os
    import re

    text = INDEX.read_text(encoding="utf-8")
    pattern = re.compile(r"\| Field \| Reason \(every data type\) \|\n(?:\|.*\|\n?)*")
    assert pattern.search(text), "docs/mapping.md has no common NOT_MAPPED table"
    if os.environ.get("UPDATE_DOCS") == "1":
        INDEX.write_text(pattern.sub(render_common() + "\n", text, count=1), encoding="utf-8")


def test_audit_mode_maps_exactly_like_the_request_path() -> None:
    """The recording accessors change nothing: same resources as map_message, also for
    garbled input (where both must fail alike)."""
    import random

    from mappers import map_message
    from mappers.serialize import dumps
    from storage.hl7 import parse
    from tests.mapper_testkit import garble

    msgs = _test_messages() + _sample_files()
    rnd = random.Random(10)
    checked = 0
    for name, data, _src in msgs:
        fn = parse_name(name)
        res = read_bytes(data, name, fn)
        if not res.ok:
            continue
        texts = [res.message.text] + [garble(res.message.text, rnd, "|^~&\\\r0123456789AZ", "|^&\r")
                                      for _ in range(3)]
        for text in texts:
            try:
                msg = parse(text)
            except ValueError:
                continue
            ctx = MapContext(FACILITY, name, fn)
            try:
                plain = dumps(map_message(msg, ctx))
            except MappingError as exc:
                plain = f"error {exc}".encode()
            try:
                audited = dumps(audit_message(parse(text), ctx)[0])
            except MappingError as exc:
                audited = f"error {exc}".encode()
            assert plain == audited, (name, text[:80])
            checked += 1
    assert checked > 100
