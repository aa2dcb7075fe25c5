"""Every subcommand, given bad input, answers with one line on stderr and a documented exit code
(2 usage / bad config, 1 a failure found) — never a traceback (docs/configuration.md, "Exit
codes").  The list of subcommands comes from the CLI itself, so a new one must be added here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import BIN
from fhir_gateway.cli import build_parser

MISSING = "/nonexistent/fhir-gateway/gateway.toml"
# one bad invocation per subcommand that gets past argparse into the command's own checks
BAD = {
    "audit": ["audit", "verify", "--config", MISSING],
    "check": ["check", "--config", MISSING],
    "client": ["client", "--config", MISSING, "list"],
    "db": ["db", "status", "--config", MISSING],
    "group": ["group", "--config", MISSING, "list", "--facility", "1310000017"],
    "index": ["index", "--config", MISSING],
    "init": ["init", "--storage", "/nonexistent/ssmix2"],
    "masters": ["masters", "import", "/nonexistent/masters", "--config", MISSING],
    "memos": ["memos", "verify", "--config", MISSING],
    "serve": ["serve", "--config", MISSING],
    "shl": ["shl", "list", "--config", MISSING],
    "synth": ["synth", "--out", "/dev/null/x", "--patients", "1"],
    "token": ["token", "--config", MISSING, "list"],
    "user": ["user", "list", "--config", MISSING],
}


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


def test_every_subcommand_has_a_bad_input_case():
    assert sorted(BAD) == _commands()


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line_without_traceback(name: str, tmp_path: Path):
    res = subprocess.run([str(BIN / "fhir-gateway"), *BAD[name]], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    err = res.stderr.strip()
    assert res.returncode in (1, 2), (res.returncode, err)
    assert "Traceback" not in err and err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fhir-gateway {name}"), err


def test_password_prompt_without_a_terminal_is_refused_plainly(tmp_path: Path):
    gw = str(BIN / "fhir-gateway")
    res = subprocess.run([gw, "user", "add", "ana", "--role", "viewer", "--data-dir",
                          str(tmp_path)], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 2 and "--password-stdin" in res.stderr
    assert "Traceback" not in res.stderr
    res = subprocess.run([gw, "user", "add", "ana", "--role", "viewer", "--password-stdin",
                          "--data-dir", str(tmp_path)], input="", capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "stdin is empty" in res.stderr
    ok = subprocess.run([gw, "user", "add", "ana", "--role", "viewer", "--password-stdin",
                         "--data-dir", str(tmp_path)], input="a-long-enough-passphrase\n",
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    again = subprocess.run([gw, "user", "passwd", "ana", "--password-stdin", "--data-dir",
                            str(tmp_path)], input="another-long-passphrase\n",
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
