"""What only the whole chart can settle, for pages that map one day at a time.

``mappers.chart.assemble`` closes an admission by its discharge (and realises plans, applies
cancels) and keeps one AllergyIntolerance per allergen.  A search of Encounter or
AllergyIntolerance runs it over the patient's compartment; a ``$everything`` page maps only its
days, so it takes those resources from here instead: the settled Encounters and allergies of the
whole chart, each placed on the day of the file it came from.

Cheap by construction: only the files that can hold such resources are mapped — the event
types :data:`mappers.chart.EVENT_TYPES` (a handful of admission/discharge files) and the files
whose bytes hold an AL1 or IAM segment (:func:`storage.scan.file_may_hold_segments`, no
decoding) — and the result is cached like a compartment (folder signature, files re-checked)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mappers.chart import ALLERGY_SEGMENTS, EVENT_TYPES, assemble
from storage.layout import Storage
from storage.scan import file_may_hold_segments

from .cache import Compartment, clinical_range
from .listing import patient_records
from .sources import data_types_for
from .ssmix import StorageSource

if TYPE_CHECKING:
    from .facility import FacilityService

Placed = dict[str, list[tuple[dict, tuple[float, float] | None]]]


def settled_here(rtype: str, data_type: str) -> bool:
    """Whether a ``rtype`` mapped from a file of ``data_type`` is settled by the whole chart
    (so a day's page takes it from :func:`settled`, not from the file)."""
    return rtype == "AllergyIntolerance" or (rtype == "Encounter" and data_type in EVENT_TYPES)


def settled(svc: "FacilityService", storage: Storage, pid: str, wanted: frozenset[str]) -> Placed:
    """The chart-level resources of ``wanted`` (a subset of :data:`mappers.chart.CHART_LEVEL`), settled over
    the patient's whole chart, by the day folder of their file."""
    sig, cacheable = svc.storage.signature(pid, set(wanted))
    key = (pid, "chart-level", wanted)
    hit = svc.compartments.get(key, (sig,))
    if hit is None:
        hit = _build(svc, storage, pid, wanted, sig)
        if cacheable:
            svc.compartments.put(key, hit)
    out: Placed = {}
    for r, (day, when) in zip(hit.resources, hit.when):
        out.setdefault(day, []).append((r, when))
    return out


def _build(svc: "FacilityService", storage: Storage, pid: str, wanted: frozenset[str],
           sig: object) -> Compartment:
    records, _ = patient_records(storage, svc.dirs, pid, data_types_for(set(wanted)))
    root = str(storage.root)
    held: list[dict] = []
    places: list[tuple[str, tuple[float, float] | None]] = []
    files: list[tuple[str, int, int]] = []
    cost = 0
    for rkey in sorted(records):
        cur = StorageSource.current(records[rkey])
        if cur is None:
            continue
        f, version = cur
        events = "Encounter" in wanted and rkey.data_type in EVENT_TYPES
        if not events:
            path = f"{root}/{f.relpath}"  # relpath comes from a listing, not a request
            try:
                st = os.stat(path)
            except OSError:
                continue  # reported when its day is mapped
            if "AllergyIntolerance" not in wanted or \
                    not file_may_hold_segments(path, ALLERGY_SEGMENTS):
                files.append((path, st.st_size, st.st_mtime_ns))  # re-checked like the rest
                continue
        m = svc.storage.map_file(storage, f, version, files=files)
        cost += m.cost
        for r, w in zip(m.resources, m.when):
            rt = r.get("resourceType", "")
            if rt in wanted and settled_here(rt, rkey.data_type):
                held.append(r)
                places.append((rkey.date, w))
    keep, replaced = assemble(held)
    resources = tuple(replaced.get(i, held[i]) for i in keep)
    when = tuple((places[i][0], clinical_range(replaced[i]) if i in replaced else places[i][1])
                 for i in keep)
    return Compartment((sig,), resources, when, (), len(records), tuple(files), cost=cost)
