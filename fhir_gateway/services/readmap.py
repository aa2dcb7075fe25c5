"""Read and map: the one place where a file becomes FHIR resources or problems.

The API and the viewer (through :class:`~fhir_gateway.services.storage.StorageSource`),
receipts, extended storage and the drill all call a mapper through :func:`map_safely`, so a
``MappingError`` or a mapper bug is the same ``mapping`` problem everywhere and never a 500."""

from __future__ import annotations

import logging
import os
from typing import Callable, TypeVar

from mappers import MapContext, MappingError, map_message
from storage.names import FileName
from storage.reader import KIND_MAPPING, Problem, ReadAhead, ReadResult, read_path

log = logging.getLogger(__name__)
T = TypeVar("T")


def call_safely(where: str, mapper: Callable[..., T], *args: object, prefix: str = ""
                ) -> tuple[T | None, list[Problem]]:
    """``mapper(*args)`` as (result, problems): a failure gives None and one ``mapping``
    problem at ``where`` (the reason after ``prefix``); a bug is logged with its traceback."""
    try:
        return mapper(*args), []
    except MappingError as exc:
        return None, [Problem(where, KIND_MAPPING, f"{prefix}{exc}")]
    except Exception as exc:  # a mapper bug must not become a 500
        log.exception("mapper failed on %s", where)
        return None, [Problem(where, KIND_MAPPING,
                              f"{prefix}internal mapping error: {type(exc).__name__}: {exc}")]


def map_safely(where: str, mapper: Callable[..., list[dict]], *args: object,
               prefix: str = "") -> tuple[list[dict], list[Problem]]:
    """:func:`call_safely` for a mapper of resources: none when it fails."""
    resources, problems = call_safely(where, mapper, *args, prefix=prefix)
    return resources if resources is not None else [], problems


def map_read(res: ReadResult, facility: str, version: int = 1
             ) -> tuple[list[dict], list[Problem]]:
    """The resources of a read SS-MIX2 message (none when it could not be read) and the read
    and mapping problems."""
    problems = list(res.problems)
    if not res.ok or res.name is None or res.message is None:
        return [], problems
    ctx = MapContext(facility, res.path, res.name, version)
    resources, more = map_safely(res.path, map_message, res.message, ctx)
    return resources, problems + more


def read_and_map(path: str | os.PathLike[str], relpath: str, name: FileName | None, facility: str,
                 version: int = 1, ahead: ReadAhead | None = None
                 ) -> tuple[list[dict], list[Problem]]:
    """Read one stored file and map it (see :func:`map_read`); ``ahead``: ``path`` is the next
    file of that list (:class:`storage.reader.ReadAhead`)."""
    return map_read(read_path(path, relpath, name, ahead), facility, version)
