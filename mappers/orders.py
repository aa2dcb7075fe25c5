"""Segment-level helpers every order mapper shares (ORC, OBR, TQ1, NTE -> request elements).

The FHIR-Converter layering: message mappers (oml_01, omg, omd ...) call these segment helpers,
which call the data-type helpers of :mod:`mappers.datatypes`; one rule, one place.
"""

from __future__ import annotations

from storage.hl7 import Segment

from . import datatypes as dt
from . import terminology as term
from .jsontypes import Json


def department_extension(orc: Segment | None, facility: str) -> list[Json]:
    """ORC-17 ordering department -> the JP eCS department extension (empty when unwritten)."""
    dept = dt.codeable(orc[17], facility) if orc is not None else None
    return [{"url": term.REQUEST_DEPARTMENT_EXT, "valueCodeableConcept": dept}] if dept else []


def requester(orc: Segment | None, obr: Segment | None, facility: str) -> Json | None:
    """ORC-12 ordering provider, else OBR-16 (the same person, written on the OBR)."""
    return ((dt.practitioner(orc[12], facility) if orc is not None else None)
            or (dt.practitioner(obr[16], facility) if obr is not None else None))


def priority(tq1: Segment | None) -> str | None:
    """TQ1-9 (HL7 0485) -> ServiceRequest.priority."""
    return term.REQUEST_PRIORITY_0485.get(tq1.get(9)) if tq1 is not None else None


def nte_notes(group: list[Segment]) -> list[str]:
    """The non-empty NTE-3 texts of a segment group, in order."""
    return [s[3].text for s in group if s.id == "NTE" and s[3].text]
