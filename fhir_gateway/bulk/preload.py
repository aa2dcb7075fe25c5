"""What an export's mapping processes need, imported once in the fork server they start from.

The export's pool uses the ``forkserver`` start method where the platform has it: the server
forks each mapping process from one process that has already imported this module, instead of
starting a fresh interpreter that imports the service and every mapper again (≈ 0.45 CPU-s per
process).  The modules' pages stay shared between the mapping processes (lower PSS), and they
are frozen out of the cyclic collector here, before the fork, so no collection in a child
touches (and so copies) them.  Importing this module anywhere else does no harm.
"""

from __future__ import annotations

import gc

import mappers  # noqa: F401  (every mapper registers itself on import)
from fhir_gateway.api import errors  # noqa: F401  (the error lines' OperationOutcomes)
from fhir_gateway.bulk import export  # noqa: F401
from fhir_gateway.services import stream  # noqa: F401
from fhir_gateway.services.facility import FacilityService  # noqa: F401

gc.freeze()
