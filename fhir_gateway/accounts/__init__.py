"""Accounts of the clinician viewer: users and roles, sessions, the facility passphrase (合言葉),
the disaster-access switch and the audit trail, all in ``{data_dir}/accounts.sqlite3``."""

from .sessions import ABSOLUTE_SECONDS, IDLE_SECONDS, ServerSession, SqliteSessionInterface
from .store import (MIN_PASSWORD, ROLES, AccessState, AccountError, AccountStore, User)

__all__ = ["AccountStore", "AccountError", "AccessState", "User", "ROLES", "MIN_PASSWORD",
           "SqliteSessionInterface", "ServerSession", "IDLE_SECONDS", "ABSOLUTE_SECONDS"]
