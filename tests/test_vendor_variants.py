"""Vendor-variation fidelity (issue 10, round 3): every public sample message rewritten in every
adversarial-but-legal way of :mod:`tests.variants` either maps to exactly what the original
maps to (no content lost, nothing unexplained, no mojibake, only the warnings the variation
itself deserves) or is reported with a reason — in process, and through ``fhir-gateway check``
and a real server over a tree that also holds files that are not SS-MIX2 at all."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import BIN, FACILITY, make_token
from mappers import MapContext, MappingError
from mappers.audit import audit_message, not_mapped
from storage.names import parse_name
from storage.reader import ERROR, read_bytes
from tests.test_audit_samples import _sample_files
from tests.variants import CARRIED, MAPS, REPORT, SAME, UKE_VARIANTS, VARIANTS, Variant, \
    canonical, same_instants

BY_NAME = {v.name: v for v in VARIANTS}
BASE = BY_NAME["iso2022jp-cr"]


def _map(name: str, data: bytes):
    """(resources, problems as (kind, severity, reason), unmapped reasons); resources None when
    the file is refused."""
    fn = parse_name(name)
    res = read_bytes(data, name, fn)
    probs = [(p.kind, p.severity, p.reason) for p in res.problems]
    if not res.ok or res.message is None:
        return None, probs, []
    try:
        out, unmapped = audit_message(res.message, MapContext(FACILITY, name, fn))
    except MappingError as exc:
        return None, probs + [("mapping-error", ERROR, str(exc))], []
    return out, probs, [u.reason() for u in unmapped]


def _dump(resources, v: Variant) -> str:
    text = json.dumps(resources, default=str, ensure_ascii=False, sort_keys=True)
    return same_instants(text) if v.same_instants else text


def _samples() -> list[tuple[str, str, str]]:
    """(file name, canonical text, source) of every sample the reader and mappers accept."""
    out = []
    for name, data, src in _sample_files():
        text = canonical(data)
        if _map(name, BASE.make(text))[0] is not None:
            out.append((name, text, src))
    return out


def check_variant(v: Variant, name: str, text: str) -> list[str]:
    """What is wrong with variant ``v`` of one message ([] = it holds)."""
    ref, ref_probs, ref_unmapped = _map(name, BASE.make(text))
    try:
        data = v.make(text)
    except ValueError:  # the variant cannot be written for this message (delimiters in use)
        return []
    try:
        out, probs, unmapped = _map(name, data)
    except Exception as exc:  # noqa: BLE001 - the finding is that it raised
        return [f"raised {exc!r}"]
    added = [p for p in probs if p not in ref_probs]
    bad = []
    if out is None:
        return [f"refused: {added}"]
    dump = _dump(out, v)
    for mark, what in (("\ufffd", "U+FFFD"), ("\x1b", "an escape byte"),
                       ("\\X", "a raw \\X escape"), ("\\S\\", "a raw \\S\\ escape")):
        if mark in dump and mark not in _dump(ref, v):
            bad.append(f"mojibake: {what} in the resources")
    if v.expect == SAME:
        if dump != _dump(ref, v):
            bad.append("resources differ from the original's")
        if unmapped != ref_unmapped:
            bad.append(f"unexplained content: {unmapped[:3]}")
    else:
        ids = [(r["resourceType"], r["id"]) for r in out]
        if ids != [(r["resourceType"], r["id"]) for r in ref]:
            bad.append(f"resources lost or added: {ids} vs the original's")
        carried = json.dumps(v.marker, ensure_ascii=False)[1:-1] in dump if v.marker else False
        reported = any(v.marker in x for x in unmapped + [p[2] for p in added]) if v.marker \
            else bool(added) or len(unmapped) > len(ref_unmapped)
        if v.where:  # a documented NOT_MAPPED reason for the field reports it too
            table = not_mapped(parse_name(name).data_type)
            reported = reported or v.where in table or v.where.split("-")[0] in table
        if v.expect == CARRIED and not carried:
            bad.append(f"{v.marker!r} is not in the resources")
        if v.expect == REPORT and not (carried or reported):
            bad.append("the variation is neither mapped nor reported")
    for kind, severity, reason in added:
        if severity == ERROR or kind not in v.warnings:
            if not (v.expect in (REPORT, MAPS) and severity != ERROR):
                bad.append(f"new problem {kind} ({severity}): {reason}")
        if not reason:
            bad.append(f"problem {kind} without a reason")
    return bad


@pytest.fixture(scope="module")
def samples():
    found = _samples()
    if not found:
        pytest.skip("public samples not found")
    return found


@pytest.mark.parametrize("variant", [v.name for v in VARIANTS])
def test_variant_maps_like_the_original_or_is_reported(samples, variant: str) -> None:
    v = BY_NAME[variant]
    failures = {src: bad for name, text, src in samples
                if v.applies(text) and (bad := check_variant(v, name, text))}
    assert not failures, json.dumps(failures, ensure_ascii=False, indent=1)[:3000]


def test_the_variants_are_real_rewrites(samples) -> None:
    """Guards the generator: each variant changes the bytes of most messages."""
    for v in VARIANTS[1:]:
        changed, applies = 0, [t for _n, t, _s in samples if v.applies(t)]
        for text in applies:
            try:
                changed += v.make(text) != BASE.make(text)
            except ValueError:
                continue
        assert applies and changed >= (1 if v.rare else len(applies) // 3), \
            f"{v.name} changes {changed} of {len(applies)}"


# -- through the CLI and a real server -------------------------------------------------------


def _renamed(name: str, text: str, pid: str) -> tuple[str, str]:
    """The message as patient ``pid``'s (file name and PID-3)."""
    fn = parse_name(name)
    segs = text.split("\r")
    for i, seg in enumerate(segs):
        if seg.startswith("PID|"):
            f = seg.split("|")
            if len(f) > 3:
                f[3] = f[3].replace(fn.patient_id, pid)
            segs[i] = "|".join(f)
    return pid + name[len(fn.patient_id):], "\r".join(segs)


def _place(root, name: str, data: bytes) -> None:
    fn = parse_name(name)
    pid = fn.patient_id
    folder = root / pid[:3] / pid[3:6] / pid / fn.date / fn.data_type
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, samples, server_factory):
    """One patient per (variant, data type): the first sample of each data type, renamed."""
    base = tmp_path_factory.mktemp("variants")
    root = base / "ssmix2"
    picked: dict[str, tuple[str, str]] = {}
    for name, text, _src in samples:
        picked.setdefault(parse_name(name).data_type, (name, text))
    patients: dict[str, tuple[str, str]] = {}  # pid -> (variant, data type)
    for vi, v in enumerate(VARIANTS):
        for di, (dtype, (name, text)) in enumerate(sorted(picked.items())):
            if not v.applies(text):
                continue
            pid = f"8{vi:02d}{di:02d}01"
            new_name, new_text = _renamed(name, text, pid)
            try:
                data = v.make(new_text)
            except ValueError:
                continue
            _place(root, new_name, data)
            patients[pid] = (v.name, dtype)
    # files that are not SS-MIX2 messages at all, where real trees have them
    some = next(iter(patients))
    folder = root / some[:3] / some[3:6] / some
    (root / "README.txt").write_text("SS-MIX2 標準化ストレージ\n", encoding="utf-8")
    (folder / "desktop.ini").write_bytes(b"[.ShellClassInfo]\r\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # hidden: skipped by design
    dated = next(p for p in folder.iterdir() if p.is_dir())
    dtype_dir = next(p for p in dated.iterdir() if p.is_dir())
    (dtype_dir / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (dtype_dir / f"{some}_{dated.name}_{dtype_dir.name}_000000000000001_20200101000000000_01_1"
     ).write_bytes(b"")
    (dtype_dir / "backup").mkdir()
    receipts = base / "receipts"  # every receipt-file variant of the dental and a medical sample
    receipts.mkdir()
    uke = [f for f in sorted(UKE_SAMPLES.rglob("*.csv")) if f.name in ("shika_shaho.csv", "01.csv")]
    for f in uke:
        for vname, make in UKE_VARIANTS.items():
            try:
                (receipts / f"{f.stem}_{vname}.UKE").write_bytes(make(f.read_text("utf-8")))
            except ValueError:
                continue
    data_dir = base / "data"
    config = base / "gateway.toml"
    config.write_text(f'data_dir = "{data_dir}"\n\n[[facility]]\ncode = "{FACILITY}"\n'
                      f'name = "変種病院"\nstorage = ["{root}"]\nreceipts = ["{receipts}"]\n',
                      encoding="utf-8")
    srv = server_factory(["--config", str(config)], token=make_token(data_dir))
    return config, srv, patients, picked


def test_check_reports_every_file_it_cannot_map_with_a_reason(tree) -> None:
    config, _srv, patients, _picked = tree
    res = subprocess.run([str(BIN / "fhir-gateway"), "check", "--config", str(config), "--json"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode in (0, 1), res.stderr
    report = json.loads(res.stdout)
    text = json.dumps(report, ensure_ascii=False)
    for extra in ("README.txt", "desktop.ini", "Thumbs.db", "backup", "000000000000001"):
        assert extra in text, f"{extra} is not reported"
    assert "\ufffd" not in text
    problems = [p for p in _problems(report)]
    assert problems and all(p.get("reason") or p.get("message") for p in problems)
    unmapped = [f["unmapped_content"] for f in report["facilities"]]  # {data type: {field: n}}
    fields = {field for u in unmapped for per_type in u.values() for field in per_type}
    zx = [pid for pid, (v, _d) in patients.items() if v == "z-segment"]
    assert zx and {"ZXX-2", "ZXX-3"} <= fields, "the vendor Z-segment is not reported"
    # nothing else unexplained than what the variants add (the Z-segment, segments some types
    # do not map)
    added = {seg for v in VARIANTS for seg in v.adds}
    assert {f.split("-")[0] for f in fields} <= added, fields


def _problems(node):
    if isinstance(node, dict):
        if "kind" in node and ("reason" in node or "message" in node):
            yield node
        for v in node.values():
            yield from _problems(v)
    elif isinstance(node, list):
        for v in node:
            yield from _problems(v)


def test_server_serves_every_variant_like_the_original(tree) -> None:
    _config, srv, patients, _picked = tree
    by_dtype: dict[str, dict[str, str]] = {}
    for pid, (vname, dtype) in patients.items():
        by_dtype.setdefault(dtype, {})[vname] = pid
    assert requests.get(f"{srv.base}/Patient", headers=srv.headers, timeout=60).status_code == 200
    for dtype, pids in sorted(by_dtype.items()):
        ref_pid = pids["iso2022jp-cr"]
        ref = _everything(srv, ref_pid)
        for vname, pid in pids.items():
            v = BY_NAME[vname]
            got = _everything(srv, pid)
            assert "\ufffd" not in got and "\\X" not in got, (vname, dtype)
            if v.expect == SAME:
                same = got.replace(f"{pid[:3]}/{pid[3:6]}/{pid}",
                                   f"{ref_pid[:3]}/{ref_pid[3:6]}/{ref_pid}").replace(pid, ref_pid)
                assert _dump(json.loads(same), v) == _dump(json.loads(ref), v), (vname, dtype)


def test_server_serves_every_receipt_variant(tree) -> None:
    config, srv, _patients, _picked = tree
    folder = Path(str(config)).parent / "receipts"
    expected = 0
    for f in folder.iterdir():
        from storage.uke import read_uke
        expected += len(read_uke(f.read_bytes(), f.name).receipts)
    assert expected > 0
    claims, url = [], f"{srv.base}/Claim?_count=500"
    while url:
        r = requests.get(url, headers=srv.headers, timeout=120)
        assert r.status_code == 200, r.text[:300]
        b = r.json()
        claims += [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((lk["url"] for lk in b["link"] if lk["relation"] == "next"), None)
    assert len(claims) == expected
    text = json.dumps(claims, ensure_ascii=False)
    assert "\ufffd" not in text
    by_file: dict[str, list] = {}
    for c in claims:  # every variant file's Claims are the same, but for where they came from
        src = c["meta"]["source"].rsplit("/", 1)[-1]
        stem = src.split("_")[0] if not src.startswith("shika") else "shika_shaho"
        body = json.dumps(c.get("item"), ensure_ascii=False, sort_keys=True)
        by_file.setdefault(stem, []).append((src, body))
    for stem, rows in by_file.items():
        per_src: dict[str, list[str]] = {}
        for src, body in rows:
            per_src.setdefault(src, []).append(body)
        assert len({tuple(sorted(v)) for v in per_src.values()}) == 1, stem


def _everything(srv, pid: str) -> str:
    r = requests.get(f"{srv.base}/Patient/{pid}/$everything", params={"_count": "1000"},
                     headers=srv.headers, timeout=120)
    assert r.status_code == 200, (pid, r.text[:300])
    b = r.json()
    keep = [e["resource"] for e in b.get("entry", []) if e.get("search", {}).get("mode") == "match"]
    for res in keep:
        res.get("meta", {}).pop("lastUpdated", None)  # the file's mtime
    return json.dumps(sorted(keep, key=lambda r: (r["resourceType"], r["id"])),
                      ensure_ascii=False, sort_keys=True)


# -- UKE receipt files -----------------------------------------------------------------------

UKE_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "receipt"


def _claims(data: bytes, name: str) -> tuple[str, list]:
    from mappers.claim import ClaimContext, map_receipt
    from storage.uke import read_uke
    uf = read_uke(data, name)
    out = [map_receipt(r, ClaimContext(FACILITY, f"{name}.UKE", None,
                                       "2020-01-01T00:00:00+09:00", uf.ir)) for r in uf.receipts]
    return json.dumps(out, default=str, ensure_ascii=False, sort_keys=True), \
        [(p.kind, p.reason) for p in uf.problems]


@pytest.mark.parametrize("variant", list(UKE_VARIANTS))
def test_receipt_variant_gives_the_same_claims(variant: str) -> None:
    files = sorted(UKE_SAMPLES.rglob("*.csv"))
    if not files:
        pytest.skip("receipt samples not found")
    failures = {}
    for f in files:
        text = f.read_bytes().decode("utf-8")
        ref, ref_probs = _claims(text.encode(), f.stem)
        try:
            data = UKE_VARIANTS[variant](text)
        except ValueError:
            continue
        got, probs = _claims(data, f.stem)
        if got != ref or [p for p in probs if p not in ref_probs]:
            failures[f.name] = [p for p in probs if p not in ref_probs][:3] or "Claims differ"
    assert not failures, failures
