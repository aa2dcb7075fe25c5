"""The one interface every origin of resources implements, so ``FacilityService`` composes
sources instead of branching per type.

Implemented by the SS-MIX2 storage (``services.storage``), UKE receipts (``services.claims``),
extended storage (``services.extended``) and plug-ins such as the viewer's memos
(``services.plugins``).  A new origin is one class and one line in ``FacilityService``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from conformance import Query
from storage.reader import Problem

from .errors import NotFound


@dataclass
class PatientPart:
    """What one source holds of one patient."""

    resources: list[dict]
    problems: list[Problem] = field(default_factory=list)
    files: int = 0  # files (or folders) looked at, for the viewer's "N files" line
    cost: int = 0  # estimated bytes of the mapped entries behind it (compartment cache bound)
    when: list | None = None  # clinical (lo, hi) per resource when known (else computed)


@dataclass
class PatientData:
    resources: list[dict]
    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    when: list = field(default_factory=list, repr=False)  # clinical (lo, hi) per resource


@dataclass
class SearchResult:
    matches: list[dict]
    problems: list[Problem] = field(default_factory=list)


@runtime_checkable
class ResourceSource(Protocol):
    """An origin of resources.  Ids are owned by exactly one source (``owns``); the methods
    raise :mod:`fhir_gateway.services.errors` types."""

    name: str
    types: frozenset[str] | None  # the resource types it can yield (None: any)

    def owns(self, rtype: str, rid: str) -> bool:
        """Whether ``rtype/rid`` can only come from this source."""
        ...

    def read(self, rtype: str, rid: str) -> dict:
        ...

    def vread(self, rtype: str, rid: str, vid: str) -> dict:
        ...

    def history(self, rtype: str, rid: str) -> list[dict]:
        """Every version, newest first."""
        ...

    def for_patient(self, pid: str, types: set[str] | None = None,
                    files: list | None = None) -> PatientPart:
        """The patient's current resources (of ``types``); the (path, size, mtime_ns) of every
        file read are appended to ``files``."""
        ...

    def search(self, rtype: str, query: Query) -> SearchResult | None:
        """A search that names no patient, or None when this source cannot answer it."""
        ...


@runtime_checkable
class CachedSource(ResourceSource, Protocol):
    """A source whose patient part may be kept in the compartment cache while its signature
    is unchanged."""

    def signature(self, pid: str, types: set[str] | None = None) -> tuple[object, bool]:
        """(signature, cacheable): the signature changes whenever the part could."""
        ...


def yields(source: ResourceSource, types: set[str] | None) -> bool:
    """Whether ``source`` can hold resources of any of ``types`` (None = every type)."""
    return types is None or source.types is None or bool(types & source.types)


def version_of(resource: dict, vid: str, what: str) -> dict:
    """``resource`` when it is version ``vid`` (sources that keep one version only)."""
    if resource.get("meta", {}).get("versionId", "1") != vid:
        raise NotFound(f"{what} has no version {vid}")
    return resource
