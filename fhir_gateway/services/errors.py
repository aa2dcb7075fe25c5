"""The errors of the service layer, each carrying its HTTP status and FHIR issue code.

They live here (not in ``facility``) so every source can raise them without importing the
service that composes it; the API turns any :class:`ServiceError` into an OperationOutcome in
one handler (``status`` and ``code``, or the file ``problems`` when there are any)."""

from __future__ import annotations

from storage.reader import Problem


class ServiceError(Exception):
    """Base of the errors the API turns into OperationOutcomes."""

    status = 500
    code = "processing"  # FHIR IssueType

    @property
    def problems(self) -> list[Problem]:
        """The file problems behind the error (an outcome issue each), or none."""
        return []


class NotFound(ServiceError):
    status, code = 404, "not-found"


class Gone(ServiceError):
    """The record exists but its current version is a deletion (flag 0)."""

    status, code = 410, "deleted"


class PatientRequired(ServiceError):
    """A clinical search that names no patient (documented in the CapabilityStatement)."""

    status, code = 400, "too-costly"


class StorageUnavailable(ServiceError):
    status, code = 503, "transient"


class BrokenResource(ServiceError):
    """The file that holds the resource cannot be read or mapped."""

    status, code = 422, "processing"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.reason for p in problems))
        self._problems = list(problems)

    @property
    def problems(self) -> list[Problem]:
        return self._problems


__all__ = ["BrokenResource", "Gone", "NotFound", "PatientRequired", "ServiceError",
           "StorageUnavailable"]
