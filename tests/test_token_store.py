"""A corrupt token file: `serve` and `token` stop with the reason; a running server fails closed
with a 503 OperationOutcome (never a 500, never an accepted token)."""

from __future__ import annotations

import subprocess

import requests

from conftest import BIN, build_hospital, make_token


def test_corrupt_token_file(tmp_path, server_factory):
    h = build_hospital(tmp_path)
    token = make_token(h.data_dir)
    srv = server_factory(["--config", str(h.config)], token=token)
    pid = h.patients[0]
    assert requests.get(f"{srv.base}/Patient/{pid}", headers=srv.headers, timeout=30).ok
    (h.data_dir / "api-tokens.json").write_text("garbage{", encoding="utf-8")
    r = requests.get(f"{srv.base}/Patient/{pid}", headers=srv.headers, timeout=30)
    assert r.status_code == 503 and r.json()["resourceType"] == "OperationOutcome"
    assert "token store" in r.text

    for args in (["token", "list", "--data-dir", str(h.data_dir)],
                 ["serve", "--config", str(h.config), "--port", "0", "--workers", "2"]):
        p = subprocess.run([str(BIN / "fhir-gateway"), *args], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "not a readable token file" in p.stderr and "Traceback" not in p.stderr


def test_verified_tokens_follow_the_file(tmp_path):
    """A token verified once is remembered for that version of the token file only: revoking
    it (the file is rewritten) refuses it at the next check, in the same process."""
    from fhir_gateway.auth_tokens import TokenStore
    store = TokenStore(tmp_path)
    tok = store.create("reader", "1310000001")
    other = store.create("other", "1310000001")
    first = store.verify(tok)
    assert first is not None and store.verify(tok) is first  # the remembered principal
    assert store.verify(tok[:-2] + "xx") is None
    assert store.revoke("reader")
    assert store.verify(tok) is None
    assert store.verify(other) is not None
