"""The FHIR REST API: one blueprint under ``/fhir/<facility>``, thin views over providers."""

from . import operations  # noqa: F401 - registers $summary and $jp-clins on the blueprint
from .views import blueprint
from . import audit_events  # noqa: F401,E402 - registers GET AuditEvent on the blueprint
from . import bulk_views  # noqa: F401,E402  (routes on the same blueprint)

__all__ = ["blueprint"]
