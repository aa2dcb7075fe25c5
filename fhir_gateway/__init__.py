"""fhir-gateway: a FHIR R4 (JP Core) facade over SS-MIX2 storage, with a clinician viewer."""

__version__ = "0.1.0"
