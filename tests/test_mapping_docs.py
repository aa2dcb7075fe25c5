"""Keep docs/mapping/<module>.md and the MAPPING / NOT_MAPPED tables in the code identical.

Every ``mappers/*.py`` module that defines ``MAPPING`` (rows: HL7 field, FHIR element, note)
and ``NOT_MAPPED`` (rows: SS-MIX2 field or segment, reason) must have a doc whose tables hold
exactly the same rows.  ``UPDATE_DOCS=1`` rewrites the tables between the markers (and creates a
stub doc for a new module) — then review the prose around them.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from pathlib import Path

import pytest

import mappers
from mappers import MAPPERS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "mapping"
INDEX = ROOT / "docs" / "mapping.md"
BEGIN, END = "<!-- mapping-tables:begin (generated from the module; edit the code) -->", \
    "<!-- mapping-tables:end -->"
MAPPED_HEADER = ("HL7", "FHIR", "Note")
NOT_MAPPED_HEADER = ("Field", "Reason")


def _modules() -> list[tuple[str, object]]:
    out = []
    for info in pkgutil.iter_modules(mappers.__path__):
        mod = importlib.import_module(f"mappers.{info.name}")
        if hasattr(mod, "MAPPING"):
            out.append((info.name, mod))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(mod) -> str:
    lines = [BEGIN, "", "## Mapped fields", "", "| HL7 | FHIR | Note |", "|---|---|---|"]
    lines += [f"| {_cell(a)} | {_cell(b)} | {_cell(c)} |" for a, b, c in mod.MAPPING]
    lines += ["", "## SS-MIX2 fields not mapped", "", "| Field | Reason |", "|---|---|"]
    lines += [f"| {_cell(a)} | {_cell(b)} |" for a, b in getattr(mod, "NOT_MAPPED", [])]
    lines += ["", END]
    return "\n".join(lines)


_SPLIT = re.compile(r"(?<!\\)\|")


def parse_tables(text: str) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """Markdown tables in ``text`` keyed by their header row."""
    tables: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    header: tuple[str, ...] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = tuple(c.strip().replace("\\|", "|") for c in _SPLIT.split(line.strip("|")))
        if header is None:
            header = cells
            tables.setdefault(header, [])
        elif set("".join(cells)) <= set("-: "):
            continue
        else:
            tables[header].append(cells)
    return tables


def _stub(name: str, mod) -> str:
    types = sorted(dt for dt, fn in MAPPERS.items() if fn.__module__ == mod.__name__)
    doc = (mod.__doc__ or "").strip()
    return f"# {', '.join(types)} — `mappers/{name}.py`\n\n{doc}\n\n{render(mod)}\n"


MODULES = _modules()


@pytest.mark.parametrize("name,mod", MODULES, ids=[n for n, _ in MODULES])
def test_doc_tables_match_code(name, mod):
    path = DOCS / f"{name}.md"
    if os.environ.get("UPDATE_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(_stub(name, mod), encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
            if BEGIN in text and END in text:
                head, rest = text.split(BEGIN, 1)
                text = head + render(mod) + rest.split(END, 1)[1]
            else:
                text = text.rstrip() + "\n\n" + render(mod) + "\n"
            path.write_text(text, encoding="utf-8")
    assert path.exists(), f"docs/mapping/{name}.md missing (UPDATE_DOCS=1 creates a stub)"
    tables = parse_tables(path.read_text(encoding="utf-8"))
    assert tables.get(MAPPED_HEADER, []) == [tuple(r) for r in mod.MAPPING], \
        f"docs/mapping/{name}.md mapped-fields table differs from {name}.MAPPING"
    assert tables.get(NOT_MAPPED_HEADER, []) == [tuple(r) for r in getattr(mod, "NOT_MAPPED", [])], \
        f"docs/mapping/{name}.md not-mapped table differs from {name}.NOT_MAPPED"


@pytest.mark.parametrize("name,mod", MODULES, ids=[n for n, _ in MODULES])
def test_mapping_rows_are_well_formed(name, mod):
    field = re.compile(r"^[A-Z][A-Z0-9]{2}(-\d+(\.\d+)?)?$")
    for hl7, fhir, _note in mod.MAPPING:
        assert field.match(hl7), f"{name}: {hl7!r} is not an HL7 field like PID-5"
        assert fhir, f"{name}: {hl7} has no FHIR element"
    for hl7, reason in getattr(mod, "NOT_MAPPED", []):
        assert field.match(hl7), f"{name}: {hl7!r} is not an HL7 field or segment"
        assert reason, f"{name}: {hl7} is not mapped without a reason"


def test_index_lists_every_data_type():
    text = INDEX.read_text(encoding="utf-8")
    rows = parse_tables(text)
    listed = {r[0].strip("`") for rows_ in rows.values() for r in rows_}
    missing = sorted(set(MAPPERS) - listed)
    assert not missing, f"docs/mapping.md does not list {missing}"
    for name, _mod in MODULES:
        assert f"mapping/{name}.md" in text, f"docs/mapping.md does not link mapping/{name}.md"
