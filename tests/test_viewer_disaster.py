"""Issue 11: the viewer as a disaster-care tool, in real headless Chromium (Debian's chromium,
Playwright's driver) against a real ``fhir-gateway serve`` over a generated demo hospital
(``fhir-gateway synth --heavy-patient``: patient 9000000001 with ~1,500 files over 5 years).

Layout claims are checked on desktop (1366 px), phone (390 px) and print (Chromium's PDF,
read back with pypdf), and axe-core (npm, tests/axe) runs on every page."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import date
from pathlib import Path

import pytest

from conftest import BIN, FACILITY, start_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PW = "correct horse battery staple"
PASSPHRASE = "sakura-2026"
HEAVY = "9000000001"
AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="/usr/bin/chromium is absent: run scripts/system-deps.sh")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo hospital with the heavy patient, its receipts, extended storage and the
    name-master files the generator writes; accounts, 合言葉 and disaster access set up."""
    base = tmp_path_factory.mktemp("disaster")
    ss, rc, ext = base / "ssmix2", base / "receipts", base / "extended"
    subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(ss), "--patients", "5",
                    "--years", "5", "--seed", "2026", "--facility", FACILITY, "--heavy-patient",
                    "--receipts-out", str(rc), "--extended-out", str(ext), "--no-progress",
                    "--workers", "2"], check=True, capture_output=True)
    data = base / "data"
    data.mkdir()
    cfg = base / "gateway.toml"
    cfg.write_text(f'data_dir = "{data}"\n\n[[facility]]\ncode = "{FACILITY}"\nname = "デモ総合病院"\n'
                   f'storage = ["{ss}"]\nextended = ["{ext}"]\nreceipts = ["{rc}"]\n', encoding="utf-8")
    for args in (("naika", "--role", "viewer", "--display", "内科"),
                 ("boss", "--role", "hospital-admin", "--facility", FACILITY)):
        subprocess.run([str(BIN / "fhir-gateway"), "user", "add", *args, "--data-dir", str(data),
                        "--password-stdin"], input=PW + "\n", text=True, check=True,
                       capture_output=True)
    from fhir_gateway.accounts.store import AccountStore
    store = AccountStore(data)
    store.set_passphrase(FACILITY, PASSPHRASE, by="boss")
    store.switch_access(FACILITY, True, "訓練", by="boss", person="病院 管理者", staff_no="H001")
    return {"base": base, "ssmix2": ss, "config": cfg, "data": data, "extended": ext}


@pytest.fixture(scope="module")
def srv(demo):
    s = start_server(["--config", str(demo["config"])], workers=1, timeout=60)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _login(page, base: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", "naika")
    page.fill("#password", PW)
    page.fill("#person", "山田 花子")
    page.fill("#staff_no", "A123")
    with page.expect_navigation():
        page.click("#login-submit")
    page.goto(base + f"/f/{FACILITY}/unlock")
    page.fill("#passphrase", PASSPHRASE)
    with page.expect_navigation():
        page.click("#unlock-submit")


@pytest.fixture(scope="module")
def state(browser, srv):
    ctx = browser.new_context()
    page = ctx.new_page()
    _login(page, srv.url)
    st = ctx.storage_state()
    ctx.close()
    return st


class View:
    """A logged-in page of a given size; console errors fail the test."""

    def __init__(self, browser, srv, state, viewport):
        self.ctx = browser.new_context(storage_state=state, viewport=viewport)
        self.page = self.ctx.new_page()
        self.base = srv.url
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def go(self, path: str):
        r = self.page.goto(self.base + path)
        assert r.status == 200, (path, r.status)
        return self

    def patient(self, pid: str, view: str = ""):
        return self.go(f"/f/{FACILITY}/p/{pid}/{view}")

    def box(self, sel: str) -> dict:
        return self.page.locator(sel).first.bounding_box()

    def pdf_text(self) -> list[str]:
        """The page printed by Chromium (print CSS) as text, one string per PDF page."""
        from pypdf import PdfReader
        pdf = self.page.pdf(format="A4", print_background=True)
        return [p.extract_text() or "" for p in PdfReader(io.BytesIO(pdf)).pages]

    def axe(self, where: str) -> None:
        axe_check(self.page, where)

    def close(self):
        assert self.errors == [], self.errors
        self.ctx.close()


def axe_check(page, where: str) -> None:
    """axe-core in the page: no serious or critical violation (WCAG 2.1 A/AA rules)."""
    if not AXE.exists():
        pytest.skip("axe-core is not installed: run scripts/system-deps.sh (npm ci in tests/axe)")
    # evaluated over the DevTools protocol: the page's CSP (script-src 'self') stays in force
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;void 0")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")
    assert result == [], f"axe on {where}: {result}"


@pytest.fixture()
def views(browser, srv, state):
    made: list[View] = []

    def make(viewport=DESKTOP):
        v = View(browser, srv, state, viewport)
        made.append(v)
        return v
    yield make
    for v in made:
        v.close()


def newest_date_folder(demo, pid: str) -> str:
    """The chart's newest data date straight from the folder names (independent of the viewer)."""
    from storage.layout import Storage
    days = sorted(d for d in Storage(demo["ssmix2"]).dates(pid) if len(d) == 8)
    return f"{days[-1][:4]}-{days[-1][4:6]}-{days[-1][6:]}"


# --- item 1: last-known medication ------------------------------------------------------------

def test_last_known_medication_relative_to_newest_data_date(views, demo):
    as_of = newest_date_folder(demo, HEAVY)
    assert date.fromisoformat(as_of) < date.today()  # the backup is behind: "today" would be wrong
    v = views().patient(HEAVY)
    assert v.page.inner_text("#as-of") == f"最終データ日 {as_of} 時点"
    running = v.page.locator("#active-meds tr.med")
    assert running.count() >= 5  # the heavy patient is on several drugs, not "なし"
    for i in range(running.count()):
        row = running.nth(i)
        end = row.locator("td").nth(6).inner_text().split("〜")[1]
        assert end >= as_of and row.locator("td.state").inner_text() == "継続中"
    # grouped per Rp: every group has a heading with the order number
    heads = v.page.locator("#active-meds tr.rp-head")
    assert heads.count() >= 2 and "オーダ番号" in heads.first.inner_text()
    v.page.click("#ended-meds-box summary")
    ended = v.page.locator("#ended-meds tr.med")
    for i in range(ended.count()):
        row = ended.nth(i)
        end = row.locator("td").nth(6).inner_text().split("〜")[1]
        assert (end[:10] < as_of or len(end) == 5) and row.locator("td.state").inner_text() in ("終了", "中止")
    section = v.page.inner_text("#last-meds")
    for word in ("active", "completed", "stopped"):
        assert not re.search(rf"\b{word}\b", section), word
    v.axe("summary (heavy)")
    # the printable list: running drugs only, on paper
    drugs = [running.nth(i).locator("td.drug").inner_text().strip() for i in range(running.count())]
    v.patient(HEAVY, "continue")
    assert v.page.inner_text("#continue-title").startswith("継続処方の参考")
    text = "".join(v.pdf_text()).replace(" ", "").replace("\n", "")
    assert f"最終データ日{as_of}時点" in text
    for d in drugs:
        assert d.split("\n")[0].replace(" ", "") in text, d
    v.axe("continue list")
