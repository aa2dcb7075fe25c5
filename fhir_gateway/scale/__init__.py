"""Running beyond one machine: PostgreSQL backends of the patient index and the state store,
and Dask for data-centre-wide drills.  Everything here is optional: the embedded default
(whoosh + SQLite/journal files) needs nothing but Python; ``pip install fhir-gateway[scale]``
adds psycopg 3 and dask.distributed.  See docs/scale-out.md."""
