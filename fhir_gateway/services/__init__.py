"""The internal service layer: what the REST API and the viewer both call.

``Gateway(config).facility(code)`` gives a :class:`FacilityService` with ``read``, ``vread``,
``history``, ``search``, ``everything`` and ``patient_bundle``, composed of
:class:`ResourceSource` s (SS-MIX2 storage, receipts, extended storage, plug-ins); files are read
through the replica set and a shared byte-bounded cache of mapped files.  Errors carry their
HTTP status and FHIR issue code (``errors``)."""

from __future__ import annotations

from fhir_gateway.config import Config

from .cache import DEFAULT_MAX_BYTES, Mapped, MappedCache
from .errors import (
    BrokenResource, Gone, NotFound, PatientRequired, ServiceError, StorageUnavailable,
)
from .facility import FacilityService, WalkIndex, default_index
from .resource_source import PatientData, ResourceSource, SearchResult


class Gateway:
    """All configured facilities, sharing one mapped-file cache."""

    def __init__(self, config: Config, cache_bytes: int | None = None) -> None:
        self.config = config
        self.cache = MappedCache(cache_bytes or getattr(config, "cache_bytes", None)
                                 or DEFAULT_MAX_BYTES)
        self._services = {
            code: FacilityService(fac, self.cache, config.data_dir,
                                  index_factory=lambda svc: default_index(svc, config))
            for code, fac in config.facilities.items()
        }

    def facility(self, code: str) -> FacilityService | None:
        return self._services.get(code)

    @property
    def facilities(self) -> dict[str, FacilityService]:
        return dict(self._services)


__all__ = ["BrokenResource", "FacilityService", "Gateway", "Gone", "Mapped", "MappedCache",
           "NotFound", "PatientData", "PatientRequired", "ResourceSource", "SearchResult",
           "ServiceError",
           "StorageUnavailable", "WalkIndex"]
