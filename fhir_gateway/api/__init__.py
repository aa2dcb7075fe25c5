"""The FHIR REST API: one blueprint under ``/fhir/<facility>``, thin views over providers."""

from .views import blueprint

__all__ = ["blueprint"]
