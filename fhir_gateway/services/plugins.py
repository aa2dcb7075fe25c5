"""Resources that do not live in any storage (e.g. the viewer's memos) as a
:class:`~fhir_gateway.services.resource_source.ResourceSource`.

Plug-ins register two plain functions through ``FacilityService.add_patient_source`` and
``add_resource_reader``; they keep one version each and are never cached."""

from __future__ import annotations

import logging
from typing import Callable

from conformance import Query
from mappers.extended import parse_extended_id
from mappers.ids import parse_id
from storage.reader import KIND_MAPPING, Problem

from .errors import NotFound
from .resource_source import PatientPart, SearchResult, version_of

log = logging.getLogger(__name__)
# ``fn(facility_code, patient_id) -> [FHIR dicts]``
PatientSource = Callable[[str, str], list[dict]]
# ``fn(facility_code, resource_type, id) -> dict | None``
ResourceReader = Callable[[str, str, str], "dict | None"]


class PluginSource:
    name = "plug-in"
    types: frozenset[str] | None = None

    def __init__(self, code: str) -> None:
        self.code = code
        self.sources: list[PatientSource] = []
        self.readers: list[ResourceReader] = []

    def owns(self, rtype: str, rid: str) -> bool:
        """Only ids no storage can own (not a Patient or Claim, not a record or extended id)."""
        return (rtype not in ("Patient", "Claim") and parse_id(rid) is None
                and parse_extended_id(rid) is None)

    def search(self, rtype: str, query: Query) -> SearchResult | None:
        return None

    def read(self, rtype: str, rid: str) -> dict:
        for fn in self.readers:
            found = fn(self.code, rtype, rid)
            if found is not None:
                return found
        raise NotFound(f"{rtype}/{rid} is not an id of this server")

    def vread(self, rtype: str, rid: str, vid: str) -> dict:
        return version_of(self.read(rtype, rid), vid, f"{rtype}/{rid}")

    def history(self, rtype: str, rid: str) -> list[dict]:
        return [self.read(rtype, rid)]

    def for_patient(self, pid: str, types: set[str] | None = None,
                    files: list | None = None) -> PatientPart:
        part = PatientPart([])
        for fn in self.sources:
            try:
                extra = fn(self.code, pid)
            except Exception as exc:  # a broken plug-in must not break the chart
                log.exception("patient source failed")
                part.problems.append(Problem(f"{pid}", KIND_MAPPING, f"extra source: {exc}"))
                continue
            part.resources.extend(r for r in extra
                                  if types is None or r.get("resourceType") in types)
        return part
