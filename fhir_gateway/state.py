"""The state-store protocol: where accounts, sessions, lockouts, the 合言葉, the access switch,
the audit trail, API tokens, SMART clients, memos and export jobs live, chosen once from ``[state] backend``.

* ``embedded`` (default): ``{data_dir}/accounts.sqlite3``, ``api-tokens.json`` and
  ``memos/*.jsonl`` — one machine, nothing but Python.
* ``postgresql``: the same classes over PostgreSQL (:mod:`fhir_gateway.scale.pgstate`), so any
  number of gateway instances share sessions, lockouts, tokens, memos and one audit chain.

The application asks this module for its stores and never builds them itself, so a third backend
only has to implement :class:`StateStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fhir_gateway.config import Config
from fhir_gateway.singletons import Singletons
from fhir_gateway.state_errors import StateUnavailable  # noqa: F401 - re-exported


class StateStore(Protocol):
    backend: str

    def database(self): ...  # the accounts/sessions database (execute, write, transaction)
    def accounts(self): ...  # fhir_gateway.accounts.AccountStore
    def tokens(self): ...  # fhir_gateway.auth_tokens.TokenStore
    def memos(self): ...  # fhir_gateway.memos.MemoJournal
    def smart_clients(self): ...  # fhir_gateway.smart.clients.ClientStore
    def smart_jti(self): ...  # fhir_gateway.smart.tokens.JtiStore
    def export_jobs(self): ...  # fhir_gateway.bulk.store.JobStore (status + claim of a runner)
    def health(self) -> dict: ...


class EmbeddedState:
    """SQLite and journal files in ``data_dir`` (the behaviour of every earlier release)."""

    backend = "embedded"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._stores = Singletons()

    def database(self):
        return self.accounts().db

    def accounts(self):
        from fhir_gateway.accounts import AccountStore
        return self._stores.get("accounts", lambda: AccountStore(self.data_dir))

    def tokens(self):
        from fhir_gateway.auth_tokens import TokenStore
        return self._stores.get("tokens", lambda: TokenStore(self.data_dir))

    def memos(self):
        from fhir_gateway.memos import MemoJournal
        return self._stores.get("memos", lambda: MemoJournal(self.data_dir))

    def smart_clients(self):
        from fhir_gateway.smart.clients import ClientStore
        return self._stores.get("smart_clients", lambda: ClientStore(self.data_dir))

    def smart_jti(self):
        from fhir_gateway.smart.tokens import JTI_FILE, JtiStore
        return self._stores.get("smart_jti", lambda: JtiStore(self.data_dir / JTI_FILE))

    def export_jobs(self):
        from fhir_gateway.bulk.store import JobStore
        return self._stores.get("export_jobs", lambda: JobStore(self.data_dir))

    def health(self) -> dict:
        return {"backend": self.backend, "status": "ok"}


def open_state(config: Config) -> StateStore:
    """The configured state store; build it once per application or command."""
    if config.state.postgresql:
        from fhir_gateway.scale.pgstate import PgState
        return PgState(config.state.dsn, config.data_dir)
    return EmbeddedState(config.data_dir)
