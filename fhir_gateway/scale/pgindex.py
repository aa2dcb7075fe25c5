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
from typing import Iterable, Sequence, cast

import orjson

from fhir_gateway.index import keys as K
from fhir_gateway.index.patients import K_FAM, K_GIV, K_KANA, K_KANJI, K_KFAM, K_KGIV, K_PID, \
    SEP, IndexStats, PatientIndex, _identifier_values, _values
from fhir_gateway.index.stubs import narrow, terms_of, updated_seconds
from fhir_gateway.index.summary import PatientSummary
from fhir_gateway.index.walk import scan

from .migrations import require_current
from .pg import Connections, lock_key

log = logging.getLogger(__name__)
COLUMNS = ("facility", "pid", "sortkey", "kana", "kanji", "fam", "giv", "kfam", "kgiv", "terms",
           "birth", "gender", "summary", "stub", "sterms", "updated", "patient")
_COL = {K_KANA: "kana", K_KANJI: "kanji", K_FAM: "fam", K_GIV: "giv", K_KFAM: "kfam",
        K_KGIV: "kgiv"}
# The same keys read from the sortkey (the embedded index's ``keys``: SEP-joined, see
# fhir_gateway.index.patients.document), so a walk of the sortkey index needs no heap fetch.
_SORTKEY_PART = {i: f"split_part(sortkey, E'\\x1f', {i + 1})" for i in _COL}
_PID_OF_SORTKEY = f"split_part(sortkey, E'\\x1f', {K_PID + 1})"
INNER = "\x03"  # tag of a kana gram that does not begin the kana key (PostgreSQL-only terms)
assert SEP == "\x1f"
GIN_MAX = 2000  # candidates the GIN plan fetches before it gives way to the ordered walk
WALK_ROWS = 40_000  # sortkey-index entries the walk reads before it gives way to the GIN plan
ORDERED_LIMIT = 500  # asked for more results than this: the GIN plan (most candidates anyway)
STATS_TTL = 300.0  # seconds a process keeps the gram statistics


def row_of(facility: str, keys: str, summary: list, stub: bytes | None,
           patient: bytes | None = None) -> tuple:
    """The table row of one patient from the embedded index's ``keys``, ``row``, ``stub`` and
    ``patient`` columns (the same for a fresh extraction and for a migration from whoosh)."""
    parts = keys.split(SEP)
    kana, kanji = parts[K_KANA], parts[K_KANJI]
    fam, giv, kfam, kgiv = parts[K_FAM], parts[K_GIV], parts[K_KFAM], parts[K_KGIV]
    terms = K.name_terms(kana, [kfam, kgiv]) | {K.KANJI + t for t in K.name_terms(kanji, [fam, giv])}
    terms |= inner_terms(kana, kgiv)
    s = PatientSummary(*summary)
    st = orjson.loads(stub) if stub else None
    birth = K.birth_number(s.birthdate or (st or {}).get("birthDate"))
    return (facility, parts[K_PID], keys, kana, kanji, fam, giv, kfam, kgiv, sorted(terms),
            birth, s.gender or None, orjson.dumps(summary).decode(),
            stub.decode("utf-8") if stub else None, terms_of(st) if st else [],
            updated_seconds(st) if st else None,
            patient.decode("utf-8") if patient else None)


def inner_terms(kana: str, kgiv: str) -> set[str]:
    """The kana grams that do not begin the kana key, and the given name's initial, tagged
    :data:`INNER`: a kana search finds the names it occurs *inside* through these alone (those
    it begins are a range of the sortkey index)."""
    out = {INNER + kana[i:i + n] for n in range(2, K.GRAM_MAX + 1)
           for i in range(1, len(kana) - n + 1)}
    if kgiv:
        out.add(INNER + K.PREFIX + kgiv[0])
    return out


def row_of_document(facility: str, doc: dict) -> tuple:
    return row_of(facility, doc["keys"].decode("utf-8"), orjson.loads(doc["row"]),
                  doc.get("stub") or None, doc.get("patient") or None)


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
        self._stats: tuple[float, float, dict[str, float], float] | None = None
        self.plan: str | None = None  # "walk" / "gin" forces one plan (tests, benchmarks)
        self.trace: list[tuple[str, list]] | None = None  # statements run by search (bench)

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
                conn.execute("SET LOCAL synchronous_commit = on")  # see _analyze
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
            if not full and stats.changed:
                self._stats = None  # new grams: read the statistics again
            stats.patients = conn.execute("SELECT count(*) FROM patient_index WHERE facility = %s",
                                          (self.facility,)).fetchone()[0]
        finally:
            conn.close()  # ends the session: the advisory lock goes with it
        if full:
            self._analyze()
        stats.seconds = time.perf_counter() - t0
        return stats

    def _analyze(self) -> None:
        """After a full write: the visibility map (the ordered walk then reads the index alone)
        and the gram statistics the plan choice reads (autovacuum keeps both up later).  The
        write committed with ``synchronous_commit = on``: VACUUM marks a page all-visible only
        once the inserting commit is flushed (hint bits), which an asynchronous commit may not
        be yet."""
        with self.db.fresh(autocommit=True) as c:
            c.execute("VACUUM (ANALYZE) patient_index")
        self._stats = None

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

    def import_rows(self, rows: Iterable[tuple], state: dict | None, root: str) -> int:
        """Replace this facility's rows with ``(keys, summary, stub[, patient])`` (the migration from the
        embedded index), under the writer lock, in one transaction; the walk state comes along
        so the next refresh is incremental."""
        self._conn()
        conn = self.db.fresh(autocommit=True)
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"patient-index:{self.facility}"),))
            n = 0
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")  # see _analyze
                conn.execute("DELETE FROM patient_index WHERE facility = %s", (self.facility,))
                with conn.cursor().copy(f"COPY patient_index ({', '.join(COLUMNS)}) FROM STDIN") as cp:
                    for row in rows:
                        cp.write_row(row_of(self.facility, *row))
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
        finally:
            conn.close()
        self._analyze()
        return n

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
        """Same contract as :meth:`PatientIndex.search`.

        A name criterion has two plans, both exact, chosen by the expected number of candidates
        (gram frequencies from the table statistics, :meth:`_candidates`):

        - *gin*: candidates through the GIN index, the top ``limit`` by sortkey.  It fetches
          every candidate's row, so it is bounded (``GIN_MAX``) and gives way to the walk;
        - *walk*: the (facility, sortkey) index in order, filtered on the name keys that the
          sortkey itself holds (plus birth/gender, included in that index): an index-only scan
          that stops at the ``limit``-th match, i.e. after about limit / selectivity entries.
          Bounded too (``WALK_ROWS``), then the unbounded GIN plan answers.

        A kana query alone is split first (:meth:`_kana_split`): the names it begins are one
        range of the sortkey index, only the names it occurs inside need a plan above.
        Both plans give sortkeys; the page's summaries are read by id at the end.
        """
        # PostgreSQL text cannot hold NUL; no stored key or id contains one, so a value with a
        # NUL matches nothing, exactly like a non-character (U+FFFE) that never occurs.
        name, family, given, kana, gender, identifier, text = (
            v.replace("\x00", "\ufffe") if isinstance(v, str) else v
            for v in (name, family, given, kana, gender, identifier, text))
        if isinstance(birthdate, str):
            birthdate = birthdate.replace("\x00", "\ufffe")
        crit = (name, family, given, kana, birthdate, gender, identifier, text)
        try:
            where = self._where(*crit)
        except K.BadCriterion:
            return []
        if where is None or limit <= 0:
            return []
        sql, params, grams = where
        if not grams:
            return self._rows(f"SELECT summary FROM patient_index WHERE facility = %s{sql} "
                              "ORDER BY sortkey LIMIT %s", [self.facility, *params, limit])
        alone = kana is not None and not any((name, family, given, birthdate, gender,
                                              identifier, text))
        values = _values(str(kana)) if alone else []
        if alone and self.plan in (None, "split") and limit <= ORDERED_LIMIT \
                and len(values) == 1 and K.search_key(values[0]):
            return self._summaries(self._kana_split(K.search_key(values[0]), limit))
        walked = self._where(*crit, walk=True)
        assert walked is not None  # the same criteria as above
        return self._summaries(self._keys(sql, params, grams, walked[0], walked[1], limit,
                                          self.plan)[0])

    def _keys(self, sql: str, params: list, grams: list, walk_sql: str, walk_params: list,
              limit: int, plan: str | None, extra: tuple[str, list] | None = None
              ) -> tuple[list[str], list[str]]:
        """The first ``limit`` sortkeys matching, by the plan given or chosen; and the sortkeys
        of ``extra`` (a statement run in the same round trip, see :meth:`_kana_split`)."""
        if plan in (None, "split"):
            if limit > ORDERED_LIMIT:
                plan = "gin"  # (nearly) every candidate is wanted anyway
            elif self._candidates(grams) >= GIN_MAX:
                plan = "walk-bounded"
            else:
                plan = "gin-bounded"
        if plan == "gin-bounded":
            got, more = self._gin(sql, params, limit, GIN_MAX, extra)
            if got is None:
                got = self._walk(walk_sql, walk_params, limit, None)[0]
        elif plan == "walk-bounded":
            got, more = self._walk(walk_sql, walk_params, limit, WALK_ROWS, extra)
            if got is None:
                got = self._gin(sql, params, limit, None)[0]
        elif plan == "walk":
            got, more = self._walk(walk_sql, walk_params, limit, None, extra)
        else:
            got, more = self._gin(sql, params, limit, None, extra)
        return got or [], more

    def _kana_split(self, k: str, limit: int) -> list[str]:
        """A kana query: the keys whose kana *begins* with it are one range of the sortkey
        index (sortkey starts with the kana), read in order and no further than ``limit``;
        those it occurs *inside* (a given name, a later part of a family name) are found through
        the inner-gram terms (:func:`inner_terms`), which never list the names it begins — so a
        common family name does not make its own thousands of rows candidates.  Merged."""
        kana = _SORTKEY_PART[K_KANA]
        if len(k) == 1:
            begins = f"left({kana}, 1) = %s"
            inner_exact = ("(left(kfam, 1) = %s OR left(kgiv, 1) = %s OR left(kana, 1) = %s) "
                           "AND left(kana, 1) <> %s")
            inner_walk = inner_exact.replace("kfam", _SORTKEY_PART[K_KFAM]) \
                .replace("kgiv", _SORTKEY_PART[K_KGIV]).replace("kana,", f"{kana},")
            inner_params = [k, k, k, k]
            inner = [INNER + K.PREFIX + k]
        else:
            begins = f"starts_with({kana}, %s)"
            inner_exact = "strpos(kana, %s) > 1"
            inner_walk = f"strpos({kana}, %s) > 1"
            inner_params = [k]
            inner = [INNER + g for g in K.query_grams(k)]
        nxt = ord(k[-1]) + 1
        nxt = 0xE000 if 0xD800 <= nxt < 0xE000 else nxt  # no surrogates in UTF-8
        # [k, upper): exactly the strings that begin with k (byte order = code point order)
        upper = k[:-1] + chr(nxt) if nxt <= 0x10FFFF else "\U0010ffff" * 64
        q = ("SELECT sortkey FROM patient_index WHERE facility = %s AND sortkey >= %s "
             f"AND sortkey < %s AND {begins} ORDER BY sortkey LIMIT %s")
        rest, first = self._keys(" AND terms @> %s AND " + inner_exact, [inner, *inner_params],
                                 [[inner]], " AND " + inner_walk, inner_params, limit,
                                 self.plan, (q, [self.facility, k, upper, k, limit]))
        return sorted(first + rest)[:limit]

    def _summaries(self, keys: list[str]) -> list[PatientSummary]:
        """The summaries of these sortkeys, in their order (one primary-key lookup each)."""
        if not keys:
            return []
        pids = [k.rsplit(SEP, 1)[-1] for k in keys]
        q = "SELECT pid, summary FROM patient_index WHERE facility = %s AND pid = ANY(%s)"
        if self.trace is not None:
            self.trace.append((q, [self.facility, pids]))
        got = {r["pid"]: r["summary"]
               for r in self._conn().execute(q, (self.facility, pids)).fetchall()}
        return [PatientSummary(*got[p]) for p in pids if p in got]

    def _rows(self, sql: str, params: list) -> list[PatientSummary]:
        if self.trace is not None:
            self.trace.append((sql, params))
        return [PatientSummary(*r["summary"]) for r in self._conn().execute(sql, params).fetchall()]

    def _gin(self, sql: str, params: list, limit: int, bound: int | None,
             extra: tuple[str, list] | None = None) -> tuple[list[str] | None, list[str]]:
        """Candidates through the GIN index, the first ``limit`` sortkeys (None when there are
        more than ``bound`` candidates), and ``extra``'s sortkeys from the same round trip.
        MATERIALIZED: left to itself the planner may walk the sortkey index and filter on
        ``terms`` with a heap fetch per entry (its estimate of a gram array's selectivity is
        poor)."""
        cap = "" if bound is None else f" LIMIT {int(bound) + 1}"
        q = ("WITH c AS MATERIALIZED (SELECT sortkey FROM patient_index "
             f"WHERE facility = %s{sql}{cap}) "
             "SELECT sortkey, (SELECT count(*) FROM c) AS n, 1 AS own FROM "
             "(SELECT sortkey FROM c ORDER BY sortkey LIMIT %s) g")
        qp = [self.facility, *params, limit]
        rows = self._run_with(q, qp, extra)
        got = [r["sortkey"] for r in rows if r["own"]]
        more = [r["sortkey"] for r in rows if not r["own"]]
        if bound is not None and got and next(r["n"] for r in rows if r["own"]) > bound:
            return None, more
        return got, more

    def _walk(self, sql: str, params: list, limit: int, bound: int | None,
              extra: tuple[str, list] | None = None) -> tuple[list[str] | None, list[str]]:
        """The sortkey index in order, filtered on what it holds: the first ``limit`` matching
        sortkeys (None when ``bound`` entries gave fewer: the matches may lie further), and
        ``extra``'s sortkeys from the same round trip."""
        if bound is None:
            q = f"SELECT sortkey, 1 AS own FROM (SELECT sortkey FROM patient_index " \
                f"WHERE facility = %s{sql} ORDER BY sortkey LIMIT %s) w"
            qp = [self.facility, *params, limit]
        else:
            q = ("SELECT sortkey, 1 AS own FROM (SELECT sortkey FROM (SELECT sortkey, birth, "
                 "gender FROM patient_index WHERE facility = %s ORDER BY sortkey LIMIT %s) s "
                 f"WHERE true{sql} ORDER BY sortkey LIMIT %s) w")
            qp = [self.facility, bound, *params, limit]
        rows = self._run_with(q, qp, extra)
        got = [r["sortkey"] for r in rows if r["own"]]
        more = [r["sortkey"] for r in rows if not r["own"]]
        return (None if bound is not None and len(got) < limit else got), more

    def _run_with(self, q: str, qp: list, extra: tuple[str, list] | None) -> list:
        """``q`` (rows with ``own`` = 1), with ``extra``'s rows appended (``own`` = 0) by
        UNION ALL: one round trip for both."""
        if extra is not None:
            q = f"{q} UNION ALL SELECT sortkey, " + ("NULL, " if "AS n," in q else "") + \
                f"0 FROM ({extra[0]}) x"
            qp = [*qp, *extra[1]]
        if self.trace is not None:
            self.trace.append((q, qp))
        return self._conn().execute(q, qp).fetchall()

    def _candidates(self, grams: list[list[list[str]]]) -> float:
        """Expected candidates of the name criteria (each a list of alternatives, each a list of
        grams to AND): the rarest criterion's sum over alternatives of rows × the product of
        the grams' frequencies (as the planner would; an unknown gram is rarer than the rarest
        tracked one).  0 without statistics (then the bounded GIN plan tries first)."""
        now = time.monotonic()
        if self._stats is None or now - self._stats[0] > STATS_TTL:
            row = self._conn().execute(
                "SELECT greatest(c.reltuples, 0) AS n, s.most_common_elems::text::text[] AS e, "
                "s.most_common_elem_freqs AS f FROM pg_class c LEFT JOIN pg_stats s ON "
                "s.schemaname = current_schema() AND s.tablename = 'patient_index' "
                "AND s.attname = 'terms' WHERE c.oid = 'patient_index'::regclass").fetchone()
            elems, freqs = (row["e"] or []), (row["f"] or [])
            table = dict(zip(elems, freqs))
            floor = min(freqs[:len(elems)]) / 2 if elems else 0.0
            self._stats = (now, float(row["n"] or 0), table, floor)
        _, n, table, floor = self._stats
        best = float("inf")
        for alts in grams:
            total = 0.0
            for terms in alts:
                f = 1.0
                for t in terms:
                    f *= table.get(t, floor)
                total += f * n
            best = min(best, total)
        return 0.0 if best == float("inf") else best

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

    def patients(self, pids: list[str]) -> dict[str, tuple[dict, tuple]]:
        """The stored Patient of each id with its source ``(ADT-00 relpath, size, mtime_ns,
        folder mtime_ns)`` (same contract as :meth:`PatientIndex.patients`: the caller checks
        the source with two stats; ids without one are left out)."""
        if not pids:
            return {}
        rows = self._conn().execute(
            "SELECT pid, patient::text AS p FROM patient_index WHERE facility = %s "
            "AND pid = ANY(%s) AND patient IS NOT NULL", (self.facility, list(pids))).fetchall()
        out: dict[str, tuple[dict, tuple]] = {}
        for r in rows:
            v = orjson.loads(r["p"])
            out[r["pid"]] = (v["r"], tuple(v["f"]))
        return out

    def _where(self, name, family, given, kana, birthdate, gender, identifier, text,
               walk: bool = False) -> tuple[str, list, list[list[list[str]]]] | None:
        """``(" AND …" SQL, parameters, grams per name criterion)``, None when nothing can match.
        ``walk``: the same conditions on what the sortkey index holds (no ``terms``: the exact
        key tests alone decide, the grams only find candidates)."""
        conds: list[str] = []
        params: list = []
        grams: list[list[list[str]]] = []
        col = _SORTKEY_PART if walk else _COL
        pid = _PID_OF_SORTKEY if walk else "pid"

        def names(value: str, keys: tuple[int, ...], prefixes: tuple[int, ...],
                  kana_only: bool = False, with_id: bool = False) -> bool:
            alts: list[str] = []
            options: list[list[str]] = []
            for v in _values(value):
                k = K.search_key(v)
                if not k:
                    continue
                terms = K.query_terms(k)
                options.append(terms)
                if not kana_only:
                    options.append([K.KANJI + t for t in terms])
                if walk:
                    found = ""
                elif kana_only:
                    found = "terms @> %s AND "
                    params.append(terms)
                else:
                    found = "(terms @> %s OR terms @> %s) AND "
                    params.extend([terms, [K.KANJI + t for t in terms]])
                if len(k) == 1:
                    cols = [col[i] for i in dict.fromkeys(prefixes + keys)]
                    exact = " OR ".join(f"left({c}, 1) = %s" for c in cols)
                else:
                    cols = [col[i] for i in keys]
                    exact = " OR ".join(f"strpos({c}, %s) > 0" for c in cols)
                params.extend([k] * len(cols))
                alts.append(f"({found}({exact}))")
            ids = [v.strip() for v in _values(value)] if with_id else []
            if ids:
                alts.append(f"{pid} = ANY(%s)")
                params.append(ids)
                options.append([])  # one row per id at most: counted as a whole table (safe)
            if not alts:
                return False
            conds.append("(" + " OR ".join(alts) + ")")
            grams.append(options)
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
            ranges = ([K.birth_range(cast("tuple[str | None, str | None]", birthdate))]
                      if isinstance(birthdate, (tuple, list))
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
            ids = _identifier_values(identifier, self._id_system)
            if not ids:
                return None
            conds.append(f"{pid} = ANY(%s)")
            params.append(ids)
        return "".join(" AND " + c for c in conds), params, grams

    def close(self) -> None:
        self.stop_background_refresh()
        self.db.close()
