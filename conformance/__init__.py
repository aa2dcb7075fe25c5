"""The CapabilityStatement and the search-parameter registry: the one declaration the API validates
requests against and publishes at ``/metadata`` (a parameter is accepted iff it is declared)."""

from .registry import (
    RESULT_PARAMS, Criterion, Query, QueryError, Registry, ResourceDef, SearchParam, registry,
)

__all__ = ["RESULT_PARAMS", "Criterion", "Query", "QueryError", "Registry", "ResourceDef",
           "SearchParam", "registry"]
