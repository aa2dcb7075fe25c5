"""The registry of SMART Backend Services clients: id, name, facility, public keys (a JWKS kept
inline, or a JWKS URL fetched when needed) and the scopes the client may be granted.

Kept in ``smart-clients.json`` in the data directory (re-read when it changes, so ``client
revoke`` takes effect on running workers).  Only public keys are stored.  The interface is
small (add / list / get / revoke) so another state store can replace the file."""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from fhir_gateway.randomids import random_id
from fhir_gateway.recordfile import RecordFile

CLIENTS_FILE = "smart-clients.json"
JWKS_URL_TTL = 300.0  # seconds a fetched JWKS is trusted before it is fetched again


def new_client_id() -> str:
    """A random client id that never starts with '-' (command-line tools such as smart-fetch
    would read ``--smart-client-id -Abc…`` as an option: 1 id in 64 broke them)."""
    return random_id(12)


class ClientStoreError(RuntimeError):
    """The client file or a JWKS cannot be read."""


@dataclass
class Client:
    id: str
    name: str
    facility: str
    scopes: list[str]
    jwks: dict | None = None
    jwks_url: str | None = None
    created: str = ""
    revoked: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.revoked is None


def check_jwks(jwks: object) -> dict:
    """A JWKS with at least one public RSA or EC key; private parts are refused (never stored)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ClientStoreError("a JWKS is a JSON object with a non-empty \"keys\" list")
    keys = []
    for k in jwks["keys"]:
        if not isinstance(k, dict) or k.get("kty") not in ("RSA", "EC"):
            raise ClientStoreError("JWKS keys must be RSA or EC keys")
        if "d" in k:
            raise ClientStoreError("the JWKS holds a private key: register the public keys only")
        keys.append(k)
    return {"keys": keys}


class ClientStore:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / CLIENTS_FILE
        self._file = RecordFile(self.path, Client, "client", ClientStoreError)
        self._fetched: dict[str, tuple[float, dict]] = {}

    def _load(self) -> dict[str, Client]:
        return self._file.load()

    def _save(self, clients: dict[str, Client]) -> None:
        self._file.save(asdict(c) for c in clients.values())

    # -- operations ---------------------------------------------------------------------------
    def add(self, name: str, facility: str, scopes: list[str], jwks: dict | None = None,
            jwks_url: str | None = None) -> Client:
        if (jwks is None) == (jwks_url is None):
            raise ClientStoreError("give exactly one of a JWKS or a JWKS URL")
        if jwks is not None:
            jwks = check_jwks(jwks)
        if jwks_url is not None and not jwks_url.startswith(("https://", "http://")):
            raise ClientStoreError("the JWKS URL must be http(s)")
        clients = dict(self._load())
        cid = new_client_id()
        c = Client(cid, name, facility, list(scopes), jwks, jwks_url,
                   time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        clients[cid] = c
        self._save(clients)
        return c

    def list(self) -> list[Client]:
        return sorted(self._load().values(), key=lambda c: c.created)

    def get(self, cid: str) -> Client | None:
        return self._load().get(cid)

    def revoke(self, ident: str) -> bool:
        """Revoke by id or name; its access tokens stop working at once."""
        clients = dict(self._load())
        hit = False
        for c in clients.values():
            if (c.id == ident or c.name == ident) and c.revoked is None:
                c.revoked = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                hit = True
        if hit:
            self._save(clients)
        return hit

    def keys(self, client: Client) -> dict:
        """The client's JWKS (fetched from its URL, cached for :data:`JWKS_URL_TTL`)."""
        if client.jwks is not None:
            return client.jwks
        url = client.jwks_url or ""
        hit = self._fetched.get(url)
        if hit and time.monotonic() - hit[0] < JWKS_URL_TTL:
            return hit[1]
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - registered URL
                jwks = check_jwks(orjson.loads(resp.read(1 << 20)))
        except (OSError, ValueError) as exc:
            raise ClientStoreError(f"cannot fetch the client's JWKS from {url}: {exc}") from exc
        self._fetched[url] = (time.monotonic(), jwks)
        return jwks
