"""The token endpoint of SMART Backend Services and the access tokens it issues.

A client posts ``grant_type=client_credentials`` with a ``client_assertion`` JWT it signed
(RS384 or ES384) with a key of its registered JWKS.  The assertion must name the client in
``iss`` and ``sub``, the token URL in ``aud``, expire within five minutes and carry a ``jti``
never seen before (kept in a small SQLite table shared by all worker processes until the
assertion would have expired).  The access token is a JWT signed with a key derived from the
data directory's secret (HS256), valid :data:`ACCESS_TOKEN_SECONDS`, so any worker can check it;
a revoked client's tokens stop at once because every check looks the client up."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from pathlib import Path

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from fhir_gateway.auth_tokens import Principal

from .clients import ClientStore, ClientStoreError
from .scopes import grant

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_SECONDS = 300
ACCESS_TOKEN_SECONDS = 300
CLOCK_SKEW = 60
JTI_FILE = "smart-jti.sqlite3"


class OAuthError(Exception):
    """An RFC 6749 error answer: ``{"error": code, "error_description": ...}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class JtiStore:
    """Assertion ids already used, until they expire (replay refused across all workers)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _db(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS jti (client TEXT, jti TEXT, exp REAL, "
                   "PRIMARY KEY (client, jti))")
        return db

    def claim(self, client: str, jti: str, exp: float) -> bool:
        """Record ``jti``; False when it was used before (a replay)."""
        db = self._db()
        try:
            db.execute("DELETE FROM jti WHERE exp < ?", (time.time() - CLOCK_SKEW,))
            db.execute("INSERT INTO jti VALUES (?, ?, ?)", (client, jti, exp))
            return True
        except sqlite3.IntegrityError:
            return False
        finally:
            db.close()


VERIFIED_MAX = 1024  # access tokens whose signature check is remembered (cleared when full)


class SmartAuthority:
    def __init__(self, data_dir: Path, secret: bytes, clients: ClientStore | None = None,
                 jti: JtiStore | None = None) -> None:
        # clients/jti: the state store's (fhir_gateway.state), else files in the data dir
        self.clients = clients if clients is not None else ClientStore(data_dir)
        self.jti = jti if jti is not None else JtiStore(Path(data_dir) / JTI_FILE)
        self._key = OctKey.import_key(hmac.new(secret, b"smart-access-token",
                                               hashlib.sha256).digest())
        self._verified: dict[str, dict] = {}  # access token -> its verified claims

    # -- token endpoint -----------------------------------------------------------------------
    def issue(self, facility: str, token_url: str, form: dict[str, str]) -> dict:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        client, claims = self._check_assertion(facility, token_url, assertion)
        requested = form.get("scope") or ""
        if not requested.strip():
            raise OAuthError(400, "invalid_scope", "scope is required (e.g. system/*.rs)")
        granted = grant(requested, client.scopes)
        if not granted:
            raise OAuthError(400, "invalid_scope", "none of the requested scopes is allowed for "
                             f"this client (registered: {' '.join(client.scopes)})")
        now = int(time.time())
        token = jwt.encode({"alg": "HS256"}, {
            "iss": token_url, "sub": client.id, "fac": facility, "scope": " ".join(granted),
            "iat": now, "exp": now + ACCESS_TOKEN_SECONDS, "jti": secrets.token_urlsafe(12)},
            self._key)
        return {"access_token": token, "token_type": "bearer",
                "expires_in": ACCESS_TOKEN_SECONDS, "scope": " ".join(granted)}

    def _check_assertion(self, facility: str, token_url: str, assertion: str):
        try:
            header, claims = _peek(assertion)
        except ValueError as exc:
            raise OAuthError(400, "invalid_client", f"client_assertion is not a JWT: {exc}") \
                from None
        cid = claims.get("iss")
        if not isinstance(cid, str) or claims.get("sub") != cid:
            raise OAuthError(401, "invalid_client", "iss and sub must both be the client id")
        try:
            client = self.clients.get(cid)
        except ClientStoreError as exc:
            raise OAuthError(503, "temporarily_unavailable", str(exc)) from None
        if client is None or not client.active:
            raise OAuthError(401, "invalid_client", "unknown or revoked client")
        if client.facility not in ("*", facility):
            raise OAuthError(401, "invalid_client", f"the client is not registered for {facility}")
        if header.get("alg") not in ASSERTION_ALGS:
            raise OAuthError(401, "invalid_client", "the assertion must be signed with RS384 or "
                             "ES384")
        if not header.get("kid"):
            raise OAuthError(401, "invalid_client", "the assertion header needs a kid")
        try:
            # key_ops of a published key often say "sign" (copied from the private JWKS); the
            # server only verifies with it, so that field is not a reason to refuse
            keys = KeySet.import_key_set({"keys": [
                {k: v for k, v in key.items() if k != "key_ops"}
                for key in self.clients.keys(client)["keys"]]})
            token = jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGS))
        except ClientStoreError as exc:
            raise OAuthError(401, "invalid_client", str(exc)) from None
        except (JoseError, ValueError, KeyError) as exc:
            raise OAuthError(401, "invalid_client", "the assertion signature does not verify "
                             f"with the client's keys ({type(exc).__name__})") from None
        claims = token.claims
        aud = claims.get("aud")
        if aud != token_url and not (isinstance(aud, list) and token_url in aud):
            raise OAuthError(401, "invalid_client", f"aud must be the token URL {token_url}")
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp < now - CLOCK_SKEW:
            raise OAuthError(401, "invalid_client", "the assertion has expired (or has no exp)")
        if exp > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW:
            raise OAuthError(401, "invalid_client", "the assertion's exp is more than five "
                             "minutes away")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf > now + CLOCK_SKEW:
            raise OAuthError(401, "invalid_client", "the assertion is not valid yet (nbf)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise OAuthError(401, "invalid_client", "the assertion needs a jti")
        if not self.jti.claim(client.id, jti, float(exp)):
            raise OAuthError(401, "invalid_client", "this assertion (jti) was already used")
        return client, claims

    # -- access tokens ------------------------------------------------------------------------
    def verify(self, token: str) -> Principal | None:
        """The principal of a valid access token, else None (bad signature, expired, revoked).

        The signature check (a pure function of the token and this server's key) is remembered
        per token; expiry and the client's registration are checked on every request, so a
        disabled client is refused at once."""
        c = self._verified.get(token)
        if c is None:
            try:
                c = jwt.decode(token, self._key, algorithms=["HS256"]).claims
            except (JoseError, ValueError):
                return None
            if len(self._verified) >= VERIFIED_MAX:  # only validly signed tokens get here
                self._verified.clear()
            self._verified[token] = c
        exp = c.get("exp")
        if not isinstance(exp, (int, float)) or exp < time.time():
            return None
        client = self.clients.get(str(c.get("sub")))
        if client is None or not client.active:
            return None
        return Principal(f"client:{client.name}", str(c.get("fac")), client.id,
                         tuple(str(c.get("scope", "")).split()))


def _peek(assertion: str) -> tuple[dict, dict]:
    """Header and claims of a compact JWS before verification (to find the client's keys)."""
    import base64

    import orjson
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("three dot-separated parts expected")
    out = []
    for p in parts[:2]:
        try:
            out.append(orjson.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(out[-1], dict):
            raise ValueError("header and claims must be JSON objects")
    return out[0], out[1]
