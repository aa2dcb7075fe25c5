"""Subcommands of ``fhir-gateway``: one module each, discovered by :mod:`fhir_gateway.cli`."""
