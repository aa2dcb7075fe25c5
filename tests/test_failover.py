"""Failover while serving: the primary root disappears under a running server; requests keep
succeeding from the mirror, the response says so, and /health reports each root's state."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fhir_gateway.app import create_app
from fhir_gateway.config import from_args
from storage.replicas import ReplicaSet
from test_drill import clean_tree

FAC = "1310000001"


def _get(base: str, path: str) -> tuple[int, dict, dict]:
    req = urllib.request.Request(base + path, headers={"Accept": "application/fhir+json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:  # /health answers 503 when nothing is readable
        return e.code, dict(e.headers), json.loads(e.read())


@pytest.fixture
def server(tmp_path: Path):
    from werkzeug.serving import make_server

    east, west = tmp_path / "east", tmp_path / "west"
    clean_tree(east)
    shutil.copytree(east, west)
    cfg = from_args([str(east), str(west)], FAC, data_dir=str(tmp_path / "data"))
    app = create_app(cfg, auth=False)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}", east, west
    srv.shutdown()


@pytest.mark.parametrize("how", ["rename", "replace-with-file"])
def test_primary_disappears_while_serving(server, how: str) -> None:
    base, east, _ = server
    status, headers, body = _get(base, f"/fhir/{FAC}/Patient/1000001")
    assert status == 200 and body["resourceType"] == "Patient"
    assert "X-Storage-Failover" not in headers
    status, _, health = _get(base, "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["facilities"][FAC]["active"] == 0

    # make the primary unreadable (tests run as root on CI: chmod would not stop us)
    east.rename(east.with_name("east-gone"))
    if how == "replace-with-file":
        east.write_text("not a storage root")
    time.sleep(1.2)  # the active root is re-probed every second

    status, headers, body = _get(base, f"/fhir/{FAC}/Patient/1000001")
    assert status == 200 and body["resourceType"] == "Patient"
    assert body["id"]
    assert "X-Storage-Failover" in headers
    status, _, search = _get(base, f"/fhir/{FAC}/MedicationRequest?patient=1000001")
    assert status == 200 and search.get("total", len(search.get("entry", []))) > 0
    status, _, health = _get(base, "/health")
    fac = health["facilities"][FAC]
    assert status == 200 and health["status"] == "degraded"
    assert fac["failed_over"] and fac["active"] == 1
    assert fac["roots"][0]["healthy"] is False and fac["roots"][0]["reason"]
    assert fac["roots"][1]["healthy"] is True and fac["roots"][1]["active"] is True
    assert fac["failover"].startswith("root=1 reason=")


def test_health_503_when_no_root_is_readable(server) -> None:
    base, east, west = server
    east.rename(east.with_name("east-gone"))
    west.rename(west.with_name("west-gone"))
    time.sleep(1.2)
    status, _, health = _get(base, "/health")
    assert status == 503 and health["status"] == "down"


# --- ReplicaSet on its own -----------------------------------------------------------------------

def _roots(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for r in (a, b):
        (r / "100").mkdir(parents=True)
    return a, b


def test_io_error_report_fails_over_and_counts(tmp_path: Path) -> None:
    a, b = _roots(tmp_path)
    rs = ReplicaSet([a, b], recheck=3600, recheck_active=3600)
    assert rs.active()[1] == 0 and not rs.failed_over and rs.failover_header() is None
    rs.report_failure(0, "[Errno 5] Input/output error")
    storage, i = rs.active()
    assert i == 1 and storage.root == b and rs.failed_over
    st = rs.status()
    assert st[0]["io_errors"] == 1 and st[0]["healthy"] is False and st[1]["active"] is True
    assert rs.failover_header() == "root=1 reason=[Errno 5] Input/output error"
    assert rs.failovers == 1


def test_emptied_mount_point_is_unhealthy_and_primary_comes_back(tmp_path: Path) -> None:
    a, b = _roots(tmp_path)
    rs = ReplicaSet([a, b], recheck=0, recheck_active=0)
    assert rs.active()[1] == 0
    shutil.rmtree(a / "100")  # the folder is still there, its content is gone (unmounted)
    assert rs.active()[1] == 1
    assert "empty" in rs.status()[0]["reason"]
    (a / "100").mkdir()
    assert rs.active()[1] == 0 and not rs.failed_over  # failback once the primary is healthy


def test_all_roots_down_keeps_the_current_one(tmp_path: Path) -> None:
    a, b = _roots(tmp_path)
    rs = ReplicaSet([a, b], recheck=3600, recheck_active=0)
    rs.report_failure(0, "gone")  # held out for `recheck` seconds although its probe passes
    assert rs.active()[1] == 1
    shutil.rmtree(b)
    shutil.rmtree(a)
    assert rs.active()[1] == 1
    assert not any(s["healthy"] for s in rs.status())
