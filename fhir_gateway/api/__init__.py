"""The FHIR REST API: one blueprint under ``/fhir/<facility>``, thin views over providers."""

from . import operations  # noqa: F401 - registers $summary and $jp-clins on the blueprint
from .views import blueprint

__all__ = ["blueprint"]
