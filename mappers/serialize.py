"""JSON serialisation of mapped resources (orjson; Decimal keeps its written precision)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return orjson.Fragment(str(obj))
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, pretty: bool = False) -> bytes:
    opts = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(obj, default=_default, option=opts)


def ndjson_line(obj: Any) -> bytes:
    """One NDJSON line (orjson appends the newline: no copy of the bytes to add it)."""
    return orjson.dumps(obj, default=_default, option=orjson.OPT_APPEND_NEWLINE)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
