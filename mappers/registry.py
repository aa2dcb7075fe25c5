"""Which mapper handles which data type, and the one entry point the server calls."""

from __future__ import annotations

from typing import Callable

from storage.hl7 import Message

from .context import MapContext

Mapper = Callable[[Message, MapContext], list[dict]]

MAPPERS: dict[str, Mapper] = {}
# Data types whose mapper reads AL1 itself (its module lists "AL1" in READS_SEGMENTS); every
# other message's AL1 segments are mapped by map_message (mappers.embedded.allergies).
_OWN_AL1: set[str] = set()


def register(*data_types: str) -> Callable[[Mapper], Mapper]:
    """Decorator: ``@register("OMP-01")`` makes a function the mapper of that data type."""

    def deco(fn: Mapper) -> Mapper:
        import sys

        own = "AL1" in getattr(sys.modules.get(fn.__module__), "READS_SEGMENTS", ())
        for dt in data_types:
            MAPPERS[dt] = fn
            if own:
                _OWN_AL1.add(dt)
        return fn

    return deco


class MappingError(ValueError):
    """The message is readable but cannot be mapped; the reason goes to the drill report."""


def map_message(msg: Message, ctx: MapContext) -> list[dict]:
    """Map one parsed message to FHIR resources (plain dicts).  Raises MappingError."""
    mapper = MAPPERS.get(ctx.name.data_type)
    if mapper is None:
        raise MappingError(f"no mapper for data type {ctx.name.data_type}")
    try:
        out = mapper(msg, ctx)
        if msg.has_segment("AL1") and ctx.name.data_type not in _OWN_AL1:
            from .embedded import allergies  # AL1 in any message (orders carry them too)

            out.extend(allergies(msg, ctx))
        return out
    except MappingError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise MappingError(f"{type(exc).__name__}: {exc}") from exc
