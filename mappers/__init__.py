"""Pure functions from parsed SS-MIX2 messages (and UKE receipts) to JP Core FHIR R4 resources.

Import :func:`map_message`; importing this package registers every data-type mapper.
"""

import importlib
import pkgutil

from .context import MapContext
from .registry import MAPPERS, MappingError, map_message

# Each module named after a data type registers itself with @register on import.
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("context", "registry", "datatypes", "terminology", "ids", "serialize", "audit",
                         "embedded", "chart"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["MAPPERS", "MapContext", "MappingError", "map_message"]
