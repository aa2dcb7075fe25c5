"""Test helpers for SMART Backend Services: key pairs, JWKS files and signed client assertions
(made with joserfc, as a client would)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

from conftest import BIN


def keypair(alg: str = "RS384", kid: str | None = None):
    from joserfc.jwk import ECKey, RSAKey
    kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
    params = {"kid": kid, "alg": alg, "use": "sig", "key_ops": ["sign"]}
    if alg.startswith("ES"):
        return ECKey.generate_key("P-384", parameters=params)
    return RSAKey.generate_key(2048, parameters=params)


def write_jwks(path: Path, keys, private: bool) -> Path:
    path.write_text(json.dumps({"keys": [k.as_dict(private=private) for k in keys]}))
    return path


def register(data_dir: Path, name: str, facility: str, jwks_file: Path, scope: str) -> str:
    out = subprocess.run([str(BIN / "fhir-gateway"), "client", "add", "--data-dir",
                          str(data_dir), "--name", name, "--facility", facility,
                          "--jwks-file", str(jwks_file), "--scope", scope],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def assertion(key, client_id: str, aud: str, exp_in: int = 240, jti: str | None = None,
              alg: str | None = None, **extra) -> str:
    from joserfc import jwt
    claims = {"iss": client_id, "sub": client_id, "aud": aud,
              "exp": int(time.time()) + exp_in, "jti": jti or uuid.uuid4().hex, **extra}
    header = {"alg": alg or key.as_dict()["alg"], "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def token_request(base: str, client_assertion: str, scope: str = "system/*.rs"):
    import requests
    return requests.post(f"{base}/auth/token", data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion})
