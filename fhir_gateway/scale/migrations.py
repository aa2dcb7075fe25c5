"""Versioned PostgreSQL schema of the shared index and state, applied by ``fhir-gateway db
upgrade``.

Why versioned steps instead of ``CREATE IF NOT EXISTS`` at start-up: several gateway instances
start at once against one database, and a running instance must never see a half-changed schema.
Each step runs in its own transaction under one advisory lock, and ``fgw_schema`` records it;
``serve`` and ``index`` refuse to run against an older schema (:func:`require_current`) with the
command to run, rather than changing the database behind an operator's back.  Steps are never
edited once released: a change is a new step.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCK_KEY = 0x46475701  # advisory lock of schema changes ("FGW" 1)


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    sql: str


STEPS: tuple[Step, ...] = (
    Step(1, "patient index", """
CREATE TABLE patient_index (
    facility  text NOT NULL,
    pid       text NOT NULL,
    sortkey   text COLLATE "C" NOT NULL,  -- kana (or kanji) key ... pid: the result order
    kana      text NOT NULL,              -- normalised keys (storage.text.search_key)
    kanji     text NOT NULL,
    fam       text NOT NULL,
    giv       text NOT NULL,
    kfam      text NOT NULL,
    kgiv      text NOT NULL,
    terms     text[] NOT NULL,            -- the name grams of fhir_gateway.index.keys
    birth     integer,                    -- YYYYMMDD, 00 for an unknown month/day
    gender    text,
    summary   jsonb NOT NULL,             -- the PatientSummary fields as a list
    indexed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (facility, pid)
);
CREATE INDEX patient_index_terms ON patient_index USING gin (terms);
CREATE INDEX patient_index_sort ON patient_index (facility, sortkey);
CREATE INDEX patient_index_birth ON patient_index (facility, birth);
CREATE TABLE patient_index_state (
    facility   text PRIMARY KEY,
    scan       jsonb NOT NULL,            -- fhir_gateway.index.walk state: folder mtimes
    root       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""),
    Step(2, "shared state: accounts, sessions, audit, tokens, memos, paging key", """
CREATE FUNCTION fgw_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TABLE users (
    username TEXT PRIMARY KEY,
    pw_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    facility TEXT,
    display TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    locked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    pw_changed DOUBLE PRECISION NOT NULL
);
CREATE TABLE sessions (
    sid_hash TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    username TEXT
);
CREATE INDEX sessions_username ON sessions (username);
CREATE TABLE passphrases (
    facility TEXT PRIMARY KEY,
    pw_hash TEXT NOT NULL,
    version INTEGER NOT NULL,
    rotated_at DOUBLE PRECISION NOT NULL,
    rotated_by TEXT NOT NULL
);
CREATE TABLE access (
    facility TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    reason TEXT NOT NULL,
    expires DOUBLE PRECISION,
    changed_by TEXT NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE access_log (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    facility TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    expires DOUBLE PRECISION,
    username TEXT NOT NULL,
    person TEXT NOT NULL,
    staff_no TEXT NOT NULL
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    username TEXT NOT NULL,
    person TEXT NOT NULL,
    staff_no TEXT NOT NULL,
    session TEXT NOT NULL,
    ip TEXT NOT NULL,
    action TEXT NOT NULL,
    facility TEXT NOT NULL,
    patient TEXT NOT NULL,
    detail TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL UNIQUE,       -- one successor per row: the chain cannot fork
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_facility ON audit (facility, id);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    facility TEXT NOT NULL,
    salt TEXT NOT NULL,
    hash TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT,
    extra JSONB NOT NULL DEFAULT '{}'
);
CREATE TABLE memos (
    seq BIGSERIAL PRIMARY KEY,
    facility TEXT NOT NULL,
    line TEXT NOT NULL                    -- the journal line, byte for byte (hash chain)
);
CREATE INDEX memos_facility ON memos (facility, seq);
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION fgw_append_only();
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION fgw_append_only();
CREATE TRIGGER memos_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON memos
    FOR EACH STATEMENT EXECUTE FUNCTION fgw_append_only();
"""),
    Step(3, "patient index: search stubs for every Patient search parameter", """
ALTER TABLE patient_index ADD COLUMN stub jsonb;            -- the Patient cut to its search fields
ALTER TABLE patient_index ADD COLUMN sterms text[] NOT NULL DEFAULT '{}';  -- index.stubs terms
ALTER TABLE patient_index ADD COLUMN updated bigint;        -- meta.lastUpdated, epoch seconds
CREATE INDEX patient_index_sterms ON patient_index USING gin (sterms);
CREATE INDEX patient_index_updated ON patient_index (facility, updated);
DELETE FROM patient_index_state;  -- rows lack stubs: the next `fhir-gateway index` rebuilds
"""),
    Step(4, "keyed audit head, SMART clients and assertion ids", """
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    last TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TABLE smart_clients (
    id TEXT PRIMARY KEY,
    data JSONB NOT NULL                   -- fhir_gateway.smart.clients.Client as a dict
);
CREATE TABLE smart_jti (
    client TEXT NOT NULL,
    jti TEXT NOT NULL,
    exp DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client, jti)
);
"""),
    Step(5, "login and 合言葉 attempt counters (accounts/attempts.py)", """
CREATE TABLE attempts (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last DOUBLE PRECISION NOT NULL,
    blocked_until DOUBLE PRECISION NOT NULL
);
"""),
    Step(6, "optional TOTP per account (accounts/totp.py)", """
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_last BIGINT NOT NULL DEFAULT 0;
"""),
    Step(7, "bulk export jobs", """
CREATE TABLE bulk_jobs (
    id TEXT PRIMARY KEY,
    data JSONB NOT NULL                   -- the job document of fhir_gateway.bulk.store
);
"""),
    Step(8, "patient index: stored Patients, a covering sort index, finer gram statistics", """
-- {"r": Patient, "f": [ADT-00 relpath, size, mtime_ns, folder mtime_ns]}: a page of Patient
-- search served without mapping (PgPatientIndex.patients).  json, not jsonb: the text is kept
-- as written, so a served Patient has the key order of a freshly mapped one.  Rows indexed
-- before this step have none (mapped from the files) until `fhir-gateway index --rebuild`.
ALTER TABLE patient_index ADD COLUMN patient json;
-- The ordered walk of a common name reads only this index (sortkey holds every name key and
-- the id; birth and gender ride along): no heap fetch per candidate.
CREATE INDEX patient_index_walk ON patient_index (facility, sortkey) INCLUDE (birth, gender);
DROP INDEX patient_index_sort;
-- PgPatientIndex chooses its plan from the grams' frequencies: track 10,000 of them.
ALTER TABLE patient_index ALTER COLUMN terms SET STATISTICS 1000;
-- Rows lack the inner-gram terms a kana search now relies on (and the stored Patients): the next
-- `fhir-gateway index` rebuilds; until then search walks the storage (correct, slow).
DELETE FROM patient_index_state;
"""),
)
LATEST = STEPS[-1].version


class SchemaError(RuntimeError):
    """The database is older (or newer) than this program; the message says what to run."""


def current(conn) -> int:
    """The schema version of the database (0 = never upgraded)."""
    from psycopg.rows import tuple_row

    cur = conn.cursor(row_factory=tuple_row)
    if cur.execute("SELECT to_regclass('fgw_schema')").fetchone()[0] is None:
        return 0
    return cur.execute("SELECT coalesce(max(version), 0) FROM fgw_schema").fetchone()[0]


def upgrade(dsn: str) -> list[Step]:
    """Apply the missing steps in order; safe when several processes run it at once."""
    import psycopg

    done: list[Step] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS fgw_schema (version integer PRIMARY KEY, "
                         "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            have = current(conn)
            if have > LATEST:
                raise SchemaError(f"the database schema is version {have}, newer than this "
                                  f"program ({LATEST}); upgrade fhir-gateway")
            for step in STEPS:
                if step.version <= have:
                    continue
                with conn.transaction():
                    conn.execute(step.sql)
                    conn.execute("INSERT INTO fgw_schema (version, description) VALUES (%s, %s)",
                                 (step.version, step.description))
                done.append(step)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return done


def require_current(conn) -> None:
    have = current(conn)
    if have < LATEST:
        raise SchemaError(f"the database schema is version {have}, this program needs {LATEST}: "
                          "run `fhir-gateway db upgrade --config FILE` first")
    if have > LATEST:
        raise SchemaError(f"the database schema is version {have}, newer than this program "
                          f"({LATEST}); upgrade fhir-gateway")
