"""Issue 13: each finding of the outside attack, reproduced against a real ``fhir-gateway serve``
over HTTP (accounts made with the CLI, the 合言葉 and the switch set through the admin page), and
required to stay closed.  Test names carry the finding's label (H1, H2, M4, 11.9 …)."""

from __future__ import annotations

import base64
import os
import resource
import time

import pytest
import requests

from conftest import FACILITY, PEOPLE, _msg, _pid_seg, _write, build_hospital, make_token
from fhir_gateway.memos import MemoJournal
from test_acceptance_viewer import Viewer, add_user

PASSPHRASE = "ume-no-hana-2026"
CHART = "0000000501"      # lab values that used to hang the trend chart (H1)
HUGE = "9" * 400


def _lab(root, pid: str, day: str, order: int, code: str, value: str) -> None:
    o = f"{order:015d}"
    _write(root, pid, day, "OML-11", o, f"{day}120000000", "1", _msg(
        "OUL^R22^OUL_R22", f"{day}120000",
        [_pid_seg(pid, PEOPLE[0]), "PV1|0001|O|01^^^^^C",
         f"SPM|1|{o}||023^血清^JC10|||||||||||||{day}0900",
         f"OBR|1|{o}|{o}|E001^血液学的検査^99O03|||{day}|{day}",
         f"ORC|SC|{o}|{o}||CM||||{day}1200",
         f"OBX|1|NM|{code}^試験{code[-3:]}^JC10||{value}|mg/dl^mg/dl^99XYZ|1.0-9.0||||F|||{day}0900"]))


def setup_site(base, server_factory, **server_kw):
    h = build_hospital(base, n_patients=2)
    for i, (a, b) in enumerate((("10000000000000000", "10000000000000002"),
                                ("5.5", "5.500000000000001"), (HUGE, "1"))):
        code = f"3A9{i:02d}000002327101"
        _lab(h.root, CHART, "20230110", 7000 + 2 * i, code, a)
        _lab(h.root, CHART, "20230210", 7001 + 2 * i, code, b)
    for name in ("naika", "geka"):
        add_user(h.data_dir, name, "viewer")
    add_user(h.data_dir, "boss", "hospital-admin", "--facility", FACILITY)
    token = make_token(h.data_dir)
    srv = server_factory(["--config", str(h.config)], token=token, **server_kw)
    admin = Viewer(srv.url)
    assert admin.login("boss").status_code == 302
    assert admin.post(f"/admin/{FACILITY}", {"op": "passphrase", "new": PASSPHRASE,
                                             "again": PASSPHRASE}).status_code == 200
    assert admin.post(f"/admin/{FACILITY}", {"op": "connect", "reason": "訓練",
                                             "hours": "24"}).status_code == 200
    return h, srv


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_factory):
    return setup_site(tmp_path_factory.mktemp("attack"), server_factory)


def viewer(srv, user: str = "naika", staff_no: str = "A123", person: str = "山田 花子") -> Viewer:
    v = Viewer(srv.url)
    assert v.login(user, person=person, staff_no=staff_no).status_code == 302
    assert v.unlock(passphrase=PASSPHRASE).status_code == 302
    return v


# -- H1: the trend chart ------------------------------------------------------------------------


def test_h1_labs_page_with_values_below_float_precision_answers(site):
    """Two OBX values 1e16 and 1e16+2 (and 5.5 / 5.500000000000001) hung a worker in the tick
    loop; a 400-digit value was a 500 (OverflowError).  Now the page answers, quickly."""
    _, srv = site
    v = viewer(srv)
    t0 = time.monotonic()
    r = v.get(f"/f/{FACILITY}/p/{CHART}/labs")
    assert r.status_code == 200, r.text[:300]
    assert time.monotonic() - t0 < 10
    assert HUGE in r.text                     # the huge number is shown, as text
    assert r.text.count('<svg class="trend"') >= 2


def test_h1_tick_generation_is_bounded_for_any_float():
    from hypothesis import given, settings, strategies as st
    from fhir_gateway.viewer.charts import MAX_TICKS, _nice_ticks

    @settings(max_examples=400, deadline=1000)
    @given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True,
                                                                     allow_infinity=True))
    def check(a, b):
        ticks = _nice_ticks(min(a, b), max(a, b))
        assert len(ticks) <= MAX_TICKS + 2

    check()
    assert _nice_ticks(1e16, 1e16 + 2) and _nice_ticks(5.5, 5.500000000000001)


# -- H2: a memo on a full disk -------------------------------------------------------------------


def _memo_post(v: Viewer, pid: str, text: str, **extra):
    page = v.s.get(f"{v.url}/f/{FACILITY}/p/{pid}/memos", timeout=30)
    from test_acceptance_viewer import tok
    return v.s.post(f"{v.url}/f/{FACILITY}/p/{pid}/memos", allow_redirects=False, timeout=30,
                    data={"csrf_token": tok(page.text), "text": text, **extra})


def _audit_actions(data_dir, action: str) -> list[str]:
    from fhir_gateway.accounts import AccountStore
    return [r["outcome"] for r in AccountStore(data_dir).audit_rows(1000) if r["action"] == action]


LIMIT = 1 << 20


def _fsize_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_h2_memo_on_a_full_disk_is_refused_keeping_the_text(tmp_path, server_factory):
    """RLIMIT_FSIZE makes the journal's next write short, then EFBIG — what a nearly full disk
    does.  It used to answer 302, audit ``memo-create ok`` and leave a torn line."""
    h, srv = setup_site(tmp_path, server_factory, preexec_fn=_fsize_limit)
    pid = h.patients[0]
    j = MemoJournal(h.data_dir)
    while not j.path(FACILITY).exists() or j.path(FACILITY).stat().st_size < LIMIT - 5000:
        j.append(FACILITY, h.patients[1], "埋め草 " + "x" * 3900, author="filler")
    while j.path(FACILITY).stat().st_size < LIMIT - 300:
        j.append(FACILITY, h.patients[1], "埋め草", author="filler")
    before = j.path(FACILITY).read_bytes()
    v = viewer(srv)
    text = "ワーファリン内服中と家族より聴取 " + "y" * 400
    r = _memo_post(v, pid, text)
    assert r.status_code == 503, r.status_code
    assert "保存されていません" in r.text and "y" * 400 in r.text   # the typed text is kept
    assert j.path(FACILITY).read_bytes() == before                 # no torn bytes left
    assert "ワーファリン" not in v.get(f"/f/{FACILITY}/p/{pid}/memos").text.split("</textarea>")[1]
    assert "ok" not in _audit_actions(h.data_dir, "memo-create")
    assert "failed" in _audit_actions(h.data_dir, "memo-create")
    assert j.verify(FACILITY)[0]


def test_h2_unwritable_memo_directory_is_refused_keeping_the_text(site):
    h, srv = site
    memos = h.data_dir / "memos"
    backup = None
    if memos.exists():
        backup = memos.rename(h.data_dir / "memos.bak")
    memos.write_text("not a directory")  # fails for root too (unlike chmod)
    try:
        v = viewer(srv)
        r = _memo_post(v, h.patients[1], "保存できないはずのメモ")
        assert r.status_code == 503 and "保存できないはずのメモ" in r.text
        assert "保存されていません" in r.text
    finally:
        memos.unlink()
        if backup is not None:
            backup.rename(memos)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_h2_read_only_memo_directory(tmp_path):
    from fhir_gateway.memos import MemoStorageError
    j = MemoJournal(tmp_path)
    j.append("F1", "P1", "first", author="a")
    os.chmod(j.path("F1"), 0o400)
    os.chmod(j.dir, 0o500)
    try:
        with pytest.raises(MemoStorageError):
            j.append("F1", "P1", "second", author="a")
    finally:
        os.chmod(j.dir, 0o700)
        os.chmod(j.path("F1"), 0o600)
    assert [m.text for m in j.for_patient("F1", "P1")] == ["first"]


def test_h2_short_writes_are_continued_and_zero_writes_refused(tmp_path, monkeypatch):
    from fhir_gateway import memos as memos_mod
    j = MemoJournal(tmp_path)
    j.append("F1", "P1", "first", author="a")
    real = os.write
    monkeypatch.setattr(memos_mod.os, "write", lambda fd, b: real(fd, bytes(b[:7])))
    j.append("F1", "P1", "短い書き込みが続いても全部書く", author="a")
    assert j.verify("F1") == (True, 2)
    size = j.path("F1").stat().st_size
    calls = []

    def stalls(fd, b):
        calls.append(1)
        return real(fd, bytes(b[:5])) if len(calls) == 1 else 0

    monkeypatch.setattr(memos_mod.os, "write", stalls)
    with pytest.raises(memos_mod.MemoStorageError):
        j.append("F1", "P1", "third", author="a")
    monkeypatch.setattr(memos_mod.os, "write", real)
    assert j.path("F1").stat().st_size == size
    assert [m.text for m in j.for_patient("F1", "P1")][0].startswith("短い")


# -- M4 + item 6: XML-forbidden characters ------------------------------------------------------


def test_m4_control_character_in_stored_text_is_replaced_and_reported(site):
    """A memo journal line written before input was checked (a person name with \x01) made the
    patient's XML a permanent 500: lxml refuses it, and memos cannot be deleted."""
    import json

    from fhir_gateway import integrity
    h, srv = site
    pid = h.patients[1]
    j = MemoJournal(h.data_dir)
    j.append(FACILITY, pid, "制御文字の前", author="old")
    lines = j.path(FACILITY).read_text(encoding="utf-8").splitlines()
    prev = json.loads(lines[-1])["mac"]
    rec = {"id": "memo-" + "ab" * 16, "facility": FACILITY, "patient": pid, "text": "旧版のメモ",
           "author": "old", "person": "山\x01田", "staff_no": "1", "at": "2026-01-01T00:00:00+09:00",
           "corrects": None, "prev": prev}
    rec["mac"] = integrity.mac(j.key(), prev, integrity.canonical(rec))
    with open(j.path(FACILITY), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
    j._write_head(FACILITY, len(lines) + 1, rec["mac"])
    r = requests.get(f"{srv.base}/DocumentReference/{rec['id']}", headers={
        **srv.headers, "Accept": "application/fhir+xml"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert "\ufffd" in r.text and "\x01" not in r.text and "Warning" in r.headers
    from lxml import etree
    etree.fromstring(r.content)
    r = requests.get(f"{srv.base}/Patient/{pid}/$everything", params={"_format": "xml"},
                     headers=srv.headers, timeout=60)
    assert r.status_code == 200 and "Warning" in r.headers
    etree.fromstring(r.content)
    js = requests.get(f"{srv.base}/DocumentReference/{rec['id']}", headers=srv.headers, timeout=30)
    assert "\x01" in js.json()["author"][0]["display"]  # JSON carries it, escaped


def test_m4_control_characters_are_never_stored_from_user_input(site):
    h, srv = site
    pid = h.patients[1]
    v = viewer(srv, person="佐藤\x01次郎", staff_no="B\x0277")
    r = _memo_post(v, pid, "制御文字\x01入りのメモ")
    assert r.status_code == 400 and "U+0001" in r.text
    assert _memo_post(v, pid, "普通のメモ (M4)").status_code == 302
    memo = next(m for m in MemoJournal(h.data_dir).for_patient(FACILITY, pid)
                if m.text == "普通のメモ (M4)")
    assert memo.person == "佐藤次郎" and memo.staff_no == "B77"
    r = requests.get(f"{srv.base}/DocumentReference/{memo.id}", params={"_format": "xml"},
                     headers=srv.headers, timeout=60)
    assert r.status_code == 200 and "Warning" not in r.headers


def test_item6_any_string_survives_json_and_xml():
    from hypothesis import given, settings, strategies as st
    from lxml import etree

    from fhir_gateway import formats, textsafe
    from mappers.serialize import loads

    @settings(max_examples=300, deadline=2000)
    @given(st.text(max_size=60))
    def check(s):
        res = {"resourceType": "Patient", "id": "p1", "name": [{"text": s, "family": s}],
               "text": {"status": "generated", "div": s}}
        assert loads(formats.render(res, formats.JSON))["name"][0]["text"] == s
        body, n = formats.render_checked(res, formats.XML)
        root = etree.fromstring(body)
        ns = {"f": formats.FHIR_NS}
        clean, bad = textsafe.replace(s)
        assert root.find("f:name/f:text", ns).get("value") == clean
        assert n == 3 * bad

    check()


# -- issue 11 item 9: who may mark a memo as 誤記 ------------------------------------------------


def test_11_9_only_author_or_hospital_admin_marks_a_memo_entered_in_error(site):
    h, srv = site
    pid = h.patients[0]
    naika = viewer(srv, "naika", staff_no="N1")
    assert _memo_post(naika, pid, "naika のメモ 11.9").status_code == 302
    memo = next(m for m in MemoJournal(h.data_dir).for_patient(FACILITY, pid)
                if m.text == "naika のメモ 11.9")
    geka = viewer(srv, "geka", staff_no="G1")
    page = geka.get(f"/f/{FACILITY}/p/{pid}/memos", params={"correct": memo.id}).text
    assert f'value="{memo.id}"' not in page            # no correction form for another's memo
    r = _memo_post(geka, pid, "geka が誤記にする", corrects=memo.id)
    assert r.status_code == 403 and "geka が誤記にする" in r.text
    # the same department account, another person (staff number): also refused
    other = viewer(srv, "naika", staff_no="N2")
    assert _memo_post(other, pid, "同じ部署の別人", corrects=memo.id).status_code == 403
    assert MemoJournal(h.data_dir).get(FACILITY, memo.id).status == "current"
    assert _memo_post(geka, pid, "geka は新しいメモを追加できる").status_code == 302
    # the author may
    assert _memo_post(naika, pid, "本人の訂正", corrects=memo.id).status_code == 302
    assert MemoJournal(h.data_dir).get(FACILITY, memo.id).status == "entered-in-error"
    # a hospital admin may mark anyone's memo
    gm = next(m for m in MemoJournal(h.data_dir).for_patient(FACILITY, pid)
              if m.text == "geka は新しいメモを追加できる")
    boss = viewer(srv, "boss", staff_no="B1")
    assert f'value="{gm.id}"' in boss.get(f"/f/{FACILITY}/p/{pid}/memos",
                                           params={"correct": gm.id}).text
    assert _memo_post(boss, pid, "管理者による誤記", corrects=gm.id).status_code == 302
    assert MemoJournal(h.data_dir).get(FACILITY, gm.id).status == "entered-in-error"
    doc = requests.get(f"{srv.base}/DocumentReference/{gm.id}", headers=srv.headers,
                       timeout=30).json()
    assert doc["status"] == "entered-in-error"
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]).decode() == gm.text
