"""CORS (issue 12 item 4): per-facility allowed origins, preflight without a token, Authorization
allowed, Content-Location / ETag / Location exposed — checked over HTTP and by a real browser
doing ``fetch()`` from a page on another port."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
import requests

from conftest import build_hospital, free_port, make_token, start_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        body = b"<!doctype html><title>app</title><p>browser app</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def _page_server(port: int):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Page)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def cors_setup(tmp_path_factory):
    h = build_hospital(tmp_path_factory.mktemp("cors"), n_patients=2)
    app_port, other_port = free_port(), free_port()
    allowed = f"http://127.0.0.1:{app_port}"
    h.config.write_text(h.config.read_text(encoding="utf-8")
                        + f'cors_origins = ["{allowed}"]\n', encoding="utf-8")
    tok = make_token(h.data_dir)
    s = start_server(["--config", str(h.config)], token=tok, workers=1)
    pages = [_page_server(app_port), _page_server(other_port)]
    yield s, h, allowed, f"http://127.0.0.1:{other_port}"
    for p in pages:
        p.shutdown()
    s.stop()


def test_preflight_without_token(cors_setup):
    s, h, allowed, other = cors_setup
    r = requests.options(s.base + "/Patient", headers={
        "Origin": allowed, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] == allowed
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in r.headers["Access-Control-Allow-Methods"]
    bad = requests.options(s.base + "/Patient", headers={
        "Origin": other, "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_actual_request_exposes_headers(cors_setup):
    s, h, allowed, _ = cors_setup
    r = requests.get(s.base + f"/Patient/{h.patients[0]}",
                     headers={**s.headers, "Origin": allowed})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == allowed
    exposed = {x.strip().lower() for x in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"content-location", "etag", "location"} <= exposed
    assert "Origin" in r.headers["Vary"]
    # the token is still required; the 401 is readable by the app
    r = requests.get(s.base + "/Patient", headers={"Origin": allowed})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == allowed


def test_no_origin_allowed_by_default(server):
    r = requests.options(server.base + "/Patient", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(server.base + "/Patient", headers={**server.headers,
                                                        "Origin": "http://evil.example"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


def test_bad_cors_config_is_refused(tmp_path):
    from fhir_gateway.config import ConfigError, load
    cfg = tmp_path / "g.toml"
    cfg.write_text('[[facility]]\ncode = "1"\nstorage = ["/x"]\n'
                   'cors_origins = ["https://a.example/path"]\n')
    with pytest.raises(ConfigError, match="cors_origins"):
        load(cfg)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent "
                    "(scripts/system-deps.sh)")
def test_browser_fetch_from_another_origin(cors_setup):
    from playwright.sync_api import sync_playwright
    s, h, allowed, other = cors_setup
    script = """async ([url, token]) => {
        try {
            const r = await fetch(url, {headers: {Authorization: 'Bearer ' + token,
                                                  Accept: 'application/fhir+json'}});
            const body = await r.json();
            return {status: r.status, type: body.resourceType, etag: r.headers.get('ETag')};
        } catch (e) { return {error: String(e)}; }
    }"""
    url = s.base + f"/Patient/{h.patients[0]}"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = b.new_page()
            page.goto(allowed + "/")
            ok = page.evaluate(script, [url, s.token])
            assert ok == {"status": 200, "type": "Patient", "etag": 'W/"1"'}, ok
            page.goto(other + "/")
            refused = page.evaluate(script, [url, s.token])
            assert "error" in refused and "Failed to fetch" in refused["error"], refused
        finally:
            b.close()
