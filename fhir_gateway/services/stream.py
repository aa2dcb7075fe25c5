"""A patient's current resources file by file, for work that reads every file once (the bulk
export): memory is bounded by one file, not by a chart, and nothing goes through the
mapped-file or compartment caches (an export would only churn them).

The resources are those of :meth:`FacilityService.patient_bundle` without the receipts and
plug-ins (the export reads receipts per UKE file for many patients at once,
:meth:`ClaimSource.stream_patients`, and adds plug-in resources in the server process):
SS-MIX2 files through the one read-and-map function (:func:`.readmap.read_and_map`), the
chart-level steps of :func:`mappers.chart.assemble` (admissions closed by their discharge,
one AllergyIntolerance per allergen) done on the few resources they can change — the
Encounters and AllergyIntolerances, held back until the patient's last file — then the
extended storage's documents and, for a folder without a usable ADT-00, the Patient derived
from a PID."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from mappers.chart import CHART_LEVEL, assemble
from storage.names import is_valid_patient_id
from storage.reader import Problem, ReadAhead

from .listing import patient_records
from .readmap import read_and_map
from .resource_source import yields
from .sources import data_types_for
from .ssmix import StorageSource

if TYPE_CHECKING:
    from .facility import FacilityService


Batch = tuple[list[dict], list[Problem]]


def patient_stream(svc: "FacilityService", pid: str, types: set[str] | None = None
                   ) -> Iterator[Batch]:
    """(resources, problems) of one SS-MIX2 patient, one batch per file (then the chart-level
    batch, the extended storage's and the derived Patient's).  ``types``: only those (None:
    all).  Listing goes through the facility's failover; a file that cannot be read is a
    problem, as everywhere."""
    if not is_valid_patient_id(pid):
        return
    dtypes = data_types_for(types)
    has_patient = False
    all_records = None  # (storage, records) when every data type was listed
    if dtypes != []:
        def listing(storage):  # every folder listed once: no listing cache
            return storage, patient_records(storage, None, pid, dtypes)

        storage, (records, rejects) = svc._with_storage(listing)
        if dtypes is None:
            all_records = (storage, records)
        if rejects:
            yield [], [StorageSource.reject_problem(f) for f in rejects]
        held: list[dict] = []
        root = str(storage.root)
        current = [c for c in (StorageSource.current(records[k]) for k in sorted(records))
                   if c is not None]
        paths = [f"{root}/{f.relpath}" for f, _ in current]
        ahead = ReadAhead(paths)  # a cold chart: its files announced to the disk together
        for (f, version), path in zip(current, paths):
            resources, problems = read_and_map(path, f.relpath, f.name, svc.code, version,
                                               ahead)
            out = []
            for r in resources:
                rt = r.get("resourceType")
                if types is not None and rt not in types:
                    continue
                if rt in CHART_LEVEL:
                    held.append(r)
                else:
                    out.append(r)
                    has_patient = has_patient or rt == "Patient"
            yield out, problems
        keep, replaced = assemble(held)
        yield [replaced.get(i, held[i]) for i in keep], []
    if svc.extended and yields(svc.extended, types):
        part = svc.extended.for_patient(pid, types, keep=False)
        has_patient = has_patient or any(r.get("resourceType") == "Patient"
                                         for r in part.resources)
        yield part.resources, part.problems
    if (types is None or "Patient" in types) and not has_patient:
        derived = svc.derived_patient(pid, all_records)
        if derived is not None:
            yield [derived], []
