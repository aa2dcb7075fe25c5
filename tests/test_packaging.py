"""The product as an operator installs it: a wheel built from the source (no setuptools warning),
installed into a fresh venv outside the checkout, serving /metadata, the viewer login page and
a static file — the path ``pip install .`` takes, which an editable install hides.

The fresh venv gets the wheel only (``--no-deps --no-index``); its dependencies are the test
venv's (a ``.pth`` line), so the test needs no network and takes seconds.  That the package
imports from the fresh venv, not from the checkout, is asserted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pytest
import requests

from conftest import ROOT, free_port

FACILITY = "1310000017"
SKIP = shutil.ignore_patterns(".git", ".venv", "var", "data", "build", "*.egg-info", "__pycache__",
                              "node_modules", ".pytest_cache", ".hypothesis", "tests", "bench")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build writes build/ and egg-info)."""
    base = tmp_path_factory.mktemp("build")
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    out = base / "dist"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "--no-cache-dir", "-v", "-w", str(out), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = res.stdout + res.stderr
    warnings = [line for line in log.splitlines() if "Warning" in line and "setuptools" in line
                or "BuildBackendWarning" in line or "SetuptoolsDeprecationWarning" in line]
    assert warnings == []
    (found,) = out.glob("fhir_gateway-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """A fresh venv (outside the checkout) with the wheel installed; returns its bin folder."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    py = env / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # the dependencies: the test venv's site-packages, after the fresh one (no network)
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install",
                          "--no-deps", "--no-index", "--no-cache-dir", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return env / "bin"


def test_the_wheel_carries_the_capability_statement_unchanged(wheel: Path):
    import zipfile
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        packaged = z.read("conformance/capability_statement.json")
    assert packaged == (ROOT / "capability_statement.json").read_bytes()
    # every data file of the product's packages travels in the wheel
    data = {p.relative_to(ROOT).as_posix() for pkg in ("fhir_gateway", "mappers", "storage",
                                                      "conformance")
            for p in (ROOT / pkg).rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert "fhir_gateway/static/viewer.css" in data and data <= names, sorted(data - names)
    assert not any("__pycache__" in n or n.startswith(("tests/", "bench/")) for n in names)


def test_installed_wheel_serves_metadata_viewer_and_static(installed: Path, tmp_path: Path):
    run = tmp_path  # the working folder: not the checkout
    where = subprocess.check_output(
        [str(installed / "python"), "-c", "import conformance, fhir_gateway; "
         "print(fhir_gateway.__file__); print(conformance.__file__)"], cwd=run, text=True)
    assert all(line.startswith(str(installed.parent)) for line in where.split()), where
    synth = subprocess.run([str(installed / "fhir-gateway"), "synth", "--out", str(run / "ssmix2"),
                            "--patients", "2", "--years", "1", "--facility", FACILITY],
                           cwd=run, capture_output=True, text=True, timeout=300)
    assert synth.returncode == 0, synth.stderr
    port = free_port()
    proc = subprocess.Popen([str(installed / "fhir-gateway"), "serve", "--storage",
                             str(run / "ssmix2"), "--facility", FACILITY, "--no-auth",
                             "--port", str(port), "--workers", "1"],
                            cwd=run, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "FHIR_GATEWAY_DATA_DIR": str(run / "data")})
    url = f"http://127.0.0.1:{port}"
    try:
        r = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = requests.get(f"{url}/fhir/{FACILITY}/metadata", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert r is not None and r.status_code == 200
        assert r.json()["resourceType"] == "CapabilityStatement"
        login = requests.get(f"{url}/login", timeout=10)
        assert login.status_code == 200 and "<form" in login.text
        css = requests.get(f"{url}/viewer-static/viewer.css", timeout=10)
        assert css.status_code == 200 and len(css.content) > 100
    finally:
        proc.terminate()
        proc.wait(timeout=30)
