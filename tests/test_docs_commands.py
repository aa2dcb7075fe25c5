"""Every shell block marked ```` ```sh runnable ```` in README.md and docs/*.md runs as written
(in a fresh folder, with this install's ``fhir-gateway`` on PATH), so the operator path the docs
describe cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT

BLOCK = re.compile(r"^```sh runnable\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for i, m in enumerate(BLOCK.finditer(text)):
            out.append((doc.relative_to(ROOT).as_posix(), i, m.group(1)))
    return out


def test_the_operator_path_is_marked_runnable():
    assert any(doc == "docs/configuration.md" for doc, _, _ in _blocks())


@pytest.mark.parametrize("doc,i,script", _blocks(), ids=lambda v: str(v)[:40])
def test_runnable_block(doc: str, i: int, script: str, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_GATEWAY_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{doc} block {i}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr
