"""The PostgreSQL state store: the embedded account tests re-run against it, append-only audit,
access log and memos enforced by the database, one audit chain written from several processes
at once, memos and tokens shared between store instances (= gateway instances), atomic
lockout counters, and the config/CLI path (``[state] backend = "postgresql"``)."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from fhir_gateway.accounts import AccountStore
from fhir_gateway.memos import MemoError

from test_accounts import (  # noqa: F401  (re-run against PostgreSQL through the fixture below)
    PW, test_lockout_after_failures_even_with_right_password, test_passphrase_rotation,
    test_password_policy,
)


def _state(dsn: str, data_dir: Path):
    from fhir_gateway.config import Backend, Config
    from fhir_gateway.state import open_state
    return open_state(Config(data_dir, {}, state=Backend("postgresql", dsn)))


@pytest.fixture()
def store(tmp_path, pg_dsn):
    from fhir_gateway.scale.pgstate import PgDatabase
    return AccountStore(tmp_path, max_failures=3, lock_seconds=60, db=PgDatabase(pg_dsn))


def test_append_only_in_the_database(store, pg_dsn):
    import psycopg
    store.audit("login", username="v")
    store.switch_access("F1", True, "地震", "h", "山田", "1")
    for sql in ("UPDATE audit SET patient = 'P2'", "DELETE FROM audit", "TRUNCATE audit",
                "DELETE FROM access_log", "UPDATE memos SET line = ''"):
        with psycopg.connect(pg_dsn) as c, pytest.raises(psycopg.Error, match="append-only"):
            c.execute(sql)
    assert store.verify_audit() == (True, 1)


def _audit_worker(dsn: str, data_dir: str, who: int, n: int) -> None:
    st = _state(dsn, Path(data_dir))
    for i in range(n):
        st.accounts().audit("read", username=f"w{who}", patient=str(i))


def test_one_audit_chain_from_several_processes(tmp_path, pg_dsn):
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=_audit_worker, args=(pg_dsn, str(tmp_path), w, 25)) for w in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
    assert all(p.exitcode == 0 for p in ps)
    st = _state(pg_dsn, tmp_path)
    assert st.accounts().verify_audit() == (True, 75)


def test_lockout_counter_is_shared_by_instances(tmp_path, pg_dsn):
    a, b = _state(pg_dsn, tmp_path), _state(pg_dsn, tmp_path)
    a.accounts().add_user("u1", PW, "viewer")
    for s in (a, b, a, b):
        assert s.accounts().authenticate("u1", "wrong password!!")[0] is None
    # the fifth failure, wherever it lands, locks: the count is one shared row
    assert b.accounts().authenticate("u1", "wrong password!!")[1] == "locked"
    assert a.accounts().authenticate("u1", PW) == (None, "locked")


def test_memos_and_tokens_shared(tmp_path, pg_dsn):
    a, b = _state(pg_dsn, tmp_path), _state(pg_dsn, tmp_path)
    m1 = a.memos().append("F1", "P1", "ワーファリン内服中", author="naika", person="山田",
                          staff_no="12")
    m2 = b.memos().append("F1", "P1", "エリキュースに変更", author="naika", person="山田",
                          staff_no="12", corrects=m1.id)
    seen = a.memos().for_patient("F1", "P1")
    assert [m.id for m in seen] == [m2.id, m1.id]
    assert seen[1].status == "entered-in-error"
    assert a.memos().verify("F1") == (True, 2) and b.memos().verify("F1") == (True, 2)
    with pytest.raises(MemoError):
        b.memos().append("F1", "P2", "fix", author="x", corrects=m1.id)
    token = a.tokens().create("etl", "F1")
    assert b.tokens().verify(token).facility == "F1"
    assert b.tokens().revoke("etl")
    assert a.tokens().verify(token) is None


def test_cli_and_config(tmp_path, pg_dsn, capsys):
    from fhir_gateway.cli import main
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[[facility]]\ncode = "F1"\n'
                   f'storage = ["{tmp_path}"]\n[state]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n',
                   encoding="utf-8")
    assert main(["token", "create", "--config", str(cfg), "--name", "x", "--facility", "F1"]) == 0
    token = capsys.readouterr().out.strip().split()[-1]
    assert _state(pg_dsn, tmp_path).tokens().verify(token) is not None
    assert not (tmp_path / "data" / "api-tokens.json").exists()  # nothing in the data dir


def test_smart_clients_and_assertion_ids_shared(tmp_path, pg_dsn):
    a, b = _state(pg_dsn, tmp_path), _state(pg_dsn, tmp_path)
    jwks = {"keys": [{"kty": "EC", "crv": "P-384", "kid": "k1",
                      "x": "AAAA", "y": "BBBB"}]}
    c = a.smart_clients().add("etl", "F1", ["system/*.rs"], jwks=jwks)
    assert b.smart_clients().get(c.id).name == "etl"
    assert b.smart_clients().revoke("etl") and not a.smart_clients().get(c.id).active
    exp = time.time() + 60
    assert a.smart_jti().claim(c.id, "j1", exp) is True
    assert b.smart_jti().claim(c.id, "j1", exp) is False  # a replay through the other instance


def _fail_logins(dsn: str, data_dir: str, n: int) -> None:
    from fhir_gateway.scale.pgstate import PgDatabase
    store = AccountStore(data_dir, max_failures=1000, db=PgDatabase(dsn))
    for _ in range(n):
        store.authenticate("u2", "wrong password!!")


def test_concurrent_failures_all_count(tmp_path, pg_dsn):
    from fhir_gateway.scale.pgstate import PgDatabase
    store = AccountStore(tmp_path, max_failures=1000, db=PgDatabase(pg_dsn))
    store.add_user("u2", PW, "viewer")
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=_fail_logins, args=(pg_dsn, str(tmp_path), 6)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
    # counted before the check, in the serialised transaction (accounts/attempts.py)
    assert store.db.execute("SELECT failures FROM attempts WHERE key = 'login|u2|*'"
                            ).fetchone()["failures"] == 18


def test_database_down_is_503_never_500(tmp_path):
    """PostgreSQL stops under a running app: API, login, memo and /health answer 503; back up,
    everything works again without a restart."""
    from conftest import FACILITY, build_hospital
    from fhir_gateway.app import create_app
    from fhir_gateway.config import load
    from fhir_gateway.scale.migrations import upgrade
    from fhir_gateway.scale.pgserver import PgServer, Unavailable
    try:
        pg = PgServer()
        dsn = pg.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        upgrade(dsn)
        h = build_hospital(tmp_path, n_patients=1)
        cfg = tmp_path / "pg.toml"
        cfg.write_text(h.config.read_text(encoding="utf-8")
                       + f'\n[state]\nbackend = "postgresql"\ndsn = "{dsn}"\n', encoding="utf-8")
        app = create_app(load(cfg))
        state = app.extensions["state"]
        token = state.tokens().create("t", FACILITY)
        state.accounts().add_user("naika", PW, "viewer")
        c = app.test_client()
        hdr = {"Authorization": f"Bearer {token}"}
        assert c.get(f"/fhir/{FACILITY}/Patient", headers=hdr).status_code == 200
        pg._run([str(pg.bindir / "pg_ctl"), "-D", str(pg.data), "-m", "fast", "-w", "stop"])
        r = c.get(f"/fhir/{FACILITY}/Patient", headers=hdr)
        assert r.status_code == 503 and r.get_json()["resourceType"] == "OperationOutcome"
        assert c.get("/login").status_code == 200
        import re
        page = c.get("/login")
        tokn = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        r = c.post("/login", data={"csrf_token": tokn.group(1) if tokn else "", "username": "naika",
                                   "password": PW, "person": "x", "staff_no": "1"})
        assert r.status_code in (400, 503)  # no session store: CSRF or the login itself refuses
        h_ = c.get("/health")
        assert h_.status_code == 503 and h_.get_json()["state"]["status"] == "down"
        pg._run([str(pg.bindir / "pg_ctl"), "-D", str(pg.data), "-o",
                 f"-p {pg.port} -k {pg.sock} -c listen_addresses=127.0.0.1", "-l",
                 str(pg.base / "log"), "-w", "start"])
        assert c.get(f"/fhir/{FACILITY}/Patient", headers=hdr).status_code == 200
        assert c.get("/health").status_code == 200
    finally:
        pg.stop()
