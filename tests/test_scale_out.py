"""Several gateway instances as one service, all on loopback and all real processes: PostgreSQL
(Debian binaries, temp dir) for the index and the state, two ``fhir-gateway serve`` instances over
the same storage and data dir, HAProxy in front (deploy/haproxy.cfg with loopback addresses), a
Dask scheduler and two workers for the drill.

Checked: log in through one instance and continue through the other; a memo written through A is
read through B (viewer page and FHIR API); the audit chain written by both verifies; a bearer
token and a SMART client registered once work on both; kill -9 of one instance during a read
loop through HAProxy fails only requests in flight; the Dask drill report equals the local one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import BIN, FACILITY, ROOT, build_hospital, free_port, start_server

PW = "correct horse battery staple"
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists()
                                      else None)


def fgw(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "fhir-gateway"), *args], capture_output=True, text=True,
                          input=stdin, check=check, timeout=300)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def haproxy_config(tmp: Path, port: int, servers: list[str], fall: int = 1) -> Path:
    """deploy/haproxy.cfg itself, bound to loopback without TLS, pointing at the test servers;
    health checks every 300 ms, a server marked down after ``fall`` failed checks (1: failover
    tests see a stop at once; a test of one server wants more, or one slow check on a loaded
    machine marks it down and shuts its sessions)."""
    text = (ROOT / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("bind :443") or s.startswith("http-request redirect") \
                or s.startswith("http-request set-header X-Forwarded-Proto") \
                or s.startswith("server ") or s.startswith("log stdout"):
            continue
        line = line.replace("bind :80", f"bind 127.0.0.1:{port}")
        line = line.replace("/run/haproxy/admin.sock", str(tmp / "admin.sock"))
        line = line.replace("inter 2s fall 2 rise 2", f"inter 300ms fall {fall} rise 1")
        out.append(line)
        if s == "default-server inter 2s fall 2 rise 2 slowstart 10s on-marked-down shutdown-sessions":
            out += [f"    server gw{i} {addr} check" for i, addr in enumerate(servers, 1)]
    path = tmp / "haproxy.cfg"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def haproxy_sessions(sock: Path) -> dict[str, int]:
    """Total sessions per backend server, from HAProxy's admin socket (``show stat``)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().lstrip("# ").splitlines()
    head = lines[0].split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:] if line]
    return {r["svname"]: int(r["stot"] or 0) for r in rows if r["pxname"] == "fhir"
            and r["svname"].startswith("gw")}


def tok(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pg_server):
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (scripts/system-deps.sh installs it)")
    base = tmp_path_factory.mktemp("scaleout")
    h = build_hospital(base, n_patients=4)
    dsn = pg_server.create_database("scale_out")
    procs: list[subprocess.Popen] = []
    sport = free_port()
    dask = str(BIN / "dask")
    procs.append(subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                   str(sport), "--no-dashboard"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, cwd=base))
    wait_port(sport)
    daddr = f"tcp://127.0.0.1:{sport}"
    for _ in range(2):
        procs.append(subprocess.Popen([dask, "worker", daddr, "--nworkers", "1", "--nthreads", "1",
                                       "--no-dashboard", "--local-directory", str(base)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      cwd=base))
    cfg = base / "gateway.toml"
    cfg.write_text(f'data_dir = "{h.data_dir}"\n[[facility]]\ncode = "{FACILITY}"\nname = "東病院"\n'
                   f'storage = ["{h.root}"]\nreceipts = ["{h.receipts}"]\n'
                   f'[index]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
                   f'[state]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
                   f'[export]\ndask = "{daddr}"\n', encoding="utf-8")
    assert "schema version" in fgw("db", "upgrade", "--config", str(cfg)).stdout
    assert "patients indexed" in fgw("index", "--config", str(cfg), "--no-progress").stdout
    fgw("user", "add", "naika", "--role", "viewer", "--password-stdin", "--config", str(cfg),
        stdin=PW + "\n")
    from fhir_gateway.config import load
    from fhir_gateway.state import open_state
    state = open_state(load(cfg))
    state.accounts().set_passphrase(FACILITY, "sakura-2026", "boss")
    state.accounts().switch_access(FACILITY, True, "訓練", "boss", "山田", "1")
    token = fgw("token", "create", "--config", str(cfg), "--name", "etl",
                "--facility", FACILITY).stdout.strip()
    servers = [start_server(["--config", str(cfg)], token=token, workers=2,
                            preexec_fn=os.setsid) for _ in range(2)]
    port = free_port()
    hcfg = haproxy_config(base, port, [s.url.split("//")[1] for s in servers])
    check = subprocess.run([HAPROXY, "-c", "-f", str(hcfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    procs.append(subprocess.Popen([HAPROXY, "-db", "-f", str(hcfg)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    wait_port(port)
    from distributed import Client
    with Client(daddr, timeout=30) as c:
        c.wait_for_workers(2, timeout=60)
    yield {"cfg": cfg, "h": h, "a": servers[0], "b": servers[1], "lb": f"http://127.0.0.1:{port}",
           "token": token, "state": state, "dsn": dsn, "base": base, "dask": daddr}
    for s in servers:
        if s.proc.poll() is None:
            os.killpg(s.proc.pid, signal.SIGTERM)
            s.proc.wait(10)
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def test_login_on_a_continues_on_b_and_memos_cross(cluster):
    a, b, pid = cluster["a"].url, cluster["b"].url, cluster["h"].patients[0]
    s = requests.Session()
    r = s.post(f"{a}/login", data={"csrf_token": tok(s.get(f"{a}/login").text), "username": "naika",
                                   "password": PW, "person": "山田 花子", "staff_no": "A1"},
               allow_redirects=False)
    assert r.status_code == 302
    # the session cookie from A is a session on B: unlock (合言葉) through B
    page = s.get(f"{b}/f/{FACILITY}/unlock")
    assert page.status_code == 200 and "login" not in page.url
    s.post(f"{b}/f/{FACILITY}/unlock", data={"csrf_token": tok(page.text),
                                               "passphrase": "sakura-2026"})
    assert s.get(f"{b}/f/{FACILITY}/p/{pid}/", allow_redirects=False).status_code == 200
    # a memo written through A ...
    page = s.get(f"{a}/f/{FACILITY}/p/{pid}/memos")
    r = s.post(f"{a}/f/{FACILITY}/p/{pid}/memos",
               data={"csrf_token": tok(page.text), "text": "転倒リスク高い (instance A)"},
               allow_redirects=False)
    assert r.status_code == 302
    # ... is read through B, in the viewer and through the FHIR API
    assert "転倒リスク高い (instance A)" in s.get(f"{b}/f/{FACILITY}/p/{pid}/memos").text
    hdr = {"Authorization": f"Bearer {cluster['token']}"}
    docs = requests.get(f"{b}/fhir/{FACILITY}/DocumentReference", headers=hdr,
                        params={"patient": pid}).json()
    texts = [e["resource"]["content"][0]["attachment"]["data"] for e in docs.get("entry", [])]
    import base64
    assert "転倒リスク高い (instance A)" in [base64.b64decode(t).decode() for t in texts]
    # logout through B ends the session on A too
    home = s.get(f"{b}/")
    s.post(f"{b}/logout", data={"csrf_token": tok(home.text)})
    assert "/login" in s.get(f"{a}/", allow_redirects=True).url


def test_audit_chain_of_both_instances_verifies(cluster):
    test_login_on_a_continues_on_b_and_memos_cross(cluster)
    rows = cluster["state"].accounts().audit_rows(100)
    assert {"login", "memo-create", "patient-view"} <= {r["action"] for r in rows}
    out = fgw("audit", "verify", "--config", str(cluster["cfg"]), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    out = fgw("memos", "verify", "--config", str(cluster["cfg"]), check=False)
    assert out.returncode == 0 and "memos/" in out.stdout, out.stdout + out.stderr


def test_token_and_smart_client_registered_once_work_on_both(cluster, tmp_path):
    from smart_keys import assertion, keypair, token_request, write_jwks
    totals = []
    for srv in (cluster["a"], cluster["b"], None):
        base = srv.base if srv else f"{cluster['lb']}/fhir/{FACILITY}"
        r = requests.get(f"{base}/Patient", headers={"Authorization": f"Bearer {cluster['token']}"})
        assert r.status_code == 200
        totals.append(r.json()["total"])
    # the same answer everywhere (4 storage patients, plus receipt-only Patients if any)
    assert totals[0] >= 4 and totals.count(totals[0]) == 3, totals
    key = keypair("ES384")
    jwks = write_jwks(tmp_path / "jwks.json", [key], private=False)
    cid = fgw("client", "add", "--config", str(cluster["cfg"]), "--name", "bulk", "--facility",
              FACILITY, "--jwks-file", str(jwks), "--scope", "system/*.rs").stdout.strip().split()[-1]
    a, b = cluster["a"], cluster["b"]
    r = token_request(a.base, assertion(key, cid, a.base + "/auth/token"))
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    for srv in (a, b):
        got = requests.get(f"{srv.base}/Patient", headers={"Authorization": f"Bearer {access}"})
        assert got.status_code == 200, got.text
    # an assertion used on A is a replay on B
    jwt = assertion(key, cid, b.base + "/auth/token")
    assert token_request(b.base, jwt).status_code == 200
    assert token_request(b.base, jwt).status_code == 401
    # revoked once (CLI), refused on both at once
    fgw("client", "revoke", "--config", str(cluster["cfg"]), "bulk")
    for srv in (a, b):
        assert requests.get(f"{srv.base}/Patient",
                            headers={"Authorization": f"Bearer {access}"}).status_code == 401


def test_paging_cursor_from_a_works_on_b(cluster):
    hdr = {"Authorization": f"Bearer {cluster['token']}"}
    first = requests.get(f"{cluster['a'].base}/Patient", params={"_count": 2}, headers=hdr).json()
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    nxt = nxt.replace(cluster["a"].url, cluster["b"].url)
    second = requests.get(nxt, headers=hdr).json()
    ids = [e["resource"]["id"] for e in first["entry"] + second["entry"]]
    assert len(ids) == len(set(ids)) == 4


def test_export_started_on_a_polled_and_fetched_on_b(cluster):
    a, b = cluster["a"], cluster["b"]
    hdr = {"Authorization": f"Bearer {cluster['token']}"}
    r = requests.get(f"{a.base}/Patient/$export", params={"_type": "Patient"},
                     headers={**hdr, "Prefer": "respond-async", "Accept": "application/fhir+json"})
    assert r.status_code == 202, r.text
    status = r.headers["Content-Location"].replace(a.url, b.url)
    deadline = time.monotonic() + 90
    while True:
        r = requests.get(status, headers=hdr)  # polled through B whichever instance runs it
        if r.status_code != 202 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    assert out and out[0]["type"] == "Patient"
    body = requests.get(out[0]["url"].replace(a.url, b.url), headers=hdr)
    assert body.status_code == 200 and len(body.text.strip().splitlines()) == 4
    row = cluster["state"].export_jobs().get(status.rstrip("/").split("/")[-1])
    assert row is not None and row["status"] == "completed"  # the job lives in PostgreSQL
    from distributed import Client
    with Client(cluster["dask"], timeout=30) as c:  # [export] dask: chunks mapped on workers
        ran = c.run(lambda: __import__("fhir_gateway.bulk.export").bulk.export._CHILD.get("svc")
                    is not None)
    assert any(ran.values()), ran


def test_kill_9_one_instance_fails_only_in_flight_requests(cluster):
    lb, token = cluster["lb"], cluster["token"]
    url = f"{lb}/fhir/{FACILITY}/Patient/{cluster['h'].patients[1]}"
    results: list[tuple[float, int]] = []
    stop = threading.Event()
    threads = 4

    def loop() -> None:
        s = requests.Session()
        while not stop.is_set():
            try:
                code = s.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code
            except requests.RequestException:
                code = -1
            results.append((time.monotonic(), code))

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    time.sleep(2)
    served = haproxy_sessions(cluster["base"] / "admin.sock")
    assert served["gw1"] > 0 and served["gw2"] > 0, served  # both instances were answering
    victim = cluster["a"]
    killed_at = time.monotonic()
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the supervisor and its workers
    time.sleep(3)
    stop.set()
    for t in ts:
        t.join(15)
    before = [c for t, c in results if t < killed_at]
    failed = [(t, c) for t, c in results if c != 200]
    assert before and all(c == 200 for c in before)
    # at most the requests in flight at the kill fail (one per client thread), and only then
    print(f"{len(results)} requests, {len(failed)} failed at the kill, served before: {served}")
    assert len(failed) <= threads, failed
    assert all(t - killed_at < 1.0 for t, _ in failed), failed
    after = [c for t, c in results if t > killed_at + 1.0]
    assert len(after) > 10 and all(c == 200 for c in after)
    r = requests.get(f"{cluster['b'].url}/health")
    assert r.status_code == 200 and r.json()["state"]["status"] == "ok"


def _normalised(report: dict) -> dict:
    for k in ("generated", "host", "options"):
        report.pop(k, None)
    for f in report["facilities"]:
        f.pop("seconds", None)
        f["digests"] = sorted(map(tuple, f["digests"]))
    return report


def test_dask_drill_report_equals_the_local_one(cluster):
    root = cluster["h"].root
    local = fgw("check", "--storage", str(root), "--facility", FACILITY, "--json",
                "--workers", "2", check=False)
    remote = fgw("check", "--storage", str(root), "--facility", FACILITY, "--json",
                 "--dask", cluster["dask"], check=False)
    assert local.returncode == remote.returncode, remote.stderr
    a, b = _normalised(json.loads(local.stdout)), _normalised(json.loads(remote.stdout))
    assert a["facilities"][0]["files"] > 0
    assert a == b
