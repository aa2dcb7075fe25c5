"""Failed-attempt counters for logins and the 合言葉, persisted and counted atomically.

Why (issue 13 M3, L1): the 合言葉 limit lived in the session (log in again and it reset; 30
parallel guesses → 27 checked), and the login counter was read-then-written (40 parallel wrong
passwords → 22 checked).  Here each attempt is *counted before* the slow hash check, inside one
``BEGIN IMMEDIATE`` transaction, so parallel guesses can never all slip in before the first
failure is recorded; a success then clears the counters.  Counters are kept per key:

* ``pp|<account>|<facility>`` and ``pp|*<address>|<facility>`` — the 合言葉, per account and per
  client address (guessing from many accounts at one address is caught too);
* ``login|<account>|<address>`` — a wrong password locks that account *from that address*
  only, so nobody can lock a shared department account for everyone;
* ``login|<account>|*`` — a higher account-wide limit against distributed guessing.

After ``limit`` failures a key is blocked for ``base`` seconds, doubling with each further
failure (exponential back-off) up to ``cap``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database

@dataclass(frozen=True)
class Rule:
    limit: int        # failures allowed before blocking
    base: float       # first block, seconds
    cap: float        # longest block, seconds
    forget: float = 24 * 3600  # failures older than this no longer count

    def block(self, failures: int) -> float:
        if failures < self.limit:
            return 0.0
        return min(self.cap, self.base * 2 ** (failures - self.limit))


class Attempts:
    def __init__(self, db: Database) -> None:
        self.db = db  # table ``attempts``: accounts/db.py (sqlite), scale/migrations.py step 5

    def begin(self, keys: list[tuple[str, Rule]], now: float | None = None) -> float:
        """Count one attempt on every key, atomically, *before* the secret is checked.

        Returns 0 when the attempt may be checked, else the seconds until the earliest retry
        (the attempt is then not counted and must not be checked)."""
        now = time.time() if now is None else now
        with self.db.transaction() as conn:
            rows = {}
            for key, _rule in keys:
                r = conn.execute("SELECT failures, last, blocked_until FROM attempts WHERE key = ?",
                                 (key,)).fetchone()
                rows[key] = r
                if r is not None and r["blocked_until"] > now:
                    return r["blocked_until"] - now
            for key, rule in keys:
                r = rows[key]
                failures = 1 if r is None or now - r["last"] > rule.forget else r["failures"] + 1
                blocked = now + rule.block(failures) if rule.block(failures) else 0.0
                conn.execute("INSERT OR REPLACE INTO attempts (key, failures, last, blocked_until)"
                             " VALUES (?, ?, ?, ?)", (key, failures, now, blocked))
        return 0.0

    def succeeded(self, keys: list[str]) -> None:
        """The secret was right: the attempt counted by :meth:`begin` is taken back."""
        with self.db.transaction() as conn:
            for key in keys:
                conn.execute("DELETE FROM attempts WHERE key = ?", (key,))

    def blocked(self, key: str, now: float | None = None) -> float:
        now = time.time() if now is None else now
        r = self.db.execute("SELECT blocked_until FROM attempts WHERE key = ?", (key,)).fetchone()
        return max(0.0, r["blocked_until"] - now) if r else 0.0

    def clear_prefix(self, prefix: str) -> None:
        self.db.write("DELETE FROM attempts WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
