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
    # the generator wrote 基本マスター files beside the storage: import them like a hospital would
    subprocess.run([str(BIN / "fhir-gateway"), "masters", "import", str(base / "ssmix2-masters"),
                    "--data-dir", str(data)], check=True, capture_output=True)
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
    assert "ADT-61 IAM" in sources                               # where it was recorded
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


def _decoded(path: Path) -> str:
    from storage.encoding import decode  # the storage layer's decoder (CP50220 mapping)
    return decode(path.read_bytes()).text


# --- item 6: injections in full -------------------------------------------------------------------

def test_injections_in_full(views, demo):
    """Every component with its amount, rate, time window, route, device; given: what/when/who."""
    files = sorted(demo["ssmix2"].glob(f"*/*/{HEAVY}/*/OMP-02/*_1"))
    mixes = []
    for f in files:
        text = _decoded(f)
        rxc = [seg.split("|") for seg in text.split("\r") if seg.startswith("RXC|")]
        if len(rxc) >= 2:
            mixes.append([(c[2].split("^")[1], c[3], c[4].split("^")[1]) for c in rxc])
    assert mixes, "the heavy patient has no multi-drug injection order"
    v = views().patient(HEAVY, "c/injections")
    assert "処方" not in v.page.inner_text("main h2")           # headings say 注射, not 処方
    drugs = " ".join(v.page.locator("table.cat-injections td:nth-child(2)").all_inner_texts())
    for name, amount, unit in mixes[-1]:
        assert f"{name} {amount}{unit}" in drugs, (name, amount, unit)
    row = v.page.locator("table.cat-injections tbody tr").filter(has_text=mixes[-1][0][0]).first
    cells = row.locator("td").all_inner_texts()
    assert re.search(r"\d+ml/時間", cells[3]), cells              # rate
    assert re.search(r"\d{2}:\d{2}〜\d{2}:\d{2}", cells[4]), cells  # time window
    assert cells[5] and cells[6], cells                          # route, device
    v.axe("injections")
    v.patient(HEAVY, "c/administrations")
    rows = v.page.locator("table.cat-administrations tbody tr")
    assert rows.count() > 0
    for i in range(min(rows.count(), 15)):
        c = rows.nth(i).locator("td").all_inner_texts()
        assert c[0] and c[1] and c[2] and c[6], c               # when, what, dose, by whom
    v.axe("administrations")


# --- item 3: vitals -----------------------------------------------------------------------------

def test_vitals_table_and_charts(views, demo, tmp_path):
    v = views().patient(HEAVY)
    with v.page.expect_navigation():
        v.page.click("#tab-vitals")
    first = v.page.locator("#vital-table tbody tr").first.locator("td").all_inner_texts()
    assert re.fullmatch(r"\d{2,3}/\d{2,3}", first[0]), first       # BP sys/dia together
    assert all(re.fullmatch(r"\d+(\.\d+)?[HL]?", x) for x in first[1:5]), first
    for key in ("bp", "pulse", "temp", "spo2", "rr", "height", "weight", "bmi"):
        assert v.page.locator(f"#vchart-{key} svg.trend").count() == 1, key
    assert v.page.locator("#vchart-bp polyline").count() == 2        # systolic and diastolic
    assert "収縮期" in v.page.inner_text("#vchart-bp") and "拡張期" in v.page.inner_text("#vchart-bp")
    # the newest row is the newest vital-sign measurement of the extended storage
    newest = max(p.name.split("_")[4][:12] for p in demo["extended"].glob(f"*/*/{HEAVY}/*/L-OBSERVATIONS*/*"))
    shown = v.page.locator("#vital-table tbody th").first.inner_text().replace("-", "").replace(" ", "").replace(":", "")
    assert shown[:8] == newest[:8]
    v.page.screenshot(path=str(tmp_path / "vitals.png"))
    v.axe("vitals")
    p = views(PHONE).patient(HEAVY, "vitals")
    assert p.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    p.axe("vitals phone")


# --- item 4: documents ---------------------------------------------------------------------------

def test_documents_rendered_as_safe_html(views, demo):
    v = views().patient(HEAVY, "documents")
    assert v.page.locator("#doc-list a.doc-link").count() > 10
    link = v.page.locator("#doc-list a.doc-link", has_text="経過記録").first
    with v.page.expect_navigation():
        link.click()
    body = v.page.locator("#doc-body")
    assert body.locator("h2").count() >= 1 and body.locator("p").count() >= 1
    assert "<paragraph>" not in body.inner_html() and "main_document" not in body.inner_text()
    assert v.page.locator("#doc-body script").count() == 0
    v.axe("document")


def test_hostile_cda_is_inert(views, demo):
    """A CDA with script, event handlers, entities and external references renders as text."""
    folders = sorted(demo["extended"].glob(f"*/*/{HEAVY}/*/L-PN*/*_1"))
    target = folders[-1] / "main_document.xml"
    original = target.read_bytes()
    target.write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lt;img src=x onerror=alert(1)&gt;</title>'
        b'<component><structuredBody><component><section><title>S</title><text>'
        b'<paragraph onclick="alert(2)">safe<script>alert(3)</script>&xxe;</paragraph>'
        b'<list><item>one</item><item>two</item></list><table><tr><td>c</td></tr></table>'
        b'<renderMultiMedia referencedObject="http://example.invalid/x.png"/>'
        b'<linkHtml href="javascript:alert(4)">lnk</linkHtml></text></section></component>'
        b'</structuredBody></component></ClinicalDocument>')
    try:
        v = views()
        requests_seen: list[str] = []
        v.page.on("request", lambda r: requests_seen.append(r.url))
        dialogs: list[str] = []
        v.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        v.patient(HEAVY, "documents")
        # the tampered document's id, through the service layer (the folder name is in meta.source)
        from fhir_gateway.config import load
        from fhir_gateway.services import Gateway
        svc = Gateway(load(demo["config"])).facility(FACILITY)
        doc = next(r for r in svc.patient_bundle(HEAVY, {"DocumentReference"}).resources
                   if folders[-1].name in str((r.get("meta") or {}).get("source")))
        v.go(f"/f/{FACILITY}/p/{HEAVY}/doc/{doc['id']}")
        body = v.page.locator("#doc-body")
        html = body.inner_html()
        assert "safe" in body.inner_text() and body.locator("li").count() == 2
        assert body.locator("script, img, a, iframe").count() == 0
        assert "onclick" not in html and "root:" not in html
        assert "<img src=x" in v.page.inner_text("#doc-title")  # the title is text
        assert dialogs == [] and not any("example.invalid" in u for u in requests_seen)
    finally:
        target.write_bytes(original)


# --- item 5: receipts with names --------------------------------------------------------------

def _uke_codes(demo, record: str) -> set[str]:
    """Codes of one record type straight from the UKE files (CP932), column 4 (SI/IY/TO)."""
    out = set()
    for f in (demo["base"] / "receipts").rglob("*.UKE"):
        for line in f.read_bytes().decode("cp932").split("\r\n"):
            parts = line.split(",")
            if parts[0] == record and len(parts) > 3 and parts[3]:
                out.add(parts[3])
    return out


def _master_names(demo, prefix: str) -> dict[str, str]:
    import csv
    import io
    path = next((demo["base"] / "ssmix2-masters").glob(f"{prefix}_*.csv"))
    col = 5 if prefix == "b" else 4
    return {r[2]: r[col] for r in csv.reader(io.StringIO(path.read_bytes().decode("cp932")))}


def test_receipts_show_names_and_keyword_finds_them(views, demo, srv):
    drugs = _master_names(demo, "y")
    used = sorted(_uke_codes(demo, "IY") & set(drugs))
    assert used, "the receipts bill no drug of the master"
    v = views().patient(HEAVY, "receipts")
    text = v.page.inner_text("main")
    assert any(drugs[c] in text for c in used)
    assert not re.search(r"(?m)^\d{9}\t", text)                   # no bare codes as item names
    assert "名称マスター未登録" not in text                          # every billed code is named
    name = next(drugs[c] for c in used if drugs[c] in text)
    v.page.fill("#receipt-q", name[:5])
    with v.page.expect_navigation():
        v.page.click("#receipt-submit")
    items = v.page.locator(".claim tbody td:first-child").all_inner_texts()
    assert items and all(name[:5] in i for i in items)
    diseases = _master_names(demo, "b")
    assert any(n in v.page.inner_text("main") for n in diseases.values())
    v.axe("receipts")
    # the API serves the same names (applied in the service layer after mapping)
    import requests
    from conftest import make_token
    tok = make_token(demo["data"])
    r = requests.get(f"{srv.url}/fhir/{FACILITY}/Claim", params={"patient": HEAVY, "_count": "5"},
                     headers={"Authorization": f"Bearer {tok}"}, timeout=60)
    assert r.status_code == 200
    claims = [e["resource"] for e in r.json().get("entry", []) if e["resource"]["resourceType"] == "Claim"]
    displays = {c.get("display") for cl in claims for it in cl.get("item", [])
                for c in it["productOrService"].get("coding", [])}
    assert displays & set(drugs.values())


def test_receipt_codes_without_masters_say_so(api, hospital):
    from conftest import FACILITY as FAC
    pid = hospital.facts["first"]
    r = api.get(f"{api.base}/Claim", params={"patient": pid})
    assert r.status_code == 200
    items = [it for e in r.json().get("entry", []) for it in e["resource"].get("item", [])]
    assert items and all("名称マスター未登録" in it["productOrService"]["text"] for it in items)
    assert FAC


# --- item 10: cold charts, return after an idle timeout ------------------------------------------

def test_summary_maps_only_what_it_shows(browser, state, demo):
    """The heavy chart's summary reads the '-' folder and the newest days, says so, and still
    shows everything it promises (banner, last-known medication, recent labs).  A fresh server
    process: the module's server may hold the whole chart already from other tests (a cached
    whole chart rightly serves the summary too), and in a disaster every chart is cold."""
    cold = start_server(["--config", str(demo["config"])], workers=1, timeout=60)
    v = View(browser, cold, state, DESKTOP)
    try:
        v.patient(HEAVY)
        assert v.page.locator("#partial-note").is_visible()
        assert v.page.locator("#active-meds tr.med").count() >= 5
        assert v.page.locator("#recent-labs tbody tr").count() > 0
        assert v.page.inner_text("#data-period").endswith(newest_date_folder(demo, HEAVY))
        # a tab maps its whole category: the lab table reaches back to the first lab day
        v.patient(HEAVY, "labs")
        assert v.page.inner_text("#lab-range").endswith(f"全 {len(lab_dates(demo, HEAVY))} 日)")
    finally:
        v.ctx.close()
        cold.stop()


def test_idle_timeout_returns_to_the_page_after_login_and_passphrase(browser, demo, tmp_path):
    # its own data directory: a 3-second idle timeout must not end the other tests' sessions
    import shutil
    data = tmp_path / "data"
    shutil.copytree(demo["data"], data)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(demo["config"].read_text(encoding="utf-8").replace(str(demo["data"]), str(data)),
                   encoding="utf-8")
    s = start_server(["--config", str(cfg)], workers=1, timeout=60,
                     env={"FHIR_GATEWAY_VIEWER_IDLE_SECONDS": "3"})
    try:
        ctx = browser.new_context(viewport=DESKTOP)
        page = ctx.new_page()
        _login(page, s.url)
        target = f"/f/{FACILITY}/p/{HEAVY}/labs?start=10"
        page.goto(s.url + target)
        assert "/labs" in page.url
        page.wait_for_timeout(4000)                       # idle longer than the timeout
        page.goto(s.url + target)
        assert "/login" in page.url and "next=" in page.url
        assert "ログアウトしました" in page.inner_text("body")
        page.fill("#username", "naika")
        page.fill("#password", PW)
        page.fill("#person", "山田 花子")
        page.fill("#staff_no", "A123")
        with page.expect_navigation():
            page.click("#login-submit")
        assert "/unlock" in page.url                      # the 合言葉 step stays
        page.fill("#passphrase", PASSPHRASE)
        with page.expect_navigation():
            page.click("#unlock-submit")
        assert page.url == s.url + target                 # back where they were
        # a crafted next= never leaves the site
        page.goto(s.url + "/login?next=//evil.example/f/")
        assert "evil" not in (page.locator("form.stack").get_attribute("action") or "")
        ctx.close()
    finally:
        s.stop()


# --- item 11: accessibility on every page, desktop and phone --------------------------------------

def test_axe_every_page_desktop_and_phone(views, demo, browser, srv):
    """Every page of a normal chart (the heavy chart's pages are checked by the tests above)."""
    normal = max((p for p in storage_ids(demo) if p != HEAVY),
                 key=lambda p: sum(1 for _ in demo["ssmix2"].glob(f"*/*/{p}/*/*/*")))
    base = f"/f/{FACILITY}/p/{normal}/"
    from fhir_gateway.viewer.models import CATEGORIES
    pages = ["", "continue", "labs", "vitals", "documents", "dates", "drugs?q=アムロジピン",
             "receipts", "memos"] + [f"c/{c}" for c in CATEGORIES if c != "vitals"]
    for size in (DESKTOP, PHONE):
        v = views(size)
        v.go(f"/f/{FACILITY}/")
        v.axe(f"search {size['width']}")
        v.go("/")
        v.axe(f"facilities {size['width']}")
        for p in pages:
            v.go(base + p)
            v.axe(f"{p or 'summary'} {size['width']}")
        v.go(base + "dates")
        hrefs = v.page.locator("#days a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert hrefs, v.page.inner_text("main")[:300]
        v.go(hrefs[0])
        v.axe(f"date {size['width']}")
        v.go(base + "documents")
        v.go(v.page.locator("#doc-list a.doc-link").first.get_attribute("href"))
        v.axe(f"document {size['width']}")
    anon = browser.new_context(viewport=PHONE)
    page = anon.new_page()
    page.goto(srv.url + "/login")
    axe_check(page, "login phone")
    anon.close()
