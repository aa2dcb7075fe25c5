"""The one type of mapped output: a FHIR resource or element as a JSON object.

Values are JSON (str, int, bool, Decimal, lists and nested objects); FHIR's shapes are too many
to spell as TypedDicts, so the mappers share this alias rather than a bare ``dict``.
"""

from __future__ import annotations

from typing import Any, TypeAlias

Json: TypeAlias = dict[str, Any]
