"""Where a served resource came from, in storage terms: its 診療日 folder, SS-MIX2 data type,
file and clinical category.

The service layer records the storage-relative path of the mapped file in ``meta.source``
(``mappers.context``); this module is the one place that reads it back, so the viewer, the
summaries and the medication summary ask here instead of parsing paths themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .sources import category_of_data_type

# .../<date folder or "-">/<data type>/<file>: standardized storage and the receipts' own paths
_FILE = re.compile(r"(?:^|/)(\d{8}|-)/([A-Z]{3}-\d{2})/([^/]+)$")
# any path at or below a data-type folder (file lists, per-file problems, content folders)
_FOLDER = re.compile(r"(?:^|/)(\d{8}|-)/([A-Z]{3}-\d{2})/")


@dataclass(frozen=True)
class Origin:
    """The storage facts of one resource; every field is "" when the source is not an SS-MIX2
    standardized-storage file (extended storage, receipts, memos, a derived Patient)."""

    path: str        # meta.source as recorded
    date: str        # date folder: YYYYMMDD, or "-" for the patient-level folder
    data_type: str   # SS-MIX2 data type, e.g. "OMP-01"
    file: str        # file name

    @property
    def day(self) -> str:
        """The 診療日 as YYYY-MM-DD ("" for the patient-level folder or an unknown source)."""
        d = self.date
        return f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 else ""

    @property
    def category(self) -> str | None:
        """The clinical category of the data type (:data:`sources.CATEGORY`), None if none."""
        return category_of_data_type(self.data_type)


@lru_cache(maxsize=65536)
def origin_of(path: str) -> Origin:
    """The :class:`Origin` of a ``meta.source`` path."""
    m = _FILE.search(path)
    return Origin(path, m.group(1), m.group(2), m.group(3)) if m else Origin(path, "", "", "")


def origin(resource: dict) -> Origin:
    """The :class:`Origin` of a resource the service layer served."""
    return origin_of(str((resource.get("meta") or {}).get("source") or ""))


def folder_of(path: str) -> tuple[str, str]:
    """(date folder, data type) of any storage-relative path at or below a data-type folder,
    ("", "") otherwise."""
    m = _FOLDER.search(path)
    return (m.group(1), m.group(2)) if m else ("", "")
