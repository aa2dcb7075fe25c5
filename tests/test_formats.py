"""Content negotiation: _format wins, then Accept with q-values; R4 only."""

import pytest

from fhir_gateway.formats import JSON, XML, NotAcceptable, negotiate


@pytest.mark.parametrize("fmt,accept,expected", [
    (None, None, JSON),
    ("json", "application/fhir+xml", JSON),
    ("xml", None, XML),
    ("application/fhir+xml", None, XML),
    (None, "application/fhir+xml", XML),
    (None, "application/json", JSON),
    (None, "application/fhir+json; fhirVersion=4.0", JSON),
    (None, "application/fhir+xml;q=0.5, application/fhir+json;q=0.9", JSON),
    (None, "text/html, */*;q=0.1", JSON),
    (None, "application/fhir+json; fhirVersion=3.0, application/fhir+xml;q=0.2", XML),
])
def test_negotiation(fmt, accept, expected) -> None:
    assert negotiate(fmt, accept) == expected


@pytest.mark.parametrize("fmt,accept", [
    ("turtle", None), (None, "text/plain"), (None, "application/fhir+json; fhirVersion=3.0"),
    (None, "application/fhir+json;q=0"),
])
def test_not_acceptable(fmt, accept) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(fmt, accept)
