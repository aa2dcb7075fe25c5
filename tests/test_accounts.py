"""Accounts: password hashing, lockout, roles, 合言葉, the disaster-access switch, audit chain, CLI."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from fhir_gateway.accounts import AccountError, AccountStore

PW = "correct horse battery"


@pytest.fixture()
def store(tmp_path):
    return AccountStore(tmp_path, max_failures=3, lock_seconds=60)


def test_password_hashed_and_checked(store, tmp_path):
    store.add_user("naika", PW, "viewer", "1310000017", "内科")
    raw = sqlite3.connect(tmp_path / "accounts.sqlite3").execute(
        "SELECT pw_hash FROM users").fetchone()[0]
    assert raw.startswith("scrypt:") and PW not in raw
    user, why = store.authenticate("naika", PW)
    assert user and user.role == "viewer" and why == ""
    assert store.authenticate("naika", PW + "x") == (None, "bad-password")
    assert store.authenticate("nobody", PW) == (None, "unknown")


def test_password_policy(store):
    with pytest.raises(AccountError, match="13"):
        store.add_user("a", "short", "viewer")
    with pytest.raises(AccountError, match="facility"):
        store.add_user("h", PW, "hospital-admin")
    with pytest.raises(AccountError, match="role"):
        store.add_user("x", PW, "root")
    store.add_user("a", PW, "viewer")
    with pytest.raises(AccountError, match="exists"):
        store.add_user("a", PW, "viewer")


def test_lockout_after_failures_even_with_right_password(store):
    store.add_user("a", PW, "viewer")
    for _ in range(2):
        assert store.authenticate("a", "wrong password!!")[1] == "bad-password"
    assert store.authenticate("a", "wrong password!!")[1] == "locked"
    assert store.authenticate("a", PW) == (None, "locked")
    store.set_password("a", PW + "2")  # an admin reset unlocks
    assert store.authenticate("a", PW + "2")[0] is not None


def test_disable_revokes_sessions(store):
    store.add_user("a", PW, "viewer")
    store.db.write("INSERT INTO sessions VALUES ('h', '{}', 0, ?, 'a')", (time.time(),))
    store.set_disabled("a")
    assert store.authenticate("a", PW) == (None, "disabled")
    assert store.db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


def test_passphrase_rotation(store):
    assert store.check_passphrase("F1", "sakura-2026") is None
    assert store.set_passphrase("F1", "sakura-2026", "admin") == 1
    assert store.check_passphrase("F1", "sakura-2026") == 1
    assert store.check_passphrase("F1", "wrong") is None
    assert store.set_passphrase("F1", "momiji-2026", "admin") == 2
    assert store.check_passphrase("F1", "sakura-2026") is None
    with pytest.raises(AccountError):
        store.set_passphrase("F1", "abc", "admin")


def test_access_switch_expiry_and_log(store):
    store.add_user("v", PW, "viewer")
    store.add_user("h", PW, "hospital-admin", "F1")
    v, h = store.get("v"), store.get("h")
    assert not store.can_read(v, "F1") and store.can_read(h, "F1") and not store.can_read(h, "F2")
    with pytest.raises(AccountError, match="reason"):
        store.switch_access("F1", True, " ", "h", "山田", "123")
    st = store.switch_access("F1", True, "地震のため", "h", "山田 花子", "A123",
                             expires=time.time() + 3600)
    assert st.enabled and store.can_read(v, "F1")
    assert not store.access("F1", now=time.time() + 7200).enabled  # expired
    store.switch_access("F1", False, "復旧", "h", "山田 花子", "A123")
    assert not store.can_read(v, "F1")
    log = store.access_log("F1")
    assert [r["action"] for r in log] == ["disconnect", "connect"]
    assert log[1]["reason"] == "地震のため" and log[1]["person"] == "山田 花子"
    with pytest.raises(sqlite3.DatabaseError):
        store.db.write("DELETE FROM access_log")


def test_audit_chain_detects_tampering(store, tmp_path):
    store.audit("login", username="v", person="山田", staff_no="1")
    store.audit("patient-open", username="v", facility="F1", patient="P1")
    assert store.verify_audit() == (True, 2)
    with pytest.raises(sqlite3.DatabaseError):
        store.db.write("UPDATE audit SET patient = 'P2'")
    con = sqlite3.connect(tmp_path / "accounts.sqlite3")
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET patient = 'P2' WHERE action = 'patient-open'")
    con.commit()
    assert store.verify_audit()[0] is False


def test_cli_user_commands(tmp_path):
    def cli(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "fhir_gateway", "user", *args,
                               "--data-dir", str(tmp_path)], input=stdin, capture_output=True,
                              text=True, timeout=60)
    r = cli("add", "er", "--role", "viewer", "--display", "救急科", "--password-stdin", stdin=PW + "\n")
    assert r.returncode == 0, r.stderr
    r = cli("add", "boss", "--role", "hospital-admin", "--password-stdin", stdin=PW + "\n")
    assert r.returncode == 2 and "facility" in r.stderr
    r = cli("add", "boss", "--role", "hospital-admin", "--facility", "F1", "--password-stdin",
            stdin=PW + "\n")
    assert r.returncode == 0
    assert cli("passwd", "er", "--password-stdin", stdin="tiny\n").returncode == 2
    assert cli("disable", "er").returncode == 0
    out = cli("list").stdout
    assert "er" in out and "disabled" in out and "hospital-admin" in out and "F1" in out
    assert AccountStore(tmp_path).authenticate("er", PW) == (None, "disabled")
