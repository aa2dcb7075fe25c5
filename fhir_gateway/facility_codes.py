"""Which facility a storage belongs to, read from the data: MSH-4 (sending facility) of the
stored messages and the IR header of UKE receipts.  ``init`` writes the code it finds into the
config; ``serve``/``check``/``index`` with ``--storage`` and no ``--facility`` use it, and refuse
to guess when the data names no code or several."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_FILES = 200  # messages read per storage root to find the facility code (MSH-4)


def detect_codes(storage: list[Path], receipts: list[Path]) -> dict[str, str]:
    """Facility codes found in the data -> where (MSH-4 of messages, IR headers of receipts)."""
    from fhir_gateway.config import FACILITY_CODE

    found: dict[str, str] = {}
    for root in storage:
        for code in _msh_codes(root):
            if FACILITY_CODE.match(code):
                found.setdefault(code, f"MSH-4 of the messages in {root}")
    for root in receipts:
        for code in _uke_codes(root):
            if FACILITY_CODE.match(code):
                found.setdefault(code, f"the UKE receipt headers in {root}")
    return found


def _msh_codes(root: Path) -> set[str]:
    """MSH-4 (first component) of up to :data:`SAMPLE_FILES` stored messages."""
    codes: set[str] = set()
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            try:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    head = f.read(512)
            except OSError:
                continue
            if head.startswith(b"MSH") and len(head) > 4:
                fields = head.split(b"\r", 1)[0].split(head[3:4])
                if len(fields) > 3:
                    code = fields[3].split(b"^", 1)[0].decode("ascii", "replace").strip()
                    if code:
                        codes.add(code)
            seen += 1
            if seen >= SAMPLE_FILES:
                return codes
    return codes


def _uke_codes(root: Path) -> set[str]:
    """The 医療機関コード of the IR header of up to 20 UKE files."""
    from storage.uke import facility_code, iter_uke_files, scan_receipts
    codes: set[str] = set()
    for n, path in enumerate(iter_uke_files(root)):
        try:
            header, _ = scan_receipts(path.read_bytes())
        except (OSError, ValueError):
            continue
        code = facility_code(header)
        if code:
            codes.add(code)
        if n >= 20:
            break
    return codes


def facility_for(storage: list[str], receipts: list[str] | None, given: str | None) -> str:
    """The facility code for ``--storage`` flags: ``given``, else the one code the data names.
    Raises ConfigError saying how to give one when the data names none or several (a storage
    root that is missing or empty keeps the placeholder code: the command reports that root)."""
    from fhir_gateway.config import DEFAULT_FACILITY, ConfigError

    if given:
        return given
    roots = [Path(s) for s in storage]
    found = detect_codes(roots, [Path(r) for r in receipts or ()])
    if len(found) == 1:
        return next(iter(found))
    if not found and not any(_has_files(r) for r in roots):
        return DEFAULT_FACILITY
    listed = ", ".join(f"{c} ({w})" for c, w in sorted(found.items()))
    why = f"the data names several facility codes: {listed}" if found else \
        "no facility code found in the data (MSH-4 of the messages, UKE headers)"
    raise ConfigError(f"{why}; give --facility CODE (the 10-digit 医療機関コード), or "
                      "--config FILE (`fhir-gateway init` writes one)")


def _has_files(root: Path) -> bool:
    try:
        return root.is_dir() and any(True for _ in root.iterdir())
    except OSError:
        return False
