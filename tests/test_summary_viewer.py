"""The patient's own summary in the viewer, in real headless Chromium: the A4 handout (printed to
PDF and read back), the JP-CLINS download, and 「患者に渡す」 (admin only, audited) whose QR
link is then redeemed over HTTP and decrypted with jwcrypto."""

from __future__ import annotations

import base64
import io
import json

import pytest
import requests

from conftest import FACILITY
from test_viewer_browser import (  # noqa: F401 - fixtures shared with the viewer tests
    CHROMIUM, PASSPHRASE, Tab, browser, connected, open_patient, srv, tabs, vh, viewer,
    viewer_state,
)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent")]


def test_handout_prints_on_a4_in_japanese(viewer, vh):
    pid = vh.patients[0]
    t = open_patient(viewer, pid, "handout")
    assert "患者サマリー" in t.text("#handout-title")
    assert "最終データ日" in t.text("#handout-as-of")
    body = t.text("#handout")
    for title in ("現在の問題・傷病名", "アレルギー・不耐性", "服薬"):
        assert title in body
    t.page.emulate_media(media="print")
    assert not t.page.locator("#tabs").is_visible()
    pdf = t.page.pdf(format="A4", print_background=False)
    from pypdf import PdfReader
    reader = PdfReader(io.BytesIO(pdf))
    box = reader.pages[0].mediabox
    assert abs(float(box.width) - 595) < 3 and abs(float(box.height) - 842) < 3   # A4 points
    text = "".join(p.extract_text() for p in reader.pages)
    assert "患者サマリー" in text and pid in text


def test_clins_download_is_a_jp_clins_collection(viewer, vh):
    pid = vh.patients[0]
    t = open_patient(viewer, pid, "handout")
    with t.page.expect_download() as dl:
        t.page.click("#clins-download")
    data = json.loads(open(dl.value.path(), encoding="utf-8").read())
    assert data["resourceType"] == "Bundle" and data["type"] == "collection"
    inner = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Bundle"]
    assert all(b["meta"]["profile"][0].endswith("JP_Bundle_CLINS|1") for b in inner)
    assert data["entry"][-1]["resource"]["resourceType"] == "OperationOutcome"


def test_only_admins_give_a_link_and_the_link_works(tabs, connected, viewer, vh, srv):
    pid = vh.patients[1]
    t = open_patient(viewer, pid, "handout")
    assert t.page.locator("#shl-form").count() == 0          # a viewer has no button
    csrf = t.page.locator("#print-head").get_attribute("data-csrf")
    r = t.page.request.post(f"{srv.url}/f/{FACILITY}/p/{pid}/shl",
                            form={"csrf_token": csrf, "expires": "7d"})
    assert r.status == 403                                     # and the server refuses it

    admin = tabs()
    admin.login("boss", "病院 管理者", "H001").unlock(PASSPHRASE)
    open_patient(admin, pid, "handout")
    admin.page.fill("input[name=passcode]", "4321")
    admin.submit("#shl-give")
    assert admin.page.locator("#shl-qr svg").count() == 1
    link = admin.text("#shlink").strip()
    raw = link[len("shlink:/"):]
    payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    m = requests.post(payload["url"], json={"recipient": "避難所救護班", "passcode": "4321"})
    assert m.status_code == 200
    token = requests.get(m.json()["files"][0]["location"]).text
    from jwcrypto import jwe, jwk
    obj = jwe.JWE()
    obj.deserialize(token, key=jwk.JWK(kty="oct", k=payload["key"]))
    doc = json.loads(obj.payload)
    assert doc["type"] == "document"
    assert any(e["resource"].get("id") == pid for e in doc["entry"])

    from fhir_gateway.accounts import AccountStore
    actions = [r["action"] for r in AccountStore(vh.data_dir).audit_rows(200)]
    assert "shl-create" in actions and "shl-denied" in actions
