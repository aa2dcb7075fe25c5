"""レセプト電算 (UKE) receipt files: bytes -> records -> receipts, with every defect reported.

A UKE file is positional CSV (no quoting, no escaping), one record per line, the first field
being the record id (``IR``, ``RE``, ``SI`` ...).  Genuine files are CP932 with CRLF and a
trailing 0x1A; exported samples are often UTF-8 with LF, so both are read.  Nothing here knows
FHIR: :mod:`mappers.claim` turns a :class:`Receipt` into a Claim.

Layouts (field names by position) are plain data in :data:`LAYOUTS` so that a writer (the
synthetic hospital, ``fhir_gateway.synth.uke``) can build records and the reader can take them
back apart.  Layouts change with every 記録条件仕様 revision, so a record
type may have several variants, chosen by field count (medical vs dental files differ).

Every problem (undecodable bytes, unknown record types, wrong field counts, records outside a
receipt, GO totals that do not add up) becomes a :class:`storage.reader.Problem` whose reason
starts with ``line N:`` and whose offset is the byte offset of that line.  Nothing raises.

The package, by concern: :mod:`.layouts` (record layouts), :mod:`.records` (what a file is read
into), :mod:`.dates` (和暦/西暦), :mod:`.reader` (bytes -> receipts, whole or by byte range),
:mod:`.discovery` (which files are UKE files) and :mod:`.matching` (カルテ番号 -> patient id).
"""

from .dates import ERAS, parse_uke_date, uke_month
from .discovery import iter_uke_files, list_files, sniff_uke
from .layouts import (
    DAYS,
    EOF,
    HEADER_TYPES,
    ITEM_TYPES,
    KNOWN_TYPES,
    LAYOUTS,
    TENSUHYO,
    Layout,
    header_variant,
    layout_for,
)
from .matching import karte_candidates, match_patient, normalise_karte_no
from .reader import read_ranges, read_uke, read_uke_file, scan_receipts
from .records import (
    KIND_DATE,
    KIND_DECODE,
    KIND_EMPTY,
    KIND_FIELDS,
    KIND_IO,
    KIND_STRUCTURE,
    KIND_TOTALS,
    KIND_UNKNOWN,
    Item,
    Receipt,
    UkeFile,
    UkeRecord,
    facility_code,
)

__all__ = [
    "DAYS", "EOF", "ERAS", "HEADER_TYPES", "ITEM_TYPES", "KIND_DATE", "KIND_DECODE", "KIND_EMPTY",
    "KIND_FIELDS", "KIND_IO", "KIND_STRUCTURE", "KIND_TOTALS", "KIND_UNKNOWN", "KNOWN_TYPES",
    "LAYOUTS", "TENSUHYO", "Item", "Layout", "Receipt", "UkeFile", "UkeRecord", "facility_code",
    "header_variant", "iter_uke_files", "karte_candidates", "layout_for", "list_files",
    "match_patient", "normalise_karte_no", "parse_uke_date", "read_ranges", "read_uke", "read_uke_file",
    "scan_receipts", "sniff_uke", "uke_month",
]
