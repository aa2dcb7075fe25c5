"""The Patient-index protocol and the choice of implementation from the configuration.

The application (REST search, the viewer, ``fhir-gateway index``, ``/health``) only uses the
methods of :class:`PatientIndexBackend`; which class answers is decided here, once, from
``[index] backend`` in ``gateway.toml``: the embedded whoosh index (default, nothing but Python)
or PostgreSQL (:mod:`fhir_gateway.scale.pgindex`, shared by every gateway instance).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fhir_gateway.config import Config

from .patients import IndexStats
from .summary import PatientSummary


@runtime_checkable
class PatientIndexBackend(Protocol):
    """What every Patient index implements.  ``search`` criteria: ``name family given kana
    birthdate gender identifier text`` (FHIR comma alternatives), results sorted by kana then
    id, at most ``limit``; a criterion that cannot match gives an empty list, never an error.
    ``stubs(criteria)``: search stubs (:mod:`.stubs`) of a superset of the patients matching
    conformance criteria, for the API's matcher — every Patient search parameter."""

    facility: str
    backend: str

    def build(self, progress: bool = False) -> IndexStats: ...
    def refresh(self, progress: bool = False) -> IndexStats: ...
    def try_refresh(self) -> IndexStats: ...
    def search(self, *, name: str | None = None, family: str | None = None,
               given: str | None = None, kana: str | None = None,
               birthdate: str | tuple[str | None, str | None] | None = None,
               gender: str | None = None, identifier: str | None = None, text: str | None = None,
               limit: int = 1000) -> list[PatientSummary]: ...
    def stubs(self, criteria: list) -> list[dict]: ...
    def get(self, patient_id: str) -> PatientSummary | None: ...
    def count(self) -> int: ...
    def ready(self) -> bool: ...
    def health(self) -> dict: ...
    def close(self) -> None: ...


def open_index(config: Config, code: str, backend: str | None = None) -> PatientIndexBackend:
    """The configured index of facility ``code`` (``backend`` overrides the config's)."""
    fac = config.facilities[code]
    kind = backend or config.index.backend
    if kind == "postgresql":
        from fhir_gateway.scale.pgindex import PgPatientIndex

        if not config.index.dsn:
            raise ValueError("the postgresql index needs [index] dsn in the config")
        return PgPatientIndex(config.index.dsn, config.data_dir, code, fac.storage)
    from .patients import PatientIndex

    return PatientIndex(config.data_dir, code, fac.storage)
