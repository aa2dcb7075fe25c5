"""Copy the embedded (whoosh) Patient index of a facility into PostgreSQL.

Why copy rather than rebuild: building reads every patient's ADT-00 from the storage (minutes
to hours); the embedded index already holds every field the PostgreSQL rows need (its ``keys``
and ``row`` columns) and the walk state, so the copy takes seconds and the first PostgreSQL
refresh is incremental.
"""

from __future__ import annotations

import orjson

from fhir_gateway.config import Config


def migrate_embedded(cfg: Config, code: str, target) -> int | None:
    """Rows copied, or None when this facility has no embedded index to copy."""
    from whoosh import index as windex

    from fhir_gateway.index.patients import SCHEMA_VERSION, PatientIndex

    src = PatientIndex(cfg.data_dir, code, cfg.facilities[code].storage)
    if not src.ready():
        return None
    try:
        state = orjson.loads(src.state_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        state = None
    if not state or state.get("schema") != SCHEMA_VERSION:
        return None  # an index of another version: let the PostgreSQL build read the storage
    ix = windex.open_dir(str(src.whoosh_dir))
    with ix.searcher() as s:
        reader = s.reader()
        keys = reader.column_reader("keys")
        rows = reader.column_reader("row")
        stubs = reader.column_reader("stub")
        patients = reader.column_reader("patient")
        live = [d for d in range(reader.doc_count_all()) if not reader.is_deleted(d)]
        pairs = ((keys[d].decode("utf-8"), orjson.loads(rows[d]), stubs[d] or None,
                  patients[d] or None) for d in live)
        return target.import_rows(pairs, state, state.get("root", ""))
