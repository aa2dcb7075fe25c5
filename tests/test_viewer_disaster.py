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
                    "--years", "5", "--seed", "7", "--facility", FACILITY, "--heavy-patient",
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


def lab_dates(demo, pid: str) -> list[str]:
    """Dates with lab results, newest first, from the OML-11 date folders (not from the viewer)."""
    from storage.layout import Storage
    root = demo["ssmix2"]
    days = set()
    for d in Storage(root).dates(pid):
        if len(d) == 8 and any(p.is_dir() for p in root.glob(f"*/*/{pid}/{d}/OML-11")):
            days.add(f"{d[:4]}-{d[4:6]}-{d[6:]}")
    return sorted(days, reverse=True)


def storage_ids(demo) -> list[str]:
    from storage.layout import Storage
    return sorted(Storage(demo["ssmix2"]).patient_ids())


# --- item 2: labs newest first ------------------------------------------------------------------

def test_labs_newest_first_desktop_phone_print(views, demo, tmp_path):
    dates = lab_dates(demo, HEAVY)
    assert len(dates) > 100
    v = views().patient(HEAVY, "labs")
    heads = v.page.locator("#lab-table thead th.d")
    assert heads.first.inner_text() == dates[0]
    box = heads.first.bounding_box()
    assert box["x"] + box["width"] <= DESKTOP["width"] and box["y"] < DESKTOP["height"]
    v.page.screenshot(path=str(tmp_path / "labs-desktop.png"))
    # values readable on tap: the tip opens on click/focus, not on hover only
    cell = v.page.locator("#lab-table td.v[tabindex]").first
    cell.focus()
    tip = cell.locator(".tip")
    assert tip.is_visible() and re.search(r"\d{4}-\d{2}-\d{2}", tip.inner_text())
    # paging back in time
    with v.page.expect_navigation():
        v.page.click("#lab-older")
    assert heads.first.inner_text() == dates[10]
    with v.page.expect_navigation():
        v.page.click("#lab-newer")
    assert heads.first.inner_text() == dates[0]
    # print: the newest dates that fit, and how many older ones are left out
    pages = v.pdf_text()
    first = pages[0].replace(" ", "")
    assert dates[0] in first and dates[6] in first and dates[7] not in "".join(pages)
    assert f"古い{len(dates) - 7}日分は省略" in first
    v.axe("labs desktop")
    # phone: the newest three dates inside the screen; trend chart text >= 11 px
    p = views(PHONE).patient(HEAVY, "labs")
    visible = [h for h in p.page.locator("#lab-table thead th.d").all() if h.is_visible()]
    assert [h.inner_text() for h in visible] == dates[:3]
    for h in visible:
        b = h.bounding_box()
        assert b["x"] + b["width"] <= PHONE["width"] + 1
    assert p.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    p.page.screenshot(path=str(tmp_path / "labs-phone.png"))
    smallest = p.page.evaluate("""() => Math.min(...[...document.querySelectorAll('svg.trend text')].map(t => {
        const svg = t.ownerSVGElement;
        return parseFloat(getComputedStyle(t).fontSize) * svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    }))""")
    assert smallest >= 11, smallest
    with p.page.expect_navigation():
        p.page.click("#lab-older-3")
    assert [h.inner_text() for h in p.page.locator("#lab-table thead th.d").all() if h.is_visible()] == dates[3:6]
    p.axe("labs phone")


# --- item 8: Japanese, tab bar, one allergy row per allergen --------------------------------------

def test_tab_bar_fits_and_japanese_words(views, demo, tmp_path):
    for size in (DESKTOP, PHONE):
        v = views(size).patient(HEAVY)
        assert v.page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        for el in v.page.locator("#tabs a, #tabs button").all():
            b = el.bounding_box()
            assert b["x"] >= 0 and b["x"] + b["width"] <= size["width"], (size, el.inner_text())
        assert v.page.locator("#tabs a", has_text="患者メモ").is_visible()
        assert v.page.locator("#print-btn").is_visible()
        v.page.screenshot(path=str(tmp_path / f"tabs-{size['width']}.png"))
    v = views().patient(HEAVY, "c/conditions")
    cells = " ".join(v.page.locator("#cat-rows td").all_inner_texts())
    assert "継続中" in cells or "治癒・解決" in cells
    for word in ("active", "resolved", "inactive", "completed"):
        assert not re.search(rf"\b{word}\b", cells), word
    v.patient(HEAVY, "c/injections")
    cells = " ".join(v.page.locator("main td").all_inner_texts())
    assert not re.search(r"\b(active|completed|stopped)\b", cells)
    v.patient(HEAVY, "c/other")
    kinds = v.page.locator("#cat-rows td:nth-child(2)").all_inner_texts()
    assert kinds and not any(k.startswith(("Encounter", "Observation", "DocumentReference")) for k in kinds)
    v.axe("category other")


def test_one_allergy_row_per_allergen_with_sources(views, demo):
    root = demo["ssmix2"]
    with_iam = sorted({p.parts[-4] for p in root.glob("*/*/*/-/ADT-61/*")})
    assert with_iam, "the generator wrote no ADT-61"
    pid = with_iam[0]
    v = views().patient(pid, "c/allergies")
    rows = v.page.locator("#cat-rows tbody tr")
    names = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
    assert names and len(names) == len(set(names))               # each allergen once
    sources = rows.first.locator("td").nth(6).inner_text()
    assert "ADT-61 IAM" in sources and "ADT-00 AL1" in sources   # both records listed
    assert not re.search(r"\b(food|medication|environment|mild|moderate|severe|confirmed)\b",
                         v.page.inner_text("#cat-rows"))
    strip = v.page.inner_text("#allergy-strip")
    for n in names:
        assert strip.count(n) == 1
    v.axe("allergies")


# --- item 7: ID search ------------------------------------------------------------------------

def test_id_search_without_zeros_full_width_and_hint(views, demo):
    pid = next(p for p in storage_ids(demo) if p.startswith("0"))
    bare = pid.lstrip("0")
    full = pid.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    v = views()
    for typed in (bare, full, pid):
        v.go(f"/f/{FACILITY}/")
        v.page.fill("#q-id", typed)
        with v.page.expect_navigation():
            v.page.click("#search-submit")
        assert v.page.locator("#results a.pid").all_inner_texts() == [pid], typed
        assert pid in v.page.inner_text("#id-hint")
    v.go(f"/f/{FACILITY}/")
    v.page.fill("#q-id", "0000000042")
    with v.page.expect_navigation():
        v.page.click("#search-submit")
    hint = v.page.inner_text("#id-hint")
    assert "見つかりませんでした" in hint and "42" in hint and "0000000042" in hint
    v.axe("search")
