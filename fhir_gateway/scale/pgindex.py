"""The Patient index in PostgreSQL: one table shared by every gateway instance and facility.

Same matching rules as the embedded whoosh index (:mod:`fhir_gateway.index.keys`): names are
normalised keys; a 1-character query is a prefix of a name part, longer ones are substrings of
the full kanji or kana key.  The row keeps the very grams whoosh indexes (``terms``, a GIN
index): ``terms @> ARRAY[...]`` finds candidates through the index, and an exact predicate on the
key columns (``strpos`` / ``left``) keeps only true matches, so the result is the same list in
the same order (``sortkey``, byte order) as whoosh gives.  Why grams in an array rather than
pg_trgm: pg_trgm only makes trigrams of "word" characters, which depends on the database locale
for kana and kanji, and it has no 1-character prefix rule.

Writes: the folder walk (:mod:`fhir_gateway.index.walk`) and the extraction are the embedded
index's; only changed patients are upserted (``INSERT … ON CONFLICT DO UPDATE``) and removed
ones deleted, in one transaction with the new walk state, so readers see the old or the new
index, never half.  One writer per facility across all machines: a session advisory lock (a
second ``fhir-gateway index`` waits, a background refresh skips).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable, Sequence

import orjson

from fhir_gateway.index import keys as K
from fhir_gateway.index.patients import K_FAM, K_GIV, K_KANA, K_KANJI, K_KFAM, K_KGIV, K_PID, \
    SEP, IndexStats, PatientIndex, _values
from fhir_gateway.index.stubs import narrow, terms_of, updated_seconds
from fhir_gateway.index.summary import PatientSummary
from fhir_gateway.index.walk import scan

from .migrations import require_current
from .pg import Connections, lock_key

log = logging.getLogger(__name__)
COLUMNS = ("facility", "pid", "sortkey", "kana", "kanji", "fam", "giv", "kfam", "kgiv", "terms",
           "birth", "gender", "summary", "stub", "sterms", "updated")
_COL = {K_KANA: "kana", K_KANJI: "kanji", K_FAM: "fam", K_GIV: "giv", K_KFAM: "kfam",
        K_KGIV: "kgiv"}


def row_of(facility: str, keys: str, summary: list, stub: bytes | None) -> tuple:
    """The table row of one patient from the embedded index's ``keys``, ``row`` and ``stub``
    columns (the same for a fresh extraction and for a migration from whoosh)."""
    parts = keys.split(SEP)
    kana, kanji = parts[K_KANA], parts[K_KANJI]
    fam, giv, kfam, kgiv = parts[K_FAM], parts[K_GIV], parts[K_KFAM], parts[K_KGIV]
    terms = K.name_terms(kana, [kfam, kgiv]) | {K.KANJI + t for t in K.name_terms(kanji, [fam, giv])}
    s = PatientSummary(*summary)
    st = orjson.loads(stub) if stub else None
    birth = K.birth_number(s.birthdate or (st or {}).get("birthDate"))
    return (facility, parts[K_PID], keys, kana, kanji, fam, giv, kfam, kgiv, sorted(terms),
            birth, s.gender or None, orjson.dumps(summary).decode(),
            stub.decode("utf-8") if stub else None, terms_of(st) if st else [],
            updated_seconds(st) if st else None)


def row_of_document(facility: str, doc: dict) -> tuple:
    return row_of(facility, doc["keys"].decode("utf-8"), orjson.loads(doc["row"]),
                  doc.get("stub") or None)


def sql_of(q) -> tuple[str, list]:
    """A narrowing query of :func:`fhir_gateway.index.stubs.narrow` (whoosh objects) as SQL on
    the same terms and numbers: one definition of what narrows, two engines."""
    from whoosh.query import And, NumericRange, Or, Term

    if isinstance(q, Term) and q.fieldname == "sterm":
        return "sterms @> ARRAY[%s]", [q.text]
    if isinstance(q, (And, Or)):
        parts = [sql_of(x) for x in q.subqueries]
        op = " AND " if isinstance(q, And) else " OR "
        return "(" + op.join(p for p, _ in parts) + ")", [v for _, ps in parts for v in ps]
    if isinstance(q, NumericRange) and q.fieldname in ("birth", "updated"):
        conds, params = [], []
        if q.start is not None:
            conds.append(f"{q.fieldname} >{'' if q.startexcl else '='} %s")
            params.append(q.start)
        if q.end is not None:
            conds.append(f"{q.fieldname} <{'' if q.endexcl else '='} %s")
            params.append(q.end)
        return "(" + (" AND ".join(conds) or f"{q.fieldname} IS NOT NULL") + ")", params
    raise ValueError(f"cannot narrow on {q!r} in PostgreSQL")


class PgPatientIndex(PatientIndex):
    """The PostgreSQL implementation of the patient-index protocol (see
    :mod:`fhir_gateway.index.backends`).  Storage walking and extraction are inherited."""

    backend = "postgresql"

    def __init__(self, dsn: str, data_dir: Path, facility: str,
                 storage_roots: Sequence[Path]) -> None:
        super().__init__(data_dir, facility, storage_roots)
        self.db = Connections(dsn)
        self._checked = False

    def _conn(self):
        if not self._checked:
            require_current(self.db.get())
            self._checked = True
        return self.db

    # -- writing ----------------------------------------------------------------------------------
    def _write(self, full: bool, progress: bool, wait: bool) -> IndexStats:
        t0 = time.perf_counter()
        self._conn()
        conn = self.db.fresh(autocommit=True)
        key = lock_key(f"patient-index:{self.facility}")
        try:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            elif not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                return IndexStats(skipped="another process is writing the index")
            storage, i = self.replicas.active()
            root = str(storage.root)
            st = self.replicas.states[i]
            if not st.healthy:
                return IndexStats(skipped=f"storage unreadable: {st.reason}", root=root)
            if not st.seen_data:
                return IndexStats(skipped=f"storage unreadable: {root} is empty (not mounted?)",
                                  root=root)
            row = conn.execute("SELECT scan FROM patient_index_state WHERE facility = %s",
                               (self.facility,)).fetchone()
            old = None if (full or row is None) else row[0]
            full = full or old is None
            result = scan(root, old, None)
            todo = list(result.folders) if full else result.changed
            stats = IndexStats(full=full, root=root, removed=0 if full else len(result.removed))
            with conn.transaction():
                if full:
                    conn.execute("DELETE FROM patient_index WHERE facility = %s", (self.facility,))
                elif result.removed:
                    conn.execute("DELETE FROM patient_index WHERE facility = %s AND pid = ANY(%s)",
                                 (self.facility, list(result.removed)))
                rows = []
                for _pid, doc, bad in self._documents(storage, todo, result, progress):
                    rows.append(row_of_document(self.facility, doc))
                    stats.changed += 1
                    stats.problems += bad
                    if len(rows) >= 1000:
                        self._upsert(conn, rows)
                        rows = []
                self._upsert(conn, rows)
                conn.execute(
                    "INSERT INTO patient_index_state (facility, scan, root) VALUES (%s, %s, %s) "
                    "ON CONFLICT (facility) DO UPDATE SET scan = EXCLUDED.scan, "
                    "root = EXCLUDED.root, updated_at = now()",
                    (self.facility, orjson.dumps(result.state).decode(), root))
            stats.patients = conn.execute("SELECT count(*) FROM patient_index WHERE facility = %s",
                                          (self.facility,)).fetchone()[0]
            stats.seconds = time.perf_counter() - t0
            return stats
        finally:
            conn.close()  # ends the session: the advisory lock goes with it

    @staticmethod
    def _upsert(conn, rows: list[tuple]) -> None:
        if not rows:
            return
        cols = ", ".join(COLUMNS)
        marks = ", ".join(["%s"] * len(COLUMNS))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[2:])
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO patient_index ({cols}) VALUES ({marks}) "
                            f"ON CONFLICT (facility, pid) DO UPDATE SET {updates}, "
                            "indexed_at = now()", rows)

    def import_rows(self, rows: Iterable[tuple[str, list, bytes | None]], state: dict | None,
                    root: str) -> int:
        """Replace this facility's rows with ``(keys, summary, stub)`` triples (the migration from the
        embedded index), under the writer lock, in one transaction; the walk state comes along
        so the next refresh is incremental."""
        self._conn()
        conn = self.db.fresh(autocommit=True)
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"patient-index:{self.facility}"),))
            n = 0
            with conn.transaction():
                conn.execute("DELETE FROM patient_index WHERE facility = %s", (self.facility,))
                with conn.cursor().copy(f"COPY patient_index ({', '.join(COLUMNS)}) FROM STDIN") as cp:
                    for keys, summary, stub in rows:
                        cp.write_row(row_of(self.facility, keys, summary, stub))
                        n += 1
                if state is not None:
                    conn.execute(
                        "INSERT INTO patient_index_state (facility, scan, root) VALUES (%s, %s, %s)"
                        " ON CONFLICT (facility) DO UPDATE SET scan = EXCLUDED.scan,"
                        " root = EXCLUDED.root, updated_at = now()",
                        (self.facility, orjson.dumps(state).decode(), root))
                else:
                    conn.execute("DELETE FROM patient_index_state WHERE facility = %s",
                                 (self.facility,))
            return n
        finally:
            conn.close()

    # -- reading ----------------------------------------------------------------------------------
    def ready(self) -> bool:
        return self._conn().execute("SELECT 1 FROM patient_index_state WHERE facility = %s",
                                    (self.facility,)).fetchone() is not None

    def health(self) -> dict:
        """Cheap (a load balancer may ask every second): the refresh time, no row count."""
        try:
            row = self._conn().execute("SELECT updated_at FROM patient_index_state "
                                       "WHERE facility = %s", (self.facility,)).fetchone()
            return {"backend": self.backend, "status": "ok" if row else "empty",
                    "refreshed": row["updated_at"].isoformat() if row else None}
        except Exception as exc:  # health must answer, not raise
            return {"backend": self.backend, "status": "down", "reason": str(exc)[:200]}

    def count(self) -> int:
        return self._conn().execute("SELECT count(*) AS n FROM patient_index WHERE facility = %s",
                                    (self.facility,)).fetchone()["n"]

    def get(self, patient_id: str) -> PatientSummary | None:
        row = self._conn().execute("SELECT summary FROM patient_index WHERE facility = %s "
                                   "AND pid = %s", (self.facility, str(patient_id))).fetchone()
        return PatientSummary(*row["summary"]) if row else None

    def search(self, *, name: str | None = None, family: str | None = None,
               given: str | None = None, kana: str | None = None,
               birthdate: str | tuple[str | None, str | None] | None = None,
               gender: str | None = None, identifier: str | None = None,
               text: str | None = None, limit: int = 1000) -> list[PatientSummary]:
        """Same contract as :meth:`PatientIndex.search`."""
        # PostgreSQL text cannot hold NUL; no stored key or id contains one, so a value with a
        # NUL matches nothing, exactly like a non-character (U+FFFE) that never occurs.
        name, family, given, kana, gender, identifier, text = (
            v.replace("\x00", "\ufffe") if isinstance(v, str) else v
            for v in (name, family, given, kana, gender, identifier, text))
        if isinstance(birthdate, str):
            birthdate = birthdate.replace("\x00", "\ufffe")
        try:
            where = self._where(name, family, given, kana, birthdate, gender, identifier, text)
        except K.BadCriterion:
            return []
        if where is None or limit <= 0:
            return []
        sql, params = where
        if "terms @>" in sql:
            # Candidates through the GIN index first, then the top ``limit`` by sortkey.  Left
            # to itself the planner walks the sortkey index and filters (its estimate of a gram
            # array's selectivity is poor): fine for a common name, a scan of most of the table
            # for a rare one (seconds at 1,000,000 rows).  MATERIALIZED bounds the cost by the
            # number of candidates instead.
            rows = self._conn().execute(
                "WITH c AS MATERIALIZED (SELECT pid, sortkey FROM patient_index "
                f"WHERE facility = %s{sql}) "
                "SELECT p.summary FROM (SELECT pid, sortkey FROM c ORDER BY sortkey LIMIT %s) t "
                "JOIN patient_index p ON p.facility = %s AND p.pid = t.pid ORDER BY t.sortkey",
                [self.facility, *params, limit, self.facility]).fetchall()
        else:
            rows = self._conn().execute(
                f"SELECT summary FROM patient_index WHERE facility = %s{sql} "
                "ORDER BY sortkey LIMIT %s", [self.facility, *params, limit]).fetchall()
        return [PatientSummary(*r["summary"]) for r in rows]

    def stubs(self, criteria: list) -> list[dict]:
        """Search stubs of a superset of the patients matching the conformance ``criteria``
        (same contract as :meth:`PatientIndex.stubs`; the caller runs the API matcher)."""
        sql, params = "", []
        for q in narrow(criteria):
            part, ps = sql_of(q)
            sql += " AND " + part
            params += ps
        rows = self._conn().execute(
            f"SELECT stub FROM patient_index WHERE facility = %s AND stub IS NOT NULL{sql}",
            [self.facility, *params]).fetchall()
        return [r["stub"] for r in rows]

    def patients(self, pids: list[str]) -> dict:
        """Stored Patients are an optional shortcut of the embedded index (a page of search
        results without mapping); not kept here yet, so pages map their Patients from the files."""
        return {}

    def _where(self, name, family, given, kana, birthdate, gender, identifier, text):
        conds: list[str] = []
        params: list = []

        def names(value: str, keys: tuple[int, ...], prefixes: tuple[int, ...],
                  kana_only: bool = False, with_id: bool = False) -> bool:
            alts: list[str] = []
            for v in _values(value):
                k = K.search_key(v)
                if not k:
                    continue
                terms = K.query_terms(k)
                if kana_only:
                    found = "terms @> %s"
                    params.append(terms)
                else:
                    found = "(terms @> %s OR terms @> %s)"
                    params.extend([terms, [K.KANJI + t for t in terms]])
                if len(k) == 1:
                    cols = [_COL[i] for i in dict.fromkeys(prefixes + keys)]
                    exact = " OR ".join(f"left({c}, 1) = %s" for c in cols)
                else:
                    cols = [_COL[i] for i in keys]
                    exact = " OR ".join(f"strpos({c}, %s) > 0" for c in cols)
                params.extend([k] * len(cols))
                alts.append(f"({found} AND ({exact}))")
            ids = [v.strip() for v in _values(value)] if with_id else []
            if ids:
                alts.append("pid = ANY(%s)")
                params.append(ids)
            if not alts:
                return False
            conds.append("(" + " OR ".join(alts) + ")")
            return True

        all_parts = (K_FAM, K_GIV, K_KFAM, K_KGIV, K_KANJI, K_KANA)
        for value, ok in (
            (name, lambda v: names(v, (K_KANJI, K_KANA), all_parts)),
            (family, lambda v: names(v, (K_FAM, K_KFAM), (K_FAM, K_KFAM))),
            (given, lambda v: names(v, (K_GIV, K_KGIV), (K_GIV, K_KGIV))),
            (kana, lambda v: names(v, (K_KANA,), (K_KFAM, K_KGIV, K_KANA), kana_only=True)),
            (text, lambda v: names(v, (K_KANJI, K_KANA), all_parts, with_id=True)),
        ):
            if value is not None and str(value).strip() and not ok(str(value)):
                return None
        if birthdate:
            ranges = ([K.birth_range(birthdate)] if isinstance(birthdate, (tuple, list))
                      else [K.birth_range(v) for v in _values(birthdate)])
            ranges = [(lo, hi) for lo, hi in ranges if lo <= hi]
            if not ranges:
                return None
            conds.append("(" + " OR ".join(["birth BETWEEN %s AND %s"] * len(ranges)) + ")")
            for lo, hi in ranges:
                params.extend([lo, hi])
        if gender:
            conds.append("gender = ANY(%s)")
            params.append([g.strip().lower() for g in _values(gender)])
        if identifier:
            ids = []
            for v in _values(identifier):
                system, sep, value = v.rpartition("|")
                if sep and system and system != self._id_system:
                    continue
                if value.strip():
                    ids.append(value.strip())
            if not ids:
                return None
            conds.append("pid = ANY(%s)")
            params.append(ids)
        return "".join(" AND " + c for c in conds), params

    def close(self) -> None:
        self.stop_background_refresh()
        self.db.close()
