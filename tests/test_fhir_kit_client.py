"""fhir-kit-client (the npm FHIR client, run with node) does a compartment search
``Patient/{id}/Observation`` against a real server and gets what ``Observation?patient=`` gives
(issue 12 item 6).  The package comes from the npm registry into a cache folder once; without
node and npm (scripts/system-deps.sh installs them) the test is skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

NODE, NPM = shutil.which("node"), shutil.which("npm")
CACHE = Path(os.environ.get("FHIR_GATEWAY_NODE_CACHE",
                            Path(__file__).resolve().parents[1] / "var" / "node-clients"))
pytestmark = pytest.mark.skipif(not (NODE and NPM), reason="node/npm absent "
                                "(scripts/system-deps.sh installs them)")

SCRIPT = """
const Client = require('fhir-kit-client');
const [base, token, pid, code] = process.argv.slice(2);
const client = new Client({baseUrl: base, customHeaders: {Authorization: 'Bearer ' + token}});
(async () => {
  const all = await client.compartmentSearch({resourceType: 'Observation',
      compartment: {resourceType: 'Patient', id: pid}, searchParams: {_count: 1000}});
  const some = await client.compartmentSearch({resourceType: 'Observation',
      compartment: {resourceType: 'Patient', id: pid}, searchParams: {code: code}});
  console.log(JSON.stringify({all: all.entry.filter(e => e.search.mode === 'match')
                                              .map(e => e.resource.id),
                              some: some.total}));
})().catch(e => { console.error(String(e)); process.exit(1); });
"""


@pytest.fixture(scope="module")
def fkc() -> Path:
    if not (CACHE / "node_modules" / "fhir-kit-client").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([NPM, "install", "--no-audit", "--no-fund", "--silent",
                            "--prefix", str(CACHE), "fhir-kit-client@1"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"npm could not install fhir-kit-client: {r.stderr[-500:]}")
    script = CACHE / "compartment.js"
    script.write_text(SCRIPT)
    return script


def test_fhir_kit_client_compartment_search(fkc, server, hospital):
    pid = hospital.facts["first"]
    r = subprocess.run([NODE, str(fkc), server.base, server.token, pid, "3A010000002327101"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "NODE_PATH": str(CACHE / "node_modules")})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    plain = requests.get(server.base + "/Observation", headers=server.headers,
                         params={"patient": pid, "_count": "1000"}).json()
    want = [e["resource"]["id"] for e in plain["entry"] if e["search"]["mode"] == "match"]
    assert sorted(got["all"]) == sorted(want) and want
    assert got["some"] == 3
