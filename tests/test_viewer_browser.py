"""The viewer in real headless Chromium (Debian's chromium, Playwright's driver, no download)
against a real ``fhir-gateway serve`` process over the generated test hospital."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import BIN, FACILITY, build_hospital, make_token, start_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PW = "correct horse battery staple"
PASSPHRASE = "sakura-2026"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="/usr/bin/chromium is absent: run scripts/system-deps.sh "
                                        "(apt-get install chromium fonts-ipafont-gothic)")]


def cli_user(data_dir: Path, *args: str) -> None:
    subprocess.run([str(BIN / "fhir-gateway"), "user", *args, "--data-dir", str(data_dir),
                    "--password-stdin"], input=PW + "\n", text=True, check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def vh(tmp_path_factory):
    h = build_hospital(tmp_path_factory.mktemp("viewer-hospital"))
    cli_user(h.data_dir, "add", "naika", "--role", "viewer", "--display", "内科")
    cli_user(h.data_dir, "add", "boss", "--role", "hospital-admin", "--facility", FACILITY)
    return h


class Srv:
    def __init__(self, h):
        self.h = h
        self.s = None

    def start(self):
        self.s = start_server(["--config", str(self.h.config)], workers=1)
        return self

    def restart(self):
        self.s.stop()
        return self.start()

    @property
    def url(self):
        return self.s.url


@pytest.fixture(scope="module")
def srv(vh):
    s = Srv(vh).start()
    yield s
    s.s.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Tab:
    """A page that records console errors and failed requests."""

    def __init__(self, browser, base, **ctx):
        self.ctx = browser.new_context(**ctx)
        self.page = self.ctx.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())

    def go(self, path):
        resp = self.page.goto(self.base + path)
        return resp

    def login(self, user, person="山田 花子", staff="A123"):
        self.go("/login")
        self.page.fill("#username", user)
        self.page.fill("#password", PW)
        self.page.fill("#person", person)
        self.page.fill("#staff_no", staff)
        self.submit("#login-submit")
        return self

    def unlock(self, passphrase=PASSPHRASE):
        self.go(f"/f/{FACILITY}/unlock")
        self.page.fill("#passphrase", passphrase)
        self.submit("#unlock-submit")
        return self

    def submit(self, selector):
        """Click something that loads a new page and wait for that page (no stale reads)."""
        with self.page.expect_navigation():
            self.page.click(selector)
        return self

    def text(self, sel="body"):
        return self.page.inner_text(sel)

    def close(self):
        assert self.errors == [], f"console errors: {self.errors}"
        self.ctx.close()


@pytest.fixture()
def tabs(browser, srv):
    made = []

    def make(**ctx):
        t = Tab(browser, srv.url, **ctx)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def admin_switch(tab, op, reason):
    tab.go(f"/admin/{FACILITY}")
    tab.page.fill("#reason", reason)
    tab.submit(f"#{op}")
    tab.page.wait_for_selector("#admin-message")


@pytest.fixture(scope="module")
def connected(browser, srv):
    """The hospital admin sets the 合言葉 and connects disaster access (through the UI)."""
    t = Tab(browser, srv.url)
    t.login("boss", "病院 管理者", "H001")
    t.go(f"/admin/{FACILITY}")
    t.page.fill("#new-passphrase", PASSPHRASE)
    t.page.fill("#again-passphrase", PASSPHRASE)
    t.submit("#rotate")
    t.page.wait_for_selector("#admin-message")
    admin_switch(t, "connect", "訓練: 地震想定")
    assert "★" in t.text("#access-state")
    t.close()
    return True


@pytest.fixture(scope="module")
def viewer_state(browser, srv, connected):
    """One logged-in, unlocked viewer session reused by the read-only tests (cookies only)."""
    t = Tab(browser, srv.url)
    t.login("naika").unlock()
    state = t.ctx.storage_state()
    t.close()
    return state


@pytest.fixture()
def viewer(tabs, viewer_state):
    return tabs(storage_state=viewer_state)


def open_patient(t, pid, view=""):
    t.go(f"/f/{FACILITY}/p/{pid}/{view}")
    return t


# --- tests -------------------------------------------------------------------------------------

def test_login_passphrase_and_connect_disconnect(tabs, connected, srv, vh):
    v = tabs()
    v.go("/")
    assert "/login" in v.page.url  # login first
    # name and staff number are required: the form refuses without them
    v.go("/login")
    v.page.fill("#username", "naika")
    v.page.fill("#password", PW)
    v.page.click("#login-submit")  # the browser's required-field check keeps us on the form
    assert "/login" in v.page.url
    v.login("naika", "佐藤 一郎", "N042")
    fac = v.page.locator(f'li.facility[data-code="{FACILITY}"]')
    assert "★" in fac.inner_text() and fac.locator("a.open").count() == 1
    with v.page.expect_navigation():
        fac.locator("a.open").click()
    assert "/unlock" in v.page.url  # the 合言葉 is asked before any patient data
    v.page.fill("#passphrase", "wrong-word")
    v.submit("#unlock-submit")
    assert "合言葉が違います" in v.text("#unlock-error")
    v.unlock()
    assert v.page.url.endswith(f"/f/{FACILITY}/")
    # the admin disconnects: the viewer loses access at once
    a = tabs().login("boss", "病院 管理者", "H001")
    admin_switch(a, "disconnect", "訓練終了")
    resp = v.go(f"/f/{FACILITY}/")
    assert resp.status == 403 and "接続されていません" in v.text("#message")
    v.errors = [e for e in v.errors if "403" not in e]  # that 403 was the point
    v.go("/")
    assert v.page.locator(f'li.facility[data-code="{FACILITY}"] a.open').count() == 0
    log = a.text("#access-log")
    assert "訓練終了" in log and "訓練: 地震想定" in log and "病院 管理者 (H001)" in log
    # a hospital admin still sees its own facility (an audited administrator check)
    a.unlock()
    a.go(f"/f/{FACILITY}/p/{vh.patients[0]}/")
    assert a.page.locator("#admin-check").count() == 1
    admin_switch(a, "connect", "訓練再開")
    # rotating the 合言葉 asks every session for the new one
    a.go(f"/admin/{FACILITY}")
    a.page.fill("#new-passphrase", "momiji-2026")
    a.page.fill("#again-passphrase", "momiji-2026")
    a.submit("#rotate")
    v.go(f"/f/{FACILITY}/")
    assert "/unlock" in v.page.url
    v.unlock("momiji-2026")
    a.go(f"/admin/{FACILITY}")
    a.page.fill("#new-passphrase", PASSPHRASE)
    a.page.fill("#again-passphrase", PASSPHRASE)
    a.submit("#rotate")
    from fhir_gateway.accounts import AccountStore
    store = AccountStore(vh.data_dir)
    actions = [r["action"] for r in store.audit_rows(500)]
    assert {"login", "passphrase-failed", "passphrase-ok", "access-disconnect",
            "access-connect", "access-denied", "passphrase-rotate"} <= set(actions)
    assert any(r["person"] == "佐藤 一郎" and r["staff_no"] == "N042" for r in store.audit_rows(500))
    assert store.verify_audit()[0]


def test_patient_search(viewer, vh):
    t = viewer
    page = t.page

    def search(**fields):
        t.go(f"/f/{FACILITY}/")
        for sel, val in fields.items():
            if sel == "q-gender":
                page.select_option(f"#{sel}", val)
            else:
                page.fill(f"#{sel}", val)
        with page.expect_navigation():  # the result page must have replaced the form
            page.click("#search-submit")
        return page.locator("#results tbody tr").all_inner_texts() if page.locator("#results").count() else []

    rows = search(**{"q-kana": "やまだ"})          # hiragana finds カナ ヤマダ
    assert len(rows) == 1 and "山田 太郎" in rows[0] and "ヤマダ タロウ" in rows[0]
    assert "1965-04-15" in rows[0] and "歳" in rows[0] and "2023-" in rows[0]  # age, last care
    assert "胃炎" not in t.text("#results")          # no clinical data in the list
    assert len(search(**{"q-kana": "ｻﾄｳ"})) == 1      # half-width kana
    assert len(search(**{"q-name": "山"})) == 2        # 山田, 山本
    assert len(search(**{"q-name": "山", "q-gender": "female"})) == 1
    assert len(search(**{"q-id": vh.patients[2]})) == 1
    assert len(search(**{"q-birth": "1980-01-01"})) == 1
    search(**{"q-kana": "ゾゾゾ"})
    assert page.locator("#no-results").count() == 1


def test_patient_summary_and_categories(viewer, vh):
    pid = vh.patients[0]
    t = open_patient(viewer, pid)
    banner = t.text("#banner")
    assert "山田 太郎" in banner and "ヤマダ タロウ" in banner and pid in banner
    assert "男" in banner and "歳" in banner
    strip = t.page.locator("#allergy-strip")
    assert "present" in strip.get_attribute("class") and "ソバ" in strip.inner_text() \
        and "アリナミン" in strip.inner_text()
    warn = t.text("#read-problems")                          # the broken OML-11 file
    assert "OML-11" in warn
    from fhir_gateway.viewer.i18n import TERMS                # the reason in plain Japanese
    assert any(ja in warn for k, (ja, _) in TERMS.items() if k.startswith("problem:"))
    assert "2022" in t.text("#data-period") or "2023" in t.text("#data-period")
    assert t.page.locator("#freshness").count() == 1
    expect = {"conditions": "胃炎", "prescriptions": "ダーゼン", "lab-results": "総蛋白",
              "allergies": "ソバ", "other": "ADT-12"}
    for cat in models_categories():
        resp = t.go(f"/f/{FACILITY}/p/{pid}/c/{cat}")
        assert resp.status == 200 and resp.headers["cache-control"] == "no-store"
        assert t.page.locator("#banner").count() == 1
        if cat in expect:
            assert expect[cat] in t.text("main"), cat
    t.go(f"/f/{FACILITY}/p/{pid}/c/prescriptions")
    assert "ダーゼン" in t.text("#past-rows")                 # 2023 prescriptions are past
    t.go(f"/f/{FACILITY}/p/{vh.patients[1]}/")               # no ADT-61: "no information"
    strip = t.page.locator("#allergy-strip")
    assert "unknown" in strip.get_attribute("class") and "アレルギー情報なし" in strip.inner_text()


def models_categories():
    from fhir_gateway.viewer.models import CATEGORIES
    return CATEGORIES


def test_dates_and_per_date_view(viewer, vh):
    pid = vh.patients[1]
    t = open_patient(viewer, pid, "dates")
    days = t.text("#days")
    assert "2023-01-10" in days and "2023-11-20" in days
    t.submit("text=2023-01-10")
    groups = {g.get_attribute("data-cat") for g in t.page.locator(".day-group").all()}
    assert {"prescriptions", "lab-results"} <= groups
    assert "ダーゼン" in t.text("main") and "総蛋白" in t.text("main")


def test_drug_search(viewer, vh):
    t = open_patient(viewer, vh.patients[0], "drugs")
    for q in ("だーぜん", "ﾀﾞｰｾﾞﾝ", "パンスポリン"):
        t.page.fill("#drug-q", q)
        t.submit("#drug-submit")
        assert "1 件" in t.text("#drug-count"), q
    t.page.fill("#drug-q", "ダー")
    t.submit("#drug-submit")
    assert t.page.locator("#drug-short").count() == 1


def test_lab_table_and_charts(viewer, vh):
    t = open_patient(viewer, vh.patients[0], "labs")
    head = t.page.locator("#lab-table thead").inner_text()
    for d in ("2023-01-10", "2023-05-15", "2023-11-20"):
        assert d in head
    table = t.text("#lab-table")
    assert "総蛋白" in table and "1.0-9.0" in table
    assert t.page.locator("#lab-table sup", has_text="H").count() >= 1   # 9.2 > 9.0
    charts = t.page.locator("figure.chart svg")
    assert charts.count() == t.page.locator("#lab-table tbody tr").count()
    labels = [c.locator("text.axis").first.text_content() for c in charts.all()]
    assert any(re.match(r"総蛋白 \(g/d[lL]\)", x) for x in labels), labels   # name and unit
    assert vh.patients[0] in charts.first.locator("text.ct").text_content()


def test_receipts(viewer, vh):
    t = open_patient(viewer, vh.patients[0], "receipts")
    months = [m.get_attribute("data-month") for m in t.page.locator(".receipt-month").all()]
    assert months == ["2023-03"]
    t.page.fill("#receipt-q", "存在しない語")
    t.submit("#receipt-submit")
    assert t.page.locator(".receipt-month").count() == 0


def test_memo_append_correct_and_survive_restart(viewer, viewer_state, srv, vh, browser):
    pid = vh.patients[3]
    t = open_patient(viewer, pid, "memos")
    t.page.fill("#memo-text", "ワーファリン内服中と家族より聴取")
    t.submit("#memo-submit")
    first = t.page.locator("#memo-list li.memo").first
    memo_id = first.get_attribute("data-id")
    assert "山田 花子" in first.inner_text() and "A123" in first.inner_text()
    with t.page.expect_navigation():
        first.locator("a.small").click()
    t.page.fill("#memo-text", "訂正: エリキュース内服中")
    t.submit("#memo-submit")
    items = t.page.locator("#memo-list li.memo")
    assert items.count() == 2
    old = t.page.locator(f'li.memo[data-id="{memo_id}"]')
    assert "entered-in-error" in old.get_attribute("class")
    # the FHIR API serves memos as DocumentReference (same server, bearer token)
    token = make_token(vh.data_dir)
    r = requests.get(f"{srv.url}/fhir/{FACILITY}/Patient/{pid}/$everything",
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200
    statuses = {e["resource"]["id"]: e["resource"]["status"] for e in r.json().get("entry", [])
                if e["resource"]["resourceType"] == "DocumentReference"}
    assert statuses.get(memo_id) == "entered-in-error" and "current" in statuses.values()
    srv.restart()
    t2 = Tab(browser, srv.url, storage_state=viewer_state)  # server-side sessions survive too
    t2.go(f"/f/{FACILITY}/p/{pid}/memos")
    assert "エリキュース" in t2.text("#memo-list") and "ワーファリン" in t2.text("#memo-list")
    t2.close()
    t2.close()


def test_phone_layout_screenshot(tabs, viewer_state, vh, tmp_path):
    t = tabs(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
             device_scale_factor=2, storage_state=viewer_state)
    t.go(f"/f/{FACILITY}/p/{vh.patients[0]}/labs")
    box = t.page.locator("#banner").bounding_box()
    assert box["y"] < 250 and box["width"] <= 390
    newest = t.page.locator("#lab-table thead th.d").first           # newest date first
    nb = newest.bounding_box()
    assert newest.inner_text() == "2023-11-20" and nb["x"] + nb["width"] <= 390
    first_col = t.page.locator("#lab-table tbody th").first
    assert first_col.evaluate("e => getComputedStyle(e).position") == "sticky"
    assert t.page.evaluate("document.documentElement.scrollWidth") <= 400  # page itself fits
    shot = tmp_path / "phone.png"
    t.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 30_000


def test_print_header_on_patient_pages(viewer, vh):
    t = open_patient(viewer, vh.patients[0])
    t.page.emulate_media(media="print")
    head = t.page.locator("#print-head")
    assert head.is_visible() and head.evaluate("e => getComputedStyle(e).position") == "fixed"
    txt = head.inner_text()
    assert vh.patients[0] in txt and "山田 太郎" in txt and "naika" in txt and "印刷日時" in txt
    assert not t.page.locator("#tabs").is_visible()
    pdf = t.page.pdf()
    assert len(pdf) > 10_000
    t.page.emulate_media(media="screen")
    t.page.evaluate("window.dispatchEvent(new Event('beforeprint'))")   # what window.print() fires
    from fhir_gateway.accounts import AccountStore
    import time
    for _ in range(50):
        rows = [r for r in AccountStore(vh.data_dir).audit_rows(50) if r["action"] == "patient-print"]
        if rows:
            break
        time.sleep(0.1)
    assert rows and rows[0]["patient"] == vh.patients[0] and rows[0]["username"] == "naika"


def test_english_switch(viewer, vh):
    t = open_patient(viewer, vh.patients[0])
    t.submit("#lang-switch")
    assert "Patient ID" in t.text("#banner") and t.page.url.endswith(f"/p/{vh.patients[0]}/")
    t.submit("#lang-switch")
    assert "患者ID" in t.text("#banner")


def test_headers_csrf_logout_and_lockout(srv, connected, vh):
    s = requests.Session()
    r = s.get(f"{srv.url}/login")
    h = r.headers
    assert "script-src 'self'" in h["Content-Security-Policy"] and "unsafe-inline" not in h["Content-Security-Policy"]
    assert h["X-Frame-Options"] == "DENY" and h["Referrer-Policy"] == "no-referrer"
    assert h["X-Content-Type-Options"] == "nosniff"
    form = {"username": "naika", "password": PW, "person": "x", "staff_no": "1"}
    assert s.post(f"{srv.url}/login", data=form, allow_redirects=False).status_code == 400  # no token
    tok = re.search(r'name="csrf_token" value="([^"]+)"', s.get(f"{srv.url}/login").text).group(1)
    r = s.post(f"{srv.url}/login", data=form | {"csrf_token": tok}, allow_redirects=False)
    assert r.status_code == 302
    cookie = dict(s.cookies)
    home = s.get(f"{srv.url}/")
    assert home.status_code == 200 and "httponly" in r.headers["Set-Cookie"].lower()
    tok = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
    s.post(f"{srv.url}/logout", data={"csrf_token": tok})
    replay = requests.get(f"{srv.url}/", cookies=cookie, allow_redirects=False)
    assert replay.status_code == 302 and "/login" in replay.headers["Location"]  # revoked
    cli_user(vh.data_dir, "add", "locktest", "--role", "viewer")
    s2 = requests.Session()
    for _ in range(5):
        tok = re.search(r'name="csrf_token" value="([^"]+)"', s2.get(f"{srv.url}/login").text).group(1)
        s2.post(f"{srv.url}/login", data={"csrf_token": tok, "username": "locktest",
                                          "password": "wrong password!!", "person": "x", "staff_no": "1"})
    tok = re.search(r'name="csrf_token" value="([^"]+)"', s2.get(f"{srv.url}/login").text).group(1)
    r = s2.post(f"{srv.url}/login", data={"csrf_token": tok, "username": "locktest", "password": PW,
                                          "person": "x", "staff_no": "1"}, allow_redirects=False)
    assert r.status_code == 401  # locked even with the right password
