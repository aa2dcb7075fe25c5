"""Which mapper handles which data type, and the one entry point the server calls."""

from __future__ import annotations

from typing import Callable

from storage.hl7 import Message

from .jsontypes import Json
from .context import MapContext

Mapper = Callable[[Message, MapContext], list[Json]]

MAPPERS: dict[str, Mapper] = {}
# Data types whose mapper reads AL1 itself (its module lists "AL1" in READS_SEGMENTS); every
# other message's AL1 segments are mapped by map_message (mappers.embedded.allergies).
_OWN_AL1: set[str] = set()
# That AL1 mapper, registered by mappers.embedded (imported with the package) rather than
# imported here: it uses mappers that import this module (no import cycle).
_AL1: list[Mapper] = []


def register_al1(fn: Mapper) -> Mapper:
    """Decorator: the mapper of AL1 segments in messages whose own mapper skips them."""
    _AL1[:] = [fn]
    return fn


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


def map_message(msg: Message, ctx: MapContext) -> list[Json]:
    """Map one parsed message to FHIR resources (plain dicts).  Raises MappingError."""
    mapper = MAPPERS.get(ctx.name.data_type)
    if mapper is None:
        raise MappingError(f"no mapper for data type {ctx.name.data_type}")
    try:
        out = mapper(msg, ctx)
        if msg.has_segment("AL1") and ctx.name.data_type not in _OWN_AL1:
            for al1 in _AL1:  # AL1 in any message (orders carry them too)
                out.extend(al1(msg, ctx))
        return out
    except MappingError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise MappingError(f"{type(exc).__name__}: {exc}") from exc
