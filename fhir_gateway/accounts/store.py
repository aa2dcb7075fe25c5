"""Users, roles, the facility passphrase (合言葉), the disaster-access switch and the audit trail.

Roles
  system-admin    manages accounts and may connect/disconnect any facility; reads patient data
                  only under the same rule as a viewer (the data centre operator is not a clinician).
  hospital-admin  bound to one facility: rotates its 合言葉, connects/disconnects it, and may
                  always open its own facility's data (to check it before a drill), audited.
  viewer          a department account handed out by a hospital; opens a facility only while its
                  disaster access is connected (接続) and after giving its 合言葉.

Passwords and passphrases are stored as werkzeug scrypt hashes only.  Bad input never raises out
of the public methods except :class:`AccountError` with a plain reason for the CLI and forms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from .. import integrity, textsafe
from .attempts import Attempts, Rule
from .db import Database

ROLES = ("system-admin", "hospital-admin", "viewer")
MIN_PASSWORD = 13          # MHLW Q&A option (a) and ASVS 2.1.1 (>= 12) — see docs/viewer.md
MAX_PASSWORD = 128
MIN_PASSPHRASE = 6
MAX_FAILURES = 5           # failed logins before the account is locked ...
LOCK_SECONDS = 15 * 60     # ... for this long (from that client address; see attempts.py)
ACCOUNT_FACTOR = 4         # account-wide (any address): this many times MAX_FAILURES
PASSPHRASE_FAILURES = 5    # wrong 合言葉 per account+facility before the back-off starts
_DUMMY_HASH = generate_password_hash("timing-equaliser-not-a-password", method="scrypt")


class AccountError(ValueError):
    """A refused account operation, with a reason fit to show the operator."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    facility: str | None
    display: str
    disabled: bool
    locked_until: float
    created: float

    @property
    def is_admin(self) -> bool:
        return self.role in ("system-admin", "hospital-admin")

    def administers(self, facility: str) -> bool:
        return self.role == "system-admin" or (
            self.role == "hospital-admin" and self.facility == facility)


@dataclass(frozen=True)
class AccessState:
    facility: str
    enabled: bool          # effective: switched on and not expired
    switched_on: bool
    reason: str
    expires: float | None
    changed_by: str
    changed_at: float | None


def _check_password(password: str, username: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"password must have at most {MAX_PASSWORD} characters")
    if password.lower() == username.lower() or len(set(password)) < 4:
        raise AccountError("password is too easy to guess")


class AccountStore:
    def __init__(self, data_dir: str | Path, *, max_failures: int = MAX_FAILURES,
                 lock_seconds: float = LOCK_SECONDS, db=None) -> None:
        self.data_dir = Path(data_dir)
        # db: another backend's database with the same API (fhir_gateway.state), else sqlite
        self.db = db if db is not None else Database(self.data_dir / "accounts.sqlite3")
        self._key: bytes | None = None
        self.attempts = Attempts(self.db)
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds

    # --- users -----------------------------------------------------------------------------
    @staticmethod
    def _user(row) -> User | None:
        if row is None:
            return None
        return User(row["username"], row["role"], row["facility"], row["display"],
                    bool(row["disabled"]), row["locked_until"], row["created"])

    def get(self, username: str) -> User | None:
        return self._user(self.db.execute(
            "SELECT * FROM users WHERE username = ?", (username,)).fetchone())

    def users(self) -> list[User]:
        rows = self.db.execute("SELECT * FROM users ORDER BY username").fetchall()
        return [u for u in map(self._user, rows) if u is not None]

    def add_user(self, username: str, password: str, role: str, facility: str | None = None,
                 display: str = "") -> User:
        username = (username or "").strip()
        if not username or len(username) > 64 or any(c.isspace() for c in username):
            raise AccountError("user name must be 1-64 characters without spaces")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if role == "hospital-admin" and not facility:
            raise AccountError("a hospital-admin needs --facility CODE")
        if role == "system-admin":
            facility = None
        _check_password(password, username)
        now = time.time()
        with self.db.write_lock:
            if self.get(username):
                raise AccountError(f"user {username!r} already exists")
            self.db.write(
                "INSERT INTO users (username, pw_hash, role, facility, display, created, pw_changed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (username, generate_password_hash(password, method="scrypt"), role, facility,
                 display, now, now))
        user = self.get(username)
        if user is None:  # written under the lock just now: only a broken store loses it
            raise AccountError(f"user {username!r} was not stored")
        return user

    def set_password(self, username: str, password: str) -> None:
        if not self.get(username):
            raise AccountError(f"no user {username!r}")
        _check_password(password, username)
        self.db.write("UPDATE users SET pw_hash = ?, pw_changed = ?, failed = 0, locked_until = 0"
                      " WHERE username = ?",
                      (generate_password_hash(password, method="scrypt"), time.time(), username))
        self.attempts.clear_prefix(f"login|{username}|")  # an admin reset unlocks
        self.revoke_sessions(username)

    def set_disabled(self, username: str, disabled: bool = True) -> None:
        if not self.get(username):
            raise AccountError(f"no user {username!r}")
        self.db.write("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username))
        if disabled:
            self.revoke_sessions(username)

    def _login_keys(self, username: str, client: str) -> list[tuple[str, Rule]]:
        per_client = Rule(self.max_failures, self.lock_seconds, self.lock_seconds)
        account = Rule(self.max_failures * ACCOUNT_FACTOR, 60, self.lock_seconds)
        return [(f"login|{username}|{client}", per_client), (f"login|{username}|*", account)]

    # --- optional TOTP (RFC 6238) per account ------------------------------------------------
    def enable_totp(self, username: str) -> str:
        """Give the account a new TOTP secret; returns the otpauth:// URI to show once."""
        import pyotp
        if not self.get(username):
            raise AccountError(f"no user {username!r}")
        secret = pyotp.random_base32()
        self.db.write("UPDATE users SET totp_secret = ?, totp_last = 0 WHERE username = ?",
                      (secret, username))
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="fhir-gateway")

    def disable_totp(self, username: str) -> None:
        if not self.get(username):
            raise AccountError(f"no user {username!r}")
        self.db.write("UPDATE users SET totp_secret = NULL, totp_last = 0 WHERE username = ?",
                      (username,))

    def has_totp(self, username: str) -> bool:
        row = self.db.execute("SELECT totp_secret FROM users WHERE username = ?",
                              (username,)).fetchone()
        return bool(row and row["totp_secret"])

    def _check_totp(self, row, code: str) -> bool:
        """The code of this or the neighbouring 30-s step, each step usable once (no replay)."""
        import pyotp
        secret = row["totp_secret"] if "totp_secret" in row.keys() else None
        if not secret:
            return True
        code = (code or "").strip()
        if not (code.isdigit() and len(code) == 6):
            return False
        totp = pyotp.TOTP(secret)
        now = time.time()
        for step in (0, -1, 1):
            at = now + step * totp.interval
            counter = totp.timecode(datetime.fromtimestamp(at))
            if hmac.compare_digest(totp.at(at), code):
                hit = self.db.write("UPDATE users SET totp_last = ? WHERE username = ? AND "
                                    "totp_last < ? RETURNING username",
                                    (counter, row["username"], counter)).fetchone()
                return hit is not None
        return False

    def authenticate(self, username: str, password: str, client: str = "",
                     otp: str = "") -> tuple[User | None, str]:
        """(user, "") on success, else (None, reason code) — the form shows one generic message.

        Reason codes: unknown, disabled, locked, bad-password, bad-otp (an account with TOTP
        enabled also needs ``otp``, the current 6-digit code).  A locked account stays locked
        even for the right password until the lock expires.  Every path runs one scrypt check
        (unknown, disabled and locked accounts answer in the same time as a real one), and the
        attempt is counted atomically *before* the check (see :mod:`.attempts`)."""
        username = (username or "")[:64]
        row = self.db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        keys = self._login_keys(username, client)
        reason = "unknown" if row is None else "disabled" if row["disabled"] else ""
        if not reason and self.attempts.begin(keys):
            reason = "locked"
        ok = check_password_hash(row["pw_hash"] if row is not None and not reason else _DUMMY_HASH,
                                 password or "")
        if reason:
            return None, reason
        if ok and not self._check_totp(row, otp):
            return None, "bad-otp"  # counted like a wrong password
        if not ok:
            return None, "locked" if self.attempts.blocked(keys[0][0]) or \
                self.attempts.blocked(keys[1][0]) else "bad-password"
        self.attempts.succeeded([k for k, _ in keys])
        return self._user(row), ""

    def login_blocked(self, username: str) -> float:
        """Seconds the account-wide login block still runs (for ``user list``)."""
        return self.attempts.blocked(f"login|{username}|*")

    # --- 合言葉 attempts ---------------------------------------------------------------------
    def passphrase_keys(self, username: str, facility: str, client: str) -> list[tuple[str, Rule]]:
        per_account = Rule(PASSPHRASE_FAILURES, 60, 3600)
        per_client = Rule(PASSPHRASE_FAILURES * 2, 60, 3600)
        return [(f"pp|{username}|{facility}", per_account), (f"pp|*{client}|{facility}", per_client)]

    def try_passphrase(self, username: str, facility: str, passphrase: str,
                       client: str = "") -> tuple[int | None, float]:
        """(version, 0) when right; (None, seconds to wait) when blocked; (None, 0) when wrong.
        The attempt is counted before the check, persisted, per account+facility and address."""
        keys = self.passphrase_keys(username, facility, client)
        wait = self.attempts.begin(keys)
        if wait:
            check_password_hash(_DUMMY_HASH, passphrase or "")
            return None, wait
        version = self.check_passphrase(facility, passphrase)
        if version is not None:
            self.attempts.succeeded([k for k, _ in keys])
            return version, 0.0
        return None, 0.0

    def revoke_sessions(self, username: str) -> int:
        return self.db.write("DELETE FROM sessions WHERE username = ?", (username,)).rowcount

    # --- facility passphrase (合言葉) --------------------------------------------------------
    def set_passphrase(self, facility: str, passphrase: str, by: str) -> int:
        """Rotate the 合言葉; returns the new version (sessions unlocked with an older one lapse)."""
        if not isinstance(passphrase, str) or len(passphrase.strip()) < MIN_PASSPHRASE:
            raise AccountError(f"合言葉 must have at least {MIN_PASSPHRASE} characters")
        with self.db.write_lock:
            row = self.db.execute("SELECT version FROM passphrases WHERE facility = ?",
                                  (facility,)).fetchone()
            version = (row["version"] + 1) if row else 1
            self.db.write(
                "INSERT OR REPLACE INTO passphrases (facility, pw_hash, version, rotated_at,"
                " rotated_by) VALUES (?, ?, ?, ?, ?)",
                (facility, generate_password_hash(passphrase.strip(), method="scrypt"), version,
                 time.time(), by))
        return version

    def passphrase_info(self, facility: str) -> dict | None:
        row = self.db.execute("SELECT version, rotated_at, rotated_by FROM passphrases"
                              " WHERE facility = ?", (facility,)).fetchone()
        return dict(row) if row else None

    def check_passphrase(self, facility: str, passphrase: str) -> int | None:
        """The passphrase version when it matches, else None."""
        row = self.db.execute("SELECT pw_hash, version FROM passphrases WHERE facility = ?",
                              (facility,)).fetchone()
        if row is None:
            return None
        if check_password_hash(row["pw_hash"], (passphrase or "").strip()):
            return row["version"]
        return None

    # --- disaster access switch (接続 / 切断) -------------------------------------------------
    def access(self, facility: str, now: float | None = None) -> AccessState:
        now = time.time() if now is None else now
        row = self.db.execute("SELECT * FROM access WHERE facility = ?", (facility,)).fetchone()
        if row is None:
            return AccessState(facility, False, False, "", None, "", None)
        on = bool(row["enabled"])
        live = on and (row["expires"] is None or row["expires"] > now)
        return AccessState(facility, live, on, row["reason"], row["expires"], row["changed_by"],
                           row["changed_at"])

    def switch_access(self, facility: str, enable: bool, reason: str, by: str, person: str,
                      staff_no: str, expires: float | None = None) -> AccessState:
        reason = (reason or "").strip()
        if not reason:
            raise AccountError("a reason is required (理由を入力してください)")
        if expires is not None and expires <= time.time():
            raise AccountError("the expiry must be in the future")
        now = time.time()
        with self.db.write_lock:
            self.db.write(
                "INSERT OR REPLACE INTO access (facility, enabled, reason, expires, changed_by,"
                " changed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (facility, int(enable), reason, expires if enable else None, by, now))
            self.db.write(
                "INSERT INTO access_log (at, facility, action, reason, expires, username, person,"
                " staff_no) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now, facility, "connect" if enable else "disconnect", reason,
                 expires if enable else None, by, person, staff_no))
        return self.access(facility)

    def access_log(self, facility: str | None = None, limit: int = 200) -> list[dict]:
        return self._newest("access_log", facility, limit)

    def _newest(self, table: str, facility: str | None, limit: int) -> list[dict]:
        """The newest ``limit`` rows of a log table (``access_log``/``audit``, never user
        input), of one facility when given."""
        if facility:
            rows = self.db.execute(f"SELECT * FROM {table} WHERE facility = ? ORDER BY id DESC"
                                   " LIMIT ?", (facility, limit)).fetchall()
        else:
            rows = self.db.execute(f"SELECT * FROM {table} ORDER BY id DESC LIMIT ?",
                                   (limit,)).fetchall()
        return [dict(r) for r in rows]

    def can_read(self, user: User, facility: str) -> bool:
        """May this account open patient data of ``facility`` (before the 合言葉 check)?"""
        if user.disabled:
            return False
        if user.role == "hospital-admin" and user.facility == facility:
            return True
        return self.access(facility).enabled

    # --- audit trail (append-only, HMAC-chained) ----------------------------------------------
    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = integrity.load_key(self.data_dir)
        return self._key

    @staticmethod
    def _audit_payload(row: dict | sqlite3.Row, prev: str) -> str:
        return "\x1f".join([f"{row['at']:.6f}", row["username"], row["person"], row["staff_no"],
                            row["session"], row["ip"], row["action"], row["facility"],
                            row["patient"], row["detail"], row["outcome"], prev])

    def audit(self, action: str, *, username: str = "", person: str = "", staff_no: str = "",
              session: str = "", ip: str = "", facility: str = "", patient: str = "",
              detail: dict | str = "", outcome: str = "ok") -> None:
        """Append one audit row.  Never pass passwords, the 合言葉 or memo text here.

        One ``BEGIN IMMEDIATE`` transaction reads the last mac, inserts the row and moves the
        keyed head, so rows of several worker processes never interleave in the chain."""
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False,
                                                                 sort_keys=True)
        given = {"username": username, "person": person, "staff_no": staff_no, "session": session,
                 "ip": ip, "action": action, "facility": facility, "patient": patient,
                 "detail": text, "outcome": outcome}
        row: dict[str, object] = {k: textsafe.strip(str(v)) for k, v in given.items()}
        key = self.key
        with self.db.transaction() as conn:
            last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev = last["hash"] if last else ""
            row["at"] = time.time()
            digest = integrity.mac(key, "audit", self._audit_payload(row, prev))
            conn.execute(
                "INSERT INTO audit (at, username, person, staff_no, session, ip, action, facility,"
                " patient, detail, outcome, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row["at"], row["username"], row["person"], row["staff_no"], row["session"],
                 row["ip"], row["action"], row["facility"], row["patient"], row["detail"],
                 row["outcome"], prev, digest))
            head = conn.execute("SELECT count FROM audit_head WHERE id = 1").fetchone()
            count = (head["count"] + 1) if head else \
                conn.execute("SELECT COUNT(*) AS n FROM audit").fetchone()["n"]
            conn.execute("INSERT OR REPLACE INTO audit_head (id, count, last, mac)"
                         " VALUES (1, ?, ?, ?)",
                         (count, digest, integrity.head_mac(key, "audit", count, digest)))

    def audit_rows(self, limit: int = 500, facility: str | None = None) -> list[dict]:
        return self._newest("audit", facility, limit)

    def audit_search(self, *, facility: str, since: float | None = None,
                     until: float | None = None, agent: str | None = None,
                     patient: str | None = None, action: str | None = None,
                     limit: int = 100, before_id: int | None = None) -> list[dict]:
        """Rows of one facility, newest first, filtered (the AuditEvent export)."""
        sql: list[str] = ["SELECT * FROM audit WHERE facility = ?"]
        args: list[object] = [facility]
        for cond, val in (("at >= ?", since), ("at < ?", until), ("username = ?", agent),
                          ("patient = ?", patient), ("action = ?", action),
                          ("id < ?", before_id)):
            if val is not None:
                sql.append(f"AND {cond}")
                args.append(val)
        sql.append("ORDER BY id DESC LIMIT ?")
        args.append(limit)
        return [dict(r) for r in self.db.execute(" ".join(sql), tuple(args)).fetchall()]

    def audit_report(self, anchor: integrity.Anchor | None = None) -> integrity.Report:
        """Recompute the chain (and check the keyed head and an optional anchor)."""
        key = self.key
        report = integrity.Report("audit", 0)
        prev, keyed, n = "", False, 0
        macs: list[str] = []
        for row in self.db.execute("SELECT * FROM audit ORDER BY id"):
            n += 1
            payload = self._audit_payload(row, prev)
            good = row["prev_hash"] == prev and hmac.compare_digest(
                row["hash"], integrity.mac(key, "audit", payload))
            if good:
                keyed = True
            elif not keyed and row["prev_hash"] == prev and row["hash"] == hashlib.sha256(
                    payload.encode("utf-8")).hexdigest():
                good = True  # a row of an older version (plain SHA-256), before any keyed row
            if not good:
                report.ok, report.first_bad = False, n
                report.reason = (f"row id {row['id']} was edited, inserted or re-chained "
                                 "(MAC does not match)")
                report.count = n - 1
                return report
            prev = row["hash"]
            macs.append(prev)
        report.count = n
        head = self.db.execute("SELECT count, last, mac FROM audit_head WHERE id = 1").fetchone()
        if head is None:
            if keyed:
                report.ok, report.first_bad = False, n
                report.reason = "the keyed head record is missing (the tail may have been dropped)"
        elif not hmac.compare_digest(head["mac"], integrity.head_mac(key, "audit", head["count"],
                                                                     head["last"])):
            report.ok, report.first_bad, report.reason = False, n, "the head record was edited"
        elif head["count"] > n:
            report.ok, report.first_bad = False, n + 1
            report.reason = f"{head['count'] - n} row(s) at the end were dropped"
        elif head["count"] and macs[head["count"] - 1] != head["last"]:
            report.ok, report.first_bad = False, head["count"]
            report.reason = "the chain was rewritten up to the head"
        if anchor is not None:
            integrity.check_anchor(report, anchor, macs)
        return report

    def audit_anchor(self) -> integrity.Anchor:
        row = self.db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        n = self.db.execute("SELECT COUNT(*) AS n FROM audit").fetchone()["n"]
        return integrity.Anchor("audit", n, row["hash"] if row else "")

    def verify_audit(self) -> tuple[bool, int]:
        """(intact, number of rows checked)."""
        r = self.audit_report()
        return r.ok, r.count
