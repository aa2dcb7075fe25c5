"""docs/configuration.md's settings table is the code's option table, and the precedence it
states (flag > environment > config > default) is what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT
from fhir_gateway.config import SETTINGS, ConfigError, load, resolve_settings


def _rows() -> list[list[str]]:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split("## Settings and their precedence", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]
    return rows


def test_docs_table_is_the_option_table():
    documented = [(r[0], r[1], r[2], r[3]) for r in _rows()]
    code = [(s.key, s.env, s.flag, "false" if s.default is False else str(s.default))
            for s in SETTINGS]
    assert documented == code


def test_environment_beats_the_file_and_the_file_beats_the_default(tmp_path: Path,
                                                                   monkeypatch):
    conf = tmp_path / "g.toml"
    conf.write_text('data_dir = "state"\nport = 9001\nsecure_cookies = true\n'
                    '[[facility]]\ncode = "1310000017"\nstorage = ["s"]\n')
    for s in SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    cfg = load(conf)
    assert cfg.data_dir == (tmp_path / "state").resolve()
    assert cfg.setting("port") == 9001 and cfg.setting("threads") == 4
    assert cfg.setting("secure_cookies") is True
    assert cfg.setting("port", 7000) == 7000  # a flag beats everything
    monkeypatch.setenv("FHIR_GATEWAY_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("FHIR_GATEWAY_PORT", "9002")
    cfg = load(conf)
    assert cfg.data_dir == (tmp_path / "elsewhere").resolve()
    assert cfg.setting("port") == 9002


def test_a_bad_value_names_where_it_came_from():
    with pytest.raises(ConfigError, match=r"\$FHIR_GATEWAY_PORT"):
        resolve_settings({}, {"FHIR_GATEWAY_PORT": "eighty"})
    with pytest.raises(ConfigError, match="config key workers"):
        resolve_settings({"workers": "many"}, {})
    assert re.match(r"^\d", str(resolve_settings({}, {})["port"]))
