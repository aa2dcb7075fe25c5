"""Per-client limits behind a reverse proxy: with ``trusted_proxies`` the server keys the
per-address limits (here: the login lock per account + address) on the client that HAProxy
(deploy/haproxy.cfg, ``option forwardfor``) names in X-Forwarded-For, not on the proxy's
address; a client cannot choose its address through the proxy (HAProxy appends), and a peer that
is not a trusted proxy cannot choose it with its own headers.  Clients are told apart by their
loopback source address (127.0.0.x)."""

from __future__ import annotations

import subprocess

import pytest
import requests

from conftest import build_hospital, free_port, make_token
from fhir_gateway.proxies import client_address, hops, parse_networks
from test_acceptance_viewer import Viewer, add_user
from test_scale_out import HAPROXY, haproxy_config, wait_port
from test_security_attacks import FromAddress

WRONG = "not the password at all"


def _client(url: str, source: str, forwarded_for: str | None = None) -> Viewer:
    v = Viewer(url)
    v.s.mount("http://", FromAddress(source))
    if forwarded_for:
        v.s.headers["X-Forwarded-For"] = forwarded_for
    return v


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, server_factory):
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (scripts/system-deps.sh installs it)")
    base = tmp_path_factory.mktemp("proxy")
    h = build_hospital(base, n_patients=1)
    for name in ("alpha", "beta", "gamma"):
        add_user(h.data_dir, name, "viewer")
    srv = server_factory(["--config", str(h.config)], token=make_token(h.data_dir),
                         env={"FHIR_GATEWAY_TRUSTED_PROXIES": "127.0.0.1"})
    port = free_port()
    cfg = haproxy_config(base, port, [srv.url.removeprefix("http://")], fall=5)
    proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        proxy = f"http://127.0.0.1:{port}"
        for _ in range(100):  # until the health check marks the server up
            try:
                if requests.get(proxy + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            import time
            time.sleep(0.2)
        yield h, srv, proxy
    finally:
        proc.terminate()
        proc.wait(10)


def _lock(url: str, source: str, user: str, forwarded_for=lambda i: None) -> None:
    for i in range(6):
        r = _client(url, source, forwarded_for(i)).login(user, password=WRONG)
        assert r.status_code in (401, 429), r.status_code


def test_clients_behind_the_proxy_have_their_own_limits(proxied) -> None:
    h, srv, proxy = proxied
    _lock(proxy, "127.0.0.2", "alpha")
    assert _client(proxy, "127.0.0.2").login("alpha").status_code != 302  # locked for .2
    # another client through the same proxy is another address: not locked
    assert _client(proxy, "127.0.0.3").login("alpha").status_code == 302
    # a client cannot pick an address through the proxy (HAProxy appends the real one)
    assert _client(proxy, "127.0.0.2", "127.0.0.7").login("alpha").status_code != 302
    # the audit trail names the client, not the proxy
    from fhir_gateway.accounts import AccountStore
    rows = [r for r in AccountStore(h.data_dir).audit_rows(200) if r["username"] == "alpha"]
    assert {r["ip"] for r in rows if r["action"] == "login"} == {"127.0.0.3"}
    assert {r["ip"] for r in rows if r["action"] == "login-failed"} == {"127.0.0.2"}


def test_untrusted_peers_cannot_choose_their_address(proxied) -> None:
    _h, srv, _proxy = proxied
    # straight to the server from 127.0.0.4 (not a trusted proxy), a new X-Forwarded-For each time
    _lock(srv.url, "127.0.0.4", "beta", lambda i: f"10.9.8.{i}")
    assert _client(srv.url, "127.0.0.4", "10.9.8.77").login("beta").status_code != 302
    assert _client(srv.url, "127.0.0.5").login("beta").status_code == 302
    # the trusted proxy's address itself, without a header, is one client (the proxy)
    _lock(srv.url, "127.0.0.1", "gamma")
    assert _client(srv.url, "127.0.0.6").login("gamma").status_code == 302


def test_forwarding_headers_are_read_from_the_right() -> None:
    trusted = parse_networks("127.0.0.1, 10.0.0.0/8")
    xff = hops("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")
    assert client_address("127.0.0.1", xff, trusted) == "203.0.113.9"
    assert client_address("192.0.2.1", xff, trusted) == "192.0.2.1"  # untrusted peer
    assert client_address("127.0.0.1", [], trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", ["unknown"], trusted) == "127.0.0.1"
    fwd = hops("forwarded", 'for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.0.0.2')
    assert client_address("10.0.0.9", fwd, trusted) == "2001:db8::1"
    assert client_address("127.0.0.1", ["198.51.100.4:5555"], trusted) == "198.51.100.4"
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/8, not-an-address")
