"""A synthetic SS-MIX2 hospital: standardized storage, extended storage and UKE receipts.

``generate(Options(out=..., patients=...))`` is what ``fhir-gateway synth`` runs; see docs/synth.md.
"""

from .writer import END_DATE, Options, Summary, encode_message, generate

__all__ = ["END_DATE", "Options", "Summary", "encode_message", "generate"]
