"""The TOML configuration: many facilities, relative paths, and plain errors for bad files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fhir_gateway.config import ConfigError, default_data_dir, from_args, load


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_many_facilities_relative_paths_and_mirrors(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '''
data_dir = "state"
[[facility]]
code = "1310000017"
name = "東病院"
storage = ["east", "/mnt/west"]
receipts = "uke"
[[facility]]
code = "2710000018"
storage = "other"
'''))
    assert cfg.data_dir == (tmp_path / "state").resolve()
    east = cfg.facility("1310000017")
    assert east.name == "東病院" and east.primary == (tmp_path / "east").resolve()
    assert east.storage[1] == Path("/mnt/west") and east.receipts == ((tmp_path / "uke").resolve(),)
    assert cfg.facility("2710000018").name == "2710000018"


@pytest.mark.parametrize("text,reason", [
    ("data_dir = 5\n[[facility]]\ncode='1'\nstorage='x'\n", "data_dir"),
    ("facility = 'x'\n", "tables"),
    ("[[facility]]\ncode='../x'\nstorage='x'\n", "letters or digits"),
    ("[[facility]]\ncode='1'\n", "at least one storage"),
    ("[[facility]]\ncode='1'\nstorage=3\n", "path or a list"),
    ("[[facility]]\ncode='1'\nstorage='a'\n[[facility]]\ncode='1'\nstorage='b'\n", "twice"),
    ("", "no [[facility]]"),
    ("not toml [", "cannot read"),
])
def test_bad_configs_get_plain_errors(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)):
        load(write(tmp_path, text))


def test_one_facility_from_flags_uses_the_shared_default_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FHIR_GATEWAY_DATA_DIR", str(tmp_path / "d"))
    cfg = from_args([str(tmp_path)], None)
    assert cfg.data_dir == default_data_dir() == (tmp_path / "d").resolve()
    assert list(cfg.facilities) == ["0000000000"]
    with pytest.raises(ConfigError):
        from_args([str(tmp_path)], "bad code!")
