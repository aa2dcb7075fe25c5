"""SMART Backend Services (issue 12 item 1) against a real server: discovery, the token
endpoint's assertion checks, short-lived tokens, scopes per type and interaction, revocation."""

from __future__ import annotations

import requests

from smart_keys import assertion, keypair, register, token_request, write_jwks


def _setup(server, hospital, tmp_path, alg, scope, name=None):
    key = keypair(alg)
    jwks = write_jwks(tmp_path / f"{alg}-{scope.replace('/', '_')}.jwks", [key], private=False)
    cid = register(hospital.data_dir, name or f"app-{alg}-{scope}", server.facility, jwks, scope)
    return key, cid


def _token(server, key, cid, scope="system/*.rs"):
    r = token_request(server.base, assertion(key, cid, server.base + "/auth/token"), scope)
    assert r.status_code == 200, r.text
    return r.json()


def test_discovery_is_public(server):
    r = requests.get(server.base + "/.well-known/smart-configuration")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    conf = r.json()
    assert conf["token_endpoint"] == server.base + "/auth/token"
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "client-confidential-asymmetric" in conf["capabilities"]
    sec = requests.get(server.base + "/metadata").json()["rest"][0]["security"]
    assert any(c["code"] == "SMART-on-FHIR" for s in sec["service"] for c in s["coding"])
    uris = sec["extension"][0]["extension"]
    assert {"url": "token", "valueUri": server.base + "/auth/token"} in uris


def test_rs384_and_es384_clients_read(server, hospital, tmp_path):
    for alg in ("RS384", "ES384"):
        key, cid = _setup(server, hospital, tmp_path, alg, "system/*.rs")
        tok = _token(server, key, cid)
        assert tok["token_type"] == "bearer" and 0 < tok["expires_in"] <= 300
        assert tok["scope"] == "system/*.rs"
        h = {"Authorization": f"Bearer {tok['access_token']}"}
        r = requests.get(server.base + f"/Patient/{hospital.facts['first']}", headers=h)
        assert r.status_code == 200, r.text
        assert requests.get(server.base + "/Observation", headers=h,
                            params={"patient": hospital.facts["first"]}).status_code == 200


def test_scopes_per_type_and_interaction(server, hospital, tmp_path):
    pid = hospital.facts["first"]
    key, cid = _setup(server, hospital, tmp_path, "ES384", "system/Observation.rs")
    # asking for more than registered: granted only what the registration covers
    tok = _token(server, key, cid, "system/Observation.rs system/Patient.rs")
    assert tok["scope"] == "system/Observation.rs"
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    obs = requests.get(server.base + "/Observation", headers=h,
                       params={"patient": pid, "_include": "Observation:patient"})
    assert obs.status_code == 200
    types = {e["resource"]["resourceType"] for e in obs.json()["entry"]
             if e["search"]["mode"] != "outcome"}
    assert types == {"Observation"}  # the included Patient is not readable with this token
    assert requests.get(server.base + f"/Patient/{pid}", headers=h).status_code == 403
    assert requests.get(server.base + "/Patient", headers=h).status_code == 403
    # v2 read-only (no search): read works, search is refused
    key2, cid2 = _setup(server, hospital, tmp_path, "RS384", "system/Patient.r")
    h2 = {"Authorization": f"Bearer {_token(server, key2, cid2, 'system/Patient.r')['access_token']}"}
    assert requests.get(server.base + f"/Patient/{pid}", headers=h2).status_code == 200
    assert requests.get(server.base + "/Patient", headers=h2).status_code == 403
    # v1 form
    key3, cid3 = _setup(server, hospital, tmp_path, "RS384", "system/*.read")
    h3 = {"Authorization": f"Bearer {_token(server, key3, cid3, 'system/*.read')['access_token']}"}
    assert requests.get(server.base + "/Patient", headers=h3).status_code == 200
    # nothing grantable
    r = token_request(server.base, assertion(key, cid, server.base + "/auth/token"),
                      "system/Patient.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_assertion_checks(server, hospital, tmp_path):
    key, cid = _setup(server, hospital, tmp_path, "RS384", "system/*.rs")
    aud = server.base + "/auth/token"
    a = assertion(key, cid, aud)
    assert token_request(server.base, a).status_code == 200
    replay = token_request(server.base, a)
    assert replay.status_code == 401 and "jti" in replay.json()["error_description"]
    too_long = token_request(server.base, assertion(key, cid, aud, exp_in=900))
    assert too_long.status_code == 401 and "five minutes" in too_long.json()["error_description"]
    expired = token_request(server.base, assertion(key, cid, aud, exp_in=-600))
    assert expired.status_code == 401
    wrong_aud = token_request(server.base, assertion(key, cid, server.base + "/other"))
    assert wrong_aud.status_code == 401 and "aud" in wrong_aud.json()["error_description"]
    stranger = keypair("RS384", kid=key.kid)  # same kid, another key: signature fails
    assert token_request(server.base, assertion(stranger, cid, aud)).status_code == 401
    rs256 = keypair("RS256", kid=key.kid)
    assert token_request(server.base, assertion(rs256, cid, aud)).status_code == 401
    assert token_request(server.base, "not-a-jwt").status_code == 400
    r = requests.post(server.base + "/auth/token", data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_revoke_stops_tokens_and_bad_tokens_are_401(server, hospital, tmp_path):
    import subprocess

    from conftest import BIN
    key, cid = _setup(server, hospital, tmp_path, "ES384", "system/*.rs", name="to-revoke")
    h = {"Authorization": f"Bearer {_token(server, key, cid)['access_token']}"}
    sess = requests.Session()  # one connection: the worker that remembered the signature check
    for _ in range(3):
        assert sess.get(server.base + "/Patient", headers=h).status_code == 200
    out = subprocess.run([str(BIN / "fhir-gateway"), "client", "list", "--data-dir",
                          str(hospital.data_dir)], capture_output=True, text=True, check=True)
    assert cid in out.stdout and "to-revoke" in out.stdout
    subprocess.run([str(BIN / "fhir-gateway"), "client", "revoke", cid, "--data-dir",
                    str(hospital.data_dir)], check=True, capture_output=True)
    assert sess.get(server.base + "/Patient", headers=h).status_code == 401
    assert requests.get(server.base + "/Patient", headers=h).status_code == 401
    assert token_request(server.base, assertion(key, cid, server.base + "/auth/token")) \
        .status_code == 401
    forged = h["Authorization"][:-4] + "AAAA"
    assert requests.get(server.base + "/Patient", headers={"Authorization": forged}) \
        .status_code == 401


def test_client_cli_refuses_bad_input(hospital, tmp_path):
    import subprocess

    from conftest import BIN
    key = keypair("RS384")
    priv = write_jwks(tmp_path / "priv.jwks", [key], private=True)
    pub = write_jwks(tmp_path / "pub.jwks", [key], private=False)

    def run(*args):
        return subprocess.run([str(BIN / "fhir-gateway"), "client", "add", "--data-dir",
                               str(hospital.data_dir), "--name", "x", *args],
                              capture_output=True, text=True)
    r = run("--facility", "1312345678", "--jwks-file", str(priv), "--scope", "system/*.rs")
    assert r.returncode == 2 and "private" in r.stderr
    r = run("--facility", "1312345678", "--jwks-file", str(pub), "--scope", "patient/*.rs")
    assert r.returncode == 2 and "system scope" in r.stderr
    r = run("--facility", "1312345678", "--scope", "system/*.rs")
    assert r.returncode == 2
