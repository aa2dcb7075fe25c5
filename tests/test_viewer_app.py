"""The viewer inside the real app factory, through Flask's test client (no browser): access rules,
CSRF, failover banner, idle timeout, audit, memos served in $everything."""

from __future__ import annotations

import re
import time

import pytest

from conftest import FACILITY, build_hospital
from fhir_gateway.accounts import AccountStore
from fhir_gateway.app import create_app
from fhir_gateway.config import load

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def hosp(tmp_path_factory):
    h = build_hospital(tmp_path_factory.mktemp("viewer-app"), n_patients=2)
    st = AccountStore(h.data_dir)
    st.add_user("naika", PW, "viewer")
    st.add_user("boss", PW, "hospital-admin", FACILITY)
    st.set_passphrase(FACILITY, "sakura-2026", "boss")
    return h


def tok(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, user="naika", unlock=True):
    r = client.get("/login")
    r = client.post("/login", data={"csrf_token": tok(r.text), "username": user, "password": PW,
                                    "person": "山田 花子", "staff_no": "A1"})
    assert r.status_code == 302
    if unlock:
        r = client.get(f"/f/{FACILITY}/unlock")
        client.post(f"/f/{FACILITY}/unlock", data={"csrf_token": tok(r.text),
                                                   "passphrase": "sakura-2026"})
    return client


def test_viewer_blocked_until_connected_admin_always(hosp):
    app = create_app(load(hosp.config), auth=False)
    st = AccountStore(hosp.data_dir)
    st.switch_access(FACILITY, False, "平時", "boss", "x", "1")
    pid = hosp.patients[0]
    v = login(app.test_client())
    assert v.get(f"/f/{FACILITY}/p/{pid}/").status_code == 403
    a = login(app.test_client(), "boss")
    r = a.get(f"/f/{FACILITY}/p/{pid}/")
    assert r.status_code == 200 and 'id="admin-check"' in r.text
    assert a.get("/admin/9999999999").status_code == 404
    assert v.get(f"/admin/{FACILITY}").status_code == 403
    st.switch_access(FACILITY, True, "訓練", "boss", "x", "1")
    r = v.get(f"/f/{FACILITY}/p/{pid}/")
    assert r.status_code == 302 and "/unlock" in r.headers["Location"]  # 合言葉 first
    page = v.get(f"/f/{FACILITY}/unlock")
    v.post(f"/f/{FACILITY}/unlock", data={"csrf_token": tok(page.text), "passphrase": "sakura-2026"})
    r = v.get(f"/f/{FACILITY}/p/{pid}/")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    rows = st.audit_rows(50)
    assert any(x["action"] == "access-denied" and x["outcome"] == "denied" for x in rows)
    assert any(x["action"] == "patient-view" and x["patient"] == pid and x["person"] == "山田 花子"
               for x in rows)


def test_csrf_required_on_every_post(hosp):
    app = create_app(load(hosp.config), auth=False)
    AccountStore(hosp.data_dir).switch_access(FACILITY, True, "訓練", "boss", "x", "1")
    c = login(app.test_client())
    pid = hosp.patients[1]
    r = c.post(f"/f/{FACILITY}/p/{pid}/memos", data={"text": "no token"})
    assert r.status_code == 400 and "フォームの有効期限" in r.text
    assert c.post(f"/f/{FACILITY}/", data={"kana": "ヤマダ"}).status_code == 400
    assert c.post("/logout", data={}).status_code == 400
    page = c.get(f"/f/{FACILITY}/p/{pid}/memos")
    r = c.post(f"/f/{FACILITY}/p/{pid}/memos", data={"csrf_token": tok(page.text),
                                                     "text": "転倒リスク高い"})
    assert r.status_code == 302
    # the memo is part of the patient's record for the FHIR API too
    ev = app.test_client().get(f"/fhir/{FACILITY}/Patient/{pid}/$everything")
    docs = [e["resource"] for e in ev.get_json()["entry"]
            if e["resource"]["resourceType"] == "DocumentReference"]
    assert any(d["status"] == "current" and d["subject"]["reference"] == f"Patient/{pid}"
               for d in docs)


def test_failover_banner(hosp, tmp_path):
    cfg = load(hosp.config)
    fac = cfg.facilities[FACILITY]
    from dataclasses import replace
    cfg.facilities[FACILITY] = replace(fac, storage=(tmp_path / "gone",) + fac.storage)
    app = create_app(cfg, auth=False)
    AccountStore(hosp.data_dir).switch_access(FACILITY, True, "訓練", "boss", "x", "1")
    c = login(app.test_client())
    r = c.get(f"/f/{FACILITY}/p/{hosp.patients[0]}/")
    assert r.status_code == 200 and 'id="failover-banner"' in r.text


def test_idle_timeout_and_session_rotation(hosp):
    app = create_app(load(hosp.config), auth=False)
    app.session_interface.idle = 1
    c = app.test_client()
    c.get("/login")
    assert c.get_cookie("fgw_session") is None  # no server-side session before login (L2)
    assert c.get_cookie("fgw_session_pre") is not None  # only the signed pre-login cookie
    login(c, unlock=False)
    after = c.get_cookie("fgw_session").value
    assert after and c.get_cookie("fgw_session_pre") is None  # a new server-side id at login
    assert c.get("/").status_code == 200
    time.sleep(1.3)
    r = c.get("/")
    assert r.status_code == 302 and "expired=1" in r.headers["Location"]
    assert "一定時間" in c.get(r.headers["Location"]).text
