"""Receipt (UKE) checks: every file parses, GO totals agree, every receipt links to a patient."""

from __future__ import annotations

from pathlib import Path

from storage import uke

from . import kinds

LIST_LIMIT = 1000


def check_receipts(roots: list[Path], patient_ids: set[str]) -> dict:
    files, receipts, linked = 0, 0, 0
    unlinked: list[dict] = []
    problems: list[dict] = []
    per_file: list[dict] = []
    for root in roots:
        if not Path(root).is_dir():
            problems.append(kinds.problem(str(root), kinds.KIND_RECEIPT_PARSE,
                                          f"receipt folder {root} is missing or not a folder"))
            continue
        for path in uke.iter_uke_files(root):
            rel = path.relative_to(root).as_posix()
            uf = uke.read_uke_file(path, rel)
            files += 1
            for p in uf.problems:
                kind = kinds.KIND_RECEIPT_TOTAL if p.kind == uke.KIND_TOTALS else kinds.KIND_RECEIPT_PARSE
                problems.append(kinds.problem(rel, kind, f"{p.kind}: {p.reason}", p.severity))
            n_linked = 0
            for r in uf.receipts:
                receipts += 1
                pid = uke.match_patient(r.karte_no, patient_ids.__contains__)
                if pid is not None:
                    n_linked += 1
                    continue
                if len(unlinked) < LIST_LIMIT:
                    unlinked.append({"path": rel, "receipt_no": r.receipt_no,
                                     "karte_no": r.karte_no, "line": r.lines[0]})
                problems.append(kinds.problem(
                    rel, kinds.KIND_RECEIPT_UNLINKED,
                    f"line {r.lines[0]}: receipt {r.receipt_no} (カルテ番号 {r.karte_no or 'empty'}) "
                    "matches no SS-MIX2 patient", kinds.WARNING))
            linked += n_linked
            per_file.append({"path": rel, "kind": uf.kind, "claim_month": uf.claim_month,
                             "receipts": len(uf.receipts), "linked": n_linked, "ok": uf.ok})
    return {"roots": [str(r) for r in roots], "files": files, "receipts": receipts,
            "linked": linked, "unlinked": unlinked, "per_file": per_file, "problems": problems}
