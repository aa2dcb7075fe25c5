"""``fhir-gateway init`` on a storage outside the checkout: the facility code is read from the
data, the config it writes loads and serves, the data directory is private, and nothing asks.
Then the operator path of docs/configuration.md: token, account, authenticated read, viewer."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import BIN, start_server
from fhir_gateway.config import load

CODE = "1310000017"


def gw(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "fhir-gateway"), *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items()
                               if k != "FHIR_GATEWAY_DATA_DIR"})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("site")
    res = gw("synth", "--out", str(base / "ssmix2"), "--receipts-out", str(base / "uke"),
             "--patients", "3", "--years", "1", "--facility", CODE, cwd=base)
    assert res.returncode == 0, res.stderr
    return base


def test_init_detects_the_facility_and_writes_a_config_that_serves(site: Path, tmp_path: Path):
    conf = tmp_path / "conf" / "gateway.toml"
    res = gw("init", "--storage", str(site / "ssmix2"), "--receipts", str(site / "uke"),
             "--config", str(conf), cwd=tmp_path, stdin="")
    assert res.returncode == 0, res.stderr
    assert f"facility {CODE}" in res.stdout and "fhir-gateway serve --config" in res.stdout
    cfg = load(conf)
    assert list(cfg.facilities) == [CODE]
    assert cfg.facilities[CODE].receipts == ((site / "uke").resolve(),)
    assert cfg.data_dir == (tmp_path / "conf" / "data").resolve()
    assert stat.S_IMODE(cfg.data_dir.stat().st_mode) == 0o700
    assert "#" in conf.read_text()  # commented for the operator
    again = gw("init", "--storage", str(site / "ssmix2"), "--config", str(conf), cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr


def test_no_facility_code_in_the_data_is_a_usage_error(tmp_path: Path):
    root = tmp_path / "ssmix2" / "000" / "00" / "0000000001" / "-" / "ADT-00"
    root.mkdir(parents=True)
    (root / "x").write_bytes(b"not hl7")
    for cmd in (["init", "--config", str(tmp_path / "g.toml")], ["serve"], ["check"]):
        res = gw(*cmd, "--storage", str(tmp_path / "ssmix2"), cwd=tmp_path)
        assert res.returncode == 2, (cmd, res.stderr)
        assert "--facility CODE" in res.stderr and "Traceback" not in res.stderr


def test_operator_path_token_account_read_and_viewer(site: Path, tmp_path: Path):
    conf = tmp_path / "gateway.toml"
    assert gw("init", "--storage", str(site / "ssmix2"), "--config", str(conf),
              cwd=tmp_path).returncode == 0
    assert gw("index", "--config", str(conf), "--no-progress", cwd=tmp_path).returncode == 0
    tok = gw("token", "--config", str(conf), "create", "--name", "ehr", "--facility", CODE,
             cwd=tmp_path)
    assert tok.returncode == 0, tok.stderr
    token = tok.stdout.split()[-1]
    add = gw("user", "add", "ana", "--role", "viewer", "--facility", CODE, "--password-stdin",
             "--config", str(conf), cwd=tmp_path, stdin="a-long-enough-passphrase\n")
    assert add.returncode == 0, add.stderr
    srv = start_server(["--config", str(conf)], facility=CODE, workers=1,
                       env={"FHIR_GATEWAY_DATA_DIR": ""})
    try:
        base = f"{srv.url}/fhir/{CODE}"
        assert requests.get(f"{base}/Patient", timeout=30).status_code == 401
        found = requests.get(f"{base}/Patient", headers={"Authorization": f"Bearer {token}"},
                             timeout=60)
        assert found.status_code == 200 and found.json()["total"] == 3
        pid = found.json()["entry"][0]["resource"]["id"]
        one = requests.get(f"{base}/Patient/{pid}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert one.status_code == 200 and one.json()["id"] == pid
        login = requests.get(f"{srv.url}/login", timeout=30)
        assert login.status_code == 200 and "<form" in login.text
    finally:
        srv.stop()
