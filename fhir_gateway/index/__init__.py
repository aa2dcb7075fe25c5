"""Cross-patient Patient search (``fhir-gateway index``; the REST API's and viewer's Patient
search).  See docs/index.md."""

from .patients import IndexStats, PatientIndex
from .summary import PatientSummary

__all__ = ["IndexStats", "PatientIndex", "PatientSummary"]
